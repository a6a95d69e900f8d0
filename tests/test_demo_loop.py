"""`kit demo` end to end through the real CLI: data -> train every member -> blend -> submit -> score."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from conftest import invoke


def write_user_project(home: Path) -> dict[Path, bytes]:
    """A user's own project in the folder the demo runs from: kit.yaml, work/, submissions/ (must stay as is)."""
    files = {
        home
        / "kit.yaml": b"# the user's own config\ncompetition: {root: comp, train: train.csv}\nworkdir: work\n",
        home / "work" / "folds.csv": b"id,fold\nu1,0\n",
        home / "work" / "members" / "convnext" / "meta.json": b'{"user": true}\n',
        home / "work" / "blends" / "all" / "winner.json": b'{"user": true}\n',
        home / "submissions" / "mine.csv": b"id,label\nu1,cat\n",
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def run_demo_cli(runner, tmp_path: Path, overrides: list[str]) -> tuple[str, Path]:
    """`kit demo --out demo` run from inside a user's project: the demo works only in its own folder."""
    user = write_user_project(tmp_path)
    args = ["demo", "--out", "demo"]
    for o in overrides:
        args += ["--set", o]
    r = invoke(runner, args, cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert {p: p.read_bytes() for p in user} == user  # the user's project is untouched
    assert sorted(p.name for p in (tmp_path / "submissions").iterdir()) == ["mine.csv"]
    subs = sorted((tmp_path / "demo" / "submissions").glob("all-*.csv"))
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
    demo = tmp_path / "demo"
    sample = read_rows(demo / "data" / "sample_submission.csv")
    rows = read_rows(sub)
    assert rows[0] == sample[0] and [r[0] for r in rows] == [r[0] for r in sample]
    words = {r[2] for r in read_rows(demo / "data" / "train.csv")[1:]}
    assert {r[1] for r in rows[1:]} <= words  # every label is a class name
    side = json.loads(sub.with_name(sub.name + ".json").read_text())
    assert (
        side["source"]["kind"] == "blend"
        and 0.0 < side["cv_score"] <= 1.0
        and side["n_rows"] == len(rows) - 1
    )
    for member in ("convnext", "swin", "effnet", "clip"):
        assert (demo / "work" / "members" / member / "meta.json").is_file()
    assert (demo / "work" / "blends" / "all" / "winner.json").is_file()
    assert (demo / ".kit-demo.json").is_file() and (demo / "kit.yaml").is_file()
    page = (demo / "work" / "report.html").read_text("utf-8")
    assert '<meta name="generator" content="kit report">' in page
    assert sub.name in page  # the leaderboard section lists the demo's own submission
    assert page.count('src="data:image/') >= 10 and "http://" not in page and "https://" not in page


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
