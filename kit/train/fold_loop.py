"""The fold loop every member kind shares: the run folder, resume, per-fold locks and done markers, the
assembly of the member's OOF and test logits per TTA view, and `write_member` under a member lock.

    workdir/runs/NAME/HASH/          one run per (member config, metric, folds, data content, classes)
        run.json                     the member config the hash was taken over and the run's identity
                                     (hash, folds and data fingerprints: what an imported fold must match)
        fold{f}.lock                 held while a process trains fold f (a second `kit train` skips the fold)
        fold{f}/last.pt              the kind's resumable state of an unfinished fold (dropped once done)
        fold{f}/oof.npy              [n_valid, V, C] logits on the fold's held-out rows
        fold{f}/test.npy             [n_test, V, C] logits on the test set
        fold{f}/done.json            written last: the fold is finished and never retrained; carries the
                                     run's identity, so fold{f}/ alone is portable (`--import-fold`)
    workdir/locks/member-NAME.lock   held while a process writes workdir/members/NAME

A member kind (kit.train.kinds) supplies how to prepare itself, fit one fold and predict its rows and the
test set; `train_member` does the rest. A changed config starts a new run. Locks are `filelock` file locks:
the OS releases them when a process dies, so a killed `kit train` never blocks the next one. OOF row i comes
from the fold that held it out; test logits are the mean over the k folds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.artifacts.atomic import atomic_save_npy, atomic_write_json
from kit.artifacts.member import member_stamp, write_member
from kit.progress import NullReporter, Reporter
from kit.train.kinds import RESUME_FILE, Clock, MemberKind, get_kind
from kit.train.losses import warn_stacked_rebalancers
from kit.train.summary import member_metrics

if TYPE_CHECKING:
    from pydantic import BaseModel

    from kit.config.schema import MemberConfig
    from kit.workspace import Workspace

RUN_FORMAT = 3  # 2: content fingerprints and the best-epoch metric are hashed; 3: the image pipeline
NOT_HASHED = {"num_workers", "pseudo"}  # settings that cannot change results; pseudo: see below
# fields added after runs existed, hashed only when set off their default, so existing runs keep their hash
# (fields added with run format 3 need no entry: no run of that format predates them)
HASHED_WHEN_SET: dict[str, Any] = {"sync_bn": False}
# `pseudo` is hashed by what it selects (the source artifact, the rows and their targets: the kind's run_extra,
# kit.train.added), so a member without pseudo-labels keeps the run hash it had before they existed
DONE_FILE = "done.json"


def run_hash(ws: Workspace, member: BaseModel, extra: dict[str, Any] | None = None) -> str:
    """The run's identity: everything that changes what training produces.

    The competition metric is in it because it picks each fold's best epoch (and early stopping): a run made
    under another metric is a different run, never "done earlier"."""
    weights = getattr(member, "weights", None)
    dump = member.model_dump(mode="json", exclude=NOT_HASHED)
    for key, default in HASHED_WHEN_SET.items():
        if dump.get(key, default) == default:
            dump.pop(key, None)
    payload = {
        "format": RUN_FORMAT,
        "member": dump,
        "metric": ws.cfg.competition.scored_by,
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


def run_dir(ws: Workspace, name: str, member: BaseModel, extra: dict[str, Any] | None = None) -> Path:
    """workdir/runs/NAME/HASH."""
    return runs_root(ws, name) / run_hash(ws, member, extra)


def open_run(ws: Workspace, name: str, member: BaseModel, extra: dict[str, Any] | None = None) -> Path:
    """workdir/runs/NAME/HASH, created with its run.json."""
    root = run_dir(ws, name, member, extra)
    new = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    if "identity" not in (read_run(root) or {}):  # runs made before the identity was kept get it now
        try:
            atomic_write_json(
                root / "run.json",
                {
                    "member": name,
                    "config": member.model_dump(mode="json"),
                    "identity": run_identity(ws, root),
                },
            )
        except OSError:
            if new:  # a full disk: no run folder without its run.json is left behind
                with contextlib.suppress(OSError):
                    root.rmdir()
            raise
    return root


def run_identity(ws: Workspace, root: Path) -> dict[str, Any]:
    """What a fold trained elsewhere must match to join this run (`kit train NAME --import-fold DIR`):
    the run hash and, to say which of them differs, the fingerprints the hash was taken over."""
    return {
        "hash": root.name,
        "k": ws.folds.k,
        "folds": ws.folds.fingerprint,
        "data": ws.data_fingerprint,
        "test": ws.test_fingerprint,
        "classes": ws.classes,
    }


def read_run(root: Path) -> dict[str, Any] | None:
    try:
        run = json.loads((root / "run.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return run if isinstance(run, dict) else None


def read_done(root: Path, f: int) -> dict[str, Any] | None:
    path = root / f"fold{f}" / DONE_FILE
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def try_lock(path: Path) -> Any:
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
    folds: list[int] | None = None,
) -> list[dict[str, Any]] | None:
    """Train every fold not done yet (or only `folds`), one process per fold; the fold infos once all k are
    done, else None.

    A fold another process holds is skipped (and said so); a fold finished meanwhile is kept. None means other
    processes still train some folds: the last of them to finish assembles the member."""
    infos: dict[int, dict[str, Any]] = {}
    chosen = list(range(k)) if folds is None else folds
    with reporter.task(f"{name} folds", total=len(chosen)) as task:
        for f in chosen:
            info = take_fold(root, name, f, reporter, fit_fold)
            if info is not None:
                infos[f] = info
            task.advance()
    return collect_done(root, name, k, infos, reporter, chosen)


def collect_done(
    root: Path, name: str, k: int, infos: dict[int, dict[str, Any]], reporter: Reporter, chosen: list[int]
) -> list[dict[str, Any]] | None:
    """The k fold infos (`infos` plus folds other processes finished meanwhile), or None while some are
    still being trained elsewhere or were not asked for (`chosen`: the folds this process was to train)."""
    for f in range(k):
        if f not in infos and (info := read_done(root, f)) is not None:
            infos[f] = info
    missing = [f for f in range(k) if f not in infos]
    report_missing(name, missing, chosen, reporter)
    return None if missing else [infos[f] for f in range(k)]


def report_missing(name: str, missing: list[int], chosen: list[int], reporter: Reporter) -> None:
    """Say why the member is not written yet: folds another process holds (it assembles), folds not asked for."""
    held, left = [f for f in missing if f in chosen], [f for f in missing if f not in chosen]
    if held:
        reporter.line(
            f"{name}: fold(s) {held} are still being trained by another kit process; the process that "
            "finishes the last fold writes the member artifacts"
        )
    if left:
        reporter.line(
            f"{name}: fold(s) {left} not trained yet; run `kit train {name} --folds "
            f"{','.join(map(str, left))}` (or import them with --import-fold): whoever finishes the last fold "
            "writes the member artifacts"
        )


def claim_fold(root: Path, name: str, f: int, reporter: Reporter) -> tuple[dict[str, Any] | None, Any]:
    """(info, None) when fold f is done (earlier, or by another process meanwhile); (None, lock) when this
    process now holds its fold lock and must train it (release the lock when done); (None, None) when another
    process holds it. Says which on the reporter."""
    info = read_done(root, f)
    if info is not None:
        reporter.line(f"{name} fold {f}: done earlier ({best_note(info)}), kept")
        return info, None
    lock = try_lock(root / f"fold{f}.lock")
    if lock is None:
        reporter.line(f"{name} fold {f}: another kit process is training it; skipped here")
        return None, None
    info = read_done(root, f)  # finished by another process while we trained another fold
    if info is not None:
        lock.release()
        return info, None
    return None, lock


def take_fold(
    root: Path, name: str, f: int, reporter: Reporter, fit_fold: Callable[[int], dict[str, Any]]
) -> dict[str, Any] | None:
    """Fold f's info: done earlier, or trained now under its fold lock; None when another process holds it."""
    info, lock = claim_fold(root, name, f, reporter)
    if lock is None:
        return info
    try:
        info = fit_fold(f)
        finish_fold(root, f, info)
    finally:
        lock.release()
    return info


