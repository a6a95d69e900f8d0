"""The embedded demo competition: real digits scans, long-tailed, Dacon layout, groups, held-back answers."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from conftest import invoke
from PIL import Image

from kit.demo.digits import CLASS_WORDS


def read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_demo_layout_and_long_tail(demo_dir: Path) -> None:
    train, test = read(demo_dir / "train.csv"), read(demo_dir / "test.csv")
    answers, sample = (
        read(demo_dir / "answers" / "test_answers.csv"),
        read(demo_dir / "sample_submission.csv"),
    )
    assert list(train[0]) == ["id", "img_path", "label", "writer"] and list(test[0]) == ["id", "img_path"]
    assert [r["id"] for r in sample] == [r["id"] for r in test] == [r["id"] for r in answers]
    assert test[0]["id"] == "TEST_000"
    counts = np.array([sum(r["label"] == w for r in train + answers) for w in CLASS_WORDS])
    assert counts.min() >= 4 and 12 <= counts.max() / counts.min() <= 25  # imbalance ratio about 20
    assert all(r["writer"] for r in train) and len({r["writer"] for r in train}) > 5
    img = Image.open(demo_dir / train[0]["img_path"])
    assert img.size == (32, 32) and len(train) + len(test) == counts.sum()


def test_kit_demo_data_only_via_cli(tmp_path: Path, runner) -> None:
    r = invoke(runner, ["demo", "--data-only", "--out", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    data = tmp_path / "d" / "data"
    assert (data / "train.csv").exists() and len(list((data / "test").iterdir())) > 50
    assert (tmp_path / "d" / "kit.yaml").is_file() and (tmp_path / "d" / "ensembles" / "all.yaml").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left
