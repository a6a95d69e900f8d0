"""The fold skeleton every member kind shares: the run folder, per-fold locks and done markers, and the
assembly of the member artifacts under a member lock.

    workdir/runs/NAME/HASH/          one run per (member config, metric, folds, data content, classes)
        run.json                     the member config the hash was taken over
        fold{f}.lock                 held while a process trains fold f (a second `kit train` skips the fold)
        fold{f}/done.json            written last: the fold is finished and never retrained
    workdir/locks/member-NAME.lock   held while a process writes workdir/members/NAME

A kind supplies `fit_fold(f) -> info` (train fold f, leave its files in fold{f}/) and `assemble(infos)`;
`run_locked_folds` does the rest. Locks are `filelock` file locks: the OS releases them when a process dies,
so a killed `kit train` never blocks the next one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.artifacts.atomic import atomic_write_json
from kit.train.progress import Reporter

if TYPE_CHECKING:
    from pydantic import BaseModel

    from kit.data.workspace import Workspace

RUN_FORMAT = 2  # 2: content fingerprints and the metric that picks the best epoch are part of the hash
NOT_HASHED = {"num_workers"}  # settings that cannot change results
DONE_FILE = "done.json"


def run_hash(ws: Workspace, member: BaseModel, extra: dict[str, Any] | None = None) -> str:
    """The run's identity: everything that changes what training produces.

    The competition metric is in it because it picks each fold's best epoch (and early stopping): a run made
    under another metric is a different run, never "done earlier"."""
    weights = getattr(member, "weights", None)
    payload = {
        "format": RUN_FORMAT,
        "member": member.model_dump(mode="json", exclude=NOT_HASHED),
        "metric": ws.cfg.competition.metric,
        "folds": ws.folds.fingerprint,
        "data": ws.data_fingerprint,
        "test": ws.test_fingerprint,
        "classes": ws.classes,
        "weights_bytes": Path(weights).stat().st_size if weights and Path(weights).exists() else None,
        **(extra or {}),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def runs_root(ws: Workspace, name: str) -> Path:
    return ws.workdir / "runs" / name


def open_run(ws: Workspace, name: str, member: BaseModel, extra: dict[str, Any] | None = None) -> Path:
    """workdir/runs/NAME/HASH, created with its run.json."""
    root = runs_root(ws, name) / run_hash(ws, member, extra)
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "run.json").exists():
        atomic_write_json(root / "run.json", {"member": name, "config": member.model_dump(mode="json")})
    return root


def read_done(root: Path, f: int) -> dict[str, Any] | None:
    path = root / f"fold{f}" / DONE_FILE
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def _try_lock(path: Path) -> Any:
    """The held lock, or None when another process holds it."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock


def run_locked_folds(
    root: Path,
    name: str,
    k: int,
    reporter: Reporter,
    fit_fold: Callable[[int], dict[str, Any]],
    on_done: Callable[[int], None] | None = None,
) -> list[dict[str, Any]] | None:
    """Train every fold not done yet, one process per fold; the fold infos once all k are done, else None.

    A fold another process holds is skipped (and said so); a fold finished meanwhile is kept. None means other
    processes still train some folds: the last of them to finish assembles the member."""
    infos: dict[int, dict[str, Any]] = {}
    with reporter.task(f"{name} folds", total=k) as task:
        for f in range(k):
            info = read_done(root, f)
            if info is not None:
                reporter.line(f"{name} fold {f}: done earlier ({_best(info)}), kept")
            else:
                lock = _try_lock(root / f"fold{f}.lock")
                if lock is None:
                    reporter.line(f"{name} fold {f}: another kit process is training it; skipped here")
                    task.advance()
                    continue
                try:
                    info = read_done(root, f)  # finished by another process while we trained another fold
                    if info is None:
                        info = fit_fold(f)
                        atomic_write_json(root / f"fold{f}" / DONE_FILE, info)
                        if on_done is not None:
                            on_done(f)
                finally:
                    lock.release()
            infos[f] = info
            task.advance()
    for f in range(k):
        if f not in infos and (info := read_done(root, f)) is not None:
            infos[f] = info
    missing = [f for f in range(k) if f not in infos]
    if missing:
        reporter.line(
            f"{name}: fold(s) {missing} are still being trained by another kit process; the process that "
            "finishes the last fold writes the member artifacts"
        )
        return None
    return [infos[f] for f in range(k)]


def _best(info: dict[str, Any]) -> str:
    s = info.get("best_score")
    return f"best {s:.4f}" if isinstance(s, (int, float)) else "finished"


@contextmanager
def member_lock(ws: Workspace, name: str) -> Iterator[None]:
    """Held while workdir/members/NAME is written: two processes never assemble one member at once."""
    from filelock import FileLock

    locks = ws.workdir / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"member-{name}.lock")):
        yield
