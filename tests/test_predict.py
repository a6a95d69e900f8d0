"""`kit predict`, `kit export` and `Predictor`: parity with the train-time arrays is the test.

One tiny workspace (34 train / 8 test real PNGs, 3 classes, 2 folds): a 1-epoch timm test_convnext at 32 px and
a clip_probe member on the one-layer CLIP, both with views plain + hflip, and a stack blend with logit_adjust
and class_bias. Predicting the competition's own test images must reproduce each member's test_logits.npy and
the blend's test_probs.npy bit for bit on the CPU (same decoding, same batches, same views, same code).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import invoke, write_csv
from train_helpers import CLASSES, make_competition, member, write_config

SPEC = {
    "members": {"cnx": {"views": "all"}, "clip": {"views": "all"}},
    "blenders": [{"kind": "stack", "C": 0.5}],
    "postprocess": {"logit_adjust": {"enabled": True}, "class_bias": {"enabled": True}},
    "selection": {"rule": "max_nested", "resamples": 100},
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained and blended workspace (kit.yaml, ensembles/stack.yaml, work/, data/ with a sample)."""
    import kit
    from kit.demo.tiny_clip import write_tiny_clip

    home = tmp_path_factory.mktemp("predict")
    data = make_competition(home / "data")
    write_csv(data / "sample_submission.csv", ["id", "label"], [[f"t{j:03d}", CLASSES[0]] for j in range(8)])
    clip_dir = write_tiny_clip(home / "clip-tiny")
    members = {
        "cnx": member(tta=["plain", "hflip"]),
        "clip": {
            "kind": "clip_probe",
            "model": f"local-dir:{clip_dir}",
            "epochs": 5,
            "tta": ["plain", "hflip"],
        },
    }
    config = write_config(home / "kit.yaml", data, members)
    cfg = yaml.safe_load(config.read_text())
    cfg["competition"]["sample_submission"] = "sample_submission.csv"
    cfg["workdir"] = "work"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    (home / "ensembles").mkdir()
    (home / "ensembles" / "stack.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    loaded = kit.load_config(config)
    kit.train_members(loaded)
    kit.blend_members(loaded, home / "ensembles" / "stack.yaml")
    return home


def images_of(home: Path) -> list[Path]:
    with (home / "data" / "test.csv").open() as f:
        return [home / "data" / r["img_path"] for r in csv.DictReader(f)]


def test_member_logits_equal_train_time_test_logits(home: Path) -> None:
    from kit import Predictor

    for name in ("cnx", "clip"):
        p = Predictor.from_workspace(home / "kit.yaml", member=name)
        views, got = p.member_logits(images_of(home))[name]
        want = np.load(home / "work" / "members" / name / "test_logits.npy")
        assert views == ["plain", "hflip"] and got.dtype == np.float32
        assert np.array_equal(got, want), (name, np.abs(got - want).max())


def test_blend_equals_test_probs(home: Path) -> None:
    """The workspace's blend winner (on this easy data a best_single with post-processing) from winner.json."""
    from kit import Predictor

    p = Predictor.from_workspace(home / "kit.yaml", ensemble="ensembles/stack.yaml")
    assert p.classes == CLASSES
    probs = p.predict_proba(images_of(home))
    want = np.load(home / "work" / "blends" / "stack" / "test_probs.npy")
    assert probs.dtype == np.float32 and np.array_equal(probs, want), np.abs(probs - want).max()
    assert p.predict(images_of(home)) == [CLASSES[i] for i in want.argmax(1)]


def test_stack_with_postprocessing_recipe_equals_the_blend_engine(home: Path) -> None:
    """A stack + logit_adjust + class_bias fitted by the blend engine on the members' OOF logits, recorded as
    `kit blend` records a winner (JSON), applied by kit predict to new member logits: equal to the engine's own
    test-time computation (`chain.transform(stack.predict(candidates.test))`, as kit.blend.run does)."""
    from kit import Predictor, load_config
    from kit.artifacts.blend import Winner
    from kit.blend.candidates import build_candidates, load_members, resolve_members
    from kit.blend.nested import evaluate_blender
    from kit.blend.run import load_spec
    from kit.predict.recipe import apply, blend_recipe
    from kit.workspace import open_workspace

    ws = open_workspace(load_config(home / "kit.yaml"))
    spec = load_spec(home / "ensembles" / "stack.yaml")
    choices = resolve_members(spec, ws.workdir)
    cands = build_candidates(
        spec, choices, load_members(list(choices), ws.workdir, ws.expected()), ws.train.labels
    )
    chain = ("logit_adjust", "class_bias")
    rows = evaluate_blender(
        spec.blenders[0],
        [chain],
        spec.postprocess,
        cands.oof,
        ws.train.labels,
        ws.folds.fold,
        "weighted_f1",
        spec.space,
    )
    win = rows[0]
    assert win.kind == "stack" and [n for n, _ in win.chain.steps] == list(chain)
    want = np.asarray(win.chain.transform(win.blender.predict(cands.test)), dtype=np.float32)
    winner = json.loads(
        json.dumps(
            {
                "name": "stack",
                "classes": CLASSES,
                "metric": "weighted_f1",
                "space": spec.space,
                "blender": "stack",
                "blender_kind": "stack",
                "weights": {c.name: float(w) for c, w in zip(cands.specs, win.blender.weights_, strict=True)},
                "candidates": {
                    c.name: {"member": c.member, "views": list(c.views), "temperature": c.temperature}
                    for c in cands.specs
                },
                "stack": win.blender.fitted_params(),
                "postprocess": win.chain.fitted_params(),
            }
        )
    )
    assert winner["postprocess"]["class_bias"]["offsets"] and "tau" in winner["postprocess"]["logit_adjust"]
    logits = {}
    for name in ("cnx", "clip"):
        logits.update(Predictor.from_workspace(home / "kit.yaml", member=name).member_logits(images_of(home)))
    got = apply(blend_recipe(Winner.from_json(winner)), logits)
    assert np.array_equal(got, want), np.abs(got - want).max()


def test_average_of_rows_is_recorded_and_predicted_as_kit_blend_made_it(home: Path, runner) -> None:
    """Selection rule average_1se: the winner is the mean of the rows within one paired SE of the best. winner.json
    records each averaged row (blender, weights, stack, post-processing), test_probs.npy is the mean of their
    test probabilities, and kit predict rebuilds it from winner.json bit for bit."""
    from kit import Predictor

    spec = {
        "members": {"cnx": {"views": "all"}, "clip": {"views": "all"}},
        "blenders": [{"kind": "uniform"}, {"kind": "greedy", "rounds": 10}, {"kind": "stack", "C": 0.5}],
        "postprocess": {"logit_adjust": {"enabled": True}},
        "selection": {"rule": "average_1se", "resamples": 200},
    }
    (home / "ensembles" / "avg.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    r = invoke(runner, ["blend", "ensembles/avg.yaml"], cwd=home)
    assert r.exit_code == 0, r.output
    out = home / "work" / "blends" / "avg"
    winner = json.loads((out / "winner.json").read_text())
    picked = winner["selection"]["picked_rows"]
    assert len(picked) >= 2, picked  # 34 train rows: several rows lie within one SE of the best
    assert winner["blender_kind"] == "average" and winner["row"] == f"average({', '.join(picked)})"
    assert [r["row"] for r in winner["rows"]] == picked
    table = list(csv.DictReader((out / "table.csv").open()))
    assert sorted(t["blender"] for t in table if t["picked"] == "True") == sorted(picked)
    # the recorded nested score is the averaged rows' own: their pooled nested predictions, scored once
    from kit import load_config
    from kit.metrics.scores import score
    from kit.workspace import open_workspace

    y = open_workspace(load_config(home / "kit.yaml"), write=False).train.labels
    oof = np.load(out / "oof_probs.npy")
    assert score("weighted_f1", y, oof, logits=False) == pytest.approx(winner["nested_score"], abs=1e-6)
    p = Predictor.from_workspace(home / "kit.yaml", ensemble="ensembles/avg.yaml")
    probs = p.predict_proba(images_of(home))
    want = np.load(out / "test_probs.npy")
    assert probs.dtype == np.float32 and np.array_equal(probs, want), np.abs(probs - want).max()


# ---------------------------------------------------------------- the CLI: workspace, bundle, bad input


def test_cli_predict_writes_the_same_csv_as_kit_submit(home: Path, tmp_path: Path, runner) -> None:
    r = invoke(runner, ["submit", "ensembles/stack.yaml", "--out", str(tmp_path / "sub.csv")], cwd=home)
    assert r.exit_code == 0, r.output
    args = [
        "predict",
        "ensembles/stack.yaml",
        "--images",
        "data/test.csv",
        "--sample",
        "data/sample_submission.csv",
    ]
    r = invoke(runner, [*args, "--out", str(tmp_path / "pred.csv"), "--workers", "1"], cwd=home)
    assert r.exit_code == 0, r.output
    assert "images/s" in r.output and "cnx" in r.output
    assert (tmp_path / "pred.csv").read_text() == (tmp_path / "sub.csv").read_text()
    # both records show the same score: the selection-aware estimate, labelled (never the winner's nested one)
    sub_side = json.loads((tmp_path / "sub.csv.json").read_text())
    pred_side = json.loads((tmp_path / "pred.csv.json").read_text())
    winner = json.loads((home / "work" / "blends" / "stack" / "winner.json").read_text())
    for side in (sub_side, pred_side):
        assert side["score_kind"] == "selection-aware nested CV"
        assert side["cv_score"] == pytest.approx(winner["selection_aware_score"])
    # a folder, no sample: id,label plus the probabilities
    r = invoke(
        runner,
        ["predict", "--member", "cnx", "--images", "data/test", "--out", str(tmp_path / "m.csv")],
        cwd=home,
    )
    assert r.exit_code == 0, r.output
    rows = list(csv.reader((tmp_path / "m.csv").open()))
    probs = np.load(tmp_path / "m.npy")
    assert rows[0] == ["id", "label"] and [x[0] for x in rows[1:]] == [f"t{j:03d}" for j in range(8)]
    assert probs.shape == (8, 3) and [x[1] for x in rows[1:]] == [CLASSES[i] for i in probs.argmax(1)]
    # a .npy kit did not write beside a new --out is refused, nothing written
    (tmp_path / "u.npy").write_bytes(b"user data")
    r = invoke(
        runner,
        ["predict", "--member", "cnx", "--images", "data/test", "--out", str(tmp_path / "u.csv")],
        cwd=home,
    )
    assert r.exit_code == 1 and "kit did not write it" in r.output and "u.npy" in r.output
    assert (tmp_path / "u.npy").read_bytes() == b"user data" and not (tmp_path / "u.csv").exists()


def test_bundle_predicts_alone_after_the_workspace_is_gone(home: Path, tmp_path: Path, runner) -> None:
    want = np.load(home / "work" / "blends" / "stack" / "test_probs.npy")
    ws = tmp_path / "ws"
    shutil.copytree(home, ws, symlinks=True)
    r = invoke(runner, ["export", "ensembles/stack.yaml", "--out", str(tmp_path / "b0")], cwd=ws)
    assert r.exit_code == 0, r.output
    assert "MB" in r.output
    manifest = json.loads((tmp_path / "b0" / "manifest.json").read_text())
    assert {"torch", "timm", "open_clip_torch"} <= set(manifest["versions"])
    assert not any(f.endswith((".png", ".csv", ".npy")) for f in manifest["files"])
    shutil.copytree(tmp_path / "b0", tmp_path / "fresh" / "bundle")
    shutil.copytree(ws / "data" / "test", tmp_path / "fresh" / "test")
    shutil.copy(ws / "data" / "sample_submission.csv", tmp_path / "fresh" / "sample.csv")
    shutil.rmtree(ws)
    shutil.rmtree(tmp_path / "b0")
    fresh = tmp_path / "fresh"
    from kit import Predictor

    p = Predictor.load(fresh / "bundle")
    got = p.predict_proba(sorted((fresh / "test").glob("*.png")))
    assert np.array_equal(got, want), np.abs(got - want).max()
    args = ["predict", "--bundle", "bundle", "--images", "test", "--sample", "sample.csv", "--out", "sub.csv"]
    r = invoke(runner, args, cwd=fresh)
    assert r.exit_code == 0, r.output
    rows = list(csv.reader((fresh / "sub.csv").open()))
    assert [x[1] for x in rows[1:]] == [CLASSES[i] for i in want.argmax(1)]
    # a changed file is named, nothing written
    w = fresh / "bundle" / "members" / "cnx" / "fold1.safetensors"
    w.write_bytes(w.read_bytes()[:-1] + b"\x00")
    r = invoke(runner, [*args[:-1], "sub2.csv"], cwd=fresh)
    assert r.exit_code == 1 and "members/cnx/fold1.safetensors" in r.output and "sha256" in r.output
    assert "Traceback" not in r.output and not (fresh / "sub2.csv").exists()


def test_bad_images_are_all_listed_and_nothing_is_written(home: Path, tmp_path: Path, runner) -> None:
    folder = tmp_path / "imgs"
    shutil.copytree(home / "data" / "test", folder)
    (folder / "t001.png").write_bytes(b"not a png")
    (folder / "t005.png").write_bytes(b"")
    r = invoke(
        runner,
        ["predict", "--member", "cnx", "--images", str(folder), "--out", str(tmp_path / "x.csv")],
        cwd=home,
    )
    assert r.exit_code == 1 and "2 image(s) could not be read" in r.output
    assert "t001.png" in r.output and "t005.png" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.npy").exists()


def test_sample_of_other_classes_is_refused(home: Path, tmp_path: Path, runner) -> None:
    sample = write_csv(
        tmp_path / "s.csv", ["id", "ant", "bee", "cow"], [[f"t{j:03d}", "0", "0", "1"] for j in range(8)]
    )
    args = [
        "predict",
        "--member",
        "cnx",
        "--images",
        "data/test",
        "--sample",
        str(sample),
        "--out",
        str(tmp_path / "x.csv"),
    ]
    r = invoke(runner, args, cwd=home)
    assert r.exit_code == 1 and "Traceback" not in r.output and not (tmp_path / "x.csv").exists()
    assert "cat" in r.output or "class" in r.output


def test_missing_fold_checkpoint_names_member_fold_and_fix(home: Path, tmp_path: Path, runner) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(home, ws, symlinks=True)
    cfg = yaml.safe_load((ws / "kit.yaml").read_text())
    cfg["competition"]["root"] = str(ws / "data")
    (ws / "kit.yaml").write_text(yaml.safe_dump(cfg))
    best = next((ws / "work" / "runs" / "cnx").glob("*/fold1/best.pt"))
    best.unlink()
    r = invoke(
        runner,
        ["predict", "--member", "cnx", "--images", "data/test", "--out", str(tmp_path / "x.csv")],
        cwd=ws,
    )
    assert r.exit_code == 1 and "member 'cnx' fold 1" in r.output and "kit train cnx" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "x.csv").exists()


# ---------------------------------------------------------------- --half, classes, stale artifacts, --wheels

HALF_TOL = 2e-3  # fp16 weights (computed in fp32): max |probability difference| on these images


@pytest.fixture(scope="module")
def bundle32(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("bundles") / "b32"
    r = invoke(CliRunner(), ["export", "ensembles/stack.yaml", "--out", str(out)], cwd=home)
    assert r.exit_code == 0, r.output
    return out


def test_half_bundle_is_half_the_size_and_close_to_fp32(
    home: Path, bundle32: Path, tmp_path: Path, runner
) -> None:
    from kit import Predictor

    r = invoke(runner, ["export", "ensembles/stack.yaml", "--out", str(tmp_path / "b16"), "--half"], cwd=home)
    assert r.exit_code == 0, r.output
    half = json.loads((tmp_path / "b16" / "manifest.json").read_text())
    full = json.loads((bundle32 / "manifest.json").read_text())
    assert half["half"] is True and full["half"] is False
    weights = [f for f in full["files"] if f.endswith(".safetensors")]
    assert any("cnx/fold" in f for f in weights)  # the winner's member (the stack's winner here: cnx)
    for f in weights:  # each weights file: half the bytes, up to the safetensors header
        ratio = half["files"][f]["size"] / full["files"][f]["size"]
        assert 0.45 < ratio < 0.56 or full["files"][f]["size"] < 2000, (f, ratio)
    want = np.load(home / "work" / "blends" / "stack" / "test_probs.npy")
    got = Predictor.load(tmp_path / "b16").predict_proba(images_of(home))
    diff = float(np.abs(got - want).max())
    assert 0 < diff < HALF_TOL, diff  # not bit-equal (fp16 rounding), within the stated tolerance
    assert np.array_equal(got.argmax(1), want.argmax(1))


def test_bundle_for_other_classes_than_a_label_sample_is_refused(
    home: Path, bundle32: Path, tmp_path: Path, runner
) -> None:
    sample = write_csv(
        tmp_path / "s.csv", ["id", "label"], [[f"t{j:03d}", ["ant", "bee", "cow"][j % 3]] for j in range(8)]
    )
    out = tmp_path / "x.csv"
    args = ["predict", "--bundle", str(bundle32), "--images", "data/test", "--sample", str(sample)]
    r = invoke(runner, [*args, "--out", str(out)], cwd=home)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert "ant, bee, cow" in r.output and "cat, dog, eel" in r.output and "other classes" in r.output
    assert not out.exists() and not out.with_suffix(".npy").exists()
    # a constant placeholder (one value, not a class) is a placeholder, not another competition's labels
    write_csv(sample, ["id", "label"], [[f"t{j:03d}", "unknown"] for j in range(8)])
    r = invoke(runner, [*args, "--out", str(out)], cwd=home)
    assert r.exit_code == 0, r.output
    assert all(row[1] in CLASSES for row in list(csv.reader(out.open()))[1:])


def _copy_workspace(home: Path, ws: Path) -> Path:
    shutil.copytree(home, ws, symlinks=True)
    cfg = yaml.safe_load((ws / "kit.yaml").read_text())
    cfg["competition"]["root"] = str(ws / "data")
    (ws / "kit.yaml").write_text(yaml.safe_dump(cfg))
    return ws


def test_artifacts_that_no_longer_match_their_run_are_refused(home: Path, tmp_path: Path, runner) -> None:
    args = ["predict", "--member", "cnx", "--images", "data/test", "--out", str(tmp_path / "x.csv")]
    # the member's config changed since it was trained: its artifacts are stale
    ws = _copy_workspace(home, tmp_path / "ws1")
    cfg = yaml.safe_load((ws / "kit.yaml").read_text())
    cfg["members"]["cnx"]["lr"] = 0.5
    (ws / "kit.yaml").write_text(yaml.safe_dump(cfg))
    r = invoke(runner, args, cwd=ws)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert "cnx" in r.output and "lr" in r.output and "kit train cnx" in r.output
    # the run folder the artifacts name holds another config's fold models
    ws = _copy_workspace(home, tmp_path / "ws2")
    run_json = next((ws / "work" / "runs" / "cnx").glob("*/run.json"))
    run = json.loads(run_json.read_text())
    run["config"]["img_size"] = 64
    run_json.write_text(json.dumps(run))
    r = invoke(runner, args, cwd=ws)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert "member 'cnx': its artifacts no longer match their run" in r.output and "kit train cnx" in r.output
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.npy").exists()


def test_wheels_pip_command_lines_leave_torch_out() -> None:
    import sys

    from kit.predict.wheels import kit_requirements, kit_source, pinned_closure, pip_commands

    source = kit_source()
    pins = pinned_closure(kit_requirements(source))
    names = {p.split("==")[0] for p in pins}
    assert {"timm", "open-clip-torch", "ttach", "numpy", "safetensors", "huggingface-hub", "typer"} <= names
    assert not names & {"torch", "torchvision", "triton", "sympy"}
    assert not any(n.startswith("nvidia-") for n in names) and all("==" in p for p in pins)
    kit_cmd, deps_cmd = pip_commands(Path("/b/wheels"), source, pins)
    assert kit_cmd[:5] == [sys.executable, "-m", "pip", "wheel", "--no-deps"] and kit_cmd[-1] == str(source)
    assert kit_cmd[kit_cmd.index("--wheel-dir") + 1] == "/b/wheels"
    assert deps_cmd[:5] == kit_cmd[:5] and deps_cmd[-len(pins) :] == pins
    assert pip_commands(Path("/b/wheels"), source, []) == [kit_cmd]


def test_kit_wheel_lands_in_the_bundle_and_installs_offline(
    home: Path, tmp_path: Path, bundle32: Path
) -> None:
    """Offline (deps=False): kit's own wheel, built from a copy of its source, in DIR/wheels and the manifest;
    `pip install --no-index --find-links DIR/wheels` installs it; the source tree is left as it was."""
    import functools
    import subprocess
    import sys

    from kit import Predictor
    from kit.predict.bundle import verify_bundle, write_bundle
    from kit.predict.wheels import kit_source, write_wheels

    src = kit_source()
    before = sorted(p.name for p in src.iterdir())
    p = Predictor.load(bundle32)
    out = tmp_path / "b"
    write_bundle(
        out,
        p.recipe,
        list(p.plans.values()),
        p.competition,
        wheels=functools.partial(write_wheels, deps=False),
    )
    wheels = sorted(q.name for q in (out / "wheels").iterdir())
    assert len(wheels) == 1 and wheels[0].startswith("kit-") and wheels[0].endswith(".whl")
    manifest = verify_bundle(out)
    assert list(manifest["wheels"]) == [f"wheels/{wheels[0]}"]
    assert sorted(p.name for p in src.iterdir()) == before
    target = tmp_path / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(out / "wheels")]
    res = subprocess.run([*cmd, "--no-deps", "--target", str(target), "kit"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (target / "kit" / "predict" / "predictor.py").is_file() and (target / "kit" / "templates").is_dir()
