"""Submission files on disk: the default name, the atomic write with its JSON sidecar, and the listing.

submissions/NAME-YYYYmmdd-HHMMSS.csv        the file to upload
submissions/NAME-YYYYmmdd-HHMMSS.csv.json   source (blend or member), its CV score and what that score
                                            estimates (`score_kind`), fingerprints, time, and the public
                                            leaderboard scores `kit submissions --lb` recorded (`lb_history`)
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.artifacts.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from kit.artifacts.names import plain_name
from kit.config.schema import KitConfig

if TYPE_CHECKING:
    from kit.artifacts.blend import Winner
from kit.errors import KitError
from kit.metrics.scores import greater_is_better

SUBMISSIONS_DIR = Path("submissions")

# what a submission's `cv_score` estimates (its sidecar's `score_kind`)
SELECTION_AWARE = "selection-aware nested CV"  # a blend: the whole procedure, blender choice included
POOLED_OOF = "pooled OOF"  # one member: its out-of-fold predictions pooled over the folds
WINNER_NESTED = "winner's nested CV (optimistic)"  # a blend made before kit recorded the selection-aware one
COMPARABLE = (SELECTION_AWARE, POOLED_OOF)


def sidecar_path(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.name + ".json")


def default_path(name: str, now: datetime, folder: Path = SUBMISSIONS_DIR) -> Path:
    plain_name(name, "submission")
    path = folder / f"{name}-{now:%Y%m%d-%H%M%S}.csv"
    n = 2
    while path.exists() or sidecar_path(path).exists():
        path = folder / f"{name}-{now:%Y%m%d-%H%M%S}-{n}.csv"
        n += 1
    return path


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _input_reason(path: Path, cfg: KitConfig) -> str | None:
    """Why `path` (resolved) belongs to the competition or to kit's workdir, or None."""
    comp = cfg.competition
    workdir = cfg.workdir.resolve()
    if _inside(path, workdir):
        return f"it is inside the workdir {workdir}, where kit keeps its artifacts"
    for key in ("train", "test", "sample_submission"):
        p = getattr(comp, key)
        if p is not None and path == p.resolve():
            return f"it is the competition's {key.replace('_', ' ')} (competition.{key})"
    folders = [comp.train_images, comp.test_images]
    folders += [
        comp.train if not comp.train_is_table else None,
        comp.test if not comp.test_is_table else None,
    ]
    for f in folders:
        if f is not None and _inside(path, f.resolve()):
            return f"it is inside the competition's image folder {f.resolve()}"
    return None


def is_kit_sidecar(path: Path) -> bool:
    """True when `path` is a sidecar `kit submit` wrote (JSON with its `file` and `source` keys)."""
    try:
        meta = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(meta, dict) and "file" in meta and "source" in meta


def check_out_path(path: Path, cfg: KitConfig, *, force: bool = False) -> None:
    """Refuse a submission path that would write over a file kit did not write.

    Never (whatever `force` says): a folder, anything under the workdir, a competition table or sample, anything
    in an image folder, or an existing file that is not a submission kit wrote (one without its sidecar; this
    covers every other file under competition.root). An existing kit submission only with `force`.
    """
    target = path.resolve()
    side = sidecar_path(target)
    if target.is_dir():
        raise KitError(f"--out {path} is a folder; give a file name, e.g. --out {path / 'submission.csv'}")
    for p in (target, side):
        reason = _input_reason(p, cfg)
        if reason:
            raise KitError(
                f"refusing to write {p}: {reason}; kit never writes over the competition's files or its "
                "artifacts. Write the submission elsewhere (default: submissions/NAME-TIME.csv)"
            )
    if target.exists():
        if not is_kit_sidecar(side):
            raise KitError(
                f"refusing to write {path}: the file exists and was not written by `kit submit` (no sidecar "
                f"{side.name} beside it); kit replaces only its own submissions. Choose another --out"
            )
        if not force:
            raise KitError(f"{path} exists; pass --force to replace it, or choose another --out")
    elif side.exists() and not (force and is_kit_sidecar(side)):
        raise KitError(
            f"refusing to write {path}: {side} exists"
            + ("" if is_kit_sidecar(side) else " and was not written by `kit submit`")
            + "; choose another --out"
            + (", or pass --force to replace it" if is_kit_sidecar(side) else "")
        )


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
    old_record = side.read_bytes() if side.is_file() else None  # --force: the CSV being replaced keeps it
    atomic_write_json(side, sidecar)
    try:
        atomic_write_text(path, text, encoding=encoding)
    except BaseException:
        if old_record is None:
            side.unlink(missing_ok=True)
        else:
            with contextlib.suppress(OSError):  # the old CSV and its old record, as they were
                atomic_write_bytes(side, old_record)
        raise


@dataclass(frozen=True)
class LbEntry:
    """One public leaderboard score recorded by `kit submissions --lb` (sidecar `lb_history`, oldest first)."""

    score: float
    recorded: str  # ISO time with its offset
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "recorded": self.recorded, "note": self.note}


