"""Training timm members: artifacts, OOF provenance, TTA views, families, weights files, losses, sampler."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from train_helpers import make_competition, member, write_config

from kit.config.load import load_config
from kit.config.schema import KitConfig, LossConfig, SamplerConfig, TimmMember
from kit.errors import KitError
from kit.metrics.scores import weighted_f1
from kit.progress import NullReporter
from kit.train.data import epoch_order
from kit.train.losses import KitLoss
from kit.train.models import head_parameter_names, resolve_model
from kit.train.run import train_in_process
from kit.train.tta import predict_views
from kit.workspace import open_workspace

# ---------------------------------------------------------------- end to end on real PNGs


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[KitConfig, NullReporter]:
    """test_convnext, 2 folds, 2 epochs, 3 TTA views, trained once for the module."""
    root = tmp_path_factory.mktemp("train")
    data = make_competition(root / "data")
    m = member(epochs=2, tta=["plain", "hflip", "rot180"], loss={"kind": "focal"})
    cfg = load_config(write_config(root / "kit.yaml", data, {"cnx": m}))
    rep = NullReporter()
    train_in_process(cfg, None, rep)
    return cfg, rep


def test_artifacts_have_the_contract_shapes(trained: tuple) -> None:
    cfg, rep = trained
    d = cfg.workdir / "members" / "cnx"
    oof, test = np.load(d / "oof_logits.npy"), np.load(d / "test_logits.npy")
    assert oof.shape == (34, 3, 3) and oof.dtype == np.float32
    assert test.shape == (8, 3, 3) and np.isfinite(test).all()
    meta = json.loads((d / "meta.json").read_text())
    assert meta["views"] == ["plain", "hflip", "rot180"]
    assert meta["classes"] == ["cat", "dog", "eel"]
    assert set(meta["metrics"]["per_view"]) == {"plain", "hflip", "rot180"}
    assert meta["metrics"]["pooled"]["weighted_f1"] == pytest.approx(
        weighted_f1(np.asarray(open_workspace(cfg).train.labels), oof[:, 0])
    )
    assert meta["run"]["epochs"] == [2, 2]
    assert meta["preprocess"]["mean"] == [0.5, 0.5, 0.5]  # test_convnext's own pretrained config
    # one summary line per epoch: loss, metric, lr, images/s
    lines = [x for x in rep.lines if " epoch " in x]
    assert len(lines) == 4 and all("loss" in x and "weighted_f1" in x and "img/s" in x for x in lines)


def test_oof_rows_come_from_the_fold_that_held_them_out(trained: tuple) -> None:
    from kit.data.cache import Geometry, build_image_store
    from kit.train.device import select_device
    from kit.train.fold_loop import run_dir
    from kit.train.kinds.timm import TimmKind
    from kit.train.loop import predict

    cfg, _ = trained
    ws = open_workspace(cfg)
    m = cfg.members["cnx"]
    spec = resolve_model("cnx", m, 3)
    cache = build_image_store(
        ws.train,
        Geometry(m.resize, spec.cache_size),
        ws.cache_dir,
        split="train",
        fingerprint=ws.train_images_fingerprint,
        resample=spec.interpolation,
    )
    ctx = TimmKind(ws, "cnx", m, spec, cache, None, select_device("cnx", "cpu"), NullReporter())
    root = run_dir(ws, "cnx", m)
    oof = np.load(cfg.workdir / "members" / "cnx" / "oof_logits.npy")
    aug = ctx.augment
    for f in range(2):
        idx = ws.folds.valid_idx(f)
        mine = predict(ctx.load_model(root / f"fold{f}"), cache, idx, m.tta, aug, ctx.setup, 16)
        other = predict(ctx.load_model(root / f"fold{1 - f}"), cache, idx, m.tta, aug, ctx.setup, 16)
        np.testing.assert_allclose(oof[idx], mine, rtol=1e-5, atol=1e-5)
        assert not np.allclose(oof[idx], other, atol=1e-3)
        # the plain view is a plain forward pass of the centre crops; rot180 that of the turned crops
        model = ctx.load_model(root / f"fold{f}")
        x = aug.normalize(torch.from_numpy(cache.crops(idx, m.img_size)))
        with torch.no_grad():
            np.testing.assert_allclose(oof[idx, 0], model(x).numpy(), rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(oof[idx, 2], model(x.flip(-1).flip(-2)).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        ("test_efficientnet", {"ema": 0.9, "augment": {"preset": "light", "mixup": 0.4, "cutmix": 1.0}}),
        ("swin_tiny_patch4_window7_224", {"img_size": 32, "freeze_epochs": 1, "epochs": 2}),
    ],
)
def test_families_train(tmp_path: Path, model: str, extra: dict) -> None:
    data = make_competition(tmp_path / "data")
    cfg = load_config(write_config(tmp_path / "kit.yaml", data, {"m": member(model, **extra)}))
    [d] = train_in_process(cfg, ["m"])
    oof = np.load(d / "oof_logits.npy")
    assert oof.shape == (34, 1, 3) and np.isfinite(oof).all()  # the default views: plain only


def test_swin_at_64px_with_window_4(tmp_path: Path) -> None:
    m = TimmMember.model_validate(member("swin_tiny_patch4_window7_224", img_size=64))
    spec = resolve_model("swin", m, 5)
    assert spec.kwargs["img_size"] == 64  # passed on because Swin has a fixed input size
    assert spec.create()(torch.zeros(1, 3, 64, 64)).shape == (1, 5)


def test_freeze_leaves_only_the_head_trainable() -> None:
    from kit.train.recipe import Unfreezing

    m = TimmMember.model_validate(member(epochs=2, freeze_epochs=1))
    model = resolve_model("cnx", m, 3).create()
    head = head_parameter_names(model)
    assert head and all(n.startswith("head") for n in head)
    plan = Unfreezing.of(model, head, m)
    plan.apply(model, 0)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == head
    plan.apply(model, 1)
    assert all(p.requires_grad for p in model.parameters())


# ---------------------------------------------------------------- weights


def test_local_weights_file_loads_with_a_fresh_head(tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(123)
    donor = timm.create_model("test_convnext", num_classes=3)
    path = tmp_path / "donor.safetensors"
    save_file(donor.state_dict(), str(path))
    m = TimmMember.model_validate(member(weights=str(path)))
    model = resolve_model("cnx", m, 3).create()
    got, want = model.state_dict(), donor.state_dict()
    body = [k for k in want if not k.startswith("head.fc")]
    assert all(torch.equal(got[k], want[k]) for k in body)
    assert not torch.equal(got["head.fc.weight"], want["head.fc.weight"])  # fresh head although K matches


def test_weights_file_of_another_architecture_is_refused(tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    effnet, convnext = tmp_path / "effnet.safetensors", tmp_path / "convnext.pth"
    save_file(timm.create_model("test_efficientnet", num_classes=3).state_dict(), str(effnet))
    torch.save(timm.create_model("test_convnext", num_classes=3).state_dict(), convnext)
    with pytest.raises(
        KitError, match=r"members\.a\.weights: could not load .*effnet.* into 'test_convnext'"
    ):
        resolve_model("a", TimmMember.model_validate(member(weights=str(effnet))), 3)
    # timm loads this one non-strictly and silently; kit notices that nothing was loaded
    with pytest.raises(
        KitError, match=r"members\.b\.weights: nothing in .*convnext.pth matches 'test_efficientnet'"
    ):
        resolve_model("b", TimmMember.model_validate(member("test_efficientnet", weights=str(convnext))), 3)
    with pytest.raises(KitError, match=r"members\.c\.weights: file .*missing.pth not found"):
        resolve_model("c", TimmMember.model_validate(member(weights=str(tmp_path / "missing.pth"))), 3)


def test_pretrained_offline_fails_fast_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-kit-test-cache")
    m = TimmMember.model_validate(member("convnext_atto", pretrained=True))
    t0 = time.perf_counter()
    with pytest.raises(KitError) as e:
        resolve_model("cnx", m, 3)
    assert time.perf_counter() - t0 < 10
    msg = str(e.value)
    assert "members.cnx.pretrained" in msg and "members.cnx.weights: PATH" in msg


def test_unknown_model_names_close_matches() -> None:
    with pytest.raises(
        KitError, match=r"members\.x\.model: unknown timm model 'convnxt_tiny'.*convnext_tiny"
    ):
        resolve_model("x", TimmMember.model_validate(member("convnxt_tiny")), 3)


def test_image_size_the_backbone_cannot_take() -> None:
    with pytest.raises(KitError, match=r"members\.c\.img_size: 'test_convnext' cannot take 16x16 images"):
        resolve_model("c", TimmMember.model_validate(member(img_size=16)), 3)
    with pytest.raises(KitError, match=r"members\.v\.img_size: 'test_vit' cannot take 20x20 .*patch size"):
        resolve_model("v", TimmMember.model_validate(member("test_vit", img_size=20)), 3)
    with pytest.raises(ValueError, match=r"model_kwargs.img_size \(64\) differs from img_size \(32\)"):
        TimmMember.model_validate(member("swin_tiny_patch4_window7_224", model_kwargs={"img_size": 64}))


# ---------------------------------------------------------------- losses and sampler on a long-tailed toy set

COUNTS = np.array([90, 9, 1])


def _toy(n: int = 64, soft: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(n, 3, generator=g) * 2
    y = torch.randint(0, 3, (n,), generator=g)
    return logits, y


def test_losses_match_their_definitions() -> None:
    logits, y = _toy()
    ce = F.cross_entropy(logits, y)
    assert torch.allclose(KitLoss(LossConfig(kind="ce"), COUNTS)(logits, y), ce)
    assert torch.allclose(KitLoss(LossConfig(kind="focal", gamma=0.0), COUNTS)(logits, y), ce)
    focal = KitLoss(LossConfig(kind="focal", gamma=2.0), COUNTS)(logits, y)
    p = F.softmax(logits, 1)[torch.arange(len(y)), y]
    assert torch.allclose(focal, (-((1 - p) ** 2) * p.log()).mean(), atol=1e-6)
    assert focal < ce
    ls = KitLoss(LossConfig(kind="label_smoothing", label_smoothing=0.2), COUNTS)(logits, y)
    assert torch.allclose(ls, F.cross_entropy(logits, y, label_smoothing=0.2), atol=1e-6)
    inv = COUNTS.astype(float) ** -1.0
    w = torch.tensor(inv / inv.mean(), dtype=torch.float32)
    wce = KitLoss(LossConfig(kind="weighted_ce"), COUNTS)(logits, y)
    assert torch.allclose(wce, F.cross_entropy(logits, y, weight=w), atol=1e-6)
    prior = torch.tensor(COUNTS / COUNTS.sum(), dtype=torch.float32)
    la = KitLoss(LossConfig(kind="logit_adjusted", tau=1.0), COUNTS)(logits, y)
    assert torch.allclose(la, F.cross_entropy(logits + prior.log(), y), atol=1e-6)
    bs = KitLoss(LossConfig(kind="balanced_softmax"), COUNTS)(logits, y)
    assert torch.allclose(
        bs, F.cross_entropy(logits + torch.tensor(COUNTS, dtype=torch.float32).log(), y), atol=1e-5
    )
    # soft targets (mixup) equal the hard ones when one-hot
    soft = F.one_hot(y, 3).float()
    assert torch.allclose(KitLoss(LossConfig(kind="focal"), COUNTS)(logits, soft), focal)


def test_weighted_sampler_draws_rare_classes_at_the_expected_rate() -> None:
    labels = np.repeat(np.arange(3), COUNTS * 20)  # 1800 / 180 / 20 images
    for power, expected in [
        (1.0, [1 / 3] * 3),
        (0.5, np.sqrt(COUNTS) / np.sqrt(COUNTS).sum()),
        (0.0, COUNTS / COUNTS.sum()),
    ]:
        draws = np.concatenate(
            [labels[epoch_order(labels, SamplerConfig(kind="weighted", power=power), s, 3)] for s in range(5)]
        )
        rate = np.bincount(draws, minlength=3) / len(draws)
        np.testing.assert_allclose(rate, expected, atol=0.02)
    plain = epoch_order(labels, SamplerConfig(), 7, 3)
    assert sorted(plain.tolist()) == list(range(len(labels)))  # a permutation
    assert np.array_equal(plain, epoch_order(labels, SamplerConfig(), 7, 3))


def test_stacked_rebalancers_warn(tmp_path: Path) -> None:
    from kit.train.losses import RebalanceWarning

    data = make_competition(tmp_path / "data")
    m = member(loss={"kind": "balanced_softmax"}, sampler={"kind": "weighted"})
    cfg = load_config(write_config(tmp_path / "kit.yaml", data, {"cnx": m}))
    with pytest.warns(RebalanceWarning, match="stacks 2 class rebalancers"):
        train_in_process(cfg, ["cnx"])


# ---------------------------------------------------------------- augmentation and TTA


def test_tta_views_count_and_plain_view() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(5)).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        model(x)
        out = predict_views(model, x, ["plain", "hflip", "vflip", "rot90"])
        assert out.shape == (2, 4, 5)
        assert torch.equal(out[:, 0], model(x))
        assert torch.allclose(out[:, 1], model(x.flip(-1)))
        assert not math.isclose(float((out[:, 0] - out[:, 3]).abs().sum()), 0.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_channels_last(tmp_path: Path) -> None:
    data = make_competition(tmp_path / "data")
    cfg = load_config(write_config(tmp_path / "kit.yaml", data, {"g": member(device="cuda", epochs=2)}))
    [d] = train_in_process(cfg, ["g"])
    meta = json.loads((d / "meta.json").read_text())
    assert meta["run"]["device"] == "cuda"
    assert np.isfinite(np.load(d / "oof_logits.npy")).all()


def test_early_stopping_on_the_fold_metric(tmp_path: Path) -> None:
    # lr so small the validation score cannot improve after epoch 1: patience 1 stops after epoch 2
    data = make_competition(tmp_path / "data")
    m = member(epochs=4, early_stopping=1, lr=1e-12, warmup_epochs=0)
    cfg = load_config(write_config(tmp_path / "kit.yaml", data, {"cnx": m}))
    [d] = train_in_process(cfg, ["cnx"])
    run = json.loads((d / "meta.json").read_text())["run"]
    assert run["epochs"] == [2, 2] and run["stopped_early"] == [True, True] and run["best_epoch"] == [0, 0]


def test_out_of_memory_message_names_the_key() -> None:
    from kit.train.loop import oom_error

    msg = str(oom_error("swin", 64))
    assert "members.swin.batch_size = 64" in msg and "--set members.swin.batch_size=32" in msg


def test_unreachable_hub_switches_to_offline_within_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    from kit.train.hub import ensure_hub_mode

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    t0 = time.perf_counter()
    assert ensure_hub_mode() is True
    assert time.perf_counter() - t0 < 2
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # a user's explicit choice is respected
    assert ensure_hub_mode() is False
