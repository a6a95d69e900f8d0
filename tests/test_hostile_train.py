"""Issue 27, training: a `kit train` with nothing to do keeps every member's identity (blends and pseudo-label
sources stay usable), `kit validate` runs train's preflight, `kit tune --storage` inside the workdir works, and
OS errors while training (read-only, full disk, over-long names) end in one clear message with nothing
half-written. All through the real CLI."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import invoke, kit_on_limited_disk, write_csv
from train_helpers import CLASSES, make_competition, member, write_relative_config
from typer.testing import CliRunner

KIT = Path(sys.executable).parent / "kit"


def project(
    base: Path, members: dict, blend: list[str] | None = None, k: int = 2, workdir: str = "work"
) -> Path:
    """The tiny competition with kit.yaml (paths relative to it, workdir `work`) and ensembles/all.yaml."""
    if not (base / "data").exists():
        data = make_competition(base / "data")
        rows = [[f"t{j:03d}", CLASSES[0]] for j in range(8)]
        write_csv(data / "sample_submission.csv", ["id", "label"], rows)
    if blend is not None:
        (base / "ensembles").mkdir(parents=True, exist_ok=True)
        spec = {"members": blend, "blenders": [{"kind": "uniform"}]}
        (base / "ensembles" / "all.yaml").write_text(yaml.safe_dump(spec), "utf-8")
    return write_relative_config(base, members, k=k, workdir=workdir)


def run_kit(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """The real console script in a fresh process (an empty hub cache, offline, as on this machine)."""
    full = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **env}
    return subprocess.run([str(KIT), *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=600)


def meta_bytes(base: Path, name: str) -> bytes:
    return (base / "work" / "members" / name / "meta.json").read_bytes()


# ---------------------------------------------------------------- a member that was not retrained keeps its identity


def test_train_with_nothing_to_do_keeps_blends_and_pseudo_sources(tmp_path: Path, runner: CliRunner) -> None:
    base = tmp_path / "p"
    project(base, {"cnx": member(), "eff": member("test_efficientnet")}, blend=["cnx", "eff"])
    r = invoke(runner, ["train"], cwd=base)
    assert r.exit_code == 0, r.output
    assert invoke(runner, ["blend", "ensembles/all.yaml"], cwd=base).exit_code == 0
    out = tmp_path / "sub.csv"
    submit = ["submit", "ensembles/all.yaml", "--out", str(out), "--force"]
    r = invoke(runner, submit, cwd=base)
    assert r.exit_code == 0, r.output
    before = {n: meta_bytes(base, n) for n in ("cnx", "eff")}
    config_yaml = (base / "work" / "members" / "cnx" / "config.yaml").read_bytes()

    # nothing to do: every fold is kept, no member is rewritten, the blend still submits
    r = invoke(runner, ["train"], cwd=base)
    assert r.exit_code == 0, r.output
    assert "cnx fold 1: done earlier" in r.output and "eff fold 0: done earlier" in r.output
    assert "wrote" not in r.output and "kept" in r.output and "nothing retrained" in r.output
    assert {n: meta_bytes(base, n) for n in ("cnx", "eff")} == before
    assert (base / "work" / "members" / "cnx" / "config.yaml").read_bytes() == config_yaml
    r = invoke(runner, ["train", "--assemble"], cwd=base)
    assert r.exit_code == 0 and "wrote" not in r.output, r.output
    assert {n: meta_bytes(base, n) for n in ("cnx", "eff")} == before
    r = invoke(runner, submit, cwd=base)
    assert r.exit_code == 0, r.output

    # a new member taking pseudo-labels from cnx: `kit train` trains it alone, the blend still submits
    members = {
        "cnx": member(),
        "eff": member("test_efficientnet"),
        "pl": member(pseudo={"source": "member:cnx", "min_confidence": 0.01}),
    }
    project(base, members)
    r = invoke(runner, ["train"], cwd=base)
    assert r.exit_code == 0, r.output
    assert "pl fold 0 epoch 1/1" in r.output and "wrote" in r.output
    assert {n: meta_bytes(base, n) for n in ("cnx", "eff")} == before
    r = invoke(runner, submit, cwd=base)
    assert r.exit_code == 0, r.output
    # ... and its pseudo source keeps its identity: a second `kit train` retrains nothing
    pl_meta = meta_bytes(base, "pl")
    r = invoke(runner, ["train"], cwd=base)
    assert r.exit_code == 0, r.output
    assert "pl fold 0: done earlier" in r.output and "pl fold 1: done earlier" in r.output
    assert "epoch 1/1" not in r.output and meta_bytes(base, "pl") == pl_meta

    # a real retrain (another lr) changes the identity: the blend is refused, naming that member only
    members["eff"] = member("test_efficientnet", lr=0.002)
    project(base, members)
    r = invoke(runner, ["train", "eff"], cwd=base)
    assert r.exit_code == 0, r.output
    assert "eff fold 0 epoch 1/1" in r.output and meta_bytes(base, "eff") != before["eff"]
    r = invoke(runner, submit, cwd=base)
    assert r.exit_code == 1, r.output
    assert "member 'eff' was retrained after the blend was made" in r.output
    assert "member 'cnx'" not in r.output
    shutil.rmtree(base / "work" / "members" / "cnx")
    r = invoke(runner, submit, cwd=base)
    assert r.exit_code == 1 and "member 'cnx' has no artifacts any more" in r.output, r.output


# ---------------------------------------------------------------- `kit validate` runs train's preflight


def test_validate_reports_what_train_preflight_refuses_or_warns(tmp_path: Path, runner: CliRunner) -> None:
    base = tmp_path / "p"
    project(base, {"cnx": member()})
    hub = {"HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "torch")}  # empty caches

    # pretrained weights with no hub and none cached: validate refuses them as train does at once
    sets = ["--set", "members.cnx.pretrained=true"]
    v = run_kit(["validate", "kit.yaml", *sets], base, **hub)
    assert v.returncode == 1, v.stdout + v.stderr
    assert "members.cnx.pretrained: no weights for 'test_convnext'" in v.stderr
    assert "set members.cnx.weights: PATH" in v.stderr and "Traceback" not in v.stderr
    assert not (base / "work").exists()  # validate writes nothing
    t = run_kit(["train", *sets], base, **hub)
    assert t.returncode == 1, t.stdout + t.stderr
    assert "members.cnx.pretrained: no weights for 'test_convnext'" in t.stderr
    assert "epoch" not in t.stdout  # refused before anything trained

    # img_size 7x the images: train's preflight warns, validate shows the same warning (and passes)
    r = invoke(runner, ["validate", "kit.yaml", "--set", "members.cnx.img_size=168"], cwd=base)
    assert r.exit_code == 0, r.output
    assert "warning:" in r.output
    assert "members.cnx.img_size is 168 but the images are at most 24 px (7x upscaled)" in r.output
    r = invoke(runner, ["validate", "kit.yaml"], cwd=base)
    assert r.exit_code == 0 and "upscaled" not in r.output, r.output

    # ... without importing torch for a config that needs no weights
    code = (
        "import sys; from pathlib import Path; from kit.validate import validate_file; "
        "c = validate_file(Path('kit.yaml'), ['members.cnx.img_size=168']); "
        "print(len(c.problems), len(c.warnings), 'torch' in sys.modules)"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=base, capture_output=True, text=True)
    assert p.stdout.split() == ["0", "1", "False"], p.stdout + p.stderr


def test_validate_refuses_caches_that_do_not_fit_on_the_disk(tmp_path: Path) -> None:
    from conftest import kit_on_limited_disk

    base = tmp_path / "p"
    project(base, {"cnx": member()}, workdir="disk/work")  # the workdir is made on a full disk
    r = kit_on_limited_disk(["validate", "kit.yaml"], base, full=[base / "disk"])
    assert r.returncode == 1, r.stdout + r.stderr
    assert "the image caches need 126 KB (cnx: 42 images at 32 px" in r.stderr, r.stderr
    assert "has 0 KB free; lower members.NAME.img_size" in r.stderr


# ---------------------------------------------------------------- `kit tune --storage` in a workdir not made yet


def test_tune_storage_inside_the_workdir_is_created_and_the_hint_works(
    tmp_path: Path, runner: CliRunner
) -> None:
    optuna = pytest.importorskip("optuna")
    space = {"lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}}
    base = tmp_path / "p"
    project(base, {"cnx": member(tta=["plain"], tune=space)})
    args = ["tune", "cnx", "--trials", "1", "--folds", "0"]

    # a folder outside the workdir that does not exist: refused before training, with a hint that works
    r = invoke(runner, [*args, "--storage", "sqlite:///elsewhere/deep/tune.db"], cwd=base)
    assert r.exit_code == 1, r.output
    text = " ".join(r.output.split())
    assert "folder elsewhere/deep does not exist" in text and "Traceback" not in text
    assert not (base / "elsewhere").exists()
    # the URL it suggests instead (run below; the old hint, sqlite:///work/tune.db, failed the same way)
    hint = next(
        w.strip("`,.;()") for w in text.split() if w.startswith("sqlite:///") and "elsewhere" not in w
    )

    # the workdir's own folder, not made yet: kit makes it
    assert not (base / "work").exists()
    r = invoke(runner, [*args, "--storage", "sqlite:///work/tune.db"], cwd=base)
    assert r.exit_code == 0, r.output
    assert "this process finished 1 trial(s)" in r.output
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{base / 'work' / 'tune.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"]

    # the URL the hint named opens and holds the study too
    r = invoke(runner, [*args, "--storage", hint], cwd=base)
    assert r.exit_code == 0, r.output
    assert "this process finished 1 trial(s)" in r.output


def test_unknown_tune_key_lists_the_keys_instead_of_a_missing_doc(tmp_path: Path, runner: CliRunner) -> None:
    base = tmp_path / "p"
    project(base, {"cnx": member(tune={"zzqqxx": [1, 2]})})
    r = invoke(runner, ["validate", "kit.yaml"], cwd=base)
    assert r.exit_code == 1, r.output
    text = " ".join(r.output.split())
    assert "members.cnx.tune.zzqqxx: not a field of the member (TimmMember); its keys: img_size," in text
    assert "docs/config.md" not in text  # there is no such file


# ---------------------------------------------------------------- OS errors while training


def kit_limited(
    args: list[str], cwd: Path, *, full: list[Path] | None = None, read_only: list[Path] | None = None
) -> tuple[int, str, str]:
    """kit_on_limited_disk as (exit code, stdout, stderr); what the run left on a full disk is copied back, so
    the folder shows afterwards what the full disk held."""
    r = kit_on_limited_disk(args, cwd, full=full or [], read_only=read_only or [])
    return r.returncode, r.stdout, r.stderr


def tree(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose member `cnx` was trained (image caches, file hashes, run, member)."""
    base = tmp_path_factory.mktemp("os") / "p"
    project(base, {"cnx": member(tta=["plain"])})
    r = invoke(CliRunner(), ["train"], cwd=base)
    assert r.exit_code == 0, r.output
    return base


