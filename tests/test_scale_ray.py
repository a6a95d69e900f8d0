"""`kit train --ray`: folds as tasks on a real local Ray cluster (2 CPUs), artifacts equal to the serial run,
a worker killed mid-fold retried; and the bad inputs of --ray / --ddp."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke
from train_helpers import make_competition, member, write_config
from typer.testing import CliRunner

from kit.config.load import load_config
from kit.progress import NullReporter
from kit.train.run import train_in_process


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[object]:
    """A local Ray cluster of 2 CPUs for this module (2 folds run at once, one CPU and one thread each)."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'kit[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


def _serial(tmp: Path, data: Path, name: str, m: dict) -> Path:
    """The serial run's member folder, trained with one torch thread (as each Ray task here)."""
    import torch

    cfg = load_config(write_config(tmp / "kit.yaml", data, {name: m}))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_in_process(cfg, [name])
    finally:
        torch.set_num_threads(threads)
    return cfg.workdir / "members" / name


def _assert_equal_members(a: Path, b: Path) -> None:
    for f in ("oof_logits.npy", "test_logits.npy"):
        x, y = np.load(a / f), np.load(b / f)
        assert x.shape == y.shape and np.array_equal(x, y), f


def test_ray_folds_equal_the_serial_run(tmp_path: Path, ray_cluster: object, runner: CliRunner) -> None:
    data = make_competition(tmp_path / "data")
    m = member(epochs=2, sampler={"kind": "weighted"})
    serial = _serial(tmp_path / "serial", data, "cnx", m)

    cfg = write_config(tmp_path / "ray" / "kit.yaml", data, {"cnx": m})
    r = invoke(runner, ["train", "-c", str(cfg), "--ray", "auto"], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "2 fold(s) sent to Ray, 1 CPU(s) each" in r.output
    assert "cnx fold 1 epoch 2/2" in r.output  # the workers' report lines come back to the driver
    remote = tmp_path / "ray" / "work" / "members" / "cnx"
    _assert_equal_members(serial, remote)
    run = next((tmp_path / "ray" / "work" / "runs" / "cnx").iterdir())
    for f in (0, 1):  # written by the driver: weights, logits, done.json; no resumable state left
        assert {p.name for p in (run / f"fold{f}").iterdir()} == {
            "best.pt",
            "oof.npy",
            "test.npy",
            "done.json",
        }

    # a second call finds every fold done and sends nothing
    r = invoke(runner, ["train", "-c", str(cfg), "--ray", "auto"], cwd=tmp_path)
    assert r.exit_code == 0 and "sent to Ray" not in r.output and "done earlier" in r.output


def test_a_worker_killed_mid_fold_is_retried(tmp_path: Path, ray_cluster: object) -> None:
    data = make_competition(tmp_path / "data")
    m = member(epochs=4, batch_size=4)
    serial = _serial(tmp_path / "serial", data, "raykill", m)

    cfg = load_config(write_config(tmp_path / "ray" / "kit.yaml", data, {"raykill": m}))
    run_hash = next((tmp_path / "serial" / "work" / "runs" / "raykill").iterdir()).name
    rep, errors = NullReporter(), []

    def drive() -> None:
        try:
            train_in_process(cfg, ["raykill"], rep, ray="auto")
        except BaseException as e:  # surfaced by the assertion below
            errors.append(e)

    driver = threading.Thread(target=drive)
    driver.start()
    # fold 0's task works in kit-ray-raykill-HASH-fold0-pidPID-*; kill its worker once epoch 1 is saved
    pattern = f"kit-ray-raykill-{run_hash}-fold0-pid*"
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and time.monotonic() < deadline and driver.is_alive():
        for d in Path(tempfile.gettempdir()).glob(pattern):
            if (d / "last.pt").exists():
                killed = int(d.name.split("-pid")[1].split("-")[0])
                os.kill(killed, signal.SIGKILL)
                break
        time.sleep(0.05)
    driver.join(timeout=300)
    assert killed is not None, "fold 0 finished before its worker could be killed"
    assert not errors, errors
    trained_on = [line for line in rep.lines if line.startswith("raykill fold 0: trained on")]
    assert len(trained_on) == 1 and f"(pid {killed})" not in trained_on[0]  # the retry, in another worker
    _assert_equal_members(serial, cfg.workdir / "members" / "raykill")
    for d in Path(tempfile.gettempdir()).glob(f"kit-ray-raykill-{run_hash}-*"):  # the killed task's scratch
        import shutil

        shutil.rmtree(d, ignore_errors=True)


def test_scale_out_bad_inputs(tmp_path: Path, runner: CliRunner) -> None:
    data = make_competition(tmp_path / "data")
    probe = {"kind": "clip_probe", "model": "ViT-B-32", "epochs": 1}
    cfg = write_config(tmp_path / "kit.yaml", data, {"cnx": member(), "probe": probe})

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    r = invoke(runner, ["train", "cnx", "-c", str(cfg), "--ray", f"127.0.0.1:{port}"], cwd=tmp_path)
    assert time.perf_counter() - t0 < 10
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"--ray 127.0.0.1:{port}: no Ray cluster answers at 127.0.0.1:{port}" in r.output
    assert "ray start --head" in r.output

    r = invoke(runner, ["train", "probe", "-c", str(cfg), "--ddp", "2"], cwd=tmp_path)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "--ddp: member 'probe' is kind 'clip_probe', which cannot train under DDP" in r.output
    assert "`kit train probe`" in r.output

    r = invoke(runner, ["train", "cnx", "-c", str(cfg), "--ddp", "2", "--ray", "auto"], cwd=tmp_path)
    assert r.exit_code == 1 and "--ddp and --ray do not combine" in r.output and "drop --ddp" in r.output

    r = invoke(runner, ["train", "cnx", "-c", str(cfg), "--ddp", "3"], cwd=tmp_path)
    assert r.exit_code == 1 and "members.cnx.batch_size (8) is the global batch" in r.output
    assert "--set members.cnx.batch_size=6" in r.output

    import torch

    if not torch.cuda.is_available():  # SyncBatchNorm is CUDA-only in torch
        r = invoke(
            runner, ["train", "cnx", "-c", str(cfg), "--ddp", "2", "--set", "members.cnx.sync_bn=true"]
        )
        assert r.exit_code == 1 and "members.cnx.sync_bn" in r.output and "sync_bn: false" in r.output
    assert not (tmp_path / "work" / "members").exists()
