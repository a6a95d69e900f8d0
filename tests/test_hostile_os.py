"""`kit blend` and `kit submit` on a real read-only or full disk (issue 27, item 9): a message naming the path
and the fix, exit 1, no traceback, and nothing half-written. The disks are real: a private mount namespace
makes a folder a full tmpfs or a read-only bind mount (tests/conftest.py kit_on_limited_disk)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import invoke, kit_on_limited_disk
from test_reliability_files import snapshot
from train_helpers import known_member, make_competition, member, write_relative_config

from kit.config.load import read_yaml


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with relative paths (so a copy works on its own): one tiny member, trained and blended."""
    from typer.testing import CliRunner

    base = tmp_path_factory.mktemp("os-project")
    data = make_competition(base / "data", n_test=6)
    rows = [line.split(",")[0] for line in (data / "test.csv").read_text().splitlines()[1:]]
    (data / "sample_submission.csv").write_text("id,label\n" + "".join(f"{i},cat\n" for i in rows))
    write_relative_config(base, {"cnx": member()})
    (base / "ensembles").mkdir()
    (base / "ensembles" / "all.yaml").write_text(
        "members: all\nblenders: [{kind: best_single}, {kind: uniform}]\n"
    )
    runner = CliRunner()
    for args in (["train"], ["blend", "ensembles/all.yaml"]):
        r = invoke(runner, args, cwd=base)
        assert r.exit_code == 0, r.output
    return base


@pytest.fixture
def project(trained: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "p"
    shutil.copytree(trained, dst, symlinks=True)
    return dst


def _failed_cleanly(r, *phrases: str) -> str:
    text = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 1, text
    assert "Traceback" not in text and "error:" in text, text
    for p in phrases:
        assert p in text, text
    return text


def _no_temps(folder: Path) -> None:
    left = [p for p in folder.rglob("*") if ".kit-" in p.name and p.name.endswith((".tmp", ".old"))]
    assert not left, left


def test_blend_into_a_read_only_workdir(project: Path) -> None:
    work = project / "work"
    before = snapshot(work)
    r = kit_on_limited_disk(["blend", "ensembles/all.yaml"], project, read_only=[work])
    _failed_cleanly(r, f"{work}/blends/all: Read-only file system", "point `workdir:`")
    assert snapshot(work) == before


def test_blend_onto_a_full_disk_keeps_the_previous_blend(project: Path) -> None:
    blends = project / "work" / "blends"
    before = snapshot(blends)
    r = kit_on_limited_disk(["blend", "ensembles/all.yaml"], project, full=[blends])
    _failed_cleanly(r, f"{blends}/all: No space left on device", "the disk is full")
    assert snapshot(blends) == before  # the earlier blend is whole, no temp folder is left
    _no_temps(blends)
    assert read_yaml(project / "ensembles" / "all.yaml")["members"] == "all"


@pytest.mark.parametrize("where", ["submissions", "project"])
def test_submit_into_a_read_only_folder(project: Path, where: str) -> None:
    subs = project / "submissions"
    if where == "submissions":
        subs.mkdir()
    target = subs if where == "submissions" else project
    r = kit_on_limited_disk(["submit", "ensembles/all.yaml"], project, read_only=[target])
    _failed_cleanly(r, "Read-only file system", "at a writable folder")
    assert "submissions" in r.stderr
    assert not subs.exists() or not any(subs.iterdir())


def test_submit_onto_a_full_disk_leaves_no_csv_without_its_record(project: Path) -> None:
    subs = project / "submissions"
    subs.mkdir()
    (subs / "mine.txt").write_text("a file of mine\n")
    r = kit_on_limited_disk(["submit", "ensembles/all.yaml"], project, full=[subs])
    _failed_cleanly(r, "No space left on device", "the disk is full", f"{'submissions'}/all-")
    assert sorted(p.name for p in subs.iterdir()) == ["mine.txt"]
    # with room again the same command writes the CSV and its sidecar
    r = kit_on_limited_disk(["submit", "ensembles/all.yaml"], project)
    assert r.returncode == 0, r.stderr
    assert len(list(subs.glob("all-*.csv"))) == 1 and len(list(subs.glob("all-*.csv.json"))) == 1


def test_submit_force_on_a_nearly_full_disk_keeps_the_old_csv_and_its_record(tmp_path: Path) -> None:
    """--force replaces a submission: room for the new sidecar but not the new CSV leaves the old CSV with
    its old sidecar (not a CSV without a record, which kit would then refuse to replace)."""
    data = make_competition(tmp_path / "data", size=8, n_test=1500)  # a CSV of several pages
    rows = [line.split(",")[0] for line in (data / "test.csv").read_text().splitlines()[1:]]
    (data / "sample_submission.csv").write_text("id,label\n" + "".join(f"{i},cat\n" for i in rows))
    cfg = write_relative_config(tmp_path, {"m": member()})
    known_member(cfg)
    subs = tmp_path / "subs"
    r = kit_on_limited_disk(["submit", "--member", "m", "--out", "subs/a.csv"], tmp_path)
    assert r.returncode == 0, r.stderr
    before = snapshot(subs)
    assert len(before["a.csv"]) > 3 * 4096 > 4096 > len(before["a.csv.json"])
    known_member(cfg)  # the member again: a new sidecar (its time), the same rows
    r = kit_on_limited_disk(
        ["submit", "--member", "m", "--out", "subs/a.csv", "--force"], tmp_path, full=[subs], room_kb=8
    )
    _failed_cleanly(r, "No space left on device", "subs/a.csv")
    assert snapshot(subs) == before
