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
from typing import get_args

from kit.config.schema import SubmissionConfig, SubmissionKind
from kit.data.encoding import decode_bytes
from kit.data.table import is_float, is_int, number
from kit.errors import KitError

Kind = SubmissionKind
KINDS: tuple[Kind, ...] = get_args(Kind)
MULTILABEL_KINDS = ("multilabel_binary", "multilabel_proba", "multilabel_labels")
UNNAMED = re.compile(r"^(Unnamed: \d+)?$")


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
    note: str = ""  # why the kind differs from what the sample's values alone suggest (kit submit prints it)
    at_least_one: bool = False  # multilabel: every row names at least one label

    def describe(self, header: list[str]) -> str:
        cols = [header[j].strip() for j in self.value_cols]
        if self.kind == "multilabel_binary":
            return f"multilabel_binary: one 0/1 column per label ({len(cols)})"
        if self.kind == "multilabel_proba":
            return f"multilabel_proba: one probability column per label ({len(cols)})"
        if self.kind == "multilabel_labels":
            return f"multilabel_labels: space-separated labels in column '{cols[0]}'"
        if self.kind == "proba":
            return f"proba: {len(cols)} probability columns"
        if self.kind == "binary_proba":
            return f"binary_proba: P({self.classes[self.positive]}) in column '{cols[0]}'"
        if self.kind == "topk":
            return f"topk: {self.k} space-separated labels in column '{cols[0]}'"
        if self.kind == "label_code":
            return f"label_code: class index (0..{len(self.classes) - 1}) in column '{cols[0]}'"
        return f"label: class name in column '{cols[0]}'"


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


# what each metric scores: probabilities, ranked label lists, or one label a row
PROBABILITY_METRICS = ("roc_auc", "log_loss")
RANKING_METRICS = ("map_at_k", "top_k_accuracy")


def detect_layout(
    sample: CsvFile,
    classes: list[str],
    cfg: SubmissionConfig | None = None,
    competition_id: str | None = None,
    metric: str | None = None,
    *,
    multilabel: bool = False,
    at_least_one: bool = False,
) -> Layout:
    """The output kind: from competition.submission.kind when set, else from the sample's columns and values
    and the competition's metric (a probability metric never gets hard labels, a label metric never gets
    probabilities; `Layout.note` says why when the metric decided)."""
    cfg = cfg or SubmissionConfig()
    id_col = _id_column(sample, cfg, competition_id)
    cols = [j for j, n in enumerate(sample.names) if j != id_col and not UNNAMED.match(n)]
    if not cols:
        raise KitError(
            f"{sample.path}: the sample has no column for predictions besides the id column "
            f"'{sample.header[id_col]}' (header: {sample.header_line!r})"
        )
    metric_k = int(metric.split("@")[1]) if metric and "@" in metric else None
    metric = metric.split("@")[0] if metric else None
    kind, note = cfg.kind, ""
    if multilabel:
        return _multilabel_layout(sample, id_col, cols, classes, kind, metric, at_least_one)
    if kind in MULTILABEL_KINDS:
        raise KitError(
            f"competition.submission.kind: {kind} is for multi-label competitions; set competition.task: "
            "multilabel, or choose label, proba, ..."
        )
    if kind == "auto":
        kind, note = _guess_kind(sample, cols, classes, metric)
    if kind == "proba":
        col_class = _proba_columns(sample, cols, classes)
        return Layout("proba", id_col, cols, classes, col_class=col_class, note=note)
    if len(cols) != 1:
        raise KitError(
            f"{sample.path}: kind '{kind}' writes one column, but the sample has {len(cols)} besides the ids: "
            f"{[sample.header[j] for j in cols]}; set competition.submission.kind: proba, or fix the sample"
        )
    if kind == "binary_proba":
        positive = _positive(sample, cols[0], classes, cfg)
        return Layout("binary_proba", id_col, cols, classes, positive=positive, note=note)
    if kind == "topk":
        tokens = max((len(v.split()) for v in sample.column(cols[0])), default=0)
        if "k" in cfg.model_fields_set:
            k = cfg.k
        elif tokens >= 2:
            k = tokens
        else:
            k = metric_k or cfg.k
        _refuse_spaced_topk(sample, cols[0], classes, cfg, metric)
        return Layout("topk", id_col, cols, classes, k=min(k, len(classes)), note=note)
    return Layout(kind, id_col, cols, classes, note=note)  # type: ignore[arg-type]


