"""Per-image training augmentation (kit.train.transforms) and Mixup/CutMix (kit.train.data): real timm,
torchvision and albumentations transforms on real arrays, seeded per call; the bad-config paths through the CLI."""

from __future__ import annotations

import pickle
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import invoke
from train_helpers import make_competition, member, write_config
from typer.testing import CliRunner

from kit.config.schema import AugmentConfig
from kit.errors import KitError
from kit.train.data import apply_mixup, build_mixup, mixup_epoch
from kit.train.transforms import albumentations_pipeline, build_train_transform

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def photo(h: int = 60, w: int = 90, seed: int = 0) -> np.ndarray:
    """A non-square uint8 image with structure (gradients plus noise), so crops and ops change it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], -1)
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def transform(size: int = 32, interpolation: str = "bicubic", **kw):
    return build_train_transform(AugmentConfig(**kw), size, MEAN, STD, interpolation)


def test_output_shape_dtype_and_normalisation_on_a_non_square_image() -> None:
    colour = np.array([200, 30, 120], np.uint8)
    img = np.broadcast_to(colour, (40, 70, 3)).copy()
    expected = (colour / 255 - np.array(MEAN)) / np.array(STD)  # the model's mean and std
    geometric = [
        {"preset": "none"},
        {"hflip": True, "vflip": True, "rot90": True, "scale": [0.3, 0.6], "color_jitter": 0},
    ]
    for kw in geometric:  # crops, flips and turns of one colour: every pixel is that colour, normalised
        x = transform(48, **kw)(img, seed=3)
        assert x.shape == (3, 48, 48) and x.dtype == torch.float32
        np.testing.assert_allclose(x.numpy(), np.broadcast_to(expected[:, None, None], x.shape), atol=1e-5)
    x = transform(48, preset="strong")(photo(30, 100), seed=3)  # a 30 x 100 image still gives 48 x 48
    assert x.shape == (3, 48, 48) and torch.isfinite(x).all()


def test_same_seed_same_tensor_other_seed_differs_and_global_rngs_untouched() -> None:
    t = transform(auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.5, hflip=True, blur_prob=0.5)
    img = photo()
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    a, b, c = t(img, 5), t(img, 5), t(img, 6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (
        random.random(),
        np.random.rand(),
        torch.rand(1).item(),
    ) == expected  # training's RNGs as they were
    assert torch.equal(pickle.loads(pickle.dumps(t))(img, 5), a)  # a pickled copy rebuilds the same stages


class _Augmented(torch.utils.data.Dataset):
    def __init__(self, t, images: list[np.ndarray]) -> None:
        self.t, self.images = t, images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.t(self.images[i], 1000 + i)


def test_a_dataloader_worker_draws_what_the_main_process_draws() -> None:
    t = transform(auto_augment="augmix-m3-w2-d1", re_prob=0.5, re_mode="pixel", color_jitter=0.3, hflip=True)
    images = [photo(50 + 7 * i, 80 - 5 * i, seed=i) for i in range(4)]
    main = torch.stack([t(img, 1000 + i) for i, img in enumerate(images)])
    # workers seed the global generators their own way (base_seed + worker id): the outputs must not care
    loader = torch.utils.data.DataLoader(_Augmented(t, images), batch_size=2, num_workers=2)
    assert torch.equal(torch.cat(list(loader)), main)


def test_each_option_changes_the_output_the_way_it_should() -> None:
    img, seed = photo(), 7
    base = transform(preset="none")(img, seed)
    erased = transform(preset="none", re_prob=1.0)(img, seed)
    zero_cols = (erased == 0).all(dim=0).sum().item()  # const mode: erased pixels are 0 after normalising
    assert zero_cols >= 16 and (base == 0).all(dim=0).sum().item() == 0

    def tv(x: torch.Tensor) -> float:  # total variation: blur lowers it
        return float((x[:, 1:] - x[:, :-1]).abs().mean() + (x[:, :, 1:] - x[:, :, :-1]).abs().mean())

    assert tv(transform(preset="none", blur_prob=1.0, blur_sigma=(1.5, 2.0))(img, seed)) < 0.8 * tv(base)
    jittered = [transform(preset="none", color_jitter=[0.5, 0.5, 0.5, 0.1])(img, s) for s in range(4)]
    assert all(not torch.allclose(j, base, atol=1e-3) for j in jittered)
    for policy in ("rand-m9-mstd0.5-inc1", "augmix-m5-w4-d2", "original", "trivial"):
        out = [transform(preset="none", auto_augment=policy)(img, s) for s in range(4)]
        assert any(not torch.allclose(o, base, atol=1e-3) for o in out), policy
    # the preset's crop: a random part of the image at `size`, so seeds differ; none is one fixed crop
    assert not torch.equal(transform()(img, 1), transform()(img, 2))
    assert torch.equal(transform(preset="none")(img, 1), transform(preset="none")(img, 2))


def test_color_jitter_follows_the_preset_and_steps_aside_for_auto_augment() -> None:
    assert AugmentConfig().jitter == (0.1, 0.1, 0.0, 0.0)  # light: today's brightness/contrast
    assert AugmentConfig(preset="strong").crop_scale == (0.35, 1.0)
    assert AugmentConfig(auto_augment="rand-m9").jitter == (0.0, 0.0, 0.0, 0.0)  # as timm's train transform
    assert AugmentConfig(auto_augment="rand-m9", color_jitter=0.4).jitter == (0.4, 0.4, 0.4, 0.0)
    assert AugmentConfig(scale=(0.2, 0.9), preset="none").crop_scale == (0.2, 0.9)


def test_a_declared_albumentations_pipeline_is_applied_and_seeded() -> None:
    img = photo()
    inverted = transform(preset="none", albumentations=[{"name": "InvertImg", "p": 1.0}])(img, 3)
    # the declared step runs on the crop: inverting there is inverting the stored image (preset none)
    np.testing.assert_allclose(inverted.numpy(), transform(preset="none")(255 - img, 3).numpy(), atol=1e-5)
    noisy = transform(
        preset="none", albumentations=[{"name": "GaussNoise", "std_range": [0.1, 0.2], "p": 1.0}]
    )
    a, b, c = noisy(img, 3), noisy(img, 3), noisy(img, 4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    loader = torch.utils.data.DataLoader(_Augmented(noisy, [img, img]), batch_size=2, num_workers=1)
    assert torch.equal(next(iter(loader)), torch.stack([noisy(img, 1000), noisy(img, 1001)]))


def test_albumentations_missing_is_a_kit_error_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "albumentations", None)  # what `import` sees when it is not installed
    with pytest.raises(
        KitError, match=r"members\.m\.augment\.albumentations .*pip install 'kit\[albumentations\]'"
    ):
        albumentations_pipeline([{"name": "HorizontalFlip"}], "members.m.augment.albumentations")


@pytest.mark.parametrize(
    ("augment", "expected"),
    [
        (
            {"auto_augment": "rand-m9-foo"},
            ["members.m.augment.auto_augment", "'foo'", "rand-m9-mstd0.5-inc1"],
        ),
        (
            {"auto_augment": "randaug"},
            ["members.m.augment.auto_augment", "unknown policy 'randaug'", "trivial"],
        ),
        (
            {"albumentations": [{"name": "HorizontalFlipp"}, {"name": "GaussNoise", "std_range": [0.5]}]},
            [
                "members.m.augment.albumentations[0].name: 'HorizontalFlipp'",
                "did you mean HorizontalFlip",
                "members.m.augment.albumentations[1] (GaussNoise)",
            ],
        ),
        ({"albumentations": [{"p": 1.0}]}, ["members.m.augment.albumentations", "needs `name:`"]),
        (
            {"albumentations": [{"name": "RandomCrop", "height": 16, "width": 16}]},
            [
                "members.m.augment.albumentations: the steps turn the 32 x 32 crop into 16 x 16 x 3",
                "augment.scale",
            ],
        ),
    ],
)
def test_bad_augment_is_refused_by_kit_train_before_any_image_is_decoded(
    tmp_path: Path, runner: CliRunner, augment: dict, expected: list[str]
) -> None:
    data = make_competition(tmp_path / "data")
    cfg = write_config(tmp_path / "kit.yaml", data, {"m": member("test_efficientnet", augment=augment)})
    r = invoke(runner, ["train", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 1 and "Traceback" not in r.output
    for text in expected:
        assert text in r.output, r.output
    assert (
        not (tmp_path / "work" / "cache" / "images").exists() and not (tmp_path / "work" / "members").exists()
    )


def test_auto_augment_grammar_matches_what_timm_builds() -> None:
    from timm.data.auto_augment import (
        augment_and_mix_transform,
        auto_augment_transform,
        rand_augment_transform,
    )

    from kit.config.schema import auto_augment_problem

    good = [
        "rand-m9-mstd0.5-inc1",
        "rand-m7-n3-p0.8-mmax12-tweights",
        "augmix-m5-w4-d2-a1.0-b1",
        "v0r-mstd0.5",
    ]
    for text in good:
        assert auto_augment_problem(text) is None, text
        build = {"rand": rand_augment_transform, "augmix": augment_and_mix_transform}
        build.get(text.split("-")[0], auto_augment_transform)(text, {})  # timm takes it too
    for bad in ["rand-m9-x3", "augmix-n2", "rand-mfoo", "rand-tfoo", "v1", "original-m5"]:
        assert auto_augment_problem(bad), bad


def _one_hot_rows(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    return x, torch.arange(n)


def test_mixup_prob_mode_and_soft_targets_reach_timm() -> None:
    cfg = AugmentConfig(mixup=0.4, mixup_prob=1.0, mixup_mode="elem")
    mix = build_mixup(cfg, 8)
    assert (mix.mix_prob, mix.switch_prob, mix.mode) == (1.0, 0.5, "elem")  # type: ignore[attr-defined]
    x, y = _one_hot_rows(8)
    soft = torch.cat(
        [torch.eye(8), torch.linspace(1, 2, 8)[:, None]], 1
    )  # + a weight column (kit.train.loop)
    xm, ym = apply_mixup(mix, x.clone(), soft, seed=3)
    lam = ym[:, :8].diagonal()  # image i keeps lam_i of itself, takes 1 - lam_i of image 7 - i
    assert len(set(lam.tolist())) > 1  # per-image lambdas: mode elem
    np.testing.assert_allclose(
        xm[:, 0, 0, 0], lam * x[:, 0, 0, 0] + (1 - lam) * x.flip(0)[:, 0, 0, 0], atol=1e-5
    )
    np.testing.assert_allclose(ym[:, 8], lam * soft[:, 8] + (1 - lam) * soft.flip(0)[:, 8], atol=1e-6)
    never = build_mixup(AugmentConfig(mixup=0.4, mixup_prob=0.0), 8)
    xn, yn = apply_mixup(never, x.clone(), y, seed=3)
    assert torch.equal(xn, x) and torch.equal(yn, torch.eye(8))


def test_mixup_off_epoch_stops_mixing_from_that_epoch_on() -> None:
    cfg = AugmentConfig(mixup=0.4, cutmix=1.0, mixup_off_epoch=2)
    mix = build_mixup(cfg, 8)
    x, y = _one_hot_rows(8)
    for epoch in range(4):
        mixup_epoch(mix, cfg, epoch)  # what kit.train.kinds.timm.run_epochs calls each epoch
        xm, ym = apply_mixup(mix, x.clone(), y, seed=epoch)
        if epoch < 2:  # soft targets, images blended
            assert ym.shape == (8, 8) and not torch.equal(xm, x)
        else:  # the batch passes through: class indices, the plain (hard-label) loss path
            assert torch.equal(ym, y) and torch.equal(xm, x)


def test_cli_train_with_rand_augment_erasing_and_mixup(tmp_path: Path, runner: CliRunner) -> None:
    data = make_competition(tmp_path / "data")
    augment = {
        "auto_augment": "rand-m9-mstd0.5-inc1",
        "re_prob": 0.5,
        "mixup": 0.4,
        "cutmix": 1.0,
        "mixup_prob": 0.5,
        "switch_prob": 0.3,
        "mixup_off_epoch": 1,
        "hflip": True,
    }
    cfg = write_config(
        tmp_path / "kit.yaml", data, {"m": member("test_efficientnet", epochs=2, augment=augment)}
    )
    r = invoke(runner, ["train", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "fold 1 epoch 2/2" in r.output
    oof = np.load(tmp_path / "work" / "members" / "m" / "oof_logits.npy")
    assert oof.shape == (34, 1, 3) and np.isfinite(oof).all()


def test_rand_augment_at_full_magnitude_posterizes_to_zero_bits_without_failing() -> None:
    # rand-...-inc1 at magnitude 10 keeps 0 bits when it picks posterize; Pillow 13 refuses 0 (timm passes it on)
    t = transform(16, preset="none", auto_augment="rand-m10-n2-p1-inc1")
    outs = [t(photo(20, 30), s) for s in range(60)]
    black = (torch.zeros(3) - torch.tensor(MEAN)) / torch.tensor(STD)
    assert any(torch.allclose(o.mean(dim=(1, 2)), black, atol=1e-4) for o in outs)  # some came out black
