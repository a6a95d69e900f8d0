"""Read a submission-shaped CSV exactly as written, and detect what a sample_submission asks for.

`read_csv_exact` keeps everything a grader might compare: the header line verbatim (trailing commas, spaces
after commas, an unnamed index column), cells as strings (zero padding kept), the encoding, a UTF-8 BOM,
the line ending. `detect_layout` decides the output kind from the sample and the classes (docs/submit.md).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kit.config.schema import SubmissionConfig
from kit.data.encoding import decode_bytes
from kit.errors import KitError

Kind = Literal["label", "label_code", "proba", "binary_proba", "topk"]
KINDS: tuple[Kind, ...] = ("label", "label_code", "proba", "binary_proba", "topk")
UNNAMED = re.compile(r"^(Unnamed: \d+)?$")
_INT = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class CsvFile:
    """A CSV as written. `lines[i]` is the file line on which row i ends (the header is line 1)."""

    path: Path
    header_line: str
    header: list[str]
    rows: list[list[str]]
    lines: list[int]
    encoding: str
    newline: str = "\n"
    delimiter: str = ","

    @property
    def names(self) -> list[str]:
        """Column names stripped of surrounding spaces (for lookups; `header` keeps them as written)."""
        return [h.strip() for h in self.header]

    @property
    def bom(self) -> bool:
        return self.encoding == "utf-8-sig"

    def column(self, j: int) -> list[str]:
        return [r[j] if j < len(r) else "" for r in self.rows]


def read_csv_exact(path: Path, what: str = "submission file") -> CsvFile:
    if not path.is_file():
        raise KitError(f"{path}: {what} not found; check the path")
    encoding, text = decode_bytes(path.read_bytes())
    first, _, _ = text.partition("\n")
    newline = "\r\n" if first.endswith("\r") else "\n"
    header_line = first.rstrip("\r")
    if not header_line.strip():
        raise KitError(f"{path}: {what} is empty; it needs a header row")
    delimiter = "\t" if "\t" in header_line and "," not in header_line else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader)
    rows, lines = [], []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        rows.append(row)
        lines.append(reader.line_num)
    return CsvFile(path, header_line, header, rows, lines, encoding, newline, delimiter)


@dataclass(frozen=True)
class Layout:
    """What to write into a sample: the id column, the value columns and how probabilities become cells."""

    kind: Kind
    id_col: int
    value_cols: list[int]
    classes: list[str]
    col_class: list[int] = field(default_factory=list)  # proba: class index of each value column
    positive: int = 1  # binary_proba: class index the column holds
    k: int = 1  # topk: labels per row

    def describe(self, header: list[str]) -> str:
        cols = [header[j].strip() for j in self.value_cols]
        if self.kind == "proba":
            return f"proba: {len(cols)} probability columns"
        if self.kind == "binary_proba":
            return f"binary_proba: P({self.classes[self.positive]}) in column '{cols[0]}'"
        if self.kind == "topk":
            return f"topk: {self.k} space-separated labels in column '{cols[0]}'"
        if self.kind == "label_code":
            return f"label_code: class index (0..{len(self.classes) - 1}) in column '{cols[0]}'"
        return f"label: class name in column '{cols[0]}'"


def is_int(s: str) -> bool:
    return bool(_INT.match(s.strip()))


def is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _id_column(sample: CsvFile, cfg: SubmissionConfig, competition_id: str | None) -> int:
    names = sample.names
    if cfg.id_column is not None:
        if cfg.id_column.strip() not in names:
            raise KitError(
                f"{sample.path}: competition.submission.id_column '{cfg.id_column}' is not a column of the "
                f"sample (columns: {sample.header}); set it to one of them"
            )
        return names.index(cfg.id_column.strip())
    if competition_id is not None and competition_id.strip() in names:
        return names.index(competition_id.strip())
    for j, name in enumerate(names):
        if not UNNAMED.match(name):
            return j
    raise KitError(f"{sample.path}: no named column to hold the ids (header: {sample.header_line!r})")


def _proba_columns(sample: CsvFile, cols: list[int], classes: list[str]) -> list[int]:
    exact = {c: i for i, c in enumerate(classes)}
    folded = {c.strip().casefold(): i for i, c in enumerate(classes)}
    col_class, problems = [], []
    for j in cols:
        name = sample.header[j].strip()
        i = exact.get(name, folded.get(name.casefold()))
        if i is None:
            problems.append(f"column '{name}' is not a class name")
        col_class.append(-1 if i is None else i)
    seen = [i for i in col_class if i >= 0]
    dupes = sorted({classes[i] for i in seen if seen.count(i) > 1})
    if dupes:
        problems.append(f"classes {dupes} have more than one column")
    missing = [c for i, c in enumerate(classes) if i not in seen]
    if missing:
        problems.append(f"classes without a column: {missing[:20]}{' ...' if len(missing) > 20 else ''}")
    if problems:
        raise KitError(
            f"{sample.path}: the sample has {len(cols)} value columns, read as one probability column per "
            "class, but they do not match the classes one to one; fix competition.classes, or set "
            "competition.submission.kind:",
            problems=problems,
        )
    return col_class


def detect_layout(
    sample: CsvFile,
    classes: list[str],
    cfg: SubmissionConfig | None = None,
    competition_id: str | None = None,
) -> Layout:
    """The output kind: from competition.submission.kind when set, else from the sample's columns and values."""
    cfg = cfg or SubmissionConfig()
    id_col = _id_column(sample, cfg, competition_id)
    cols = [j for j, n in enumerate(sample.names) if j != id_col and not UNNAMED.match(n)]
    if not cols:
        raise KitError(
            f"{sample.path}: the sample has no column for predictions besides the id column "
            f"'{sample.header[id_col]}' (header: {sample.header_line!r})"
        )
    kind = cfg.kind
    if kind == "auto":
        kind = _guess_kind(sample, cols, classes)
    if kind == "proba":
        return Layout("proba", id_col, cols, classes, col_class=_proba_columns(sample, cols, classes))
    if len(cols) != 1:
        raise KitError(
            f"{sample.path}: kind '{kind}' writes one column, but the sample has {len(cols)} besides the ids: "
            f"{[sample.header[j] for j in cols]}; set competition.submission.kind: proba, or fix the sample"
        )
    if kind == "binary_proba":
        return Layout(
            "binary_proba", id_col, cols, classes, positive=_positive(sample, cols[0], classes, cfg)
        )
    if kind == "topk":
        tokens = max((len(v.split()) for v in sample.column(cols[0])), default=0)
        k = cfg.k if "k" in cfg.model_fields_set or tokens < 2 else tokens
        spaced = [c for c in classes if len(c.split()) != 1]
        if spaced:
            raise KitError(
                f"topk submissions separate labels by spaces, but class names {spaced[:5]} contain spaces "
                "or are empty; rename them in competition.classes"
            )
        return Layout("topk", id_col, cols, classes, k=min(k, len(classes)))
    return Layout(kind, id_col, cols, classes)  # type: ignore[arg-type]


