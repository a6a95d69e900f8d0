"""Validate a submission against its sample: header, every id once, nothing extra, values of the right kind.

The same check runs on rows before `kit submit` writes them and on any CSV via `kit check-submission`.
Problems name the file line (the header is line 1) and the id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kit.data.table import is_int
from kit.errors import KitError
from kit.submit.sample import CsvFile, Layout

MISSING = {"", "nan", "none", "null", "na", "n/a", "inf", "-inf", "+inf", "infinity", "-infinity"}
SUM_TOLERANCE = 1e-3
MAX_SHOWN = 100


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def check_submission_rows(sub: CsvFile, sample: CsvFile, layout: Layout) -> CheckReport:
    """Every problem of `sub` as a submission for `sample` read with `layout`."""
    rep = CheckReport(n_rows=len(sub.rows))
    if sub.header != sample.header:
        rep.problems.append(
            f"header: {sub.header_line!r} differs from the sample's {sample.header_line!r}; copy it verbatim"
        )
    if sub.bom != sample.bom:
        rep.warnings.append(
            f"the sample {'has' if sample.bom else 'has no'} UTF-8 BOM and this file "
            f"{'has' if sub.bom else 'has none'}"
        )
    names = sub.names
    try:
        id_j = names.index(sample.names[layout.id_col])
        val_j = [names.index(sample.names[j]) for j in layout.value_cols]
    except ValueError:
        missing = [
            sample.names[j] for j in [layout.id_col, *layout.value_cols] if sample.names[j] not in names
        ]
        rep.problems.append(f"columns {missing} of the sample are missing; header is {sub.header_line!r}")
        return rep

    sample_ids = [r[layout.id_col] if layout.id_col < len(r) else "" for r in sample.rows]
    sample_line = {s: ln for s, ln in zip(sample_ids, sample.lines, strict=True)}
    first_seen: dict[str, int] = {}
    order: list[str] = []
    need = max(id_j, *val_j) + 1
    for row, line in zip(sub.rows, sub.lines, strict=True):
        if len(row) < need:
            rep.problems.append(f"line {line}: {len(row)} cells, the header has {len(sub.header)}")
            continue
        id_ = row[id_j]
        where = f"line {line} (id '{id_}')"
        if id_ not in sample_line:
            hint = ""
            stripped = {s.strip(): s for s in sample_line}
            if id_.strip() in stripped:
                hint = f"; the sample writes it as '{stripped[id_.strip()]}'"
            rep.problems.append(f"{where}: id is not in the sample submission{hint}")
        elif id_ in first_seen:
            rep.problems.append(f"{where}: id repeats (first on line {first_seen[id_]})")
        else:
            first_seen[id_] = line
            order.append(id_)
        rep.problems.extend(
            _check_values(where, [row[j] for j in val_j], [sub.header[j] for j in val_j], layout)
        )
    for s in sample_ids:
        if s not in first_seen:
            rep.problems.append(f"id '{s}' (sample line {sample_line[s]}) is missing")
    if not rep.problems and order != sample_ids:
        at = next(i for i, (a, b) in enumerate(zip(order, sample_ids, strict=True)) if a != b)
        rep.warnings.append(
            f"rows are not in the sample's order (first difference at line {sub.lines[at]}: '{order[at]}', "
            f"sample has '{sample_ids[at]}'); some graders compare row by row"
        )
    return rep


def _check_values(where: str, values: list[str], cols: list[str], layout: Layout) -> list[str]:
    problems = []
    classes = layout.classes
    if layout.kind.startswith("multilabel_"):
        return _check_multilabel(where, values, cols, layout)
    if layout.kind in ("proba", "binary_proba"):
        total, numbers_ok = 0.0, True
        for v, col in zip(values, cols, strict=True):
            p = _float(v)
            if p is None:
                problems.append(f"{where}: column '{col.strip()}' holds {v!r}, not a probability")
                numbers_ok = False
            elif not 0.0 <= p <= 1.0:
                problems.append(f"{where}: column '{col.strip()}' = {v} is outside [0, 1]")
                numbers_ok = False
            else:
                total += p
        if layout.kind == "proba" and numbers_ok and abs(total - 1.0) > SUM_TOLERANCE:
            problems.append(f"{where}: probabilities sum to {total:.6f}, not 1")
        return problems
    v = values[0].strip()
    col = cols[0].strip()
    if v.lower() in MISSING:
        return [f"{where}: empty or NaN value in column '{col}'"]
    if layout.kind == "label_code":
        if not is_int(v) or not 0 <= int(v) < len(classes):
            problems.append(f"{where}: '{v}' is not a class code 0..{len(classes) - 1}")
    elif layout.kind == "topk":
        tokens = v.split()
        bad = [t for t in tokens if t not in classes]
        if bad:
            problems.append(f"{where}: {bad[:5]} are not class names")
        if len(tokens) > layout.k:
            problems.append(f"{where}: {len(tokens)} labels, at most {layout.k} allowed")
        if len(set(tokens)) != len(tokens):
            problems.append(f"{where}: labels repeat in '{v}'")
    elif values[0] not in classes:
        known = set(classes)
        hint = " (spaces around it?)" if v in known else ""
        problems.append(f"{where}: '{values[0]}' is not a class{hint}")
    return problems


def _check_multilabel(where: str, values: list[str], cols: list[str], layout: Layout) -> list[str]:
    """0/1 cells, probabilities in [0, 1] (no row-sum rule: labels are not exclusive), or known labels once."""
    problems = []
    if layout.kind == "multilabel_labels":
        v = values[0].strip()
        if v.lower() in MISSING - {""}:
            return [f"{where}: NaN value in column '{cols[0].strip()}'"]
        tokens = v.split()
        bad = [t for t in tokens if t not in layout.classes]
        if bad:
            problems.append(f"{where}: {bad[:5]} are not labels")
        if len(set(tokens)) != len(tokens):
            problems.append(f"{where}: labels repeat in '{v}'")
        if not tokens and layout.at_least_one:
            problems.append(f"{where}: no label, but competition.at_least_one_label is set")
        return problems
    for v, col in zip(values, cols, strict=True):
        if layout.kind == "multilabel_binary":
            if v.strip() not in ("0", "1"):
                problems.append(f"{where}: column '{col.strip()}' holds {v!r}, not 0 or 1")
            continue
        p = _float(v)
        if p is None:
            problems.append(f"{where}: column '{col.strip()}' holds {v!r}, not a probability")
        elif not 0.0 <= p <= 1.0:
            problems.append(f"{where}: column '{col.strip()}' = {v} is outside [0, 1]")
    no_label = all(v.strip() == "0" for v in values)
    if layout.kind == "multilabel_binary" and layout.at_least_one and not problems and no_label:
        problems.append(f"{where}: no label set, but competition.at_least_one_label is set")
    return problems


def _float(v: str) -> float | None:
    s = v.strip()
    if s.lower() in MISSING:
        return None
    try:
        p = float(s)
    except ValueError:
        return None
    return p if math.isfinite(p) else None


def raise_if_failed(rep: CheckReport, source: str, outcome: str = "") -> None:
    """KitError listing the problems (the first MAX_SHOWN, then a count); `outcome` ends the headline."""
    if rep.ok:
        return
    shown = rep.problems[:MAX_SHOWN]
    if len(rep.problems) > MAX_SHOWN:
        shown.append(f"... and {len(rep.problems) - MAX_SHOWN} more")
    raise KitError(f"{source}: {len(rep.problems)} problem(s){outcome}:", problems=shown)
