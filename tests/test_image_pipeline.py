"""The image pipeline: stored geometries (squash, pad, shorter_side), the memory-mapped store with its
index, centre crops for evaluation, and `kit train` / `kit predict` over images that are not square."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import invoke
from train_helpers import CLASSES, make_competition, member, write_config

from kit.data.cache import (
    DecodeStats,
    Geometry,
    build_image_store,
    decode_path,
    fit_image,
    header_size,
    store_paths,
)
from kit.data.table import Table
from kit.errors import KitError


def _stripes(w: int, h: int) -> np.ndarray:
    """A w x h image whose columns and rows are told apart: red = x, green = y (scaled to 0..255)."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, :, 0] = (np.arange(w) * 255 // max(1, w - 1))[None, :]
    a[:, :, 1] = (np.arange(h) * 255 // max(1, h - 1))[:, None]
    a[:, :, 2] = 200
    return a


def _save(path: Path, a: np.ndarray, orientation: int | None = None) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(a)
    if orientation is None:
        im.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(path, exif=exif, quality=95)
    return path


def _table(paths: list[Path]) -> Table:
    return Table(ids=[p.stem for p in paths], paths=paths)


def test_the_three_geometries_of_a_wide_image(tmp_path: Path) -> None:
    from PIL import Image

    rgb = Image.fromarray(_stripes(60, 30))  # 2:1
    squash = fit_image(rgb, Geometry("squash", 16))
    pad = fit_image(rgb, Geometry("pad", 16))
    short = fit_image(rgb, Geometry("shorter_side", 16))
    assert squash.shape == pad.shape == (16, 16, 3) and short.shape == (16, 32, 3)
    # pad: the image is 16 x 8 in the middle of a black square (4 black rows above and below)
    assert (pad[:4] == 0).all() and (pad[12:] == 0).all() and (pad[4:12, :, 2] > 150).all()
    # shorter side: the whole 2:1 image (red runs across the full width, green down the full height)
    assert short[:, 0, 0].max() < 20 and short[:, -1, 0].min() > 235
    assert short[0, :, 1].max() < 20 and short[-1, :, 1].min() > 235
    # a 5:1 image keeps its shorter side and the centre 2:1 of its longer one
    long = fit_image(Image.fromarray(_stripes(100, 20)), Geometry("shorter_side", 16))
    assert long.shape == (16, 32, 3)
    # columns 30..70 of 100 (red 77..180), not the whole width (0..255)
    assert 65 < long[:, 0, 0].mean() < 90 and 165 < long[:, -1, 0].mean() < 195
    tall = fit_image(Image.fromarray(_stripes(20, 50)), Geometry("shorter_side", 16, max_aspect=1.5))
    assert tall.shape == (24, 16, 3)
    assert Geometry("shorter_side", 16).key != Geometry("squash", 16).key != Geometry("pad", 16).key


def test_exif_turns_swap_the_header_size(tmp_path: Path) -> None:
    p = _save(tmp_path / "turned.jpg", _stripes(40, 20), orientation=6)  # 90 degrees: seen as 20 x 40
    assert header_size(p) == (20, 40)
    assert decode_path(p, Geometry("shorter_side", 16)).shape == (32, 16, 3)


def test_store_keeps_aspect_crops_the_centre_and_reports_before_decoding(tmp_path: Path) -> None:
    paths = [
        _save(tmp_path / "img" / "wide.png", _stripes(60, 30)),
        _save(tmp_path / "img" / "tall.png", _stripes(24, 36)),
        _save(tmp_path / "img" / "square.png", _stripes(20, 20)),
    ]
    lines: list[str] = []
    before = DecodeStats.decoded

    def report(line: str) -> None:
        lines.append(line)
        assert DecodeStats.decoded == before  # printed before any image is decoded

    g = Geometry("shorter_side", 16)
    store = build_image_store(_table(paths), g, tmp_path / "cache", split="train", report=report)
    assert [store.image(i).shape for i in range(3)] == [(16, 32, 3), (24, 16, 3), (16, 16, 3)]
    assert DecodeStats.decoded == before + 3
    data, index = store_paths(tmp_path / "cache", "train", _table(paths).fingerprint(), g, "bicubic")
    nbytes = (16 * 32 + 24 * 16 + 16 * 16) * 3
    assert np.load(data, mmap_mode="r").shape == (nbytes,) and np.load(index).shape == (3, 3)
    assert lines == [
        f"train images: 3 at shorter side 16 px (longer side up to 32): {nbytes / 1e6:.1f} MB on disk at "
        f"{data}, memory-mapped"
    ]
    crops = store.crops(np.array([0, 1, 2]), 12)
    assert crops.shape == (3, 12, 12, 3) and crops.dtype == np.uint8
    np.testing.assert_array_equal(crops[0], store.image(0)[2:14, 10:22])
    np.testing.assert_array_equal(crops[1], store.image(1)[6:18, 2:14])
    # read back: the same pixels, nothing decoded
    again = build_image_store(_table(paths), g, tmp_path / "cache", split="train")
    assert DecodeStats.decoded == before + 3
    np.testing.assert_array_equal(again.image(0), store.image(0))
    with pytest.raises(ValueError, match="cannot give a 20 px crop"):
        store.crops(np.array([2]), 20)


def test_old_and_half_written_stores_are_never_read(tmp_path: Path) -> None:
    paths = [_save(tmp_path / "img" / f"{i}.png", _stripes(30 + i, 20)) for i in range(2)]
    t, cache = _table(paths), tmp_path / "cache"
    g = Geometry("pad", 16)
    fp = t.fingerprint()
    (cache / "images").mkdir(parents=True)
    old = cache / "images" / f"train-{fp}-16px-bicubic-d2.npy"  # what DECODE_VERSION 2 wrote
    np.save(old, np.zeros((2, 16, 16, 3), np.uint8))
    before = DecodeStats.decoded
    store = build_image_store(t, g, cache, split="train")
    assert DecodeStats.decoded == before + 2 and store.image(0).any()
    data, index = store_paths(cache, "train", fp, g, "bicubic")
    assert data != old and data.name.endswith("-d3.npy")
    index.unlink()  # a build killed between the two renames
    build_image_store(t, g, cache, split="train")
    assert DecodeStats.decoded == before + 4 and index.exists()
    np.save(data, np.zeros(5, np.uint8))  # data that disagrees with its index
    rebuilt = build_image_store(t, g, cache, split="train")
    assert DecodeStats.decoded == before + 6
    np.testing.assert_array_equal(rebuilt.image(1), store.image(1))
    assert not [p for p in (cache / "images").iterdir() if ".tmp" in p.name]


def test_preflight_counts_a_built_store_as_built(tmp_path: Path) -> None:
    """kit train's disk estimate leaves out the stores already built, at the member's geometry only."""
    from kit.config.schema import TimmMember
    from kit.train.preflight import Inputs, _cached

    paths = [_save(tmp_path / "img" / f"{i}.png", _stripes(30 + i, 20)) for i in range(2)]
    t, cache = _table(paths), tmp_path / "cache"
    build_image_store(t, Geometry("shorter_side", 40), cache, split="train")
    inp = Inputs(t, None, cache, 2, lambda split: t.fingerprint())

    def built(**kw: object) -> bool:
        return _cached(inp, "train", TimmMember.model_validate(member("test_efficientnet", **kw)))

    assert built() and built(cache_size=40) and built(img_size=40)
    assert not built(cache_size=48) and not built(img_size=48) and not built(resize="pad")
    assert not _cached(
        Inputs(t, None, cache, 2, lambda split: "0" * 16), "train", TimmMember.model_validate(member())
    )


def test_preflight_sizes_a_shorter_side_store_by_its_stored_side_and_the_images_aspect(
    tmp_path: Path,
) -> None:
    """kit train's disk estimate is the bytes the store then takes: 2:1 and 3:1 images (the longer side capped
    at 2x) take twice a square's bytes, not img_size squared."""
    from kit.train.preflight import estimate, images_aspect

    sizes = [(40, 20), (30, 30), (20, 60)]  # 2:1, square, 1:3 (stored as 1:2)
    paths = [_save(tmp_path / "img" / f"{i}.png", _stripes(w, h)) for i, (w, h) in enumerate(sizes)]
    aspect = images_aspect(paths)
    assert aspect == pytest.approx(5 / 3)
    store = build_image_store(_table(paths), Geometry("shorter_side", 20), tmp_path / "cache", split="train")
    data, _ = store_paths(tmp_path / "cache", "train", _table(paths).fingerprint(), store.geometry, "bicubic")
    stored = int(np.load(data, mmap_mode="r").size)
    assert stored == (20 * 40 + 20 * 20 + 40 * 20) * 3
    e = estimate("m", 16, 3, batch_size=2, n_train_rows=3, stored_side=20, aspect=aspect)
    assert e.cache_bytes == stored
    assert (
        estimate("m", 16, 3, batch_size=2, n_train_rows=3).cache_bytes == 3 * 16 * 16 * 3
    )  # squash at img_size


def test_train_batches_are_the_same_in_workers_in_a_shard_and_over_stacked_stores(tmp_path: Path) -> None:
    """TrainBatches seeds image j of batch b by its global position: DataLoader workers (the stores pickle as
    their paths) and a DDP rank's half of each batch draw the numbers the whole batch in one process does."""
    import torch

    from kit.config.schema import AugmentConfig
    from kit.train.data import EvalBatches, StackedCache, TrainBatches, iterate
    from kit.train.transforms import build_train_transform

    train = [_save(tmp_path / "a" / f"{i}.png", _stripes(30 + 3 * i, 20 + i)) for i in range(5)]
    extra = [_save(tmp_path / "b" / f"{i}.png", _stripes(20, 34 + i)) for i in range(3)]
    g = Geometry("shorter_side", 20)
    parts = [
        build_image_store(_table(p), g, tmp_path / "c", split=s) for p, s in ((train, "t"), (extra, "x"))
    ]
    images = StackedCache(list(parts))
    assert len(images) == 8 and images.image(6).shape == parts[1].image(1).shape == (35, 20, 3)
    rows = [np.array([6, 0, 3, 7]), np.array([1, 5, 2, 4])]
    labels = np.arange(8) % 2
    t = build_train_transform(
        AugmentConfig(preset="strong", hflip=True), 16, (0.5,) * 3, (0.25,) * 3, "bicubic"
    )
    whole = list(iterate(TrainBatches(images, rows, labels, t, seed=7)))
    assert whole[0][0].shape == (4, 3, 16, 16) and whole[0][0].dtype == torch.float32
    assert whole[0][1].tolist() == [0, 0, 1, 1]
    in_workers = list(iterate(TrainBatches(images, rows, labels, t, seed=7), num_workers=2))
    half = [slice(2, 4), slice(2, 4)]
    rank1 = list(iterate(TrainBatches(images, rows, labels, t, seed=7, parts=half)))
    for b in range(2):
        assert torch.equal(whole[b][0], in_workers[b][0])
        assert (
            torch.equal(whole[b][0][2:], rank1[b][0]) and rank1[b][1].tolist() == labels[rows[b][2:]].tolist()
        )
    other = list(iterate(TrainBatches(images, rows, labels, t, seed=8)))
    assert not torch.equal(whole[0][0], other[0][0])  # the seed matters
    (crops, y), _ = list(iterate(EvalBatches(images, rows, 16, labels)))
    assert crops.shape == (4, 16, 16, 3) and crops.dtype == torch.uint8 and y.tolist() == [0, 0, 1, 1]
    np.testing.assert_array_equal(crops[0].numpy(), parts[1].image(1)[9:25, 2:18])


def test_bad_images_are_listed_before_any_decoding(tmp_path: Path) -> None:
    good = _save(tmp_path / "img" / "good.png", _stripes(30, 20))
    broken = tmp_path / "img" / "broken.png"
    broken.write_bytes(b"not an image")
    before = DecodeStats.decoded
    with pytest.raises(KitError) as e:
        build_image_store(
            _table([good, broken, tmp_path / "gone.png"]),
            Geometry("shorter_side", 16),
            tmp_path / "c",
            split="train",
        )
    assert DecodeStats.decoded == before
    assert len(e.value.problems) == 2 and "missing" in " ".join(e.value.problems)


# ---------------------------------------------------------------- through the CLI


def _wide_competition(root: Path) -> Path:
    """make_competition's images re-saved at 36 x 24 (3:2), so the geometries differ."""
    from PIL import Image

    data = make_competition(root)
    for p in [*(data / "train").iterdir(), *(data / "test").iterdir()]:
        with Image.open(p) as im:
            im.convert("RGB").resize((36, 24)).save(p)
    return data


@pytest.mark.parametrize("resize", ["shorter_side", "pad", "squash"])
def test_kit_train_each_resize_mode_and_predict_bit_equal(
    tmp_path: Path, runner, resize: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kit import Predictor

    # training picks its thread count from the machine's load; bit-equal logits need the same count here
    monkeypatch.setenv("KIT_THREADS", "1")

    data = _wide_competition(tmp_path / "data")
    m = member("test_efficientnet", resize=resize, crop_pct=0.8, tta=["plain", "hflip"])
    config = write_config(tmp_path / "kit.yaml", data, {"eff": m})
    res = invoke(runner, ["train", "--config", str(config)], cwd=tmp_path)
    assert res.exit_code == 0, res.output
    # crop_pct 0.8 at img_size 32: stored at 40 px
    shape = {"shorter_side": "at shorter side 40 px (longer side up to 80)", "pad": "padded to 40 x 40 px"}
    want = shape.get(resize, "squashed to 40 x 40 px")
    out = " ".join(res.output.split())
    assert f"train images: 34 {want}" in out and f"test images: 8 {want}" in out
    work = tmp_path / "work" / "members" / "eff"
    meta = yaml.safe_load((work / "meta.json").read_text())
    assert meta["preprocess"]["resize"] == resize and meta["preprocess"]["cache_size"] == 40
    assert meta["preprocess"]["crop_pct"] == 0.8 and meta["preprocess"]["model_crop_mode"] == "center"
    assert np.load(work / "oof_logits.npy").shape == (34, 2, len(CLASSES))
    images = sorted((data / "test").iterdir())
    want_logits = np.load(work / "test_logits.npy")
    assert np.array_equal(_member_logits(Predictor.from_workspace(config, member="eff"), images), want_logits)
    # a bundle records the geometry and decodes new images to it
    res = invoke(runner, ["export", "--member", "eff", "--out", str(tmp_path / "b"), "-c", str(config)])
    assert res.exit_code == 0, res.output
    plan = json.loads((tmp_path / "b" / "members" / "eff" / "member.json").read_text())
    assert (plan["resize"], plan["cache_size"], plan["size"]) == (resize, 40, 32)
    assert np.array_equal(_member_logits(Predictor.load(tmp_path / "b"), images), want_logits)


def _member_logits(p: Any, images: list[Path]) -> np.ndarray:
    """The logits of the predictor's one member, on one thread (as the training runs in these tests)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ((_, got),) = p.member_logits(images).values()
        return got
    finally:
        torch.set_num_threads(threads)


def test_a_bundle_from_before_the_pipeline_decodes_as_squash(
    tmp_path: Path, runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """member.json without resize and cache_size (an older kit's export) is read as squashed to its size:
    the pixels a squash member at crop_pct 1 trains on, so its logits are the member's test logits."""
    from kit import Predictor

    monkeypatch.setenv("KIT_THREADS", "1")
    data = _wide_competition(tmp_path / "data")
    m = member("test_efficientnet", resize="squash", crop_pct=1.0)
    config = write_config(tmp_path / "kit.yaml", data, {"eff": m})
    assert invoke(runner, ["train", "--config", str(config)], cwd=tmp_path).exit_code == 0
    res = invoke(runner, ["export", "--member", "eff", "--out", str(tmp_path / "b"), "-c", str(config)])
    assert res.exit_code == 0, res.output
    b = tmp_path / "b"
    rel = "members/eff/member.json"
    plan = json.loads((b / rel).read_text())
    assert (plan.pop("resize"), plan.pop("cache_size")) == ("squash", 32)
    (b / rel).write_text(json.dumps(plan, indent=2))
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["files"][rel] = {
        "sha256": hashlib.sha256((b / rel).read_bytes()).hexdigest(),
        "size": (b / rel).stat().st_size,
    }
    (b / "manifest.json").write_text(json.dumps(manifest, indent=2))
    p = Predictor.load(b)
    assert (p.plans["eff"].resize, p.plans["eff"].cache_size) == ("squash", None)
    want = np.load(tmp_path / "work" / "members" / "eff" / "test_logits.npy")
    assert np.array_equal(_member_logits(p, sorted((data / "test").iterdir())), want)


def test_bad_pipeline_keys_are_kit_errors_through_the_cli(tmp_path: Path, runner) -> None:
    data = make_competition(tmp_path / "data")
    m = member(resize="crop", cache_size=16, crop_pct=1.5)
    config = write_config(tmp_path / "kit.yaml", data, {"cnx": m})
    res = invoke(runner, ["validate", str(config)], cwd=tmp_path)
    out = " ".join(res.output.split())
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "members.cnx.resize" in out and "shorter_side" in out and "members.cnx.crop_pct" in out
    config = write_config(tmp_path / "kit.yaml", data, {"cnx": member(cache_size=24)})
    res = invoke(runner, ["train", "--config", str(config)], cwd=tmp_path)
    out = " ".join(res.output.split())
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "members.cnx.cache_size: 24 is below img_size (32)" in out and "cache_size >= 32" in out
