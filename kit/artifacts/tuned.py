"""Records of `kit tune MEMBER --apply`: which folds chose a tuned member's hyperparameters.

    workdir/tune/MEMBER/applied/NEW.json   written when `--apply` writes members.NEW into kit.yaml: the entry
                                           written, the best trial, the study and the folds it was scored on

`kit runs` reads them to mark members whose out-of-fold score comes (partly) from the folds that chose their
values, and `--apply` to know whether an existing members.NEW is kit's to replace.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def record_path(workdir: Path, name: str, new: str) -> Path:
    return workdir / "tune" / name / "applied" / f"{new}.json"


def applied_records(workdir: Path) -> dict[str, dict[str, Any]]:
    """Members `kit tune --apply` wrote: tuned member name -> its record."""
    out = {}
    for path in sorted((workdir / "tune").glob("*/applied/*.json")):
        try:
            rec = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and isinstance(rec.get("name"), str):
            out[rec["name"]] = rec
    return out


def tuning_note(name: str, record: dict[str, Any], folds_fingerprint: str | None) -> str:
    """What a tuned member's OOF score is worth, given the folds that chose its values."""
    folds, k, source = list(record.get("folds") or []), int(record.get("k") or 0), record.get("source", "?")
    which = ", ".join(map(str, folds))
    if folds_fingerprint is not None and record.get("folds_fingerprint") != folds_fingerprint:
        return (
            f"{name}: hyperparameters chosen by `kit tune {source}` on fold(s) {which} of another split (the "
            "folds changed since); the scored rows overlap the ones that chose them, so its OOF score may be "
            "optimistic (docs/tune.md)"
        )
    if sorted(folds) == list(range(k)):
        return (
            f"{name}: hyperparameters chosen on all {k} folds it is scored on (`kit tune {source}`), so its OOF "
            "score is optimistic; tune with --folds 0 and train on every fold instead (docs/tune.md)"
        )
    return (
        f"{name}: hyperparameters chosen on fold {which} of {k} (`kit tune {source} --folds {which.replace(' ', '')}`)"
        f": the OOF rows of those {len(folds)} fold(s) are optimistic, the other {k - len(folds)} honest "
        "(docs/tune.md)"
    )
