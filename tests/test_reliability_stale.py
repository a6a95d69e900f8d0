"""Issue 12, items 5, 6, 7, 15, 16: stale results are refused or rebuilt, killed writers leave no temp files
behind, and two `kit train` processes on one workdir train every fold once. All through the real CLI."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import invoke, write_csv
from train_helpers import CLASSES, make_competition, member, write_relative_config
from typer.testing import CliRunner

import kit

REPO = Path(kit.__file__).resolve().parents[1]


def make_project(base: Path, k: int = 2, **member_kw: object) -> Path:
    """The tiny competition with stored (not deflated) train PNGs, so every train file has the same size."""
    from PIL import Image

    data = make_competition(base / "data")
    for p in sorted((data / "train").glob("*.png")):
        with Image.open(p) as im:
            a = np.asarray(im.convert("RGB"))
        Image.fromarray(a).save(p, compress_level=0)
    test_ids = [f"t{j:03d}" for j in range(8)]
    write_csv(data / "sample_submission.csv", ["id", "label"], [[t, CLASSES[0]] for t in test_ids])
    (base / "ensembles").mkdir(parents=True, exist_ok=True)
    spec = {"members": ["cnx"], "blenders": [{"kind": "uniform"}]}
    (base / "ensembles" / "all.yaml").write_text(yaml.safe_dump(spec), "utf-8")
    return write_relative_config(base, {"cnx": member(**member_kw)}, k=k)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose member `cnx` is trained and blended into `all` (copied by each test before changes)."""
    base = tmp_path_factory.mktemp("stale") / "project"
    make_project(base)
    runner = CliRunner()
    r = invoke(runner, ["train", "cnx"], cwd=base)
    assert r.exit_code == 0, r.output
    r = invoke(runner, ["blend", "ensembles/all.yaml"], cwd=base)
    assert r.exit_code == 0, r.output
    return base


