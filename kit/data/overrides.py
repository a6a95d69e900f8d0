"""competition.label_overrides: a CSV of corrections (`id,label`) applied to the train rows as they are read.

`id` names a train row as the train table identifies it (`Table.ids`: the id_column cell, else the image
column's file stem; `class/file.jpg` in a class-folder layout; the image id of COCO-style JSON). `label` is
the corrected class, or empty to drop the row (multilabel: labels joined by competition.label_separator).
Other columns are ignored, so kit's own suggestions file (kit.report.labels), which carries review columns,
is a valid overrides file.

`kit.data.table.load_train` applies them, so every consumer (train, blend, runs, validate, submit) sees the
same rows, and the corrections reach the data fingerprint (labels) and the train ids (dropped rows) that
members and blends are checked against.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from kit.config.schema import Competition
from kit.data.table import is_int, read_csv, sort_classes, split_labels
from kit.errors import KitError

ID_COLUMN = "id"
LABEL_COLUMN = "label"
MAX_SHOWN = 50  # problems listed before "... and N more"


@dataclass(frozen=True)
class Override:
    line: int  # the row's line in the file (the header is line 1)
    id: str
    label: str | None  # None: drop the row


def read_label_overrides(path: Path) -> list[Override]:
    """The rows of an overrides file, checked for shape (columns, blank or repeated ids); not yet against
    the train table."""
    overrides, problems = _read(path)
    if problems:
        _refuse(path, problems)
    return overrides


def _read(path: Path) -> tuple[list[Override], list[str]]:
    """The rows of an overrides file and the problems of its rows; a file kit cannot read as such is an error."""
    where = f"competition.label_overrides: {path}"
    if not path.exists():
        raise KitError(
            f"{where} does not exist (the path is relative to the kit.yaml); create it with the columns "
            "id,label or remove competition.label_overrides"
        )
    if path.is_dir():
        raise KitError(f"{where} is a folder; point label_overrides at a CSV file with the columns id,label")
    try:
        header, rows = read_csv(path)
    except OSError as e:
        raise KitError(f"{where} cannot be read ({e.strerror}); check its permissions") from None
    missing = [c for c in (ID_COLUMN, LABEL_COLUMN) if c not in header]
    if missing:
        raise KitError(
            f"{path}: competition.label_overrides needs the columns id,label; missing {missing} (header: "
            f"{header}). Write `id` as the train table names its rows and `label` as the corrected class "
            "(empty drops the row)"
        )
    out: list[Override] = []
    problems: list[str] = []
    first: dict[str, int] = {}
    for n, row in enumerate(rows, start=2):
        rid, label = (row.get(ID_COLUMN) or "").strip(), (row.get(LABEL_COLUMN) or "").strip()
        if not rid:
            problems.append(f"{path.name} row {n}: empty id; name the train row to correct")
            continue
        if rid in first:
            problems.append(
                f"{path.name} row {n}: id '{rid}' is listed again (first at row {first[rid]}); keep one row per id"
            )
            continue
        first[rid] = n
        out.append(Override(n, rid, label or None))
    return out, problems


def _refuse(path: Path, problems: list[str]) -> None:
    more = [f"... and {len(problems) - MAX_SHOWN} more"] if len(problems) > MAX_SHOWN else []
    raise KitError(
        f"{path}: {len(problems)} problem(s) in competition.label_overrides; fix the file:",
        problems=problems[:MAX_SHOWN] + more,
    )


def _known_labels(comp: Competition, labels: list[str]) -> list[str]:
    """The labels an override may name: competition.classes or label_columns, else the labels train holds."""
    if comp.classes:
        return list(comp.classes)
    if comp.label_columns:
        return list(comp.label_columns)
    if comp.multilabel:
        return sort_classes([lab for cell in labels for lab in split_labels(cell, comp.label_separator)])
    return sort_classes(labels)


class _IdHints:
    """'did you mean' for an id that names no train row: the same file name or stem in a class-folder id,
    the same number without its zero padding (a spreadsheet drops it), or a close spelling."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self._alias: dict[str, str] | None = None

    def guess(self, rid: str) -> str | None:
        if self._alias is None:
            alias: dict[str, str] = {}
            for i in self.ids:
                for key in (Path(i).name, Path(i).stem):
                    alias.setdefault(key, i)
                if is_int(i):
                    alias.setdefault(str(int(i)), i)
            self._alias = alias
        for key in (rid, Path(rid).name, Path(rid).stem, str(int(rid)) if is_int(rid) else ""):
            if key and key in self._alias:
                return self._alias[key]
        if len(self.ids) <= 20_000:  # difflib compares with every id: bounded for large tables
            close = difflib.get_close_matches(rid, self.ids, n=1, cutoff=0.75)
            return close[0] if close else None
        return None