def best_note(info: dict[str, Any]) -> str:
    """A finished fold's best score, for the "done earlier" line."""
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


@dataclass
class PreparedRun:
    """A member ready for its folds: the prepared kind and its run folder (workdir/runs/NAME/HASH).

    The unit of work is one fold: `train_fold(run, f)` fits it into run.root/fold{f} and `finish_fold` marks it
    done. Serial training, worker processes and remote workers all go through these two functions."""

    ws: Workspace
    name: str
    member: MemberConfig
    kind: MemberKind
    root: Path
    prepare_s: float


def prepare_run(
    ws: Workspace, name: str, member: MemberConfig, reporter: Reporter | None = None
) -> PreparedRun:
    """Prepare the member's kind (image caches, embeddings, the model spec) and open its run folder."""
    reporter = reporter or NullReporter()
    t0 = time.perf_counter()
    warn_stacked_rebalancers(name, member.loss, member.sampler)
    kind = get_kind(member.kind).prepare(ws, name, member, reporter)
    root = open_run(ws, name, member, kind.run_extra)
    return PreparedRun(ws, name, member, kind, root, time.perf_counter() - t0)


def train_fold(run: PreparedRun, f: int, fold_dir: Path | None = None) -> dict[str, Any]:
    """Fit fold f into `fold_dir` (default run.root/fold{f}; resumes from its last.pt) and save its OOF and
    test logits there; returns the fold's info. The caller marks it done (`finish_fold`) under the fold lock."""
    d = fold_dir or run.root / f"fold{f}"
    result = run.kind.fit_predict_fold(f, d)
    atomic_save_npy(d / "oof.npy", result.oof)
    atomic_save_npy(d / "test.npy", result.test)
    return result.info


