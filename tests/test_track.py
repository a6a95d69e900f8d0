"""Experiment tracking writes real TensorBoard event files, a real MLflow file store and a wandb offline run
in tmp_path; the tests read the values back with each tool's own reader."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import invoke
from test_blend import _spec_file, digits, write_members, ws  # noqa: F401  (fixtures)
from train_helpers import make_competition, member, write_config
from typer.testing import CliRunner

from kit.workspace import Workspace

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


def train_tracked(tmp_path: Path, runner: CliRunner, kind: str) -> tuple[Path, dict, list[dict]]:
    """`kit train` of one tiny member with tracking.kind; returns the tracking dir, meta.json, fold histories."""
    data = make_competition(tmp_path / "data", size=16, n_test=4)
    cfg = write_config(tmp_path / "kit.yaml", data, {"cnx": member(epochs=2, tta=["plain"])})
    r = invoke(
        runner,
        ["train", "-c", str(cfg), "--set", f"tracking.kind={kind}", "--set", "tracking.dir=tracked"],
        cwd=tmp_path,
    )
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "work" / "members" / "cnx" / "meta.json").read_text())
    run = Path(meta["run"]["dir"])
    folds = [json.loads((run / f"fold{f}" / "done.json").read_text()) for f in range(2)]
    return tmp_path / "tracked", meta, folds


def test_tensorboard_logs_every_epoch_and_the_member(tmp_path: Path, runner: CliRunner) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder, meta, folds = train_tracked(tmp_path, runner, "tensorboard")
    (run,) = [p for p in folder.iterdir() if p.is_dir()]
    ea = EventAccumulator(str(run))
    ea.Reload()
    for f, info in enumerate(folds):
        for key in ("loss", "score", "lr", "images_per_s"):
            tag = f"cnx/fold{f}/{'weighted_f1' if key == 'score' else key}"
            got = [(e.step, e.value) for e in ea.Scalars(tag)]
            want = [(h["epoch"], h[key]) for h in info["history"]]
            assert [s for s, _ in got] == [0, 1]
            assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)
    pooled = meta["metrics"]["pooled"]
    assert ea.Scalars("cnx/oof/weighted_f1")[0].value == pytest.approx(pooled["weighted_f1"], rel=1e-6)
    for c, f1 in meta["metrics"]["per_class_f1"].items():
        assert ea.Scalars(f"cnx/f1/{c}")[0].value == pytest.approx(f1, rel=1e-6, abs=1e-7)


def test_mlflow_file_store_holds_epochs_and_member(tmp_path: Path, runner: CliRunner) -> None:
    from mlflow.tracking import MlflowClient

    folder, meta, folds = train_tracked(tmp_path, runner, "mlflow")
    client = MlflowClient(tracking_uri=folder.resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("kit").experiment_id])
    assert run.info.run_name == "train cnx" and run.info.status == "FINISHED"
    hist = client.get_metric_history(run.info.run_id, "cnx/fold1/loss")
    assert [(m.step, m.value) for m in hist] == [
        (h["epoch"], pytest.approx(h["loss"], rel=1e-6)) for h in folds[1]["history"]
    ]
    assert run.data.metrics["cnx/oof/accuracy"] == pytest.approx(meta["metrics"]["pooled"]["accuracy"])
    assert set(meta["metrics"]["per_class_f1"]) == {k.split("/")[-1] for k in run.data.metrics if "/f1/" in k}


def test_mlflow_blend_table_and_submission_score(ws: Workspace, digits: dict, tmp_path: Path) -> None:  # noqa: F811
    from mlflow.tracking import MlflowClient

    from kit.cli.app import app

    write_members(ws, digits)
    spec = _spec_file(
        tmp_path,
        "x",
        {"members": ["logreg", "knn"], "blenders": [{"kind": "best_single"}, {"kind": "uniform"}]},
    )
    track = ["--set", "tracking.kind=mlflow", "--set", f"tracking.dir={tmp_path / 'ml'}"]
    runner = CliRunner()
    r = runner.invoke(app, ["blend", str(spec), "-c", str(tmp_path / "kit.yaml"), *track])
    assert r.exit_code == 0, r.output
    out = tmp_path / "sub.csv"
    r = runner.invoke(app, ["submit", str(spec), "-c", str(tmp_path / "kit.yaml"), "--out", str(out), *track])
    assert r.exit_code == 0, r.output
    client = MlflowClient(tracking_uri=(tmp_path / "ml").as_uri())
    runs = {
        r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("kit").experiment_id])
    }
    assert set(runs) == {"blend x", f"submit {spec}"}
    blend = runs["blend x"]
    winner = json.loads((ws.workdir / "blends" / "x" / "winner.json").read_text())
    table = json.loads(
        Path(
            client.download_artifacts(blend.info.run_id, "blend_x_selection.json", str(tmp_path))
        ).read_text()
    )
    assert [row["blender"] for row in table] == ["best_single", "uniform"]
    assert [row["blender"] for row in table if row["picked"]] == winner["selection"]["picked_rows"]
    assert blend.data.metrics["blend/x/nested"] == pytest.approx(winner["nested_score"])
    assert blend.data.metrics["blend/x/selection_aware"] == pytest.approx(winner["selection_aware_score"])
    assert blend.data.tags["blend/x/winner"] == winner["row"]
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    submit = runs[f"submit {spec}"]
    assert submit.data.metrics["submission/cv_score"] == pytest.approx(sidecar["cv_score"])
    assert submit.data.tags["submission/file"] == str(out)


def _wandb_payload(data: bytes) -> bytes:
    """The records of a .wandb file joined, without the LevelDB log framing that splits them at 32 KiB block
    boundaries (a 7-byte file header, then per chunk: crc32, little-endian length, type 1 full / 2 first /
    3 middle / 4 last). A key searched in the raw bytes is missed whenever a block boundary cuts it."""
    assert data[:4] == b":W&B", data[:8]
    block, out, i = 32768, bytearray(), 7
    while i + 7 <= len(data):
        space = block - i % block
        if space < 7:  # a block's tail too short for a chunk header is zero padding
            i += space
            continue
        length, kind = int.from_bytes(data[i + 4 : i + 6], "little"), data[i + 6]
        if kind == 0:  # zero padding up to the block's end
            i += space
            continue
        assert kind in (1, 2, 3, 4) and length <= space - 7, (i, kind, length)
        out += data[i + 7 : i + 7 + length]
        i += 7 + length
    return bytes(out)


def test_wandb_offline_run(ws: Workspace, digits: dict, tmp_path: Path) -> None:  # noqa: F811
    pytest.importorskip("wandb", reason="wandb is not installed here (pip install 'kit[track]')")
    from kit.cli.app import app

    write_members(ws, digits)
    spec = _spec_file(
        tmp_path,
        "w",
        {"members": ["logreg", "gnb"], "blenders": [{"kind": "best_single"}, {"kind": "uniform"}]},
    )
    r = CliRunner().invoke(
        app,
        [
            "blend",
            str(spec),
            "-c",
            str(tmp_path / "kit.yaml"),
            "--set",
            "tracking.kind=wandb",
            "--set",
            f"tracking.dir={tmp_path / 'wb'}",
        ],
    )
    assert r.exit_code == 0, r.output
    # wandb's offline run: a binary log of records (no Python reader ships with wandb-core) and the table files
    (run,) = (tmp_path / "wb" / "wandb").glob("offline-run-*")
    (log,) = run.glob("run-*.wandb")
    winner = json.loads((ws.workdir / "blends" / "w" / "winner.json").read_text())
    data = _wandb_payload(log.read_bytes())
    for key in ("blend/w/nested", "blend/w/insample", "blend/w/selection_aware"):
        assert key.encode() in data
    assert json.dumps(winner["nested_score"]).encode() in data
    (table,) = run.glob("files/media/table/blend/w/selection_*.table.json")
    rows = json.loads(table.read_text())
    assert rows["columns"][0] == "blender" and [r[0] for r in rows["data"]] == ["best_single", "uniform"]


def test_bad_tracking_config_stops_before_training(
    tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_competition(tmp_path / "data", size=16, n_test=4)
    cfg = write_config(tmp_path / "kit.yaml", data, {"cnx": member()})
    r = invoke(runner, ["train", "-c", str(cfg), "--set", "tracking.kind=neptune"], cwd=tmp_path)
    assert r.exit_code == 1 and "tracking.kind" in r.output and "'tensorboard'" in r.output
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if mlflow were not installed
    r = invoke(runner, ["train", "-c", str(cfg), "--set", "tracking.kind=mlflow"], cwd=tmp_path)
    assert r.exit_code == 1
    assert (
        "tracking.kind: mlflow needs the `mlflow` package" in r.output
        and "pip install 'kit[track]'" in r.output
    )
    assert not (tmp_path / "work" / "runs").exists()