def _guess_kind(sample: CsvFile, cols: list[int], classes: list[str]) -> Kind:
    if len(cols) > 1:
        return "proba"
    name = sample.header[cols[0]].strip()
    values = [v.strip() for v in sample.column(cols[0]) if v.strip()]
    class_set = set(classes)
    if len(classes) == 2 and name in class_set:
        return "binary_proba"
    if any(len(v.split()) > 1 for v in values) and all(t in class_set for v in values for t in v.split()):
        return "topk"
    if values and all(is_float(v) for v in values) and not all(is_int(v) for v in values):
        if len(classes) == 2:
            return "binary_proba"
        raise KitError(
            f"{sample.path}: column '{name}' holds probabilities ({values[0]!r}) but the task has "
            f"{len(classes)} classes; set competition.submission.kind (label, proba, ...) in kit.yaml"
        )
    if values and all(is_int(v) for v in values) and not all(is_int(c) for c in classes):
        return "label_code"
    return "label"


def _positive(sample: CsvFile, col: int, classes: list[str], cfg: SubmissionConfig) -> int:
    if len(classes) != 2:
        raise KitError(
            f"competition.submission.kind: binary_proba needs 2 classes, the task has {len(classes)}; "
            "use proba or label"
        )
    if cfg.positive_class is not None:
        if cfg.positive_class not in classes:
            raise KitError(
                f"competition.submission.positive_class '{cfg.positive_class}' is not a class; "
                f"choose one of {classes}"
            )
        return classes.index(cfg.positive_class)
    name = sample.header[col].strip()
    return classes.index(name) if name in classes else 1
