"""One machine, several devices: (member, fold) tasks in worker processes, one per GPU or CPU slot.

    kit train --devices 0,1,2,3     one worker per CUDA device (CUDA_VISIBLE_DEVICES=I in the worker)
    kit train --jobs N              N CPU workers

The parent prepares every member first (image caches and run folders are built once, not raced for), then
spawns the workers (torch.multiprocessing, spawn context). Each worker pins itself to its device and to
`cores // N` torch threads, opens the workspace from the config, and takes tasks from one shared queue; it trains
a fold through the same fold lock and done marker as a serial `kit train` (kit.train.fold_loop.take_fold), so
workers share a workdir with any other kit process and never train a fold twice. Progress comes back as
events: the parent shows one line per worker (its member, fold, epoch and batch), prints the workers' summary
lines, and assembles each member whose folds are all done. A worker that fails or dies is a KitError naming the
member and fold it was training; the others are stopped (finished folds are kept, the next run resumes).
"""

from __future__ import annotations

import os
import queue
import time
import traceback
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from kit.artifacts.atomic import clean_stale_temps
from kit.errors import KitError, describe_os_error
from kit.progress import EpochEvent, Reporter, Task, epoch_done
from kit.train.fold_loop import PreparedRun, best_note, prepare_run, read_done, take_fold, train_fold

if TYPE_CHECKING:
    from pathlib import Path

    from kit.config.schema import KitConfig

POLL_S = 0.2  # how often the parent checks that its workers are alive while no event arrives
EXIT_EVENT_WAIT_S = 30.0  # the longest a worker that ended normally may leave its last event unread


def worker_threads(n_workers: int) -> int:
    """torch threads per worker: the user's (`--threads N`, OMP_NUM_THREADS), else the cores shared out, at
    least one."""
    from kit.train.threads import usable_cores, user_threads

    user = user_threads(os.environ)
    return user[0] if user is not None else max(1, usable_cores() // n_workers)


@dataclass(frozen=True)
class Slot:
    """Where one worker runs: `cuda` = the CUDA device index it is pinned to, None for a CPU worker."""

    threads: int
    cuda: int | None = None

    @property
    def label(self) -> str:
        where = "cpu" if self.cuda is None else f"cuda:{self.cuda}"
        return f"{where}, {self.threads} thread{'s' if self.threads > 1 else ''}"


def cpu_slots(jobs: int) -> list[Slot]:
    if jobs < 1:
        raise KitError(
            f"--jobs {jobs}: needs at least 1 worker; use --jobs 2 (or more) to train folds in parallel"
        )
    return [Slot(worker_threads(jobs))] * jobs


def cuda_slots(devices: list[int]) -> list[Slot]:
    """One slot per named CUDA device, after checking that torch sees each of them."""
    import torch

    if not devices:
        raise KitError("--devices: name at least one CUDA device, e.g. --devices 0,1")
    if len(set(devices)) != len(devices):
        raise KitError(f"--devices {_csv(devices)}: a device is named twice; name each GPU once")
    if not torch.cuda.is_available():
        raise KitError(
            f"--devices {_csv(devices)}: torch sees no CUDA device on this machine (torch {torch.__version__}); "
            "drop --devices, or use --jobs N for N CPU worker processes"
        )
    n = torch.cuda.device_count()
    missing = [d for d in devices if not 0 <= d < n]
    if missing:
        raise KitError(
            f"--devices {_csv(devices)}: no CUDA device {_csv(missing)}; this machine has {n} "
            f"(--devices {_csv(list(range(n)))})"
        )
    return [Slot(worker_threads(len(devices)), d) for d in devices]


def _csv(xs: list[int]) -> str:
    return ",".join(map(str, xs))


# ---------------------------------------------------------------- the worker process


class _QueueTask:
    def __init__(self, events: Any, wid: int, key: int) -> None:
        self.events, self.wid, self.key = events, wid, key

    def advance(self, n: int = 1) -> None:
        self.events.put(("advance", self.wid, self.key, n))

    def describe(self, text: str) -> None:
        self.events.put(("describe", self.wid, self.key, text))


class QueueReporter:
    """A worker's Reporter: every task and line goes to the parent as an event."""

    def __init__(self, events: Any, wid: int) -> None:
        self.events, self.wid, self._next = events, wid, 0

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Task]:
        key, self._next = self._next, self._next + 1
        self.events.put(("open", self.wid, key, description, total))
        try:
            yield _QueueTask(self.events, self.wid, key)
        finally:
            self.events.put(("close", self.wid, key))

    def line(self, text: str) -> None:
        self.events.put(("line", self.wid, text))

    def epoch(self, event: EpochEvent) -> None:
        """A finished epoch, passed on to the parent's reporter (experiment tracking logs it there)."""
        self.events.put(("epoch", self.wid, event))


def _worker(wid: int, slot: Slot, cfg: KitConfig, tasks: Any, events: Any) -> None:
    """A worker process: pin, open the workspace, train (member, fold) tasks until the queue says stop."""
    if slot.cuda is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(
            slot.cuda
        )  # before CUDA initialises: the slot's GPU is cuda:0
    import torch

    torch.set_num_threads(slot.threads)
    from kit.train.threads import worker_reporter
    from kit.workspace import open_workspace

    rep = worker_reporter(QueueReporter(events, wid), slot.threads, cpu=slot.cuda is None)
    runs: dict[str, PreparedRun] = {}
    name, f = "", -1
    try:
        ws = open_workspace(cfg, write=False)
        while (task := tasks.get()) is not None:
            name, f = task
            events.put(("start", wid, name, f))
            if name not in runs:
                runs[name] = prepare_run(ws, name, cfg.members[name], rep)
            run = runs[name]
            info = take_fold(run.root, name, f, rep, partial(train_fold, run))
            events.put(("finished", wid, name, f, info is not None))
    except KitError as e:
        events.put(("error", wid, name, f, str(e)))
    except OSError as e:  # a full or read-only disk: the path and the fix, as the serial path says it
        events.put(("error", wid, name, f, describe_os_error(e)))
    except BaseException as e:  # the parent raises it as a KitError
        tb = traceback.format_exc(limit=-3)
        events.put(("error", wid, name, f, f"{type(e).__name__}: {e}\n{tb}"))
    else:
        events.put(("exit", wid))


