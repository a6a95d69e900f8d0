"""`kit submit`, `kit check-submission`, `kit submissions` end to end on the real demo competition."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kit.artifacts.member import Expected, artifact_id, write_member
from kit.cli.app import app
from kit.config.load import load_config
from kit.metrics.scores import softmax
from kit.workspace import Workspace, open_workspace

KIT_YAML = """competition:
  name: digits-demo
  root: {root}
  train: train.csv
  test: test.csv
  sample_submission: {sample}
  id_column: id
  image_column: img_path
  label_column: label
  group_column: writer
  classes: [zero, one, two, three, four, five, six, seven, eight, nine]
  metric: weighted_f1
folds:
  k: 3
workdir: {workdir}
"""


@dataclass
class Demo:
    dir: Path
    config: Path
    ws: Workspace
    test_logits: np.ndarray  # [n_test, 2 views, 10]
    pooled: float


def write_config(path: Path, root: Path, workdir: Path, sample: str = "sample_submission.csv") -> Path:
    path.write_text(KIT_YAML.format(root=root, sample=sample, workdir=workdir), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Demo:
    """The real demo competition (conftest's build_demo, shared), a kit.yaml and one member with random logits."""
    base = tmp_path_factory.mktemp("submit_demo")
    root = demo_dir
    config = write_config(base / "kit.yaml", root, base / "work")
    ws = open_workspace(load_config(config))
    assert ws.test is not None
    rng = np.random.default_rng(0)
    n_c = len(ws.classes)
    test_logits = rng.normal(scale=3.0, size=(len(ws.test), 2, n_c)).astype(np.float32)
    write_member(
        ws.workdir,
        "m",
        oof=rng.normal(size=(len(ws.train), 2, n_c)),
        test=test_logits,
        views=["plain", "hflip"],
        classes=ws.classes,
        fingerprints=ws.fingerprints(),
        config={"kind": "timm"},
        metrics={"metric": "weighted_f1", "pooled": {"weighted_f1": 0.4321, "accuracy": 0.5}},
        timings={},
    )
    return Demo(base, config, ws, test_logits, 0.4321)


def write_blend(
    workdir: Path,
    name: str,
    test_probs: np.ndarray,
    e: Expected,
    n_train: int,
    nested: float,
    aware: float | None = None,
) -> None:
    """A blend result folder exactly as the contract in kit/blend describes it (`aware`: its
    selection-aware estimate; None: a blend from a kit that did not record one)."""
    d = workdir / "blends" / name
    d.mkdir(parents=True, exist_ok=True)
    c = len(e.classes)
    np.save(d / "oof_probs.npy", np.full((n_train, c), 1.0 / c, dtype=np.float32))
    np.save(d / "test_probs.npy", test_probs.astype(np.float32))
    winner = {
        "name": name,
        "metric": "weighted_f1",
        "blender": "mean",
        "members": ["m"],
        "views": {"m": ["plain", "hflip"]},
        "weights": {"m": 1.0},
        "postprocess": {},
        "nested_score": nested,
        "insample_score": nested + 0.01,
        **({} if aware is None else {"selection_aware_score": aware, "selection_aware_interval": [0.8, 0.9]}),
        "classes": e.classes,
        **e.fingerprints.to_json(),
        "member_artifacts": {"m": artifact_id(workdir, "m")},
        "created": "2025-01-01T00:00:00",
    }
    (d / "winner.json").write_text(json.dumps(winner), encoding="utf-8")


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.output


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return list(csv.reader(f))


def test_submit_member_end_to_end(demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "subs" / "m.csv"
    code, output = run("submit", "--member", "m", "-c", str(demo.config), "--out", str(out))
    assert code == 0, output
    assert "146 rows, label" in output and "0.4321" in output

    rows = read_rows(out)
    sample = read_rows(demo.ws.cfg.competition.sample_submission)  # type: ignore[arg-type]
    assert rows[0] == ["id", "label"]
    assert [r[0] for r in rows[1:]] == [r[0] for r in sample[1:]]
    # mean over views of softmax(logits), argmax, mapped to the sample's ids
    probs = softmax(demo.test_logits.astype(np.float64)).mean(axis=1)
    want = {i: demo.ws.classes[c] for i, c in zip(demo.ws.test.ids, probs.argmax(1).tolist(), strict=True)}  # type: ignore[union-attr]
    assert {r[0]: r[1] for r in rows[1:]} == want

    side = json.loads((out.parent / "m.csv.json").read_text("utf-8"))
    assert side["source"]["kind"] == "member" and side["source"]["name"] == "m"
    assert side["cv_score"] == pytest.approx(demo.pooled) and side["metric"] == "weighted_f1"
    assert side["fingerprints"]["folds"] == demo.ws.folds.fingerprint
    assert side["fingerprints"]["test_ids"] == demo.ws.test.ids_fingerprint()  # type: ignore[union-attr]
    assert side["n_rows"] == 146 and side["kind"] == "label"

    code, output = run("check-submission", str(out), "-c", str(demo.config))
    assert code == 0, output
    assert "146 rows" in output

    code, output = run("submissions", "--dir", str(out.parent))
    assert code == 0, output
    assert "m.csv" in output and "member m" in output and "0.4321" in output


def test_submit_blend_default_path_and_listing(
    demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    assert demo.ws.test is not None
    e = demo.ws.expected()
    probs = np.random.default_rng(1).dirichlet(np.ones(10), size=len(demo.ws.test))
    write_blend(demo.ws.workdir, "all", probs, e, len(demo.ws.train), nested=0.9, aware=0.8765)
    code, output = run("submit", "ensembles/all.yaml", "-c", str(demo.config))
    assert code == 0, output
    written = sorted((tmp_path / "submissions").glob("all-*.csv"))
    assert len(written) == 1 and written[0].name.count("-") == 2  # all-YYYYmmdd-HHMMSS.csv
    rows = read_rows(written[0])
    want = dict(zip(demo.ws.test.ids, [demo.ws.classes[c] for c in probs.argmax(1)], strict=True))
    assert {r[0]: r[1] for r in rows[1:]} == want
    side = json.loads(Path(str(written[0]) + ".json").read_text("utf-8"))
    assert side["source"]["kind"] == "blend" and side["cv_score"] == pytest.approx(0.8765)  # selection-aware
    assert side["source"]["nested_score"] == pytest.approx(0.9)

    code, output = run("submit", "--member", "m", "-c", str(demo.config))
    assert code == 0, output
    code, output = run("submissions")
    assert code == 0, output
    # best selection-aware/pooled CV first
    assert output.index("blend all") < output.index("member m")
    assert "0.8765" in output and "0.4321" in output


def test_check_submission_failures_name_file_and_line(demo: Demo, tmp_path: Path) -> None:
    sample = read_rows(demo.ws.cfg.competition.sample_submission)  # type: ignore[arg-type]
    rows = [r[:] for r in sample]
    rows[3][1] = "eleven"
    rows[5][1] = ""
    del rows[7]
    bad = tmp_path / "bad.csv"
    with bad.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    code, output = run("check-submission", str(bad), "-c", str(demo.config))
    assert code == 1
    assert str(bad) in output.replace("\n", "") or "bad.csv" in output
    assert "3 problem(s)" in output
    assert f"line 4 (id '{rows[3][0]}'): 'eleven' is not a class" in output
    assert f"line 6 (id '{rows[5][0]}'): empty or NaN value in column 'label'" in output
    assert f"id '{sample[7][0]}' (sample line 8) is missing" in output


def test_submit_refuses_unmatched_sample_ids_and_writes_nothing(demo: Demo, tmp_path: Path) -> None:
    src = demo.ws.cfg.competition.sample_submission
    assert src is not None
    broken = tmp_path / "sample_extra.csv"
    shutil.copy(src, broken)
    with broken.open("a", encoding="utf-8") as f:
        f.write("TEST_999,zero\n")
    n_lines = len(broken.read_text("utf-8").splitlines())
    config = write_config(tmp_path / "kit.yaml", demo.ws.cfg.competition.root, demo.ws.workdir, str(broken))
    out = tmp_path / "subs" / "x.csv"
    code, output = run("submit", "--member", "m", "-c", str(config), "--out", str(out))
    assert code == 1
    assert f"line {n_lines}: id 'TEST_999'" in output
    assert not out.exists() and not out.parent.exists()


def test_submit_refuses_nan_blend_and_missing_sources(demo: Demo, tmp_path: Path) -> None:
    assert demo.ws.test is not None
    probs = np.random.default_rng(2).dirichlet(np.ones(10), size=len(demo.ws.test))
    probs[5] = np.nan
    write_blend(demo.ws.workdir, "broken", probs, demo.ws.expected(), len(demo.ws.train), nested=0.5)
    out = tmp_path / "b.csv"
    code, output = run("submit", "ensembles/broken.yaml", "-c", str(demo.config), "--out", str(out))
    assert code == 1
    assert "NaN" in output or "nan" in output
    assert not out.exists()

    code, output = run("submit", "--member", "nope", "-c", str(demo.config), "--out", str(out))
    assert code == 1 and "kit train nope" in output
    code, output = run("submit", "ensembles/ghost.yaml", "-c", str(demo.config), "--out", str(out))
    assert code == 1 and "kit blend ensembles/ghost.yaml" in output
    code, output = run("submit", "-c", str(demo.config))
    assert code == 1 and "--member" in output
    assert not out.exists() and list(tmp_path.iterdir()) == []