def _refuse_spaced_topk(
    sample: CsvFile, col: int, classes: list[str], cfg: SubmissionConfig, metric: str | None
) -> None:
    """A ranked list is space-separated: class names with spaces cannot be read back out of it. The message
    names the key that asked for the list (never "rename the classes": the grader compares the names)."""
    spaced = [c for c in classes if len(c.split()) != 1]
    if not spaced:
        return
    why = f"class names {spaced[:5]} contain spaces (or are empty), so such a list cannot be read back"
    if cfg.kind == "topk":
        raise KitError(
            f"competition.submission.kind: topk writes space-separated labels, but {why}; if the competition "
            "scores one label a row, set competition.submission.kind: label"
        )
    if metric in RANKING_METRICS:
        raise KitError(
            f"competition.metric: {metric} scores a ranked list of space-separated labels, but {why}; if the "
            "competition scores one label a row, set competition.metric to that metric (accuracy, "
            "weighted_f1, macro_f1, ...)"
        )
    name = sample.header[col].strip()
    cell = next((v for v in sample.column(col) if len(v.split()) > 1), "")
    raise KitError(
        f"{sample.path}: column '{name}' holds several space-separated values a row ({cell[:80]!r}), read as a "
        f"ranked list of labels, but {why}; if the column takes one class name a row, set "
        "competition.submission.kind: label"
    )


def _guess_kind(sample: CsvFile, cols: list[int], classes: list[str], metric: str | None) -> tuple[Kind, str]:
    """The kind the sample asks for, and a note when the metric or the classes decided what its values alone
    leave open."""
    if len(cols) > 1:
        return "proba", ""
    name = sample.header[cols[0]].strip()
    values = [v.strip() for v in sample.column(cols[0]) if v.strip()]
    class_set = set(classes)
    # cells that are class names are one label a row, spaces and all ('Sugar beet')
    are_classes = bool(values) and all(v in class_set for v in values)
    tokens = max((len(v.split()) for v in values), default=0)
    if tokens > 1 and not are_classes:
        # k space-separated labels a row: a ranked list, even where the sample's placeholder labels are not
        # classes (humpback's new_whale); never read as one label
        foreign = sorted({t for v in values for t in v.split()} - class_set)
        note = ""
        if foreign:
            note = (
                f"topk: the sample's column '{name}' holds {tokens} space-separated labels a row; some are not "
                f"classes ({foreign[:3]}), read as placeholders"
            )
        return "topk", note
    if metric in RANKING_METRICS:
        return "topk", f"topk: the metric {metric} scores a ranked list of labels, so kit writes one"
    floats = bool(values) and all(is_float(v) for v in values) and not all(is_int(v) for v in values)
    if metric in PROBABILITY_METRICS and len(classes) == 2:
        note = ""
        if not floats and name not in class_set:
            note = (
                f"binary_proba: the metric {metric} scores probabilities, so column '{name}' gets "
                f"P({classes[1]}) although the sample's placeholder values look like labels"
            )
        return "binary_proba", note
    if metric in PROBABILITY_METRICS:
        raise KitError(
            f"{sample.path}: the metric {metric} scores probabilities, but the sample has one value column "
            f"('{name}') for {len(classes)} classes; a probability submission needs one column per class: "
            "check competition.metric and the sample, or set competition.submission.kind"
        )
    label_metric = metric is not None
    if len(classes) == 2 and name in class_set and not label_metric:
        return "binary_proba", ""
    if are_classes or not values:
        return "label", ""
    numbers = _numbers(classes)
    if floats and numbers is not None and all(number(v) in numbers for v in values):
        return "label", (
            f"label: column '{name}' spells its placeholder {values[0]!r}, the classes are spelled like "
            f"{classes[0]!r}; kit writes each image's class as the train labels spell it"
        )
    if floats:
        if label_metric:
            return "label", (
                f"label: column '{name}' holds probabilities in the sample ({values[0]!r}), but the metric "
                f"{metric} scores labels, so kit writes labels; set competition.submission.kind to override"
            )
        if len(classes) == 2:
            return "binary_proba", ""
        raise KitError(
            f"{sample.path}: column '{name}' holds probabilities ({values[0]!r}) but the task has "
            f"{len(classes)} classes; set competition.submission.kind (label, proba, ...) in kit.yaml"
        )
    return _label_kind(sample, name, values, classes)


def _numbers(classes: list[str]) -> set[float] | None:
    """The classes' numeric values when every class is a finite number ('3', '1.0', '0.5'), else None."""
    out = {number(c) for c in classes}
    return None if None in out else out  # type: ignore[return-value]


