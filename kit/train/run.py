"""`kit train` as a library function: open the workspace once, train each named member over its folds."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.artifacts.member import member_stamp
from kit.config.schema import KitConfig
from kit.errors import KitError, describe_os_error
from kit.progress import NullReporter, Reporter
from kit.train.added import check_added
from kit.train.fold_loop import assemble_run, done_folds, prepare_run, report_missing, train_member
from kit.train.preflight import preflight
from kit.train.workers import Slot, cpu_slots, cuda_slots, pending_tasks, run_tasks

if TYPE_CHECKING:
    from kit.workspace import Workspace


def train_in_process(
    cfg: KitConfig,
    names: list[str] | None = None,
    reporter: Reporter | None = None,
    folds: list[int] | None = None,
    ray: str | None = None,
) -> list[Path]:
    """Train the named members (all when `names` is empty) over every fold (or `folds`) in this process, its
    Ray tasks or its DDP ranks (no worker processes, no tracking: `train` adds those); returns their artifact
    folders.

    Each member goes through the fold loop (kit.train.fold_loop) with its kind (kit.train.kinds); a member
    another `kit train` process still holds folds of is left to that process, which writes it when done.
    `ray` (auto or a cluster address) runs the folds as Ray tasks (kit.train.ray_folds); under torchrun each
    rank trains its shard of every batch (kit.train.ddp).
    """
    from kit.train import ddp
    from kit.workspace import open_workspace

    chosen = select_members(cfg.members, names)
    d = ddp.from_env()
    if d.active:
        if ray is not None:
            raise KitError(ddp_with_ray_message())
        ddp.check_members(cfg, chosen, d.world)
    with ddp.session(cfg, chosen) as d:
        ws = open_workspace(cfg)
        if folds is not None:
            check_folds(folds, ws.folds.k)
        check_added(ws, chosen)  # extra data and pseudo-label sources, before anything trains
        preflight(ws, {n: cfg.members[n] for n in chosen})  # caches fit on disk, a batch in memory
        rep = (reporter or NullReporter()) if d.main else NullReporter()
        out = []
        with _threads(cfg, chosen, rep, ray, d.main) as rep:
            for name in chosen:
                member = cfg.members[name]
                if ray is not None:
                    from kit.train.ray_folds import train_member_ray

                    path = train_member_ray(ws, name, member, rep, ray, folds)
                elif d.active:
                    path = ddp.train_member_ddp(ws, name, member, rep, d, folds)
                else:
                    path = train_member(ws, name, member, rep, folds)
                if path is not None:
                    out.append(path)
    return out


def _threads(
    cfg: KitConfig, chosen: list[str], reporter: Reporter, ray: str | None, say: bool
) -> AbstractContextManager[Reporter]:
    """torch's threads for this process's training (kit.train.threads), chosen after the preflight (which must
    see the memory before torch is imported); Ray's folds run on the cluster's workers, with their own."""
    if ray is not None:
        return nullcontext(reporter)
    from kit.train.threads import managed

    workers = max(getattr(cfg.members[n], "num_workers", 0) for n in chosen)
    return managed(reporter, workers, say=say)


def ddp_with_ray_message() -> str:
    return (
        "--ddp and --ray do not combine: --ray spreads a member's folds over a Ray cluster (one device per "
        "fold), --ddp spreads one fold over this machine's devices; pick one (e.g. drop --ddp)"
    )


def select_members(members: dict[str, Any], names: list[str] | None) -> list[str]:
    if not members:
        raise KitError(
            "kit.yaml has no members; add one under `members:` (see `kit init` output for an example)"
        )
    if not names:
        return list(members)
    from kit.config.seeds import resolve_names

    names = resolve_names(names, members)  # a seed bag's name means its seed members
    unknown = [n for n in names if n not in members]
    if unknown:
        import difflib

        hints = [
            f"'{n}'"
            + (f" (did you mean '{m[0]}'?)" if (m := difflib.get_close_matches(n, members, 1)) else "")
            for n in unknown
        ]
        raise KitError(f"unknown member(s) {', '.join(hints)}; kit.yaml defines {list(members)}")
    return names


@dataclass(frozen=True)
class TrainResult:
    """The members one `kit train` wrote, by name -> artifact folder (workdir/members/NAME); `pending` are the
    members whose folds another `kit train` process still holds (it writes them when done); `kept` are those of
    `members` whose folder already held exactly this training and was left as it was (nothing retrained)."""

    members: dict[str, Path] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def train(
    cfg: KitConfig,
    members: list[str] | None = None,
    reporter: Reporter | None = None,
    *,
    folds: list[int] | None = None,
    jobs: int | None = None,
    devices: list[int] | None = None,
    assemble_only: bool = False,
    import_folds: list[Path] | None = None,
    ray: str | None = None,
) -> TrainResult:
    """What `kit train` runs: train the named members (all when `members` is empty) over every fold.

    `folds` trains only those folds (whoever finishes a member's last missing fold writes its artifacts);
    `jobs` (CPU) or `devices` (CUDA indices) run the (member, fold) tasks in that many worker processes
    (kit.train.workers); `assemble_only` writes the members from their finished folds and trains nothing;
    `import_folds` adds fold folders trained elsewhere to the one named member (kit.train.fold_import);
    `ray` (auto or a cluster address) runs the folds as Ray tasks (kit.train.ray_folds); under torchrun
    (`kit train --ddp N`) each rank trains its shard of every batch (kit.train.ddp). With `tracking:` in
    kit.yaml every finished epoch and each written member's scores are logged (kit.track)."""
    import os

    from kit.artifacts.member import read_meta
    from kit.track import TrackingReporter, log_member, tracking

    chosen = select_members(cfg.members, members)
    _check_options(chosen, folds, jobs, devices, assemble_only, import_folds)
    if ray is not None and (jobs not in (None, 1) or devices or assemble_only or import_folds):
        raise KitError(
            "--ray sends the folds to the cluster's workers: drop --jobs, --devices, --assemble and --import-fold"
        )
    if int(os.environ.get("RANK", "0")) > 0:  # a DDP rank other than 0: rank 0 logs
        return _train(cfg, chosen, reporter, folds, jobs, devices, assemble_only, import_folds, ray)
    stamps = {n: member_stamp(cfg.workdir, n) for n in chosen}
    try:
        with tracking(cfg, f"train {' '.join(chosen)}") as tracker:
            rep = TrackingReporter(reporter or NullReporter(), tracker)
            result = _train(cfg, chosen, rep, folds, jobs, devices, assemble_only, import_folds, ray)
            for name in result.members:
                log_member(tracker, name, read_meta(cfg.workdir, name).get("metrics", {}))
    except OSError as e:  # a full or read-only disk while training: what failed, and that nothing is lost
        raise KitError(f"kit train: {describe_os_error(e)}; {KEPT_NOTE}") from None
    kept = [n for n in result.members if stamps[n] is not None and member_stamp(cfg.workdir, n) == stamps[n]]
    return TrainResult(members=result.members, pending=result.pending, kept=kept)


# what survives a failed write: every artifact is renamed into place whole (kit.artifacts.atomic)
KEPT_NOTE = (
    "finished folds are kept and nothing half-written is left: fix that, then run the same command again to "
    "resume"
)


def _train(
    cfg: KitConfig,
    chosen: list[str],
    reporter: Reporter | None,
    folds: list[int] | None,
    jobs: int | None,
    devices: list[int] | None,
    assemble_only: bool,
    import_folds: list[Path] | None,
    ray: str | None,
) -> TrainResult:
    slots = cuda_slots(devices) if devices else cpu_slots(jobs) if jobs not in (None, 1) else None
    if slots is None and not (assemble_only or import_folds):
        paths = train_in_process(cfg, chosen, reporter, folds, ray)
        written = {p.name: p for p in paths}
        return TrainResult(members=written, pending=[n for n in chosen if n not in written])
    from kit.workspace import open_workspace

    rep = reporter or NullReporter()
    ws = open_workspace(cfg)
    if assemble_only:
        return _assemble_only(ws, chosen, rep)
    if import_folds:
        return _import(ws, chosen[0], import_folds, rep)
    assert slots is not None
    if folds is not None:
        check_folds(folds, ws.folds.k)
    check_added(ws, chosen)
    preflight(ws, {n: cfg.members[n] for n in chosen})
    return _train_parallel(ws, chosen, folds, slots, rep)


def _check_options(
    chosen: list[str],
    folds: list[int] | None,
    jobs: int | None,
    devices: list[int] | None,
    assemble_only: bool,
    import_folds: list[Path] | None,
) -> None:
    if jobs is not None and devices:
        raise KitError("--jobs and --devices both given: --devices runs one worker per GPU; drop --jobs")
    if assemble_only and (folds is not None or jobs is not None or devices or import_folds):
        raise KitError("--assemble trains nothing: drop --folds, --jobs, --devices and --import-fold")
    if import_folds:
        if folds is not None or jobs is not None or devices:
            raise KitError("--import-fold trains nothing: drop --folds, --jobs and --devices")
        if len(chosen) != 1:
            raise KitError(
                f"--import-fold adds folds to one member, and {len(chosen)} are selected ({', '.join(chosen)}); "
                "name it: `kit train NAME --import-fold DIR`"
            )


def parse_index_list(flag: str, text: str | None) -> list[int] | None:
    """'0,2' -> [0, 2] for --folds and --devices; None when the flag is not given."""
    if text is None:
        return None
    parts = [t.strip() for t in text.split(",")]
    if not all(t.isdigit() for t in parts):
        raise KitError(
            f"{flag} {text!r}: expected numbers from 0 separated by commas, e.g. {flag} 0,2 (a SLURM job array "
            f"passes one: {flag} $SLURM_ARRAY_TASK_ID)"
        )
    return [int(t) for t in parts]


def check_folds(folds: list[int], k: int) -> None:
    """Refuse fold numbers outside 0..k-1 (and repeats) with the folds this workspace has."""
    bad = [f for f in folds if not 0 <= f < k]
    if bad:
        raise KitError(
            f"--folds {','.join(map(str, folds))}: no fold {','.join(map(str, bad))}; this workspace has folds.k={k} "
            f"(--folds takes numbers from 0 to {k - 1}, e.g. --folds {','.join(map(str, range(k)))})"
        )
    if len(set(folds)) != len(folds):
        raise KitError(f"--folds {','.join(map(str, folds))}: a fold is named twice; name each fold once")


def _assemble_only(ws: Workspace, chosen: list[str], rep: Reporter) -> TrainResult:
    """`--assemble`: every chosen member from its finished folds; refused (nothing written) if any misses one."""
    runs = {n: prepare_run(ws, n, ws.cfg.members[n], rep) for n in chosen}
    done = {n: done_folds(run) for n, run in runs.items()}
    problems = [
        f"{n}: fold(s) {missing} of run {runs[n].root.name} not finished; run `kit train {n} --folds "
        f"{','.join(map(str, missing))}` (or add them with --import-fold)"
        for n, (_, missing) in done.items()
        if missing
    ]
    if problems:
        raise KitError("--assemble: some members miss folds; nothing was written:", problems=problems)
    return TrainResult(members={n: assemble_run(runs[n], done[n][0], 0.0, rep) for n in chosen})


def _import(ws: Workspace, name: str, srcs: list[Path], rep: Reporter) -> TrainResult:
    from kit.train.fold_import import import_folds

    run = prepare_run(ws, name, ws.cfg.members[name], rep)
    import_folds(run, srcs, rep)
    infos, missing = done_folds(run)
    if missing:
        report_missing(name, missing, [], rep)
        return TrainResult(pending=[name])
    return TrainResult(members={name: assemble_run(run, infos, 0.0, rep)})


def _train_parallel(
    ws: Workspace, chosen: list[str], folds: list[int] | None, slots: list[Slot], rep: Reporter
) -> TrainResult:
    """The members' (member, fold) tasks in one worker per slot; the parent assembles every complete member."""
    runs = {n: prepare_run(ws, n, ws.cfg.members[n], rep) for n in chosen}  # caches built once, here
    tasks = pending_tasks(runs, folds, ws.folds.k, rep)
    t0 = time.perf_counter()
    if tasks:
        run_tasks(ws.cfg, tasks, slots, rep)
    written = {}
    for n, run in runs.items():
        infos, missing = done_folds(run)
        if missing:
            report_missing(n, missing, folds if folds is not None else list(range(ws.folds.k)), rep)
        else:
            written[n] = assemble_run(run, infos, time.perf_counter() - t0, rep)
    return TrainResult(members=written, pending=[n for n in chosen if n not in written])