def copy_project(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "project"
    shutil.copytree(src, dst)
    return dst


def swapped(y: np.ndarray, i: int, j: int) -> np.ndarray:
    out = y.copy()
    out[i], out[j] = y[j], y[i]
    return out


def train_rows(base: Path) -> list[list[str]]:
    import csv

    with (base / "data" / "train.csv").open(newline="") as f:
        return list(csv.reader(f))


# ---------------------------------------------------------------- item 5: content fingerprints


def test_changed_labels_with_same_ids_and_folds_refuse_members_and_blends(
    trained: Path, tmp_path: Path, runner: CliRunner
) -> None:
    from kit.cv.folds import assign_folds

    base = copy_project(trained, tmp_path)
    rows = train_rows(base)
    y = np.array([CLASSES.index(r[2]) for r in rows[1:]])
    before = assign_folds(y, 2, 0, None, CLASSES)
    # two labels corrected (swapped) such that the folds stay exactly the same
    n = len(y)
    same_folds = (
        (i, j)
        for i in range(n)
        for j in range(i + 1, n)
        if y[i] != y[j] and np.array_equal(assign_folds(swapped(y, i, j), 2, 0, None, CLASSES), before)
    )
    pair = next(same_folds, None)
    assert pair is not None, "no label swap keeps the folds; the tiny competition changed"
    i, j = pair
    rows[1 + i][2], rows[1 + j][2] = rows[1 + j][2], rows[1 + i][2]
    write_csv(base / "data" / "train.csv", rows[0], rows[1:])

    r = invoke(runner, ["blend", "ensembles/all.yaml"], cwd=base)
    assert r.exit_code == 1
    assert "member 'cnx'" in r.output and "run `kit train cnx`" in r.output
    assert "the train labels or groups changed since it was made (same ids)" in r.output
    assert "folds differ" not in r.output and "train ids differ" not in r.output
    r = invoke(runner, ["runs"], cwd=base)
    assert r.exit_code == 0 and "cnx is stale: the train labels or groups changed" in r.output, r.output

    out = tmp_path / "sub.csv"
    r = invoke(runner, ["submit", "--member", "cnx", "--out", str(out)], cwd=base)
    assert r.exit_code == 1 and "the train labels or groups changed" in r.output
    r = invoke(runner, ["submit", "ensembles/all.yaml", "--out", str(out)], cwd=base)
    assert r.exit_code == 1
    assert (
        "blend 'all'" in r.output
        and "the train labels or groups changed since the blend was made" in r.output
    )
    assert "`kit train cnx`), then run `kit blend ensembles/all.yaml`" in r.output
    assert not out.exists()

    # the command named rebuilds it: retrain (the image cache keys on pixels only: no image decoded again),
    # reblend, submit
    caches = sorted((base / "work" / "cache" / "images").glob("*.npy"))
    r = invoke(runner, ["train", "cnx"], cwd=base)
    assert r.exit_code == 0 and "done earlier" not in r.output, r.output
    assert sorted((base / "work" / "cache" / "images").glob("*.npy")) == caches
    r = invoke(runner, ["blend", "ensembles/all.yaml"], cwd=base)
    assert r.exit_code == 0, r.output
    r = invoke(runner, ["submit", "ensembles/all.yaml", "--out", str(out)], cwd=base)
    assert r.exit_code == 0, r.output
    assert out.exists()


def test_replaced_test_images_refuse_submit(trained: Path, tmp_path: Path, runner: CliRunner) -> None:
    from conftest import write_image

    base = copy_project(trained, tmp_path)
    write_image(base / "data" / "test" / "t003.png", seed=99, size=(24, 24))  # same id, other picture

    out = tmp_path / "sub.csv"
    for args in (["submit", "--member", "cnx"], ["submit", "ensembles/all.yaml"]):
        r = invoke(runner, [*args, "--out", str(out)], cwd=base)
        assert r.exit_code == 1, r.output
        assert "test image files changed since" in r.output
        assert "its test predictions are for the old images" in r.output
    assert not out.exists()
    r = invoke(runner, ["blend", "ensembles/all.yaml"], cwd=base)
    assert r.exit_code == 1 and "test image files changed since it was made" in r.output


def test_swapped_equal_size_train_images_retrain_and_rebuild_the_cache(
    trained: Path, tmp_path: Path, runner: CliRunner
) -> None:
    from kit.config.load import load_config
    from kit.data.cache import Geometry, ImageStore, decode_path
    from kit.workspace import open_workspace

    base = copy_project(trained, tmp_path)
    a, b = base / "data" / "train" / "000.png", base / "data" / "train" / "033.png"  # a cat and an eel
    assert a.stat().st_size == b.stat().st_size and a.read_bytes() != b.read_bytes()
    tmp = a.with_name("swap.tmp")
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)
    caches_before = set((base / "work" / "cache" / "images").glob("train-*.npy"))

    r = invoke(runner, ["blend", "ensembles/all.yaml"], cwd=base)
    assert r.exit_code == 1 and "train image files changed since it was made" in r.output

    r = invoke(runner, ["train", "cnx"], cwd=base)
    assert r.exit_code == 0, r.output
    assert "done earlier" not in r.output and "cnx fold 0 epoch 1/1" in r.output
    ws = open_workspace(load_config(base / "kit.yaml"), write=False)
    new = set((base / "work" / "cache" / "images").glob("train-*.npy")) - caches_before
    assert [p.name.split("-")[1] for p in new] == [ws.train_images_fingerprint] * 2  # data and index
    data = next(p for p in new if not p.name.endswith(".index.npy"))
    index = np.load(data.with_name(data.stem + ".index.npy"))
    resample = data.stem.split("-")[-2]  # train-FP-GEOMETRY-RESAMPLE-dVERSION
    for path in (a, b):
        row = ws.train.paths.index(path)
        g = Geometry("shorter_side", int(index[row, 1]))  # the images are square: stored at cache_size
        store = ImageStore(data, index, g)
        assert np.array_equal(store.image(row), decode_path(path, g, resample))
    r = invoke(runner, ["blend", "ensembles/all.yaml"], cwd=base)
    assert r.exit_code == 0, r.output


