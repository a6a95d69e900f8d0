"""Submission files on disk: the default name, the atomic write with its JSON sidecar, and the listing.

submissions/NAME-YYYYmmdd-HHMMSS.csv        the file to upload
submissions/NAME-YYYYmmdd-HHMMSS.csv.json   source (blend or member), its CV score, fingerprints, time
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from kit.artifacts.atomic import atomic_write_json, atomic_write_text
from kit.errors import KitError
from kit.metrics.scores import greater_is_better

SUBMISSIONS_DIR = Path("submissions")


def sidecar_path(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.name + ".json")


def default_path(name: str, now: datetime, folder: Path = SUBMISSIONS_DIR) -> Path:
    path = folder / f"{name}-{now:%Y%m%d-%H%M%S}.csv"
    n = 2
    while path.exists():
        path = folder / f"{name}-{now:%Y%m%d-%H%M%S}-{n}.csv"
        n += 1
    return path


def write_submission(path: Path, text: str, encoding: str, sidecar: dict[str, Any]) -> None:
    """Sidecar first, then the CSV, each atomically: a CSV that exists always has its record."""
    try:
        text.encode(encoding)
    except UnicodeEncodeError as e:
        raise KitError(
            f"{path}: the sample is encoded as {encoding}, which cannot hold {text[e.start : e.end]!r}; "
            "save sample_submission.csv as UTF-8"
        ) from None
    side = sidecar_path(path)
    atomic_write_json(side, sidecar)
    try:
        atomic_write_text(path, text, encoding=encoding)
    except BaseException:
        side.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class SubmissionRecord:
    path: Path
    source: str
    metric: str | None
    score: float | None
    score_kind: str | None
    kind: str | None
    created: str | None

    def sort_key(self) -> tuple[str, float, str]:
        if self.score is None or self.metric is None:
            return ("~", 0.0, self.created or "")
        sign = -1.0 if greater_is_better(self.metric) else 1.0
        return (self.metric, sign * self.score, self.created or "")


def read_record(csv_path: Path) -> SubmissionRecord:
    side = sidecar_path(csv_path)
    meta: dict[str, Any] = {}
    if side.is_file():
        try:
            meta = json.loads(side.read_text("utf-8"))
        except json.JSONDecodeError:
            meta = {}
    src = meta.get("source") or {}
    source = f"{src.get('kind', '?')} {src.get('name', '?')}" if src else "(no sidecar)"
    score = meta.get("cv_score")
    return SubmissionRecord(
        path=csv_path,
        source=source,
        metric=meta.get("metric"),
        score=float(score) if isinstance(score, (int, float)) else None,
        score_kind=meta.get("score_kind"),
        kind=meta.get("kind"),
        created=meta.get("created"),
    )


def list_submissions(folder: Path = SUBMISSIONS_DIR) -> list[SubmissionRecord]:
    """Every CSV in `folder`, best CV score first (per metric); files without a sidecar last."""
    if not folder.is_dir():
        return []
    records = [read_record(p) for p in folder.glob("*.csv") if not p.name.startswith(".")]
    return sorted(records, key=SubmissionRecord.sort_key)
