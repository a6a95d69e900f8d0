"""`kit train`'s torch threads (kit.train.threads): chosen from the cores other processes leave free, a user's
setting wins, applied while training and restored after, re-checked while training. No timing here: the
throughput this buys is measured by bench/bench_threads.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import invoke
from train_helpers import make_competition, member, write_config
from typer.testing import CliRunner

from kit.errors import KitError
from kit.progress import NullReporter, Task
from kit.train.threads import (
    Rechecker,
    ThreadPlan,
    configure_threads,
    decide_threads,
    plan_threads,
    sample_others_busy,
    usable_cores,
    user_threads,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("cores", "others", "workers", "want"),
    [
        (2, 0.0, 0, 2),  # a quiet machine: every core, as torch's default
        (2, 0.3, 0, 2),  # a little background work does not cost a core
        (2, 0.7, 0, 1),
        (2, 2.0, 0, 1),  # two busy processes beside it: one thread
        (2, 6.0, 0, 1),  # never below one
        (8, 2.0, 0, 6),
        (8, 0.0, 2, 6),  # DataLoader workers take cores too
        (2, 0.0, 4, 1),
        (1, 0.0, 0, 1),
        (4, -0.2, 0, 4),  # sampling noise below zero
    ],
)
def test_threads_are_the_free_cores_less_the_loader_workers(
    cores: int, others: float, workers: int, want: int
) -> None:
    assert decide_threads(cores, others, workers) == want


def test_a_user_setting_wins_and_is_named() -> None:
    assert user_threads({}) is None
    assert user_threads({"OMP_NUM_THREADS": "3"}) == (3, "OMP_NUM_THREADS")
    assert user_threads({"OMP_NUM_THREADS": "4,2"}) == (4, "OMP_NUM_THREADS")  # a count per nesting level
    assert user_threads({"OMP_NUM_THREADS": "3", "KIT_THREADS": "2"}) == (2, "--threads")
    plan = plan_threads(2, 2.0, 0, (3, "OMP_NUM_THREADS"))  # kept as given, even above the cores, under load
    assert (plan.threads, plan.auto) == (3, False)
    assert plan.describe() == "threads: 3 of 2 cores (set by OMP_NUM_THREADS)"
    auto = plan_threads(2, 1.96, 2)
    assert (
        auto.describe() == "threads: 1 of 2 cores (2.0 cores busy with other processes, 2 DataLoader workers)"
    )
    with pytest.raises(KitError, match=r"OMP_NUM_THREADS 'many': expected a whole number of threads from 1"):
        user_threads({"OMP_NUM_THREADS": "many"})
    with pytest.raises(KitError, match=r"--threads '0'"):
        user_threads({"KIT_THREADS": "0"})


def test_configure_sets_torch_threads_from_the_user_setting() -> None:
    import torch

    before = torch.get_num_threads()
    try:
        plan = configure_threads(env={"OMP_NUM_THREADS": "1"})
        assert (plan.threads, plan.source, torch.get_num_threads()) == (1, "OMP_NUM_THREADS", 1)
        plan = configure_threads(env={"KIT_THREADS": "2"})
        assert (plan.threads, plan.source, torch.get_num_threads()) == (2, "--threads", 2)
    finally:
        torch.set_num_threads(before)


@contextmanager
def busy(n: int) -> Iterator[None]:
    """`n` processes spinning in pure Python that are not this process's children (as another user's job: kit
    counts its own children, DataLoader workers, as its own CPU time)."""
    code = f"{sys.executable} -c 'while True: pass' >/dev/null 2>&1 </dev/null & echo $!"
    pids = [int(subprocess.run(["sh", "-c", code], capture_output=True, text=True).stdout) for _ in range(n)]
    try:
        time.sleep(0.3)
        yield
    finally:
        for pid in pids:
            os.kill(pid, 15)


needs_proc = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads /proc/stat (Linux)")


@needs_proc
def test_busy_processes_are_measured_and_leave_one_thread() -> None:
    """With a busy process per core beside it, the sample sees them and the re-check drops to one thread."""
    import torch

    cores = usable_cores()
    before = torch.get_num_threads()
    try:
        with busy(cores):
            assert sample_others_busy(0.5) > cores - 0.5
            checker = Rechecker(ThreadPlan(cores, cores, 0.0), every_s=0.0)
            time.sleep(0.5)
            moved = checker.poll()
            assert checker.plan.threads == 1 and torch.get_num_threads() == 1
            assert cores == 1 or (moved is not None and moved.others > cores - 0.5)
    finally:
        torch.set_num_threads(before)


class ThreadsSeen(NullReporter):
    """Records torch's thread count at every batch of training."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[int] = set()

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Task]:
        import torch

        outer = self

        class T:
            def advance(self, n: int = 1) -> None:
                outer.seen.add(torch.get_num_threads())

            def describe(self, text: str) -> None:
                pass

        yield T()


def test_kit_train_trains_with_the_chosen_threads_and_restores_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    import kit
    from kit.config.load import load_config

    data = make_competition(tmp_path / "data")
    cfg = load_config(write_config(tmp_path / "kit.yaml", data, {"m": member("test_efficientnet")}))
    before = torch.get_num_threads()
    want = 2 if before != 2 else 1
    monkeypatch.setenv("KIT_THREADS", str(want))
    rep = ThreadsSeen()
    assert kit.train_members(cfg, reporter=rep).members
    assert rep.seen == {want}  # every batch ran with the user's count
    assert torch.get_num_threads() == before  # and the caller's count is back
    assert f"threads: {want} of {usable_cores()} cores (set by --threads)" in rep.lines


def test_threads_option_and_omp_num_threads_through_the_cli(
    tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_competition(tmp_path / "data")
    cfg = write_config(tmp_path / "kit.yaml", data, {"m": member("test_efficientnet")})
    monkeypatch.delenv("KIT_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    r = invoke(runner, ["train", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert f"threads: 1 of {usable_cores()} cores (set by OMP_NUM_THREADS)" in r.output
    assert "KIT_THREADS" not in os.environ  # --threads is scoped to its command

    r = invoke(runner, ["train", "-c", str(cfg), "--threads", "0"], cwd=tmp_path)
    assert r.exit_code == 1
    assert "--threads 0: give a number of torch threads from 1, e.g. --threads 2" in r.output


@needs_proc
def test_a_real_kit_train_under_load_picks_one_thread(tmp_path: Path) -> None:
    """A `kit train` process started beside a busy process per core (no user setting): one thread, said once."""
    data = make_competition(tmp_path / "data")
    cfg = write_config(tmp_path / "kit.yaml", data, {"m": member("test_efficientnet")})
    env = {k: v for k, v in os.environ.items() if k not in ("KIT_THREADS", "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env["COLUMNS"] = "200"
    cores = usable_cores()
    with busy(cores):
        done = subprocess.run(
            [sys.executable, "-m", "kit", "train", "-c", str(cfg)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = [s for s in done.stdout.splitlines() if s.startswith("threads: ")]  # no change while loaded
    assert line.startswith(f"threads: 1 of {cores} core") and "cores busy with other processes" in line, line
