"""Scale out (docs/scale.md): folds as units of work (--folds, --assemble, --import-fold, two real processes on
one workdir) and worker processes on one machine (--jobs, --devices), bad input included."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke
from train_helpers import make_competition, member, write_config
from typer.testing import CliRunner

from kit.config.load import load_config
from kit.errors import KitError
from kit.progress import NullReporter, Task

REPO = Path(__file__).resolve().parents[1]


def _arrays(workdir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    d = workdir / "members" / name
    return np.load(d / "oof_logits.npy"), np.load(d / "test_logits.npy")


def _assert_same(a: Path, b: Path, name: str) -> None:
    for x, y in zip(_arrays(a, name), _arrays(b, name), strict=True):
        assert x.shape == y.shape and np.array_equal(x, y)


def _run_root(workdir: Path, name: str) -> Path:
    (root,) = (workdir / "runs" / name).iterdir()
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_competition(tmp_path_factory.mktemp("scale") / "data")


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plain serial `kit train cnx` every split-up run must equal bit for bit; its workdir."""
    import kit

    cfg = load_config(write_config(tmp_path_factory.mktemp("ref") / "kit.yaml", data, {"cnx": member()}))
    assert kit.train_members(cfg, ["cnx"]).members
    return cfg.workdir


# ---------------------------------------------------------------- folds as units of work


