"""`kit train` and `kit runs` through the real Typer app, failures included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import invoke
from train_helpers import make_competition, member, write_config
from typer.testing import CliRunner

from kit.config.load import load_config


def test_train_then_runs(tmp_path: Path, runner: CliRunner) -> None:
    data = make_competition(tmp_path / "data")
    cfg = write_config(
        tmp_path / "kit.yaml",
        data,
        {"cnx": member(tta=["plain", "hflip"]), "later": member("test_efficientnet")},
    )
    r = invoke(runner, ["train", "cnx", "-c", str(cfg), "--set", "members.cnx.epochs=2"], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and "fold 1 epoch 2/2" in r.output
    d = tmp_path / "work" / "members" / "cnx"
    assert np.load(d / "oof_logits.npy").shape == (34, 2, 3)
    assert json.loads((d / "meta.json").read_text())["config"]["member"]["epochs"] == 2

    r = invoke(runner, ["runs", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    meta = json.loads((d / "meta.json").read_text())
    assert f"{meta['metrics']['pooled']['weighted_f1']:.4f}" in r.output
    per_view = meta["metrics"]["per_view"]
    assert f"plain {per_view['plain']:.4f}, hflip {per_view['hflip']:.4f}" in r.output
    assert "later: not trained; run `kit train later`" in r.output
    # the pooled score's group-bootstrap interval (the competition metric, plain view)
    from kit.blend.selection import score_interval
    from kit.data.table import load_train
    from kit.metrics.scores import softmax

    train = load_train(load_config(cfg).competition)
    oof = softmax(np.load(d / "oof_logits.npy")[:, 0, :].astype(np.float64))
    point, lo, hi = score_interval("weighted_f1", train.labels, oof, train.groups)
    assert lo <= point <= hi
    assert f"{lo:.4f}-{hi:.4f}" in r.output.replace("\n", "")


def test_bad_inputs_exit_1_with_the_fix(tmp_path: Path, runner: CliRunner) -> None:
    data = make_competition(tmp_path / "data")
    cfg = write_config(tmp_path / "kit.yaml", data, {"cnx": member("convnxt_tiny")})
    r = invoke(runner, ["train", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 1
    assert "members.cnx.model: unknown timm model 'convnxt_tiny'" in r.output
    assert "convnext_tiny" in r.output
    assert not (tmp_path / "work" / "members").exists()

    r = invoke(runner, ["train", "cnxx", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 1 and "did you mean 'cnx'" in r.output

    cfg = write_config(tmp_path / "kit.yaml", data, {"v": member("test_vit", img_size=20)})
    r = invoke(runner, ["train", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 1 and "members.v.img_size" in r.output