def apply_label_overrides(
    comp: Competition,
    ids: list[str],
    paths: list[Path],
    labels: list[str],
    groups: list[str] | None,
) -> tuple[list[str], list[Path], list[str], list[str] | None]:
    """The train split with competition.label_overrides applied: labels replaced, dropped rows removed (ids,
    paths, labels and groups stay aligned). Every problem of the file is reported at once."""
    assert comp.label_overrides is not None
    path = comp.label_overrides
    overrides, problems = _read(path)
    known = _known_labels(comp, labels)
    known_set = set(known)
    row_of = {rid: i for i, rid in enumerate(ids)}
    hints = _IdHints(ids)
    shown = ", ".join(f"'{i}'" for i in ids[:3])
    new_labels, drop = list(labels), set()
    for o in overrides:
        i = row_of.get(o.id)
        if i is None:
            guess = hints.guess(o.id) if len(problems) < 5 else None
            problems.append(
                f"{path.name} row {o.line}: id '{o.id}' is no train row"
                + (f" (did you mean '{guess}'?)" if guess else "")
                + f"; train ids look like {shown} ({len(ids)} rows)"
            )
            continue
        if o.label is None:
            drop.add(i)
            continue
        parts = split_labels(o.label, comp.label_separator) if comp.multilabel else [o.label]
        unknown = [p for p in parts if p not in known_set]
        if unknown:
            listed = ", ".join(known[:20]) + (f", ... ({len(known)} in all)" if len(known) > 20 else "")
            problems.append(
                f"{path.name} row {o.line}: label {', '.join(repr(u) for u in unknown)} for id '{o.id}' is not a "
                f"class; classes: {listed}"
                + (
                    f" (multilabel: labels joined by competition.label_separator {comp.label_separator!r})"
                    if comp.multilabel
                    else ""
                )
            )
            continue
        new_labels[i] = comp.label_separator.join(parts) if comp.multilabel else o.label
    if not problems:
        problems += _emptied(comp, labels, new_labels, drop, known, path)
    if problems:
        _refuse(path, problems)
    keep = [i for i in range(len(ids)) if i not in drop]
    if not keep:
        raise KitError(f"{path}: competition.label_overrides drops every train row; keep at least one")
    return (
        [ids[i] for i in keep],
        [paths[i] for i in keep],
        [new_labels[i] for i in keep],
        None if groups is None else [groups[i] for i in keep],
    )


def _emptied(
    comp: Competition, before: list[str], after: list[str], drop: set[int], known: list[str], path: Path
) -> list[str]:
    """Classes the train rows held before the overrides and none holds after: kit would silently lose the
    class (its class list is derived from the labels) or refuse it later with a message about classes."""

    def present(labels: list[str], skip: set[int]) -> set[str]:
        if comp.multilabel:
            return {
                lab
                for i, cell in enumerate(labels)
                if i not in skip
                for lab in split_labels(cell, comp.label_separator)
            }
        return {lab for i, lab in enumerate(labels) if i not in skip}

    lost = [c for c in known if c in present(before, set()) and c not in present(after, drop)]
    if not lost:
        return []
    return [
        f"{path.name}: after the overrides no train row has class(es) {lost[:10]} (every such row is dropped or "
        "relabelled); kit cannot learn a class it never sees: keep at least one of its rows"
    ]