def finish_fold(root: Path, f: int, info: dict[str, Any]) -> None:
    """Mark fold f done (done.json is written last, with the run's identity: the fold folder is portable)
    and drop its resumable state."""
    identity = (read_run(root) or {}).get("identity")
    stamp = {"identity": {**identity, "fold": f}} if identity else {}
    atomic_write_json(root / f"fold{f}" / DONE_FILE, {**info, **stamp})
    (root / f"fold{f}" / RESUME_FILE).unlink(missing_ok=True)


def train_member(
    ws: Workspace,
    name: str,
    member: MemberConfig,
    reporter: Reporter | None = None,
    folds: list[int] | None = None,
    runner: Callable[[PreparedRun], list[dict[str, Any]] | None] | None = None,
    prepared: PreparedRun | None = None,
) -> Path | None:
    """Train member `name` over every fold (or `folds`) this process can take and write its artifacts; returns
    workdir/members/NAME, or None while other processes still train some of its folds (the last of them to
    finish writes the artifacts). `runner` runs the folds another way (Ray tasks: kit.train.ray_folds; DDP
    ranks: kit.train.ddp), `prepared` is the member already prepared."""
    reporter = reporter or NullReporter()
    run = prepared or prepare_run(ws, name, member, reporter)
    t_folds = time.perf_counter()
    if runner is not None:
        infos = runner(run)
    else:
        infos = run_locked_folds(run.root, name, ws.folds.k, reporter, lambda f: train_fold(run, f), folds)
    if infos is None:
        return None
    return assemble_run(run, infos, time.perf_counter() - t_folds, reporter)


def done_folds(run: PreparedRun) -> tuple[list[dict[str, Any]], list[int]]:
    """The infos of the run's finished folds, in fold order, and the folds not finished yet."""
    infos = [read_done(run.root, f) for f in range(run.ws.folds.k)]
    return [i for i in infos if i is not None], [f for f, i in enumerate(infos) if i is None]


def assemble_run(run: PreparedRun, infos: list[dict[str, Any]], folds_s: float, reporter: Reporter) -> Path:
    """The member artifacts from its k finished folds, written under the member lock (kept unwritten when
    the member folder already holds exactly this training)."""
    clock = Clock(prepare_s=run.prepare_s, folds_s=folds_s)
    return assemble(run.ws, run.name, run.member, run.kind, run.root, infos, clock, reporter)


def made_by(root: Path, k: int) -> dict[str, Any]:
    """Which training the assembled logits come from: the run and each fold's done marker (written once, when
    the fold finished training; a retrained fold writes a new one)."""
    done = [hashlib.sha256((root / f"fold{f}" / DONE_FILE).read_bytes()).hexdigest()[:16] for f in range(k)]
    return {"run": root.name, "folds": done}


def assemble(
    ws: Workspace,
    name: str,
    member: MemberConfig,
    kind: MemberKind,
    root: Path,
    infos: list[dict[str, Any]],
    clock: Clock,
    reporter: Reporter,
) -> Path:
    """The member artifacts from the k finished folds: OOF rows from the fold that held them out, test logits
    averaged over the folds."""
    views, n_classes = list(member.tta), len(ws.classes)
    oof = np.full((len(ws.train), len(views), n_classes), np.nan, dtype=np.float32)
    tests = []
    for f in range(ws.folds.k):
        oof[ws.folds.valid_idx(f)] = np.load(root / f"fold{f}" / "oof.npy")
        tests.append(np.load(root / f"fold{f}" / "test.npy"))
    test = np.mean(tests, axis=0).astype(np.float32)
    y = ws.train.labels
    assert y is not None  # train tables always carry labels
    metric = ws.cfg.competition.scored_by
    metrics = member_metrics(y, oof, ws.folds.fold, views, ws.classes, metric)
    summary = kind.describe(root, infos, clock)
    stamp = member_stamp(ws.workdir, name)
    out = write_member(
        ws.workdir,
        name,
        oof=oof,
        test=test,
        views=views,
        classes=ws.classes,
        fingerprints=ws.fingerprints(),
        config={
            "member": {"name": name, **member.model_dump(mode="json")},
            "competition": ws.cfg.competition.model_dump(mode="json"),
            "folds": ws.cfg.folds.model_dump(mode="json"),
        },
        metrics=metrics,
        timings=summary.timings,
        extra={
            "kind": member.kind,
            **({"task": "multilabel"} if ws.train.multilabel else {}),
            **summary.extra,
        },
        made_by=made_by(root, ws.folds.k),
        lock=lambda: member_lock(ws, name),
    )
    if stamp is not None and member_stamp(ws.workdir, name) == stamp:
        reporter.line(f"{name}: nothing retrained; {out} kept as it was")
    elif summary.note is not None:
        reporter.line(f"{name}: OOF {metric} {metrics['pooled'][metric]:.4f} ({summary.note}) -> {out}")
    return out
