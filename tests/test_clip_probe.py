"""CLIP linear-probe members: a real one-layer open_clip model (random weights, no download) on the real demo PNGs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import invoke

from kit.demo.digits import competition_section
from kit.errors import KitError

PROMPT = "a photo of a {}."
# a custom one-layer config registered with open_clip (LIBRARY-NOTES), distinct from kit's own tiny config
TEST_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
ODD_MEAN, ODD_STD = (0.5, 0.25, 0.125), (0.2, 0.3, 0.4)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kit.demo.tiny_clip import write_tiny_clip

    return write_tiny_clip(tmp_path_factory.mktemp("models") / "clip-tiny")


def write_config(tmp_path: Path, demo_dir: Path, tiny_dir: Path, **member: object) -> Path:
    """kit.yaml in tmp_path for the demo competition with one clip_probe member `clip` (3 folds)."""
    (tmp_path / "clip-tiny").symlink_to(tiny_dir, target_is_directory=True)
    spec = {"kind": "clip_probe", "model": "local-dir:clip-tiny", "epochs": 5, "tta": ["plain", "hflip"]}
    spec.update(member)
    cfg = {
        "competition": competition_section(demo_dir),
        "folds": {"k": 3},
        "workdir": "work",
        "members": {"clip": spec},
    }
    path = tmp_path / "kit.yaml"
    path.write_text(yaml.safe_dump(cfg), "utf-8")
    return path


def workspace(path: Path, overrides: list[str] | None = None):
    from kit.config.load import load_config
    from kit.workspace import open_workspace

    cfg = load_config(path, overrides)
    return open_workspace(cfg), cfg


# ---------------------------------------------------------------- loading


def test_local_dir_round_trip_keeps_weights_and_preprocessing(tmp_path: Path) -> None:
    import open_clip
    import torch
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file

    from kit.train.clip_model import CONFIG_FILE, WEIGHTS_FILE, ClipSource, load_clip

    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "kit-test-clip.json").write_text(json.dumps(TEST_CFG))
    open_clip.add_model_config(tmp_path / "cfgs")
    model = open_clip.create_model(
        "kit-test-clip",
        force_preprocess_cfg={"mean": ODD_MEAN, "std": ODD_STD, "interpolation": "bilinear"},
    )
    out = tmp_path / "export"
    out.mkdir()
    save_config_for_hf(model, out / CONFIG_FILE, TEST_CFG)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / WEIGHTS_FILE))

    loaded, pp = load_clip(ClipSource(member="clip", model=f"local-dir:{out}"))
    assert tuple(pp["mean"]) == ODD_MEAN and tuple(pp["std"]) == ODD_STD
    assert pp["interpolation"] == "bilinear"
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_write_tiny_clip_keeps_custom_preprocessing(tmp_path: Path) -> None:
    from kit.demo.tiny_clip import write_tiny_clip
    from kit.train.clip_model import ClipSource, load_clip

    d = write_tiny_clip(tmp_path / "m", preprocess={"mean": ODD_MEAN, "std": ODD_STD})
    model, pp = load_clip(ClipSource(member="clip", model=f"local-dir:{d}"))
    assert tuple(pp["mean"]) == ODD_MEAN and tuple(pp["std"]) == ODD_STD
    assert model.visual.output_dim == 64


@pytest.mark.parametrize(
    ("model", "pretrained", "needle"),
    [
        ("local-dir:/nonexistent/clip", None, "members.clip.model: folder /nonexistent/clip not found"),
        ("ViT-B-32", "/weights/model.pt", "members.clip.pretrained: '/weights/model.pt' looks like a file"),
        ("ViT-B-32", "laion9b_nope", "is not a pretrained tag of ViT-B-32; choose from"),
        ("ViT-B-32", "openai", "use model: ViT-B-32-quickgelu"),
        ("ViT-B-23", None, "did you mean"),
    ],
)
def test_bad_model_references_fail_with_the_key_and_fix(
    model: str, pretrained: str | None, needle: str
) -> None:
    from kit.train.clip_model import ClipSource, load_clip

    with pytest.raises(KitError) as e:
        load_clip(ClipSource(member="clip", model=model, pretrained=pretrained))
    assert needle in str(e.value)


def test_offline_missing_weights_fail_fast_and_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kit.train.clip_model import ClipSource, load_clip

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    src = ClipSource(
        member="clip", model="ViT-B-32", pretrained="laion2b_s34b_b79k", cache_dir=tmp_path / "hub"
    )
    t = time.perf_counter()
    with pytest.raises(KitError) as e:
        load_clip(src)
    elapsed = time.perf_counter() - t
    msg = str(e.value)
    assert msg.startswith(
        "members.clip.pretrained (ViT-B-32 / laion2b_s34b_b79k): could not load the weights"
    )
    assert "HF_HUB_OFFLINE=1" in msg and "local-dir:" in msg and str(tmp_path / "hub") in msg
    assert elapsed < 10, f"offline failure took {elapsed:.1f} s (retries?)"


def test_unreachable_hub_switches_to_offline_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import socket

    import huggingface_hub.constants

    from kit.train.clip_model import ClipSource, ensure_offline_mode

    with socket.socket() as s:  # a local port nobody listens on: the hub is unreachable
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    tag = ClipSource(member="clip", model="ViT-B-32", pretrained="laion2b_s34b_b79k")
    assert ensure_offline_mode(tag) is True
    assert os.environ["HF_HUB_OFFLINE"] == "1" and huggingface_hub.constants.HF_HUB_OFFLINE is True
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # an explicit choice is respected
    assert ensure_offline_mode(tag) is False
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert (
        ensure_offline_mode(ClipSource(member="clip", model="local-dir:/x")) is False
    )  # nothing to download


# ---------------------------------------------------------------- config


def test_config_rules_and_relative_local_dir(tmp_path: Path, demo_dir: Path, tiny_dir: Path) -> None:
    from kit.config.load import load_config

    path = write_config(tmp_path, demo_dir, tiny_dir, class_names={0: "zero"}, prompt=PROMPT)
    cfg = load_config(path)
    m = cfg.members["clip"]
    assert m.model == f"local-dir:{(tmp_path / 'clip-tiny').resolve()}"  # relative to the kit.yaml's folder
    assert m.class_names == {"0": "zero"}
    assert m.loss.kind == "focal" and m.sampler.kind == "weighted"
    for bad, needle in [
        (["members.clip.prompt=a photo"], "needs a '{}'"),
        (
            ["members.clip.epochs=0", "members.clip.prompt=null", "members.clip.class_names=null"],
            "pure zero-shot",
        ),
    ]:
        with pytest.raises(KitError, match="members.clip") as e:
            load_config(path, bad)
        assert needle in str(e.value)


# ---------------------------------------------------------------- training


def test_probe_artifacts_cache_reuse_and_new_view(tmp_path: Path, demo_dir: Path, tiny_dir: Path) -> None:
    from kit.artifacts.member import load_member
    from kit.metrics.scores import score
    from kit.train.embeddings import EmbedStats
    from kit.train.fold_loop import train_member

    path = write_config(tmp_path, demo_dir, tiny_dir, epochs=30)
    ws, cfg = workspace(path)
    n_train, n_test = len(ws.train), len(ws.test)
    before = EmbedStats.images
    out = train_member(ws, "clip", cfg.members["clip"], None)
    assert EmbedStats.images - before == n_train + n_test  # each image encoded once (both views per pass)

    art = load_member(ws.workdir, "clip", ws.expected())
    assert art.oof.shape == (n_train, 2, 10) and art.test.shape == (n_test, 2, 10)
    assert art.views == ["plain", "hflip"] and art.classes == ws.classes
    assert art.meta["kind"] == "clip_probe" and out == ws.workdir / "members" / "clip"
    pooled = art.meta["metrics"]["pooled"]["weighted_f1"]
    assert pooled == pytest.approx(score("weighted_f1", ws.train.labels, art.oof[:, 0]))
    assert pooled > 0.5  # 10 classes: chance is ~0.1; random-weight CLIP features still separate digits
    assert len(art.meta["run"]["best_epoch"]) == 3
    assert len(art.meta["embeddings_computed"]) == 4  # train/test x plain/hflip

    # other head settings: no image is encoded again, and the encoder is not even loaded
    ws2, cfg2 = workspace(
        path, ["members.clip.loss.kind=ce", "members.clip.sampler.kind=none", "members.clip.lr=0.05"]
    )
    mid = EmbedStats.images
    train_member(ws2, "clip", cfg2.members["clip"], None)
    assert EmbedStats.images == mid
    meta = load_member(ws2.workdir, "clip", ws2.expected()).meta
    assert meta["embeddings_computed"] == [] and meta["config"]["member"]["loss"]["kind"] == "ce"

    # one more view: only that view is encoded
    ws3, cfg3 = workspace(path, ["members.clip.tta=[plain, hflip, vflip]"])
    train_member(ws3, "clip", cfg3.members["clip"], None)
    assert EmbedStats.images - mid == n_train + n_test
    art3 = load_member(ws3.workdir, "clip", ws3.expected())
    assert art3.oof.shape == (n_train, 3, 10) and len(art3.meta["embeddings_computed"]) == 2


def _manual_zero_shot(tiny_dir: Path, files: list[Path], texts: list[str], flip: bool = False) -> np.ndarray:
    """CLIP zero-shot logits computed directly with open_clip (not through kit's cache or head)."""
    import open_clip
    import torch
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tiny_dir}")
    model.eval()
    tok = open_clip.get_tokenizer(f"local-dir:{tiny_dir}")
    ims = []
    for f in files:
        im = Image.open(f).convert("RGB")
        ims.append(preprocess(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else im))
    with torch.no_grad():
        img = model.encode_image(torch.stack(ims), normalize=True)
        txt = model.encode_text(tok(texts), normalize=True)
        return (model.logit_scale.exp() * img @ txt.T).numpy()


