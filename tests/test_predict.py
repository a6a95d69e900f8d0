"""`kit predict`, `kit export` and `Predictor`: parity with the train-time arrays is the test.

One tiny workspace (34 train / 8 test real PNGs, 3 classes, 2 folds): a 1-epoch timm test_convnext at 32 px and
a clip_probe member on the one-layer CLIP, both with views plain + hflip, and a stack blend with logit_adjust
and class_bias. Predicting the competition's own test images must reproduce each member's test_logits.npy and
the blend's test_probs.npy bit for bit on the CPU (same decoding, same batches, same views, same code).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import write_csv
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
    kit.train(loaded)
    kit.blend(loaded, home / "ensembles" / "stack.yaml")
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
    from kit.blend.candidates import build_candidates, load_members, resolve_members
    from kit.blend.nested import evaluate_blender
    from kit.blend.run import load_spec
    from kit.data.workspace import open_workspace
    from kit.predict.recipe import apply, blend_recipe

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
                "weights": {c.name: float(w) for c, w in zip(cands.specs, win.blender.weights_)},
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
    got = apply(blend_recipe(winner), logits)
    assert np.array_equal(got, want), np.abs(got - want).max()