# ---------------------------------------------------------------- the parent


@dataclass
class _WorkerView:
    """What the parent shows for one worker: its open tasks (description, total, done), innermost last."""

    label: str
    task: Task
    open: dict[int, list[Any]]
    current: tuple[str, int] | None = None

    def render(self) -> str:
        parts = [f"{d} {n}/{t}" if t else d for d, t, n in self.open.values()]
        return f"{self.label}: " + (" · ".join(parts) if parts else "idle")


def run_tasks(cfg: KitConfig, tasks: list[tuple[str, int]], slots: list[Slot], reporter: Reporter) -> None:
    """Train `tasks` ((member, fold) pairs) in one worker process per slot; returns once every task is done or
    skipped (held by another process). A failing or dying worker raises a KitError naming its member and fold."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    task_q, events = ctx.Queue(), ctx.Queue()
    for t in tasks:
        task_q.put(t)
    slots = slots[: len(tasks)] or slots[:1]
    for _ in slots:
        task_q.put(None)
    procs = [
        ctx.Process(target=_worker, args=(i, s, cfg, task_q, events), name=f"kit-worker-{i}")
        for i, s in enumerate(slots)
    ]
    with ExitStack() as stack:
        stack.callback(_stop, procs, cfg.workdir)
        overall = stack.enter_context(reporter.task(f"folds on {len(slots)} workers", total=len(tasks)))
        for p in procs:
            p.start()
        views = []
        for i, (p, s) in enumerate(zip(procs, slots, strict=True)):
            label = f"worker {i} ({s.label}, pid {p.pid})"
            views.append(_WorkerView(label, stack.enter_context(reporter.task(label)), {}))
        exited: set[int] = set()
        gone: dict[int, float] = {}  # worker -> when it was first seen ended (exit code 0)
        while len(exited) < len(procs):
            try:
                ev = events.get(timeout=POLL_S)
            except queue.Empty:
                _check_alive(procs, slots, views, exited, gone)
                continue
            kind, wid = ev[0], ev[1]
            view = views[wid]
            if kind == "line":
                reporter.line(ev[2])
            elif kind == "epoch":
                epoch_done(reporter, ev[2])
            elif kind == "open":
                view.open[ev[2]] = [ev[3], ev[4], 0]
            elif kind == "advance" and ev[2] in view.open:
                view.open[ev[2]][2] += ev[3]
            elif kind == "describe" and ev[2] in view.open:
                view.open[ev[2]][0] = ev[3]
            elif kind == "close":
                view.open.pop(ev[2], None)
            elif kind == "start":
                view.current = (ev[2], ev[3])
            elif kind == "finished":
                view.current = None
                overall.advance()
            elif kind == "exit":
                exited.add(wid)
            elif kind == "error":
                name, f, msg = ev[2], ev[3], ev[4]
                where = f"member '{name}' fold {f}" if name else "before it took a fold"
                raise KitError(
                    f"worker {wid} ({slots[wid].label}) failed on {where}: {msg}\n"
                    "finished folds are kept; fix the cause and run the same command again to resume"
                )
            view.task.describe(view.render())


def _check_alive(
    procs: list[Any], slots: list[Slot], views: list[_WorkerView], exited: set[int], gone: dict[int, float]
) -> None:
    for i, p in enumerate(procs):
        if i in exited or p.exitcode is None:
            continue
        if p.exitcode == 0:
            # a worker that ended normally sent "exit" or "error" last, and the events a process put are in the
            # queue before it ends: wait for that event (an error two workers hit at once must not be lost)
            gone.setdefault(i, time.monotonic())
            if time.monotonic() - gone[i] > EXIT_EVENT_WAIT_S:
                exited.add(i)
            continue
        time.sleep(POLL_S)  # let its last events arrive (an error it reported says more than the exit code)
        cur = views[i].current
        where = f"while training member '{cur[0]}' fold {cur[1]}" if cur else "before it took a fold"
        raise KitError(
            f"worker {i} ({slots[i].label}) died (exit code {p.exitcode}) {where}; finished folds are kept and "
            "an unfinished one resumes from its last epoch: run the same command again (with fewer --jobs if "
            "it ran out of memory)"
        )


def _stop(procs: list[Any], workdir: Path) -> None:
    """Terminate the workers still running (their fold locks go with them) and reap every one; what a
    terminated worker was writing (a checkpoint's temp) is removed, as the next run would."""
    stopped = False
    for p in procs:
        if p.pid is not None and p.exitcode is None:
            p.terminate()
            stopped = True
    for p in procs:
        if p.pid is not None:
            p.join(timeout=10)
    if stopped:
        clean_stale_temps(workdir)


def pending_tasks(
    runs: dict[str, PreparedRun], folds: list[int] | None, k: int, reporter: Reporter
) -> list[tuple[str, int]]:
    """The (member, fold) pairs still to train; folds done earlier are said so and kept."""
    out = []
    for name, run in runs.items():
        for f in folds if folds is not None else range(k):
            info = read_done(run.root, f)
            if info is not None:
                reporter.line(f"{name} fold {f}: done earlier ({best_note(info)}), kept")
            else:
                out.append((name, f))
    return out
