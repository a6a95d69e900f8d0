"""Pure conversion: test probabilities -> the sample's rows. No file is read or written here.

`match_ids` maps the sample's ids onto the workspace's test ids; `value_cells` turns probabilities into cell
strings for a Layout; `fill_rows` copies the sample's rows and replaces only the value cells; `render_csv`
joins them under the sample's header line, with its delimiter and line ending.
"""

from __future__ import annotations

import csv
import io
from pathlib import PurePosixPath

import numpy as np

from kit.data.table import IMAGE_EXTS, is_int
from kit.errors import KitError
from kit.submit.sample import CsvFile, Layout

MAX_LISTED = 20


def strip_image_ext(id_: str) -> str:
    s = id_.strip()
    suffix = PurePosixPath(s).suffix
    return s[: -len(suffix)] if suffix.lower() in IMAGE_EXTS else s


def match_ids(sample_ids: list[str], test_ids: list[str], *, lines: list[int] | None = None) -> np.ndarray:
    """Index into `test_ids` for each sample id: exact match, else with/without an image extension, else as
    the same integer (a sample that pandas wrote without the zero padding of 00100.png: id 100)."""
    exact: dict[str, int | None] = {t.strip(): n for n, t in enumerate(test_ids)}
    stems: dict[str, int | None] = {}
    numbers: dict[int, int | None] = {}
    for n, t in enumerate(test_ids):
        key = strip_image_ext(t)
        stems[key] = None if key in stems else n  # None: two test ids share a stem, so it cannot decide
        if is_int(key):
            numbers[int(key)] = None if int(key) in numbers else n
    idx = np.full(len(sample_ids), -1, dtype=np.int64)
    unmatched: list[str] = []
    for r, s in enumerate(sample_ids):
        i = exact.get(s.strip())
        if i is None:
            i = stems.get(strip_image_ext(s))
        if i is None and is_int(strip_image_ext(s)):
            i = numbers.get(int(strip_image_ext(s)))
        if i is None:
            line = lines[r] if lines else r + 2
            unmatched.append(f"line {line}: id '{s}'")
        else:
            idx[r] = i
    taken: dict[int, int] = {}
    for r, i in enumerate(idx.tolist()):
        if i >= 0 and i in taken:
            line, first = (lines[r], lines[taken[i]]) if lines else (r + 2, taken[i] + 2)
            unmatched.append(
                f"line {line}: id '{sample_ids[r]}' is test id '{test_ids[i]}' again (line {first})"
            )
        taken.setdefault(i, r)
    if unmatched:
        shown = unmatched[:MAX_LISTED]
        if len(unmatched) > MAX_LISTED:
            shown.append(f"... and {len(unmatched) - MAX_LISTED} more")
        raise KitError(
            f"{len(unmatched)} of {len(sample_ids)} sample submission ids do not match one test id each (tried exact, then "
            f"with/without an image extension, then as integers; test ids look like {test_ids[:3]}); check competition.test "
            "and competition.id_column:",
            problems=shown,
        )
    return idx


def format_prob(p: float) -> str:
    """Fixed-point with 8 decimals, trailing zeros dropped: 0.25, 1, 0.00000012; NaN stays 'nan'."""
    if not np.isfinite(p):
        return "nan"
    return f"{p:.8f}".rstrip("0").rstrip(".") or "0"


def value_cells(layout: Layout, probs: np.ndarray) -> list[list[str]]:
    """One list of value cells per row (in layout.value_cols order) from probabilities [n_rows, C]."""
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = len(layout.classes)
    if probs.ndim != 2 or probs.shape[1] != n_classes:
        raise KitError(
            f"probabilities have shape {probs.shape}; expected [n_rows, {n_classes}] (one per class)"
        )
    finite = np.isfinite(probs).all(axis=1)
    if layout.kind.startswith("multilabel_"):
        return _multilabel_cells(layout, probs, finite)
    if layout.kind == "proba":
        cols = probs[:, layout.col_class]
        return [[format_prob(p) for p in row] for row in cols.tolist()]
    if layout.kind == "binary_proba":
        return [[format_prob(p)] for p in probs[:, layout.positive].tolist()]
    if layout.kind == "topk":
        order = np.argsort(-np.where(np.isfinite(probs), probs, -np.inf), axis=1, kind="stable")[
            :, : layout.k
        ]
        return [
            [" ".join(layout.classes[c] for c in row) if ok else "nan"]
            for row, ok in zip(order.tolist(), finite.tolist(), strict=True)
        ]
    top = probs.argmax(axis=1)
    if layout.kind == "label_code":
        return [[str(c) if ok else "nan"] for c, ok in zip(top.tolist(), finite.tolist(), strict=True)]
    return [[layout.classes[c] if ok else "nan"] for c, ok in zip(top.tolist(), finite.tolist(), strict=True)]


def label_decisions(probs: np.ndarray, at_least_one: bool) -> np.ndarray:
    """Multi-label 0/1 decisions: probability >= 0.5 (blends with per-label thresholds have mapped each
    threshold onto 0.5); with `at_least_one` a row without any label keeps its most probable one."""
    pred = probs >= 0.5
    if at_least_one and len(pred):
        empty = ~pred.any(axis=1)
        pred[empty, np.nan_to_num(probs[empty], nan=-1.0).argmax(axis=1)] = True
    return pred


def _multilabel_cells(layout: Layout, probs: np.ndarray, finite: np.ndarray) -> list[list[str]]:
    if layout.kind == "multilabel_proba":
        return [[format_prob(p) for p in row] for row in probs[:, layout.col_class].tolist()]
    pred = label_decisions(probs, layout.at_least_one)
    if layout.kind == "multilabel_binary":
        cells = pred[:, layout.col_class].astype(int).astype(str)
        return [
            list(row) if ok else ["nan"] * len(row)
            for row, ok in zip(cells.tolist(), finite.tolist(), strict=True)
        ]
    return [
        [" ".join(layout.classes[j] for j in np.flatnonzero(row)) if ok else "nan"]
        for row, ok in zip(pred, finite.tolist(), strict=True)
    ]


def fill_rows(sample: CsvFile, layout: Layout, cells: list[list[str]]) -> list[list[str]]:
    """The sample's rows with the value cells replaced; ids and any other cells kept as written."""
    if len(cells) != len(sample.rows):
        raise KitError(f"{len(cells)} rows of predictions for a sample of {len(sample.rows)} rows")
    width = len(sample.header)
    out = []
    for row, vals in zip(sample.rows, cells, strict=True):
        new = list(row)
        need = max(layout.value_cols) + 1
        if len(new) < need:
            new += [""] * (min(need, width) - len(new))
        for j, v in zip(layout.value_cols, vals, strict=True):
            new[j] = v
        out.append(new)
    return out


def render_csv(sample: CsvFile, rows: list[list[str]]) -> str:
    """Header line verbatim, then the rows quoted where needed (names with commas or quotes)."""
    buf = io.StringIO()
    writer = csv.writer(
        buf, delimiter=sample.delimiter, lineterminator=sample.newline, quoting=csv.QUOTE_MINIMAL
    )
    buf.write(sample.header_line + sample.newline)
    writer.writerows(rows)
    return buf.getvalue()