@dataclass(frozen=True)
class SubmissionRecord:
    path: Path
    source: str
    metric: str | None
    score: float | None
    score_kind: str | None
    kind: str | None
    created: str | None
    interval: tuple[float, float] | None = None  # of `score`, where the sidecar has one
    competition: str | None = None
    lb_history: tuple[LbEntry, ...] = ()  # oldest first; the last one is the score that counts

    @property
    def lb(self) -> float | None:
        """The latest recorded public leaderboard score."""
        return self.lb_history[-1].score if self.lb_history else None

    @property
    def lb_at(self) -> str | None:
        return self.lb_history[-1].recorded if self.lb_history else None

    @property
    def lb_note(self) -> str | None:
        return self.lb_history[-1].note if self.lb_history else None

    def sort_key(self) -> tuple[str, int, float, str]:
        """Per metric, best first: selection-aware and pooled OOF scores, then optimistic ones (the winner's
        own nested score of an old blend), then files without a score."""
        if self.score is None or self.metric is None:
            return ("~", 2, 0.0, self.created or "")
        sign = -1.0 if greater_is_better(self.metric) else 1.0
        return (self.metric, 0 if self.score_kind in COMPARABLE else 1, sign * self.score, self.created or "")


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def blend_cv(winner: Winner) -> tuple[float | None, list[float] | None, str]:
    """(score, interval, score kind) a blend is shown and ranked by, from its winner.json: the selection-aware
    estimate; for a blend a kit without it made, the winner's own nested score, labelled optimistic."""
    if winner.selection_aware_score is not None:
        return winner.selection_aware_score, winner.selection_aware_interval, SELECTION_AWARE
    return winner.nested_score, winner.nested_interval, WINNER_NESTED


def _interval(v: Any) -> tuple[float, float] | None:
    if isinstance(v, (list, tuple)) and len(v) == 2:
        lo, hi = _number(v[0]), _number(v[1])
        if lo is not None and hi is not None:
            return lo, hi
    return None


def sidecar_score(meta: dict[str, Any]) -> tuple[float | None, tuple[float, float] | None, str | None]:
    """The CV score a sidecar records, its interval and what it estimates. A blend sidecar an earlier kit wrote
    holds the winner's nested score as `cv_score` (score_kind 'nested CV') and the selection-aware estimate,
    when its kit had one, under `source`: that estimate is the score; without it the nested score, labelled
    optimistic."""
    score, kind = _number(meta.get("cv_score")), meta.get("score_kind")
    interval = _interval(meta.get("cv_interval"))
    if kind == "nested CV":
        src = meta.get("source")
        src = src if isinstance(src, dict) else {}
        aware = _number(src.get("selection_aware_score"))
        if aware is not None:
            return aware, _interval(src.get("selection_aware_interval")), SELECTION_AWARE
        return score, interval, WINNER_NESTED
    return score, interval, kind if isinstance(kind, str) else None


def sidecar_lb_history(meta: dict[str, Any]) -> tuple[LbEntry, ...]:
    """The leaderboard scores a sidecar records; entries without a numeric score and a time are skipped."""
    entries = meta.get("lb_history")
    out = []
    for e in entries if isinstance(entries, list) else []:
        if not isinstance(e, dict):
            continue
        score, recorded, note = _number(e.get("score")), e.get("recorded"), e.get("note")
        if score is not None and isinstance(recorded, str):
            out.append(LbEntry(score, recorded, note if isinstance(note, str) else None))
    return tuple(out)


def read_record(csv_path: Path) -> SubmissionRecord:
    side = sidecar_path(csv_path)
    meta: dict[str, Any] = {}
    if side.is_file():
        try:
            meta = json.loads(side.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            meta = {}
    if not isinstance(meta, dict):
        meta = {}
    src = meta.get("source") if isinstance(meta.get("source"), dict) else {}
    source = f"{src.get('kind', '?')} {src.get('name', '?')}" if src else "(no sidecar)"
    score, interval, score_kind = sidecar_score(meta)
    return SubmissionRecord(
        path=csv_path,
        source=source,
        metric=meta.get("metric") if isinstance(meta.get("metric"), str) else None,
        score=score,
        score_kind=score_kind,
        kind=meta.get("kind") if isinstance(meta.get("kind"), str) else None,
        created=meta.get("created") if isinstance(meta.get("created"), str) else None,
        interval=interval,
        competition=meta.get("competition") if isinstance(meta.get("competition"), str) else None,
        lb_history=sidecar_lb_history(meta),
    )


def list_submissions(folder: Path = SUBMISSIONS_DIR) -> list[SubmissionRecord]:
    """Every CSV in `folder`, best CV score first per metric (`SubmissionRecord.sort_key`); files without a
    sidecar last."""
    if not folder.is_dir():
        return []
    records = [read_record(p) for p in folder.glob("*.csv") if not p.name.startswith(".")]
    return sorted(records, key=SubmissionRecord.sort_key)