def test_zero_shot_head_reproduces_clip_text_similarity(
    tmp_path: Path, demo_dir: Path, tiny_dir: Path
) -> None:
    from kit.train.fold_loop import train_member

    names = {"zero": "digit zero", "seven": "the number 7"}
    path = write_config(tmp_path, demo_dir, tiny_dir, epochs=0, prompt=PROMPT, class_names=names)
    ws, cfg = workspace(path)
    train_member(ws, "clip", cfg.members["clip"], None)
    from kit.artifacts.member import load_member

    art = load_member(ws.workdir, "clip", ws.expected())
    texts = [PROMPT.format(names.get(c, c)) for c in ws.classes]
    rows = np.arange(0, len(ws.train), 37)
    files = [ws.train.paths[i] for i in rows]
    np.testing.assert_allclose(
        art.oof[rows, 0], _manual_zero_shot(tiny_dir, files, texts), rtol=1e-3, atol=2e-3
    )
    np.testing.assert_allclose(
        art.oof[rows, 1], _manual_zero_shot(tiny_dir, files, texts, flip=True), rtol=1e-3, atol=2e-3
    )
    # every fold head is the same zero-shot head, so test logits match too
    t_files = [ws.test.paths[i] for i in range(5)]
    np.testing.assert_allclose(
        art.test[:5, 0], _manual_zero_shot(tiny_dir, t_files, texts), rtol=1e-3, atol=2e-3
    )

    with pytest.raises(KitError, match=r"members.clip.class_names: \['eleven'\] are not classes"):
        ws2, cfg2 = workspace(path, ["members.clip.class_names={eleven: x}"])
        train_member(ws2, "clip", cfg2.members["clip"], None)