def copy_of(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "p"
    shutil.copytree(src, dst)
    return dst


def snapshot(work: Path) -> dict[str, object]:
    """The caches kit keeps: the image arrays' bytes, and the image digests file_hashes.json holds (it must
    parse; its keys, absolute paths with stat data, change when a project is copied)."""
    out: dict[str, object] = {
        str(p.relative_to(work)): p.read_bytes() for p in sorted((work / "cache" / "images").iterdir())
    }
    hashes = json.loads((work / "cache" / "file_hashes.json").read_text("utf-8"))
    out["file_hashes.json"] = sorted({v[-1] for v in hashes["files"].values()})
    return out


def no_temps(paths: list[Path]) -> list[Path]:
    """kit's temporary files and folders among `paths` (kit.artifacts.atomic names them)."""
    from kit.artifacts.atomic import TMP_PATTERN

    return [p for p in paths if TMP_PATTERN.match(p.name)]


def test_read_only_workdir_after_training(trained_once: Path) -> None:
    base = trained_once  # in place (a copy elsewhere records other paths); read-only, it cannot change
    work = base / "work"
    caches = snapshot(work)
    meta = meta_bytes(base, "cnx")
    # nothing to do: nothing needs writing, so a read-only workdir is fine
    rc, out, err = kit_limited(["train"], base, read_only=[work])
    assert rc == 0, out + err
    assert "cnx fold 0: done earlier" in out and "kept" in out and "nothing retrained" in out
    # a changed config needs a new run: refused, naming the folder and the fix
    rc, out, err = kit_limited(["train", "--set", "members.cnx.lr=0.002"], base, read_only=[work])
    assert rc == 1, out + err
    assert "Traceback" not in err and "Read-only file system" in err
    assert str(work / "runs" / "cnx") in err and "point `workdir:`" in err
    assert snapshot(work) == caches and meta_bytes(base, "cnx") == meta


def test_full_cache_disk_with_every_cache_built_trains_nothing_and_passes(trained_once: Path) -> None:
    """Preflight counts only the image caches still to build (it looked them up under another fingerprint and
    refused a full disk that had to hold nothing new)."""
    work = trained_once / "work"
    rc, out, err = kit_limited(["train"], trained_once, full=[work / "cache"])
    assert rc == 0, out + err
    assert "the image caches need" not in err and "nothing retrained" in out


def test_read_only_project_without_a_workdir(tmp_path: Path) -> None:
    base = tmp_path / "p"
    project(base, {"cnx": member(tta=["plain"])})
    rc, out, err = kit_limited(["train"], base, read_only=[base])
    assert rc == 1, out + err
    assert "Traceback" not in err and "Read-only file system" in err
    assert str(base / "work") in err and "point `workdir:`" in err
    assert not (base / "work").exists()


def test_full_disk_under_the_workdir_while_training(trained_once: Path, tmp_path: Path) -> None:
    """The caches are built; the disk holding workdir/runs is full when the fold's checkpoint is written."""
    base = copy_of(trained_once, tmp_path)
    work = base / "work"
    shutil.rmtree(work / "members")
    (run,) = (work / "runs" / "cnx").iterdir()
    for f in run.glob("fold*"):
        shutil.rmtree(f) if f.is_dir() else f.unlink()  # the run's identity (run.json) stays: training starts
    caches = snapshot(work)
    for extra in ([], ["--jobs", "2"]):
        rc, out, err = kit_limited(["train", *extra], base, full=[work / "runs"])
        assert rc == 1, out + err
        assert "Traceback" not in err and "No space left on device" in err, err
        assert str(run / "fold") in err and "the disk is full" in err
        assert "finished folds are kept" in err
        assert no_temps(tree(work)) == [], tree(work)
        assert not (work / "members").exists()  # no partial member folder
        assert snapshot(work) == caches  # caches and file_hashes.json untouched
        for npy in (work / "cache" / "images").glob("*-d3.npy"):  # each store's data and its index, whole
            data, index = np.load(npy, mmap_mode="r"), np.load(npy.with_name(npy.stem + ".index.npy"))
            assert data.ndim == 1 and len(data) == int((index[:, 1] * index[:, 2]).sum() * 3)


def test_full_disk_for_a_new_run_leaves_no_empty_run_folder(trained_once: Path, tmp_path: Path) -> None:
    base = copy_of(trained_once, tmp_path)
    work = base / "work"
    shutil.rmtree(work / "members")
    shutil.rmtree(work / "runs")
    (work / "runs").mkdir()
    rc, out, err = kit_limited(["train"], base, full=[work / "runs"])
    assert rc == 1, out + err
    assert "Traceback" not in err and "run.json" in err and "the disk is full" in err
    assert [p.relative_to(work / "runs").parts for p in tree(work / "runs")] == [("cnx",)]


def test_full_disk_for_a_new_workdir(tmp_path: Path) -> None:
    base = tmp_path / "p"
    project(base, {"cnx": member(tta=["plain"])}, workdir="disk/work")
    disk = base / "disk"
    rc, out, err = kit_limited(["train"], base, full=[disk])
    assert rc == 1, out + err
    assert "Traceback" not in err and "(no path given)" not in err
    assert str(disk / "work") in err and "the disk is full" in err
    assert no_temps(tree(disk)) == [], tree(disk)


def test_full_disk_when_the_member_is_written(trained_once: Path, tmp_path: Path) -> None:
    base = copy_of(trained_once, tmp_path)
    work = base / "work"
    shutil.rmtree(work / "members")
    (work / "members").mkdir()
    rc, out, err = kit_limited(["train"], base, full=[work / "members"])
    assert rc == 1, out + err
    assert "Traceback" not in err and str(work / "members" / "cnx") in err and "the disk is full" in err
    assert tree(work / "members") == []  # no partial member, no temp


def test_train_image_name_over_255_bytes(tmp_path: Path, runner: CliRunner) -> None:
    base = tmp_path / "p"
    cfg = project(base, {"cnx": member(tta=["plain"])})
    with (base / "data" / "train.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    long = "train/" + "a" * 300 + ".png"
    rows[5][1] = long
    write_csv(base / "data" / "train.csv", rows[0], rows[1:])
    for cmd in (["train"], ["validate", str(cfg)]):
        r = invoke(runner, cmd, cwd=base)
        assert r.exit_code == 1, r.output
        text = " ".join(r.output.split())
        assert "train.csv row 6" in text and "255 bytes" in text and "rename" in text, text
        assert long not in text  # the value is bounded
    assert not (base / "work" / "members").exists()


def test_validate_after_training_writes_nothing_and_assigns_no_folds(
    trained_once: Path, tmp_path: Path
) -> None:
    """With the image caches built, validate fingerprints the images to tell which caches exist: through the
    digests kit train cached, never writing them (a copied project has new inodes: every image is re-hashed),
    and without assigning folds (scikit-learn's splitter) or importing torch."""
    base = copy_of(trained_once, tmp_path)
    before = {p: p.read_bytes() for p in tree(base / "work") if p.is_file()}
    code = (
        "import sys\n"
        "from kit.cli.app import main\n"
        "sys.argv = ['kit', 'validate', 'kit.yaml']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "print('HEAVY', [m for m in ('torch', 'timm', 'sklearn', 'numba') if m in sys.modules])\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-c", code], cwd=base, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "HEAVY []" in r.stdout, r.stdout + r.stderr
    assert {p: p.read_bytes() for p in tree(base / "work") if p.is_file()} == before