def _label_kind(sample: CsvFile, name: str, values: list[str], classes: list[str]) -> tuple[Kind, str]:
    """One label a row whose placeholders are not class names: the class as train spells it, or its index.

    Integers are class indices only where nothing else can explain them: the classes are names and the sample
    holds several different integers, all in 0..K-1. Numeric classes get their own values (a `0` placeholder
    for classes `1.0`..`10.0` asks for a label, not an index). A constant integer beside named classes could be
    either, so kit refuses rather than guess."""
    if not all(is_int(v) for v in values):
        return "label", ""
    if _numbers(classes) is not None:
        if all(is_int(c) for c in classes):
            return "label", ""
        return "label", (
            f"label: column '{name}' holds integers ({values[0]!r}) and the classes are numbers, so kit writes "
            f"each image's class as the train labels spell it ({classes[0]!r}, {classes[-1]!r}); set "
            "competition.submission.kind: label_code to write class indices 0.."
            f"{len(classes) - 1} instead"
        )
    codes = sorted({int(v) for v in values})
    k = len(classes)
    order = ", ".join(f"{c!r} = {i}" for i, c in enumerate(classes[:3])) + (", ..." if k > 3 else "")
    if len(codes) >= 2 and codes[0] >= 0 and codes[-1] < k:
        return "label_code", (
            f"label_code: column '{name}' holds different integers in 0..{k - 1} ({codes[:5]}) and the classes "
            f"are names, so kit writes class indices in competition.classes order ({order}); set "
            "competition.submission.kind: label to write the names"
        )
    if len(codes) == 1:
        seen = f"only the placeholder {values[0]!r}"
    else:
        seen = f"integers {codes[0]}..{codes[-1]}, not all in 0..{k - 1}"
    raise KitError(
        f"{sample.path}: column '{name}' holds {seen} and the classes are names ({classes[:3]}), so kit cannot "
        "tell whether the leaderboard wants the class names or their indices; set "
        f"competition.submission.kind: label (names) or label_code (indices 0..{k - 1} in competition.classes "
        f"order: {order})"
    )


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


def _multilabel_layout(
    sample: CsvFile,
    id_col: int,
    cols: list[int],
    labels: list[str],
    kind: str,
    metric: str | None,
    at_least_one: bool,
) -> Layout:
    """A multi-label sample: one 0/1 or probability column per label, or one column of separated labels."""
    if kind not in ("auto", *MULTILABEL_KINDS):
        raise KitError(
            f"competition.submission.kind: {kind} writes one label per image, but competition.task is "
            f"multilabel; choose one of {list(MULTILABEL_KINDS)} or auto"
        )
    note = ""
    if kind == "auto":
        if len(cols) == 1:
            if metric in PROBABILITY_METRICS:
                raise KitError(
                    f"{sample.path}: the metric {metric} scores per-label probabilities, but the sample has one "
                    f"value column ('{sample.header[cols[0]].strip()}'); it needs one column per label: check "
                    "competition.metric and the sample, or set competition.submission.kind"
                )
            kind = "multilabel_labels"
        elif metric in PROBABILITY_METRICS:
            kind = "multilabel_proba"
        else:
            kind = "multilabel_binary"
            values = [v.strip() for j in cols for v in sample.column(j) if v.strip()]
            if values and not all(v in ("0", "1") for v in values):
                note = (
                    f"multilabel_binary: the sample's cells look like probabilities ({values[0]!r}), but the "
                    f"metric {metric} scores label decisions, so kit writes 0/1; set "
                    "competition.submission.kind: multilabel_proba to override"
                )
    if kind == "multilabel_labels":
        if len(cols) != 1:
            raise KitError(
                f"{sample.path}: kind multilabel_labels writes one column, but the sample has {len(cols)} "
                f"besides the ids: {[sample.header[j] for j in cols]}; set competition.submission.kind"
            )
        spaced = [c for c in labels if len(c.split()) != 1]
        if spaced:
            raise KitError(
                f"{sample.path}: multilabel_labels writes the labels of a row separated by spaces, but labels "
                f"{spaced[:5]} contain spaces (or are empty), so such a cell cannot be read back; kit writes "
                "these labels only into a sample with one column per label (multilabel_binary or "
                "multilabel_proba): check the competition's submission format"
            )
        return Layout("multilabel_labels", id_col, cols, labels, note=note, at_least_one=at_least_one)
    col_class = _proba_columns(sample, cols, labels)
    return Layout(
        kind,  # type: ignore[arg-type]
        id_col,
        cols,
        labels,
        col_class=col_class,
        note=note,
        at_least_one=at_least_one,
    )