def test_file_hashes_are_cached_by_stat_and_catch_a_swap(tmp_path: Path) -> None:
    from conftest import write_image

    from kit.data.fingerprint import FileHashes

    files = [write_image(tmp_path / "img" / f"{i}.bmp", seed=i) for i in range(6)]  # BMPs: equal sizes
    cache = tmp_path / "hashes.json"
    cold = FileHashes(cache)
    first = cold.digests(files)
    assert cold.hashed == 6 and len(set(first)) == 6
    warm = FileHashes(cache)
    assert warm.digests(files) == first and warm.hashed == 0
    os.rename(files[0], tmp_path / "x")
    os.rename(files[1], files[0])
    os.rename(tmp_path / "x", files[1])
    again = FileHashes(cache)
    swapped = again.digests(files)
    assert swapped[:2] == [first[1], first[0]] and swapped[2:] == first[2:] and again.hashed == 2


# ---------------------------------------------------------------- item 6: changed member config


def test_changed_member_config_refused_unless_allow_stale(
    trained: Path, tmp_path: Path, runner: CliRunner
) -> None:
    base = copy_project(trained, tmp_path)
    write_relative_config(base, {"cnx": member(lr=0.002, num_workers=1)})
    out = tmp_path / "sub.csv"

    r = invoke(runner, ["submit", "--member", "cnx", "--out", str(out)], cwd=base)
    assert r.exit_code == 1
    assert "members.cnx.lr: 0.001 -> 0.002" in r.output and "--allow-stale" in r.output
    assert "num_workers" not in r.output  # cannot change results: not stale
    r = invoke(runner, ["submit", "ensembles/all.yaml", "--out", str(out)], cwd=base)
    assert r.exit_code == 1 and "blend 'all'" in r.output and "members.cnx.lr: 0.001 -> 0.002" in r.output
    r = invoke(runner, ["blend", "ensembles/all.yaml"], cwd=base)
    assert r.exit_code == 1 and "members.cnx.lr: 0.001 -> 0.002" in r.output
    assert not out.exists()
    r = invoke(runner, ["runs"], cwd=base)
    assert r.exit_code == 0 and "cnx is stale: members.cnx.lr: 0.001 -> 0.002" in r.output, r.output

    r = invoke(runner, ["submit", "--member", "cnx", "--out", str(out), "--allow-stale"], cwd=base)
    assert r.exit_code == 0, r.output
    assert "warning:" in r.output and "members.cnx.lr: 0.001 -> 0.002" in r.output and out.exists()
    r = invoke(runner, ["blend", "ensembles/all.yaml", "--allow-stale"], cwd=base)
    assert r.exit_code == 0 and "members.cnx.lr: 0.001 -> 0.002" in r.output, r.output

    write_relative_config(base, {"cnx": member(num_workers=1)})  # only a setting that cannot change results
    r = invoke(runner, ["submit", "--member", "cnx", "--out", str(tmp_path / "b.csv")], cwd=base)
    assert r.exit_code == 0 and "warning" not in r.output, r.output


# ---------------------------------------------------------------- item 7: the metric picks the checkpoint


def test_changed_metric_is_a_new_run_not_done_earlier(
    trained: Path, tmp_path: Path, runner: CliRunner
) -> None:
    base = copy_project(trained, tmp_path)
    r = invoke(runner, ["train", "cnx", "--set", "competition.metric=log_loss"], cwd=base)
    assert r.exit_code == 0, r.output
    assert "done earlier" not in r.output
    assert re.search(r"cnx fold 0 epoch 1/1: loss \S+  log_loss", r.output)
    assert len(list((base / "work" / "runs" / "cnx").glob("*/run.json"))) == 2

    # members picked by log_loss are stale for the weighted_f1 config, and the weighted_f1 run is still kept
    r = invoke(runner, ["submit", "--member", "cnx", "--out", str(tmp_path / "s.csv")], cwd=base)
    assert r.exit_code == 1 and 'competition.metric: "log_loss" -> "weighted_f1"' in r.output
    r = invoke(runner, ["train", "cnx"], cwd=base)
    assert r.exit_code == 0 and r.output.count("done earlier") == 2, r.output


