"""`kit train NAME --import-fold DIR`: add a fold trained elsewhere (another notebook session, another machine).

A portable fold is the folder of one finished fold, `workdir/runs/NAME/HASH/fold{f}/`, copied whole:

    done.json            the fold's info and, under "identity", the run it belongs to: hash, k, fold, the folds,
                         train-data and test fingerprints, the classes
    oof.npy, test.npy    its logits on the held-out rows and the test set
    best.pt | head.npz   the weights `kit predict` uses (copied along with any other file but last.pt)

A fold finished by an older kit has no identity in done.json; then the run.json one level up is read (copy the
run folder HASH/ with it). Every folder is checked before any is copied; a mismatch is refused with the reason.
A fold is copied under its fold lock into a temporary folder and renamed into place; a fold finished here
already is never overwritten (an identical one is skipped).
"""

from __future__ import annotations

import filecmp
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts.atomic import atomic_dir
from kit.errors import KitError
from kit.progress import Reporter
from kit.train.fold_loop import (
    DONE_FILE,
    PreparedRun,
    read_done,
    read_run,
    run_identity,
    try_lock,
)
from kit.train.kinds import RESUME_FILE

LOGITS = ("oof.npy", "test.npy")


@dataclass(frozen=True)
class PortableFold:
    src: Path
    fold: int
    identical: bool  # this run has the fold finished already, with the same logits


def _refuse(src: Path, why: str, fix: str) -> KitError:
    return KitError(f"--import-fold {src}: {why}; {fix}")


def check_fold(run: PreparedRun, src: Path) -> PortableFold:
    """The fold `src` holds, after checking that it is a finished kit fold of exactly this run."""
    where = f"point it at workdir/runs/{run.name}/HASH/fold{{f}} of a finished fold"
    if not src.is_dir():
        raise _refuse(src, "no such folder", where)
    m = re.fullmatch(r"fold(\d+)", src.name)
    try:
        done = json.loads((src / DONE_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        done = None
    if not isinstance(done, dict):
        raise _refuse(src, f"not a finished kit fold (no readable {DONE_FILE})", where)
    absent = [n for n in LOGITS if not (src / n).is_file()]
    if absent:
        raise _refuse(src, f"not a finished kit fold ({', '.join(absent)} missing)", where)
    theirs: dict[str, Any] | None = done.get("identity") or (read_run(src.parent) or {}).get("identity")
    if not isinstance(theirs, dict):
        raise _refuse(
            src,
            "it carries no run identity (its done.json predates it and no run.json with one is beside it)",
            f"copy the whole run folder runs/{run.name}/HASH and import HASH/fold{{f}} from it, or retrain the "
            f"fold with `kit train {run.name} --folds F`",
        )
    f = theirs.get("fold", int(m.group(1)) if m else None)
    ours = run_identity(run.ws, run.root)
    problems = []
    if theirs.get("k") != ours["k"]:
        problems.append(
            f"it was trained with folds.k={theirs.get('k')}; this workspace has folds.k={ours['k']}"
        )
    elif not isinstance(f, int) or not 0 <= f < ours["k"]:
        problems.append(f"its fold number {f!r} is not one of 0..{ours['k'] - 1}")
    checks = (
        (
            "folds",
            "the fold assignment differs (folds fingerprint); use the same folds settings and train.csv",
        ),
        ("data", "the train data differs (labels or image content fingerprint)"),
        ("test", "the test set differs (test image fingerprint)"),
        ("classes", "the classes differ"),
    )
    for key, why in checks:
        if theirs.get(key) != ours[key]:
            problems.append(f"{why}: {_short(theirs.get(key))} there, {_short(ours[key])} here")
    if not problems and theirs.get("hash") != ours["hash"]:
        problems.append(
            f"it belongs to run {theirs.get('hash')}, this config's run is {ours['hash']}: the member config, "
            "the metric or the encoder differs; train it with the same kit.yaml (and --set overrides)"
        )
    if problems:
        raise KitError(
            f"--import-fold {src}: not a fold of member '{run.name}' run {ours['hash']}; refused:",
            problems=problems,
        )
    if not isinstance(f, int):  # already refused above; narrows the type
        raise _refuse(src, "its fold number is unknown", where)
    n_valid, n_test = len(run.ws.folds.valid_idx(f)), len(run.ws.test) if run.ws.test is not None else 0
    views, n_classes = len(run.member.tta), len(run.ws.classes)
    for name, rows in zip(LOGITS, (n_valid, n_test), strict=True):
        shape = np.load(src / name, mmap_mode="r").shape
        if shape != (rows, views, n_classes):
            raise _refuse(src, f"{name} has shape {shape}, fold {f} needs {(rows, views, n_classes)}", where)
    identical = False
    if read_done(run.root, f) is not None:
        identical = all(filecmp.cmp(src / n, run.root / f"fold{f}" / n, shallow=False) for n in LOGITS)
        if not identical:
            raise _refuse(
                src,
                f"fold {f} of run {ours['hash']} is finished here already, with other logits; kit never "
                "overwrites a finished fold",
                f"keep this one, or remove {run.root / f'fold{f}'} yourself and import again",
            )
    return PortableFold(src, f, identical)


def _short(v: Any) -> str:
    return repr(v) if not isinstance(v, str) or len(v) <= 16 else repr(v[:12] + "…")


def import_folds(run: PreparedRun, srcs: list[Path], reporter: Reporter) -> list[int]:
    """Check every folder, then copy each fold into the run (skipping identical ones); the folds imported."""
    checked = [check_fold(run, s) for s in srcs]
    seen: dict[int, Path] = {}
    for c in checked:
        if c.fold in seen:
            raise KitError(
                f"--import-fold {seen[c.fold]} and {c.src} are both fold {c.fold}; import one of them"
            )
        seen[c.fold] = c.src
    imported = []
    for c in checked:
        if c.identical:
            reporter.line(f"{run.name} fold {c.fold}: {c.src} is the fold finished here already; skipped")
            continue
        _copy_fold(run, c)
        reporter.line(f"{run.name} fold {c.fold}: imported from {c.src}")
        imported.append(c.fold)
    return imported


def _copy_fold(run: PreparedRun, c: PortableFold) -> None:
    lock = try_lock(run.root / f"fold{c.fold}.lock")
    if lock is None:
        raise _refuse(
            c.src,
            f"a kit process is training fold {c.fold} in this workdir right now",
            "wait for it, or import when it has finished",
        )
    try:
        if read_done(run.root, c.fold) is not None:
            raise _refuse(c.src, f"fold {c.fold} was finished here meanwhile", "nothing was imported for it")
        dest = run.root / f"fold{c.fold}"
        with atomic_dir(dest, parent=run.root) as tmp:  # an unfinished local attempt (last.pt) is replaced
            for p in sorted(c.src.iterdir()):
                if p.is_file() and p.name not in (RESUME_FILE, DONE_FILE):
                    shutil.copy2(p, tmp / p.name)
            shutil.copy2(c.src / DONE_FILE, tmp / DONE_FILE)
    finally:
        lock.release()
