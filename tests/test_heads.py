"""A timm member's own head (`head: {hidden, dropout}`) and attribute heads (`competition.attributes`).

Real timm test models for the head's shapes, freezing and layer groups; the attribute-product identity on a
real AttributeHead; validation through the real `kit validate` / `kit train`; and real 2-fold CLI trains on a
2 x 3 attribute competition of PNG files, one with an MLP head exported and predicted bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke, write_csv
from train_helpers import SWIN_KW, member, write_relative_config

BACKBONES = {
    "test_convnext": ({}, "head.fc"),
    "test_efficientnet": ({}, "classifier"),
    "test_vit": ({"img_size": 32}, "head"),
    "swin_tiny_patch4_window7_224": ({**SWIN_KW, "img_size": 32}, "head.fc"),
}
MASK = ("wear", "none")
AGE = ("young", "mid", "old")
CLASSES = [f"{m}-{a}" for m in MASK for a in AGE]  # 2 x 3 = 6 classes, the full product
ATTRIBUTES = {c: {"mask": c.split("-")[0], "age": c.split("-")[1]} for c in CLASSES}


def _model(name: str, head: dict | None, attributes: dict | None = None, classes: list[str] | None = None):
    import timm

    from kit.config.attributes import attribute_codes
    from kit.config.schema import HeadConfig
    from kit.train.heads import HeadSpec, install_head

    classes = classes or CLASSES
    kwargs, _ = BACKBONES[name]
    model = timm.create_model(name, num_classes=len(classes), pretrained=False, **kwargs)
    spec = HeadSpec.of(None if head is None else HeadConfig(**head), attribute_codes(attributes, classes))
    assert spec is not None
    install_head(model, spec, len(classes))
    return model


@pytest.mark.parametrize("name", list(BACKBONES))
def test_mlp_head_replaces_the_classifier_in_place(name: str) -> None:
    import torch

    from kit.config.schema import TimmMember
    from kit.train.models import head_parameter_names
    from kit.train.recipe import Unfreezing, layer_ids

    model = _model(name, {"hidden": [16], "dropout": 0.2})
    _, path = BACKBONES[name]
    width = model.num_features if name != "test_vit" else model.embed_dim
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if n.startswith(path + ".")}
    assert shapes == {
        f"{path}.1.weight": (16, width),
        f"{path}.1.bias": (16,),
        f"{path}.4.weight": (6, 16),
        f"{path}.4.bias": (6,),
    }
    assert model.get_classifier() is model.get_submodule(
        path
    )  # timm finds the new head where the old one was
    head = head_parameter_names(model)
    assert head == set(shapes)
    ids = layer_ids(model, coarse=False)  # timm's layer-decay groups: the head is the top layer
    assert {ids[n] for n in head} == {max(ids.values())}
    m = TimmMember(kind="timm", model=name, img_size=32, epochs=2, freeze_epochs=1)
    Unfreezing.of(model, head, m).apply(model, 0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == head
    model.eval()
    assert tuple(model(torch.zeros(2, 3, 32, 32)).shape) == (2, 6)


def test_head_spec_keeps_timm_classifier_unless_it_changes_something() -> None:
    import typing

    from torch import nn

    from kit.config.attributes import attribute_codes
    from kit.config.schema import HeadConfig
    from kit.train.heads import ACTIVATIONS, HeadSpec

    codes = attribute_codes(ATTRIBUTES, CLASSES)
    assert HeadSpec.of(None, None) is None and HeadSpec.of(HeadConfig(), None) is None
    assert HeadSpec.of(HeadConfig(attributes=False), codes) is None  # the opt-out: timm's own head
    spec = HeadSpec.of(HeadConfig(hidden=[8], attributes=False), codes)
    assert spec is not None and spec.attributes is None and spec.hidden == (8,)
    spec = HeadSpec.of(None, codes)
    assert spec is not None and spec.attributes == codes and spec.hidden == ()
    assert HeadSpec.from_json(spec.to_json()) == spec
    # the schema's choices are the ones heads.py builds
    choices = typing.get_args(HeadConfig.model_fields["activation"].annotation)
    assert set(choices) == set(ACTIVATIONS)
    model = _model("test_efficientnet", {"hidden": [8, 4], "activation": "silu"})
    acts = [type(m) for m in model.get_classifier() if not isinstance(m, (nn.Linear, nn.Dropout))]
    assert acts == [nn.SiLU, nn.SiLU]


@pytest.mark.parametrize("name", ["test_convnext", "test_vit"])
def test_attribute_heads_shapes(name: str) -> None:
    model = _model(name, {"hidden": [8]}, ATTRIBUTES)
    _, path = BACKBONES[name]
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if n.startswith(path + ".")}
    # one MLP per attribute (sorted: age, then mask), each ending in its own values
    assert shapes[f"{path}.heads.0.4.weight"] == (3, 8) and shapes[f"{path}.heads.1.4.weight"] == (2, 8)
    assert not any(k.endswith("codes") for k in model.state_dict())  # derived from the config, not saved


def test_class_score_is_the_sum_of_attribute_log_probs_and_ce_is_their_sum() -> None:
    import torch
    import torch.nn.functional as F

    from kit.config.attributes import attribute_codes
    from kit.train.heads import AttributeHead, HeadSpec

    codes = attribute_codes(ATTRIBUTES, CLASSES)
    assert codes is not None and codes.names == ("age", "mask")
    head = AttributeHead(12, HeadSpec(attributes=codes)).double()
    torch.manual_seed(0)
    x = torch.randn(5, 12, dtype=torch.float64)
    torch.set_grad_enabled(False)
    score = head(x)
    lp_age, lp_mask = head.attribute_log_probs(x)
    for k, c in enumerate(CLASSES):
        want = (
            lp_mask[:, codes.values[1].index(ATTRIBUTES[c]["mask"])]
            + lp_age[:, codes.values[0].index(ATTRIBUTES[c]["age"])]
        )
        assert torch.allclose(score[:, k], want, atol=1e-12)
    # the full product: the class distribution is the product of the attribute distributions
    assert torch.allclose(torch.log_softmax(score, 1), score, atol=1e-12)
    y = torch.tensor([0, 5, 3, 1, 4])
    age_y = torch.tensor([codes.codes[int(k)][0] for k in y])
    mask_y = torch.tensor([codes.codes[int(k)][1] for k in y])
    ce = F.cross_entropy(score, y)
    attribute_ce = F.cross_entropy(lp_age, age_y) + F.cross_entropy(lp_mask, mask_y)
    assert abs(float(ce) - float(attribute_ce)) < 1e-12 and float(ce) > 0.1
    # a missing combination: probabilities renormalised over the classes that exist (no longer equal)
    five = {c: v for c, v in ATTRIBUTES.items() if c != CLASSES[-1]}
    part = AttributeHead(12, HeadSpec(attributes=attribute_codes(five, CLASSES[:-1]))).double()
    s = part(x)
    assert s.shape == (5, 5) and not torch.allclose(torch.log_softmax(s, 1), s)
    assert torch.allclose(torch.softmax(s, 1).sum(1), torch.ones(5, dtype=torch.float64))
    torch.set_grad_enabled(True)


# ---------------------------------------------------------------- a 2 x 3 attribute competition of PNGs


def make_attribute_competition(root: Path, n_per_class: int = 6, n_test: int = 6) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)

    def img(k: int) -> np.ndarray:
        a = rng.integers(0, 80, (24, 24, 3), dtype=np.uint8)
        a[:, :, k % 3] += 120  # age: a bright channel
        if k >= 3:
            a[:12] //= 2  # mask: a dark top half
        return a

    rows, test_rows = [], []
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "test").mkdir(parents=True, exist_ok=True)
    for k, c in enumerate(CLASSES):
        for i in range(n_per_class):
            name = f"train/{k}{i:02d}.png"
            Image.fromarray(img(k)).save(root / name)
            rows.append([f"{k}{i:02d}", name, c])
    for j in range(n_test):
        name = f"test/t{j:02d}.png"
        Image.fromarray(img(j % 6)).save(root / name)
        test_rows.append([f"t{j:02d}", name])
    write_csv(root / "train.csv", ["id", "img_path", "label"], rows)
    write_csv(root / "test.csv", ["id", "img_path"], test_rows)
    write_csv(root / "sample_submission.csv", ["id", "label"], [[r[0], CLASSES[0]] for r in test_rows])
    return root


def write_attribute_config(home: Path, members: dict, attributes: dict | None) -> Path:
    extra = {"attributes": attributes} if attributes is not None else {}
    return write_relative_config(home, members, competition={"metric": "accuracy", **extra})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_attribute_competition(tmp_path_factory.mktemp("attr") / "data")


def _home(tmp_path: Path, data: Path) -> Path:
    (tmp_path / "data").symlink_to(data)
    return tmp_path


def test_shape_problems_are_config_errors_all_at_once(tmp_path: Path, data: Path, runner) -> None:
    home = _home(tmp_path, data)
    bad = {**ATTRIBUTES, CLASSES[1]: dict(ATTRIBUTES[CLASSES[0]])}  # a duplicate tuple
    bad[CLASSES[2]] = {"mask": "wear"}  # lacks age
    write_attribute_config(home, {"e": member("test_efficientnet")}, bad)
    for args in (["validate", "kit.yaml"], ["train"]):
        r = invoke(runner, args, cwd=home)
        assert r.exit_code == 1, r.output
        out = " ".join(r.output.split())
        assert "competition.attributes" in out and "Traceback" not in out
        assert "lacks ['age']" in out, out
        assert "have the same values" in out and CLASSES[0] in out and CLASSES[1] in out, out
    # YAML integer labels and values are read as text; one value everywhere is refused
    from kit.config.schema import Competition

    c = Competition(root=home, train="train", attributes={0: {"a": 1, "b": 0}, 1: {"a": 2, "b": 0}})
    assert c.attributes == {"0": {"a": "1", "b": "0"}, "1": {"a": "2", "b": "0"}}
    with pytest.raises(ValueError, match="no attribute has two values"):
        Competition(root=home, train="train", attributes={"0": {"a": "x"}, "1": {"a": "x"}})


def test_coverage_problems_before_anything_trains(tmp_path: Path, data: Path, runner) -> None:
    home = _home(tmp_path, data)
    partial = {c: v for c, v in ATTRIBUTES.items() if c != CLASSES[4]}
    partial["ghost"] = {"mask": "wear", "age": "ancient"}
    write_attribute_config(home, {"e": member("test_efficientnet")}, partial)
    for args in (["validate", "kit.yaml"], ["train"]):
        r = invoke(runner, args, cwd=home)
        assert r.exit_code == 1, r.output
        out = " ".join(r.output.split())
        assert f"classes ['{CLASSES[4]}'] have no entry" in out, out
        assert "['ghost'] are not classes of the data" in out, out
    assert not (home / "work" / "cache" / "images").exists() or not any(
        (home / "work" / "cache" / "images").iterdir()
    )
    assert not (home / "work" / "runs").exists()


def test_attribute_member_and_mlp_member_train_export_predict(tmp_path: Path, data: Path, runner) -> None:
    import torch

    threads = torch.get_num_threads()
    try:
        _train_export_predict(tmp_path, data, runner)
    finally:
        torch.set_num_threads(threads)


def _train_export_predict(tmp_path: Path, data: Path, runner) -> None:
    import torch

    from kit import Predictor

    home = _home(tmp_path, data)
    members = {
        "attr": member("test_efficientnet", seed=0),
        "mlp": member("test_efficientnet", head={"hidden": [16], "dropout": 0.2}),
    }
    write_attribute_config(home, members, ATTRIBUTES)
    r = invoke(runner, ["validate", "kit.yaml"], cwd=home)
    assert r.exit_code == 0, r.output
    # one thread in train and predict alike: kit train sizes its threads by the machine's load, and a GEMM
    # under another thread count may differ in the last bit
    r = invoke(runner, ["train", "--threads", "1"], cwd=home)
    assert r.exit_code == 0, r.output
    for name in members:
        meta = json.loads((home / "work" / "members" / name / "meta.json").read_text())
        head = meta["head"]
        assert head["attributes"]["names"] == ["age", "mask"]
        assert head["attributes"]["values"] == [sorted(AGE), sorted(MASK)]
        assert np.load(home / "work" / "members" / name / "test_logits.npy").shape == (6, 1, 6)
        oof = np.load(home / "work" / "members" / name / "oof_logits.npy")  # each row from one fold model
        assert oof.shape == (36, 1, 6) and np.isfinite(oof).all()
        # the class scores are log-probabilities of the full product: they normalise already
        assert np.allclose(np.exp(oof[:, 0]).sum(1), 1.0, atol=1e-5)
    assert json.loads((home / "work" / "members" / "mlp" / "meta.json").read_text())["head"]["hidden"] == [16]
    images = sorted((data / "test").glob("*.png"))
    torch.set_num_threads(1)
    # the attribute heads rebuilt from the bundle's member.json alone give test_logits bit for bit
    want = np.load(home / "work" / "members" / "attr" / "test_logits.npy")
    r = invoke(runner, ["export", "--member", "attr", "--out", str(tmp_path / "attr-bundle")], cwd=home)
    assert r.exit_code == 0, r.output
    plan = json.loads((tmp_path / "attr-bundle" / "members" / "attr" / "member.json").read_text())
    assert plan["model"]["head"]["attributes"]["codes"] == [
        [sorted(AGE).index(ATTRIBUTES[c]["age"]), sorted(MASK).index(ATTRIBUTES[c]["mask"])]
        for c in sorted(CLASSES)
    ]  # per class in kit's class order (sorted labels), its age index and mask index
    _, got = Predictor.load(tmp_path / "attr-bundle").member_logits(images)["attr"]
    assert np.array_equal(got, want), np.abs(got - want).max()

    # an MLP head on a competition without attributes: export, then predict from the bundle alone
    write_attribute_config(home, {"mlp": members["mlp"]}, None)
    r = invoke(runner, ["train", "--threads", "1"], cwd=home)
    assert r.exit_code == 0, r.output
    want = np.load(home / "work" / "members" / "mlp" / "test_logits.npy")
    meta = json.loads((home / "work" / "members" / "mlp" / "meta.json").read_text())
    assert meta["head"] == {"hidden": [16], "dropout": 0.2, "activation": "gelu", "attributes": None}
    oof = np.load(home / "work" / "members" / "mlp" / "oof_logits.npy")
    assert not np.allclose(np.exp(oof[:, 0]).sum(1), 1.0, atol=1e-2)  # plain logits now
    p = Predictor.from_workspace(home / "kit.yaml", member="mlp")
    _, got = p.member_logits(images)["mlp"]
    assert np.array_equal(got, want), np.abs(got - want).max()
    r = invoke(runner, ["export", "--member", "mlp", "--out", str(tmp_path / "bundle")], cwd=home)
    assert r.exit_code == 0, r.output
    plan = json.loads((tmp_path / "bundle" / "members" / "mlp" / "member.json").read_text())
    assert plan["model"]["head"]["hidden"] == [16]
    _, got = Predictor.load(tmp_path / "bundle").member_logits(images)["mlp"]
    assert np.array_equal(got, want), np.abs(got - want).max()
    args = ["predict", "--bundle", str(tmp_path / "bundle"), "--images", str(data / "test")]
    r = invoke(runner, [*args, "--sample", str(data / "sample_submission.csv"), "--out", "sub.csv"], cwd=home)
    assert r.exit_code == 0, r.output
    assert (home / "sub.csv").read_text().count("\n") == 7


def test_head_unset_keeps_the_run_hash_and_clip_probe_is_warned(tmp_path: Path, data: Path) -> None:
    from kit.config.load import load_config
    from kit.config.schema import ClipProbeMember
    from kit.train.fold_loop import run_hash
    from kit.train.preflight import attribute_findings
    from kit.workspace import open_workspace

    home = _home(tmp_path, data)
    members = {
        "a": member("test_efficientnet"),
        "b": {**member("test_efficientnet"), "head": None},
        "c": member("test_efficientnet", head={"hidden": [16]}),
        "d": member("test_efficientnet", head={"hidden": [16], "activation": "relu"}),
    }
    cfg = load_config(write_attribute_config(home, members, None))
    ws = open_workspace(cfg)
    h = {n: run_hash(ws, m) for n, m in cfg.members.items()}
    assert "head" in cfg.members["a"].model_dump() and h["a"] == h["b"]  # unset is the default
    assert len({h["a"], h["c"], h["d"]}) == 3
    clip = ClipProbeMember(kind="clip_probe", model="ViT-B-32")
    problems, warns = attribute_findings(ATTRIBUTES, sorted(CLASSES), {"e": cfg.members["a"], "clip": clip})
    assert problems == [] and len(warns) == 1 and "members.clip" in warns[0] and "ignored" in warns[0]
