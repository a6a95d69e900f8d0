"""How many torch threads `kit train` uses, chosen from the cores other processes leave free.

torch's CPU kernels run on an OpenMP team with one thread per core whose idle threads spin-wait. When other
processes (another `kit train`, DataLoader workers, a notebook) keep cores busy, the team's threads wait on
each other's descheduled peers and a train step slows several-fold; one thread per free core avoids that, and
on a quiet machine the default team is fastest. So:

- `decide_threads` (pure): the cores free of other processes' work, less the member's DataLoader workers, at
  least one and at most the usable cores.
- `configure_threads` (the edge): samples the cores other processes kept busy (/proc/stat over a short window,
  this process's own CPU time taken out), decides, and sets torch's threads (importing torch).
- `managed`: for one `kit train`, says the choice and re-measures every few seconds while training (from the
  progress of each batch, on the training thread), moving torch's thread count when the free cores changed.

A user's choice wins and is never changed: `kit train --threads N` (KIT_THREADS=N, which worker processes
inherit) or OMP_NUM_THREADS. The thread count changes float reduction order, so a CPU run is bit-equal to an
interrupted-and-resumed one when both use the same count: pin `--threads N` for that.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from kit.errors import KitError
from kit.progress import ForwardingReporter, Reporter, Task

SAMPLE_S = 0.3  # how long the start-up sample of other processes' CPU use lasts
RECHECK_S = 3.0  # how often, while training, the free cores are measured again
ENV = "KIT_THREADS"  # `kit train --threads N` sets it, so worker processes and torchrun ranks see it too


@dataclass(frozen=True)
class ThreadPlan:
    """What kit chose: `threads` for torch, out of `cores`, with `others` cores kept busy by other processes
    and `workers` DataLoader workers per loader; `source` is "auto" or the user setting that decided."""

    threads: int
    cores: int
    others: float
    workers: int = 0
    source: str = "auto"

    @property
    def auto(self) -> bool:
        return self.source == "auto"

    def describe(self) -> str:
        """E.g. 'threads: 1 of 2 cores (1.9 cores busy with other processes)'."""
        head = f"threads: {self.threads} of {self.cores} core{'s' if self.cores != 1 else ''}"
        if not self.auto:
            return f"{head} (set by {self.source})"
        why = [f"{self.others:.1f} cores busy with other processes"]
        if self.workers:
            why.append(f"{self.workers} DataLoader worker{'s' if self.workers != 1 else ''}")
        return f"{head} ({', '.join(why)})"


def decide_threads(cores: int, others: float, workers: int = 0) -> int:
    """torch threads for `cores` usable cores of which other processes keep `others` busy, beside `workers`
    DataLoader worker processes: the free cores rounded to the nearest, less the workers, in [1, cores]."""
    free = int(cores - max(0.0, others) + 0.5)
    return max(1, min(cores, free - max(0, workers)))


def user_threads(env: dict[str, str] | os._Environ[str]) -> tuple[int, str] | None:
    """The thread count the user set (KIT_THREADS, else OMP_NUM_THREADS) and where; None when neither is."""
    for key in (ENV, "OMP_NUM_THREADS"):
        raw = env.get(key, "").strip()
        if not raw:
            continue
        first = raw.split(",")[0]  # OMP_NUM_THREADS may list a count per nesting level
        if not first.isdigit() or int(first) < 1:
            flag = "--threads" if key == ENV else key
            raise KitError(f"{flag} {raw!r}: expected a whole number of threads from 1, e.g. {key}=2")
        return int(first), ("--threads" if key == ENV else key)
    return None


def plan_threads(
    cores: int, others: float, workers: int = 0, user: tuple[int, str] | None = None
) -> ThreadPlan:
    """The plan for these inputs: the user's count when given (kept even above `cores`), else decide_threads."""
    if user is not None:
        return ThreadPlan(user[0], cores, others, workers, user[1])
    return ThreadPlan(decide_threads(cores, others, workers), cores, others, workers)


# ---------------------------------------------------------------- measuring the machine (Linux /proc)


def usable_cores() -> int:
    """The cores this process may run on: its affinity mask, capped by a cgroup CPU quota where one is set."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(-(-int(quota) // int(period)))))
    except (OSError, ValueError):
        pass
    return n


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies summed over the CPUs this process may run on; None without /proc/stat."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
        mine = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    except (OSError, AttributeError):
        return None
    busy = total = 0
    for line in lines:
        parts = line.split()
        if parts and parts[0] in mine:
            # user nice system idle iowait irq softirq steal (guest time is inside user)
            v = [int(x) for x in parts[1:9]]
            busy += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
            total += sum(v)
    return (busy, total) if total else None


def _children_cpu_s() -> float:
    """CPU seconds of this process's live children (DataLoader workers while an epoch runs)."""
    try:
        tasks = list(Path("/proc/self/task").iterdir())
    except OSError:
        return 0.0
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for task in tasks:
        try:
            pids = (task / "children").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue  # ended since
            fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 3
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / tick