# ---------------------------------------------------------------- item 15: temps of killed writers


def test_stale_temps_of_dead_processes_are_removed(trained: Path, tmp_path: Path, runner: CliRunner) -> None:
    from kit.artifacts.atomic import HOST, tmp_name

    base = copy_project(trained, tmp_path)
    images = base / "work" / "cache" / "images"
    target = images / "train-0123456789abcdef-64px-bicubic.npy"
    code = (
        "import sys, time; from pathlib import Path; from kit.artifacts.atomic import tmp_name\n"
        "p = tmp_name(Path(sys.argv[1])); p.write_bytes(b'\\0' * 3_000_000); print(p, flush=True)\n"
        "time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    dead_tmp = Path(proc.stdout.readline().strip())
    assert dead_tmp.exists() and f"kit-{HOST}-{proc.pid}-" in dead_tmp.name
    proc.send_signal(signal.SIGKILL)  # kill -9 in the middle of writing
    proc.wait()

    live_tmp = tmp_name(images / "test.npy")  # this process is alive: its temp stays
    live_tmp.write_bytes(b"x")
    reused = tmp_name(base / "work" / "members" / "cnx")  # our pid, but written before we started: pid reuse
    reused.mkdir()
    (reused / "oof_logits.npy").write_bytes(b"x" * 10)
    os.utime(reused, (time.time() - 10 * 365 * 86400,) * 2)
    other_host = images / f".train.npy.kit-otherhost-{proc.pid}-0badcafe.tmp"
    other_host.write_bytes(b"x")
    not_kits = [images / f".train.npy.{proc.pid}.tmp", images / "notes.tmp", base / "work" / ".cnx.tmp"]
    for p in not_kits:
        p.write_bytes(b"user")

    r = invoke(runner, ["folds"], cwd=base)
    assert r.exit_code == 0, r.output
    assert "removed 2 temporary file(s) that killed kit processes left" in r.output
    assert not dead_tmp.exists() and not reused.exists()
    assert live_tmp.exists() and other_host.exists() and all(p.exists() for p in not_kits)
    assert (base / "work" / "members" / "cnx" / "meta.json").exists()


def test_killed_folder_swap_is_put_back(tmp_path: Path) -> None:
    """kill -9 between atomic_dir's two renames leaves `.NAME...old` and no NAME: the next start restores it."""
    from kit.artifacts.atomic import HOST, clean_stale_temps

    members = tmp_path / "work" / "members"
    old = members / f".cnx.kit-{HOST}-999999999-0123abcd.old"  # pid 999999999: never running
    old.mkdir(parents=True)
    (old / "meta.json").write_text("{}")
    assert clean_stale_temps(tmp_path / "work") == []
    assert (members / "cnx" / "meta.json").read_text() == "{}" and not old.exists()


# ---------------------------------------------------------------- item 16: fold locks


def test_held_fold_is_skipped_and_the_last_finisher_assembles(tmp_path: Path, runner: CliRunner) -> None:
    from filelock import FileLock

    from kit.artifacts.member import load_member
    from kit.config.load import load_config
    from kit.train.fold_loop import run_hash
    from kit.workspace import open_workspace

    base = tmp_path / "project"
    cfg_path = make_project(base, k=3)
    cfg = load_config(cfg_path)
    ws = open_workspace(cfg)
    root = ws.workdir / "runs" / "cnx" / run_hash(ws, cfg.members["cnx"])
    root.mkdir(parents=True)
    with FileLock(str(root / "fold1.lock")):  # another process trains fold 1
        r = invoke(runner, ["train", "cnx"], cwd=base)
        assert r.exit_code == 0, r.output
        assert "cnx fold 1: another kit process is training it; skipped here" in r.output
        assert "fold(s) [1] are still being trained by another kit process" in r.output
        assert "cnx fold 0 epoch 1/1" in r.output and "cnx fold 2 epoch 1/1" in r.output
        assert "cnx fold 1 epoch" not in r.output and "wrote" not in r.output
        assert not (ws.workdir / "members" / "cnx").exists()
    r = invoke(runner, ["train", "cnx"], cwd=base)
    assert r.exit_code == 0, r.output
    assert r.output.count("done earlier") == 2 and "cnx fold 1 epoch 1/1" in r.output
    art = load_member(ws.workdir, "cnx", ws.expected())
    assert np.isfinite(art.oof).all() and art.oof.shape[0] == len(ws.train)


def test_clip_probe_folds_are_locked_too(tmp_path: Path, demo_dir: Path, runner: CliRunner) -> None:
    from filelock import FileLock

    from kit.artifacts.member import load_member
    from kit.config.load import load_config
    from kit.demo.digits import competition_section
    from kit.demo.tiny_clip import write_tiny_clip
    from kit.train.embeddings import encoder_key
    from kit.train.fold_loop import run_hash
    from kit.train.kinds.clip_probe import clip_source
    from kit.workspace import open_workspace

    tiny = write_tiny_clip(tmp_path / "clip-tiny")
    spec = {"kind": "clip_probe", "model": f"local-dir:{tiny}", "epochs": 3, "tta": ["plain"]}
    cfg = {"competition": competition_section(demo_dir), "folds": {"k": 3}, "workdir": "work"}
    (tmp_path / "kit.yaml").write_text(yaml.safe_dump({**cfg, "members": {"clip": spec}}), "utf-8")
    config = load_config(tmp_path / "kit.yaml")
    ws = open_workspace(config)
    m = config.members["clip"]
    root = ws.workdir / "runs" / "clip" / run_hash(ws, m, {"encoder": encoder_key(clip_source("clip", m))})
    root.mkdir(parents=True)
    with FileLock(str(root / "fold0.lock")):
        r = invoke(runner, ["train", "clip"], cwd=tmp_path)
        assert r.exit_code == 0, r.output
        assert "clip fold 0: another kit process is training it; skipped here" in r.output
        assert "clip fold 1: best epoch" in r.output and "clip fold 0: best" not in r.output
        assert not (ws.workdir / "members" / "clip").exists()
    r = invoke(runner, ["train", "clip"], cwd=tmp_path)
    assert r.exit_code == 0 and r.output.count("done earlier") == 2 and "clip fold 0: best" in r.output
    assert load_member(ws.workdir, "clip", ws.expected()).oof.shape == (len(ws.train), 1, 10)


def test_two_concurrent_trains_train_each_fold_once(tmp_path: Path) -> None:
    from kit.artifacts.member import load_member
    from kit.config.load import load_config
    from kit.workspace import open_workspace

    base = tmp_path / "project"
    make_project(base, k=3, epochs=2)
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-c", "from kit.cli.app import main; main()", "train", "cnx"]
    procs = [
        subprocess.Popen(cmd, cwd=base, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    both = "\n".join(outputs)
    for f in range(3):  # each fold's first epoch was trained by exactly one of the two processes
        assert both.count(f"cnx fold {f} epoch 1/2") == 1, both
    trained_by = [sorted({int(f) for f in re.findall(r"cnx fold (\d) epoch 1/2", o)}) for o in outputs]
    print("folds trained per process:", trained_by)
    ws = open_workspace(load_config(base / "kit.yaml"), write=False)
    art = load_member(ws.workdir, "cnx", ws.expected())
    assert art.oof.shape == (len(ws.train), 1, 3) and np.isfinite(art.oof).all()  # default views: plain
    assert not list((ws.workdir / "members").glob(".*"))  # no temp left behind
