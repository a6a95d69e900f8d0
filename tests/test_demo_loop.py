"""`kit demo` end to end through the real CLI: data -> train every member -> blend -> submit -> score."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import invoke

REPO = Path(__file__).resolve().parents[1]


def copy_repo_config(dst: Path) -> Path:
    shutil.copy(REPO / "kit.yaml", dst / "kit.yaml")
    shutil.copytree(REPO / "ensembles", dst / "ensembles")
    return dst / "kit.yaml"


def run_demo_cli(runner, tmp_path: Path, overrides: list[str]) -> tuple[str, Path]:
    cfg = copy_repo_config(tmp_path)
    args = ["demo", "--out", str(tmp_path / "data"), "-c", str(cfg)]
    for o in overrides:
        args += ["--set", o]
    r = invoke(runner, args, cwd=tmp_path)
    assert r.exit_code == 0, r.output
    subs = sorted((tmp_path / "submissions").glob("all-*.csv"))
    assert len(subs) == 1, r.output
    return r.output, subs[0]


def read_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def held_back_scores(output: str) -> dict[str, float]:
    m = re.search(r"weighted F1 ([\d.]+), macro F1 ([\d.]+), accuracy ([\d.]+)", output.replace("\n", " "))
    assert m, output
    return dict(zip(("weighted_f1", "macro_f1", "accuracy"), map(float, m.groups()), strict=True))


def check_loop_artifacts(tmp_path: Path, sub: Path) -> None:
    sample = read_rows(tmp_path / "data" / "sample_submission.csv")
    rows = read_rows(sub)
    assert rows[0] == sample[0] and [r[0] for r in rows] == [r[0] for r in sample]
    words = {r[2] for r in read_rows(tmp_path / "data" / "train.csv")[1:]}
    assert {r[1] for r in rows[1:]} <= words  # every label is a class name
    side = json.loads(sub.with_name(sub.name + ".json").read_text())
    assert (
        side["source"]["kind"] == "blend"
        and 0.0 < side["cv_score"] <= 1.0
        and side["n_rows"] == len(rows) - 1
    )
    for member in ("convnext", "swin", "effnet", "clip"):
        assert (tmp_path / "work" / "members" / member).is_dir()
    assert (tmp_path / "work" / "blends" / "all").is_dir()


def test_demo_whole_loop_short(tmp_path: Path, runner) -> None:
    """The full loop with short training (the default tier); the slow tier runs it at full length."""
    out, sub = run_demo_cli(
        runner,
        tmp_path,
        [
            "members.convnext.epochs=2",
            "members.swin.epochs=2",
            "members.effnet.epochs=2",
            "members.clip.epochs=5",
        ],
    )
    check_loop_artifacts(tmp_path, sub)
    scores = held_back_scores(out)
    assert scores["accuracy"] > 0.2  # ten classes: chance is 0.1 (majority class ~0.2 in this long tail)


@pytest.mark.slow
def test_demo_whole_loop_full(tmp_path: Path, runner) -> None:
    out, sub = run_demo_cli(runner, tmp_path, [])
    check_loop_artifacts(tmp_path, sub)
    scores = held_back_scores(out)
    assert scores["weighted_f1"] >= 0.95 and scores["macro_f1"] >= 0.93, scores