def test_linear_head_init_round_trips_through_standardised_training() -> None:
    from kit.config.schema import LossConfig, SamplerConfig
    from kit.train.linear_head import fit_linear_head, zero_shot_head

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    centers = rng.normal(size=(3, 16))
    x = centers[y] + 0.3 * rng.normal(size=(60, 16)) + 5.0  # a large common component, like CLIP embeddings
    text = rng.normal(size=(16, 3))
    text /= np.linalg.norm(text, axis=0)
    init = zero_shot_head(text, 50.0)
    kw = dict(n_classes=3, loss=LossConfig(), sampler=SamplerConfig(), metric="accuracy", batch_size=16)
    # lr ~ 0: the head returned (epoch 0 or 1) maps raw x exactly as the init does
    h0 = fit_linear_head(x, y, x, y, epochs=1, lr=1e-12, weight_decay=0.0, init=init, **kw)
    np.testing.assert_allclose(h0.logits(x), init.logits(x), rtol=1e-4, atol=1e-3)
    # trained from zero it separates the classes despite the common component
    h = fit_linear_head(x, y, x, y, epochs=30, lr=1e-2, weight_decay=1e-4, **kw)
    assert h.best_score == 1.0 and (h.logits(x).argmax(1) == y).all()


# ---------------------------------------------------------------- CLI


def test_cli_train_and_runs(
    tmp_path: Path, demo_dir: Path, tiny_dir: Path, runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich would squeeze `kit runs`' table into 80 columns
    path = write_config(tmp_path, demo_dir, tiny_dir, epochs=5, tta=["plain"])
    r = invoke(runner, ["train", "clip", "-c", str(path)])
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and (tmp_path / "work" / "members" / "clip" / "oof_logits.npy").exists()
    r = invoke(runner, ["runs", "-c", str(path)])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "work" / "members" / "clip" / "meta.json").read_text())
    row = next(line for line in r.output.splitlines() if "clip_probe" in line)
    assert row.split()[1] == "clip" and f"{meta['metrics']['pooled']['weighted_f1']:.4f}" in row

    (tmp_path / "clip-tiny").unlink()  # the model folder disappears: exit 1 with the key and the fix
    r = invoke(runner, ["train", "clip", "-c", str(path), "--set", "members.clip.epochs=1"])
    assert r.exit_code == 1
    assert "members.clip.model: folder" in r.output and "not found" in r.output