def test_folds_one_at_a_time_the_last_finisher_assembles(
    tmp_path: Path, data: Path, reference: Path, runner: CliRunner
) -> None:
    cfg = write_config(tmp_path / "kit.yaml", data, {"cnx": member()})
    work = tmp_path / "work"
    r = invoke(runner, ["train", "cnx", "-c", str(cfg), "--folds", "1"], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "cnx fold 1 epoch 1/1" in r.output and "cnx fold 0 epoch" not in r.output
    assert "cnx: fold(s) [0] not trained yet; run `kit train cnx --folds 0`" in r.output
    assert "wrote" not in r.output and not (work / "members").exists()

    r = invoke(runner, ["train", "cnx", "-c", str(cfg), "--assemble"], cwd=tmp_path)
    assert r.exit_code == 1
    assert "cnx: fold(s) [0] of run" in r.output and "`kit train cnx --folds 0`" in r.output
    assert "nothing was written" in r.output and not (work / "members").exists()

    r = invoke(runner, ["train", "cnx", "-c", str(cfg), "--folds", "0"], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "cnx fold 0 epoch 1/1" in r.output and f"wrote {work / 'members' / 'cnx'}" in r.output
    _assert_same(reference, work, "cnx")

    meta = (work / "members" / "cnx" / "meta.json").read_bytes()
    r = invoke(runner, ["train", "cnx", "-c", str(cfg), "--assemble"], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "epoch" not in r.output
    assert json.loads((work / "members" / "cnx" / "meta.json").read_bytes())["run"] == json.loads(meta)["run"]
    _assert_same(reference, work, "cnx")


def test_imported_fold_joins_the_run_and_mismatches_are_refused(
    tmp_path: Path, data: Path, reference: Path, runner: CliRunner
) -> None:
    # fold 1 trained "in another notebook": its own workdir, the same data and config
    other = load_config(write_config(tmp_path / "other" / "kit.yaml", data, {"cnx": member()}))
    import kit

    kit.train_members(other, ["cnx"], folds=[1])
    fold1 = _run_root(other.workdir, "cnx") / "fold1"
    portable = tmp_path / "carried" / "fold1"  # carried over alone, without its run folder
    shutil.copytree(fold1, portable)

    cfg = write_config(tmp_path / "here" / "kit.yaml", data, {"cnx": member()})
    work = tmp_path / "here" / "work"
    r = invoke(runner, ["train", "cnx", "-c", str(cfg), "--folds", "0"], cwd=tmp_path)
    assert r.exit_code == 0, r.output

    # not a fold, a fold of another config, of other folds, of other data: refused with the reason
    (tmp_path / "empty").mkdir()
    bad_cases = {
        str(tmp_path / "empty"): "not a finished kit fold (no readable done.json)",
        str(tmp_path / "missing"): "no such folder",
    }
    lr = load_config(write_config(tmp_path / "lr" / "kit.yaml", data, {"cnx": member(lr=0.002)}))
    kit.train_members(lr, ["cnx"], folds=[1])
    bad_cases[str(_run_root(lr.workdir, "cnx") / "fold1")] = (
        "the member config, the metric or the encoder differs"
    )
    seed = write_config(tmp_path / "seed" / "kit.yaml", data, {"cnx": member()})
    seed_cfg = load_config(seed, ["folds.seed=1"])
    kit.train_members(seed_cfg, ["cnx"], folds=[1])
    bad_cases[str(_run_root(seed_cfg.workdir, "cnx") / "fold1")] = "the fold assignment differs"
    data2 = make_competition(tmp_path / "data2", seed=1)
    d2 = load_config(write_config(tmp_path / "d2" / "kit.yaml", data2, {"cnx": member()}))
    kit.train_members(d2, ["cnx"], folds=[1])
    bad_cases[str(_run_root(d2.workdir, "cnx") / "fold1")] = "the train data differs"
    for src, why in bad_cases.items():
        r = invoke(runner, ["train", "cnx", "-c", str(cfg), "--import-fold", src], cwd=tmp_path)
        assert r.exit_code == 1, (src, r.output)
        assert f"--import-fold {src}" in r.output.replace("\n", "") and why in r.output.replace("\n", "")
        assert "Traceback" not in r.output
        assert not (_run_root(work, "cnx") / "fold1").exists() and not (work / "members").exists()

    r = invoke(runner, ["train", "cnx", "-c", str(cfg), "--import-fold", str(portable)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert f"cnx fold 1: imported from {portable}" in r.output and "wrote" in r.output
    assert "epoch" not in r.output
    assert (_run_root(work, "cnx") / "fold1" / "best.pt").exists()  # `kit predict` needs the weights too
    _assert_same(reference, work, "cnx")

    # again: identical, skipped; a different fold 1 over a finished one: refused, nothing overwritten
    r = invoke(runner, ["train", "cnx", "-c", str(cfg), "--import-fold", str(portable)], cwd=tmp_path)
    assert r.exit_code == 0 and "is the fold finished here already; skipped" in r.output
    np.save(portable / "oof.npy", np.load(portable / "oof.npy") + 1)
    before = (_run_root(work, "cnx") / "fold1" / "oof.npy").read_bytes()
    r = invoke(runner, ["train", "cnx", "-c", str(cfg), "--import-fold", str(portable)], cwd=tmp_path)
    assert r.exit_code == 1 and "kit never overwrites a finished fold" in r.output
    assert (_run_root(work, "cnx") / "fold1" / "oof.npy").read_bytes() == before


def test_two_real_processes_share_one_workdir(tmp_path: Path, data: Path, reference: Path) -> None:
    """Two `python -m kit train` processes at once: every fold is trained once, the member equals a serial run."""
    cfg = write_config(tmp_path / "kit.yaml", data, {"cnx": member()})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "kit", "train", "cnx", "-c", str(cfg)]
    procs = [
        subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    both = "\n".join(outs)
    for f in range(2):
        assert both.count(f"cnx fold {f} epoch 1/1") == 1, both  # trained once, by one of them
        assert (
            both.count(f"cnx fold {f}: another kit process is training it")
            + both.count(f"cnx fold {f}: done earlier")
            == 1
        ), both  # and skipped or kept by the other
    assert "wrote" in both
    _assert_same(reference, tmp_path / "work", "cnx")


# ---------------------------------------------------------------- one machine, several workers


class Recording(NullReporter):
    """Keeps every task description the display shows (the parent's per-worker lines)."""

    def __init__(self) -> None:
        super().__init__()
        self.shown: list[str] = []

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Task]:
        outer = self
        self.shown.append(description)

        class T:
            def advance(self, n: int = 1) -> None:
                pass

            def describe(self, text: str) -> None:
                outer.shown.append(text)

        yield T()


def test_jobs_2_is_bit_equal_to_the_serial_run(tmp_path: Path, data: Path) -> None:
    import torch

    import kit
    from kit.train.workers import worker_threads

    members = {"cnx": member()}
    serial = load_config(write_config(tmp_path / "serial" / "kit.yaml", data, members))
    threads = torch.get_num_threads()
    torch.set_num_threads(worker_threads(2))  # what each of the 2 workers runs with
    try:
        kit.train_members(serial)
    finally:
        torch.set_num_threads(threads)

    par = load_config(write_config(tmp_path / "par" / "kit.yaml", data, members))
    rep = Recording()
    result = kit.train_members(par, reporter=rep, jobs=2)
    assert list(result.members) == ["cnx"] and result.pending == []
    for name in members:
        _assert_same(serial.workdir, par.workdir, name)
    label = f"cpu, {worker_threads(2)} thread"
    assert any(s.startswith("worker 0 (" + label) for s in rep.shown)
    assert any(s.startswith("worker 1 (" + label) for s in rep.shown)
    assert any(": cnx fold" in s and "epochs 0/1" in s for s in rep.shown), rep.shown  # fold and epoch shown
    assert any("batches" in s for s in rep.shown)
    assert sum("epoch 1/1" in line for line in rep.lines) == 2  # one line per fold, from the workers


def test_dead_worker_is_a_kit_error_naming_member_and_fold(tmp_path: Path, data: Path) -> None:
    import kit

    class KillFirstWorker(Recording):
        def __init__(self) -> None:
            super().__init__()
            self.killed = False

        @contextmanager
        def task(self, description: str, total: int | None = None) -> Iterator[Task]:
            outer = self
            pid = (
                int(description.split("pid ")[1].rstrip(")")) if description.startswith("worker 0") else None
            )

            class T:
                def advance(self, n: int = 1) -> None:
                    pass

                def describe(self, text: str) -> None:
                    if pid and not outer.killed and "batches" in text:
                        outer.killed = True
                        os.kill(pid, signal.SIGKILL)  # a real crash mid-epoch (the OOM killer, a segfault)

            yield T()

    cfg = load_config(write_config(tmp_path / "kit.yaml", data, {"cnx": member()}))
    with pytest.raises(KitError) as e:
        kit.train_members(cfg, reporter=KillFirstWorker(), jobs=2)
    msg = str(e.value)
    assert "worker 0 (cpu" in msg and "died (exit code -9) while training member 'cnx' fold" in msg, msg
    assert "run the same command again" in msg
    assert not (cfg.workdir / "members").exists()


# ---------------------------------------------------------------- bad input


def test_bad_scale_flags_exit_1_naming_the_flag(tmp_path: Path, data: Path, runner: CliRunner) -> None:
    cfg = write_config(tmp_path / "kit.yaml", data, {"cnx": member(), "eff": member()})
    cases = {
        (
            "--folds",
            "2",
        ): "--folds 2: no fold 2; this workspace has folds.k=2 (--folds takes numbers from 0 to 1",
        ("--folds", "0,,1"): "--folds '0,,1': expected numbers from 0 separated by commas, e.g. --folds 0,2",
        ("--folds", "-1"): "--folds '-1': expected numbers",
        ("--folds", "1,1"): "--folds 1,1: a fold is named twice",
        ("--jobs", "0"): "--jobs 0: needs at least 1 worker; use --jobs 2",
        ("--devices", "a"): "--devices 'a': expected numbers",
        ("--devices", "0"): "--devices 0: torch sees no CUDA device on this machine",
        ("--import-fold", str(tmp_path)): "--import-fold adds folds to one member, and 2 are selected",
        ("--assemble", "--folds", "0"): "--assemble trains nothing: drop --folds",
        ("--jobs", "2", "--devices", "0"): "--jobs and --devices both given",
    }
    import torch

    if torch.cuda.is_available():  # a GPU machine: name one it does not have
        n = torch.cuda.device_count()
        del cases[("--devices", "0")]
        cases[("--devices", str(n))] = f"--devices {n}: no CUDA device {n}; this machine has {n}"
    for args, message in cases.items():
        r = invoke(runner, ["train", "-c", str(cfg), *args], cwd=tmp_path)
        assert r.exit_code == 1, (args, r.output)
        assert message in r.output.replace("\n", ""), (args, r.output)
        assert "Traceback" not in r.output
    assert not (tmp_path / "work" / "runs").exists() and not (tmp_path / "work" / "members").exists()