def _own_cpu_s() -> float:
    """CPU seconds of this process's threads and of its children, live or reaped: a DataLoader worker's time
    moves from the live sum to the reaped one when it ends, so the total grows smoothly."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system + _children_cpu_s()


@dataclass(frozen=True)
class CpuMark:
    """A reading to measure other processes' CPU use from: machine jiffies, own CPU seconds, wall time."""

    jiffies: tuple[int, int] | None
    own_s: float
    wall_s: float


def mark() -> CpuMark:
    return CpuMark(_cpu_jiffies(), _own_cpu_s(), time.monotonic())


def others_since(start: CpuMark, cores: int) -> float:
    """Cores other processes kept busy (on average) since `start`: the machine's busy share of our cores,
    less this process's own CPU time; 0.0 where /proc/stat is missing or no time passed."""
    end = mark()
    if start.jiffies is None or end.jiffies is None:
        return 0.0
    d_busy, d_total = end.jiffies[0] - start.jiffies[0], end.jiffies[1] - start.jiffies[1]
    wall = end.wall_s - start.wall_s
    if d_total <= 0 or wall <= 0:
        return 0.0
    busy_cores = cores * d_busy / d_total
    own_cores = (end.own_s - start.own_s) / wall
    return max(0.0, busy_cores - own_cores)


def sample_others_busy(seconds: float = SAMPLE_S, cores: int | None = None) -> float:
    """Cores other processes keep busy now, sampled over `seconds` while this process sleeps."""
    start = mark()
    time.sleep(seconds)
    return others_since(start, cores or usable_cores())


# ---------------------------------------------------------------- applying it


def configure_threads(workers: int = 0, env: dict[str, str] | os._Environ[str] | None = None) -> ThreadPlan:
    """Decide for this process (a user setting wins; else sample the machine) and set torch's threads."""
    env = os.environ if env is None else env
    cores = usable_cores()
    user = user_threads(env)
    others = 0.0 if user is not None else sample_others_busy(cores=cores)
    plan = plan_threads(cores, others, workers, user)
    import torch

    if torch.get_num_threads() != plan.threads:
        torch.set_num_threads(plan.threads)
    return plan


class Rechecker:
    """Holds an automatic plan and moves torch's threads when the cores other processes use change: `poll`
    re-measures over the time since the last check, at most every `every_s` seconds."""

    def __init__(self, plan: ThreadPlan, every_s: float = RECHECK_S) -> None:
        self.plan, self.every_s, self.since = plan, every_s, mark()

    def poll(self) -> ThreadPlan | None:
        """The new plan when the thread count moved, else None (also when too little time passed)."""
        if not self.plan.auto or time.monotonic() - self.since.wall_s < self.every_s:
            return None
        others = others_since(self.since, self.plan.cores)
        self.since = mark()
        threads = decide_threads(self.plan.cores, others, self.plan.workers)
        if threads == self.plan.threads:
            return None
        import torch

        torch.set_num_threads(threads)
        self.plan = replace(self.plan, threads=threads, others=others)
        return self.plan


class _PollingTask:
    def __init__(self, inner: Task, owner: ThreadsReporter) -> None:
        self.inner, self.owner = inner, owner

    def advance(self, n: int = 1) -> None:
        self.inner.advance(n)
        self.owner.poll()

    def describe(self, text: str) -> None:
        self.inner.describe(text)


class ThreadsReporter(ForwardingReporter):
    """Passes everything on to `inner`; each batch's progress (on the training thread, whose OpenMP team
    torch.set_num_threads sizes) is where the thread count is re-checked, and a move is said in one line."""

    def __init__(self, inner: Reporter, rechecker: Rechecker) -> None:
        super().__init__(inner)
        self.rechecker = rechecker

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Task]:
        with self.inner.task(description, total) as t:
            yield _PollingTask(t, self)

    def poll(self) -> None:
        moved = self.rechecker.poll()
        if moved is not None:
            self.line(f"{moved.describe()}, changed")


@contextmanager
def managed(reporter: Reporter, workers: int = 0, say: bool = True) -> Iterator[Reporter]:
    """For one `kit train`: choose the threads, say the choice (`say`), and yield a reporter that re-checks them
    while training; torch's thread count from before is restored on exit (a notebook's, a test's)."""
    import torch

    before = torch.get_num_threads()
    plan = configure_threads(workers)
    if say:
        reporter.line(plan.describe())
    try:
        yield ThreadsReporter(reporter, Rechecker(plan)) if plan.auto else reporter
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextmanager
def threads_setting(threads: int | None) -> Iterator[None]:
    """`kit train --threads N`: KIT_THREADS=N for this command (worker processes and torchrun ranks inherit it),
    restored after."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise KitError(f"--threads {threads}: give a number of torch threads from 1, e.g. --threads 2")
    old = os.environ.get(ENV)
    os.environ[ENV] = str(threads)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old


def worker_reporter(inner: Reporter, threads: int, cpu: bool) -> Reporter:
    """A `--jobs` CPU worker's reporter: its `threads` (cores / workers) re-checked while it trains, the other
    workers counting as other processes; as it was for a user's thread count and for GPU workers."""
    if not cpu or user_threads(os.environ) is not None:
        return inner
    return ThreadsReporter(inner, Rechecker(ThreadPlan(threads, usable_cores(), 0.0)))
