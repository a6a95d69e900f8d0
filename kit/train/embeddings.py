"""open_clip loading (offline-safe, with the model's own preprocessing) and an on-disk embedding cache.

Embeddings are computed once per (split data, model, weights, image size, preprocessing, TTA view) and stored
as float32 [n, D] under `<workdir>/cache/embeddings/`, written atomically. Later runs of the same probe, or
probes with other head settings, read them back without loading the encoder. Class-name text embeddings for
zero-shot init are cached the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.artifacts.atomic import atomic_save_npy, atomic_write_json
from kit.errors import KitError

if TYPE_CHECKING:
    import torch

    from kit.data.table import Table
    from kit.train.progress import Reporter

LOCAL_DIR = "local-dir:"
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
HUB_HOST = ("huggingface.co", 443)

# a one-layer CLIP with random weights for the demo and tests: builds in ~50 ms, embeds 500 32-px images in
# ~0.1 s on CPU (vocab_size 49408 fits the bundled tokenizer, which works offline)
TINY_CLIP_CFG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 4},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


class EmbedStats:
    """How many images / text batches were encoded in this process (tests and the bench read it)."""

    images = 0
    texts = 0


@dataclass(frozen=True)
class ClipSource:
    """Where one member's open_clip model comes from; `member` names it in error messages."""

    member: str
    model: str
    pretrained: str | None = None
    cache_dir: Path | None = None
    img_size: int | None = None

    @property
    def local_dir(self) -> Path | None:
        return Path(self.model[len(LOCAL_DIR) :]) if self.model.startswith(LOCAL_DIR) else None


# ---------------------------------------------------------------- offline handling


def hub_reachable(timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def ensure_offline_mode(src: ClipSource) -> bool:
    """Set HF_HUB_OFFLINE=1 when the hub cannot be reached (or the user set it), before open_clip is imported,
    so a missing file fails in about a second instead of after ~50 s of retries. Returns whether offline."""
    import sys

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        offline = True
    elif env in ("0", "false", "no", "off"):
        offline = False
    elif src.local_dir is not None or src.pretrained is None:
        return False  # nothing to download
    else:
        offline = not hub_reachable()
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        if "huggingface_hub" in sys.modules:  # imported earlier (e.g. by timm): its constant is already read
            import huggingface_hub.constants

            huggingface_hub.constants.HF_HUB_OFFLINE = True
    return offline


# ---------------------------------------------------------------- loading


def check_local_dir(src: ClipSource) -> None:
    """A local-dir: model needs its folder with open_clip_config.json (checked without importing open_clip)."""
    key = f"members.{src.member}"
    d = src.local_dir
    if d is None:
        return
    if not d.is_dir():
        raise KitError(
            f"{key}.model: folder {d} not found; relative local-dir: paths are read from the kit.yaml's "
            f"folder. Point it at a folder holding {CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    if not (d / CONFIG_FILE).is_file():
        raise KitError(
            f"{key}.model: {d} has no {CONFIG_FILE}; write it with "
            "open_clip.push_to_hf_hub.save_config_for_hf(model, path, model_cfg) next to the weights "
            "(it keeps the model's mean/std and resize mode)"
        )
    if src.pretrained is not None:
        raise KitError(f"{key}.pretrained: remove it; a local-dir: model loads the weights in its folder")


def _check_source(src: ClipSource) -> None:
    """Fast, specific errors before open_clip is asked to build anything."""
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    if src.local_dir is not None:
        check_local_dir(src)
        return
    key = f"members.{src.member}"
    name = src.model.replace("/", "-")
    if name not in open_clip.list_models():
        import difflib

        close = difflib.get_close_matches(name, open_clip.list_models(), n=3)
        raise KitError(
            f"{key}.model: '{src.model}' is not an open_clip architecture"
            + (f"; did you mean {close}?" if close else "; see open_clip.list_models()")
        )
    if src.pretrained is None:
        return
    if Path(src.pretrained).suffix in (".pt", ".pth", ".bin", ".safetensors") or os.sep in src.pretrained:
        raise KitError(
            f"{key}.pretrained: '{src.pretrained}' looks like a file; open_clip would load it with OpenAI "
            f"mean/std whatever the weights were trained with. Put it in a folder with {CONFIG_FILE} and use "
            "model: local-dir:FOLDER (see docs/clip_probe.md)"
        )
    tag_cfg = get_pretrained_cfg(name, src.pretrained)
    if not tag_cfg:
        raise KitError(
            f"{key}.pretrained: '{src.pretrained}' is not a pretrained tag of {src.model}; "
            f"choose from {open_clip.list_pretrained_tags_by_model(name)}"
        )
    model_cfg = open_clip.get_model_config(name) or {}
    if tag_cfg.get("quick_gelu", False) and not model_cfg.get("quick_gelu", False):
        raise KitError(
            f"{key}.model: the '{src.pretrained}' weights were trained with QuickGELU; "
            f"use model: {name}-quickgelu"
        )


def load_clip(src: ClipSource, device: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """(model in eval mode, its preprocess config) with the weights' own mean/std/interpolation."""
    offline = ensure_offline_mode(src)
    import open_clip

    _check_source(src)
    kwargs: dict[str, Any] = {"device": device}
    if src.img_size is not None:
        kwargs["force_image_size"] = src.img_size
    if src.cache_dir is not None:
        kwargs["cache_dir"] = str(src.cache_dir)
    try:
        model = open_clip.create_model(src.model, pretrained=src.pretrained, **kwargs)
    except (RuntimeError, FileNotFoundError, ValueError, OSError) as e:
        key = f"members.{src.member}"
        where = f"{key}.pretrained ({src.model} / {src.pretrained})" if src.pretrained else f"{key}.model"
        fix = (
            f"download once with network into cache_dir ({src.cache_dir or 'the default hub cache'}), or "
            f"export the model to a folder and use model: local-dir:FOLDER"
            if src.pretrained
            else "check the folder's weights match its config"
        )
        mode = " (HF_HUB_OFFLINE=1: the hub is not reachable)" if offline else ""
        raise KitError(f"{where}: could not load the weights{mode}: {str(e)[:300]}; {fix}") from None
    model.eval()
    pp = dict(open_clip.get_model_preprocess_cfg(model))
    return model, pp


def tokenizer_for(src: ClipSource) -> Any:
    import open_clip

    return open_clip.get_tokenizer(src.model)


def write_tiny_clip(out: Path, *, seed: int = 0, preprocess: dict[str, Any] | None = None) -> Path:
    """A random-init one-layer CLIP saved as an open_clip local-dir folder (config + safetensors).

    Load it with model: local-dir:OUT. `preprocess` overrides mean/std/interpolation/resize_mode. Returns `out`;
    an existing folder is kept.
    """
    if (out / CONFIG_FILE).is_file() and (out / WEIGHTS_FILE).is_file():
        return out
    import open_clip
    import torch
    from open_clip.model import get_model_preprocess_cfg, set_model_preprocess_cfg
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file

    from kit.artifacts.atomic import atomic_dir

    torch.manual_seed(seed)
    model = open_clip.CLIP(**json.loads(json.dumps(TINY_CLIP_CFG)))
    pp = {
        "size": TINY_CLIP_CFG["vision_cfg"]["image_size"],
        "mode": "RGB",
        "mean": open_clip.OPENAI_DATASET_MEAN,
        "std": open_clip.OPENAI_DATASET_STD,
        "interpolation": "bicubic",
        "resize_mode": "shortest",
        "fill_color": 0,
    }
    pp.update(preprocess or {})
    set_model_preprocess_cfg(model, pp)
    assert get_model_preprocess_cfg(model)["mean"] == pp["mean"]
    with atomic_dir(out) as tmp:
        save_config_for_hf(model, tmp / CONFIG_FILE, TINY_CLIP_CFG)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / WEIGHTS_FILE))
    return out


# ---------------------------------------------------------------- cache keys


def weights_identity(src: ClipSource) -> dict[str, Any]:
    """What identifies the encoder's weights: a tag's name, or a local folder's files (name, size, mtime)."""
    d = src.local_dir
    if d is None:
        return {"model": src.model, "pretrained": src.pretrained}
    check_local_dir(src)
    files = sorted(p for p in d.iterdir() if p.is_file())
    return {
        "model": LOCAL_DIR + str(d),
        "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files],
    }


def encoder_key(src: ClipSource) -> str:
    """Stable hash of the weights and image size; preprocessing follows from them."""
    text = json.dumps({"weights": weights_identity(src), "img_size": src.img_size}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def embedding_path(cache_dir: Path, split: str, data_fp: str, enc_key: str, view: str) -> Path:
    return cache_dir / "embeddings" / f"{split}-{data_fp}-{enc_key}-{view}.npy"


def text_path(cache_dir: Path, enc_key: str, prompts: list[str]) -> Path:
    h = hashlib.sha256("\n".join(prompts).encode()).hexdigest()[:16]
    return cache_dir / "embeddings" / f"text-{enc_key}-{h}.npy"


# ---------------------------------------------------------------- encoding


RESAMPLE_OF = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest", "lanczos": "lanczos"}


def image_size_of(pp: dict[str, Any]) -> int:
    size = pp.get("size", 224)
    if isinstance(size, (list, tuple)):
        if size[0] != size[1]:
            raise KitError(f"open_clip model has a non-square input {size}; kit's image cache is square")
        size = size[0]
    return int(size)


def encode_images(
    model: torch.nn.Module,
    images: np.ndarray,
    pp: dict[str, Any],
    views: list[str],
    batch_size: int,
    device: str,
    on_batch: Any = None,
) -> np.ndarray:
    """float32 [n, n_views, D] L2-normalised embeddings of uint8 NHWC `images` under each TTA view."""
    import torch

    from kit.train.tta import predict_views

    mean = torch.tensor(pp["mean"], dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pp["std"], dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return model.encode_image((x - mean) / std, normalize=True).float()  # type: ignore[operator]

    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            chunk = np.array(images[start : start + batch_size])
            x = torch.from_numpy(chunk).to(device).permute(0, 3, 1, 2).float().div_(255.0)
            out.append(predict_views(forward, x, views).cpu().numpy())
            EmbedStats.images += len(chunk)
            if on_batch is not None:
                on_batch(len(chunk))
    if not out:
        dim = int(model.visual.output_dim)  # type: ignore[union-attr,arg-type]
        return np.zeros((0, len(views), dim), np.float32)
    return np.concatenate(out).astype(np.float32)


class EmbeddingCache:
    """Cached embeddings and text weights of one member's encoder; loads the model only when something is missing."""

    def __init__(self, src: ClipSource, cache_dir: Path, device: str = "cpu", batch_size: int = 64) -> None:
        self.src = src
        self.cache_dir = cache_dir
        self.device = device
        self.batch_size = batch_size
        self.key = encoder_key(src)
        self._model: Any = None
        self._pp: dict[str, Any] | None = None
        self.computed: list[str] = []  # files written in this run

    def model(self) -> tuple[Any, dict[str, Any]]:
        if self._model is None:
            self._model, self._pp = load_clip(self.src, self.device)
        assert self._pp is not None
        return self._model, self._pp

    def _meta_path(self) -> Path:
        return self.cache_dir / "embeddings" / f"encoder-{self.key}.json"

    def preprocess(self) -> dict[str, Any]:
        """The model's preprocess config, read from the cache's sidecar when the model is not loaded."""
        meta = self._meta_path()
        if self._pp is None and meta.exists():
            return dict(json.loads(meta.read_text("utf-8"))["preprocess"])
        _, pp = self.model()
        if not meta.exists():
            atomic_write_json(meta, {"source": weights_identity(self.src), "preprocess": pp})
        return pp

    def images(
        self, table: Table, split: str, data_fp: str, views: list[str], reporter: Reporter | None = None
    ) -> np.ndarray:
        """float32 [n, n_views, D] for `table`; computes and caches only the views that are missing."""
        from kit.data.cache import build_image_cache
        from kit.train.progress import NullReporter

        paths = {v: embedding_path(self.cache_dir, split, data_fp, self.key, v) for v in views}
        have: dict[str, np.ndarray] = {}
        for v, p in paths.items():
            if p.exists():
                arr = np.load(p)
                if arr.ndim == 2 and arr.shape[0] == len(table):
                    have[v] = arr
        missing = [v for v in views if v not in have]
        if missing:
            pp = self.preprocess()
            model, _ = self.model()
            size = image_size_of(pp)
            resample = RESAMPLE_OF.get(str(pp.get("interpolation", "bicubic")), "bicubic")
            imgs = build_image_cache(
                table, size, self.cache_dir, split=split, fingerprint=data_fp, resample=resample
            )
            desc = f"{self.src.member}: embed {split} ({', '.join(missing)})"
            with (reporter or NullReporter()).task(desc, total=len(table)) as task:
                emb = encode_images(model, imgs, pp, missing, self.batch_size, self.device, task.advance)
            for i, v in enumerate(missing):
                have[v] = np.ascontiguousarray(emb[:, i])
                atomic_save_npy(paths[v], have[v])
                self.computed.append(paths[v].name)
        return np.stack([have[v] for v in views], axis=1)

    def text(self, names: list[str], template: str) -> tuple[np.ndarray, float]:
        """(zero-shot weights [D, n_classes] from open_clip.build_zero_shot_classifier, logit_scale.exp())."""
        path = text_path(self.cache_dir, self.key, [template, *names])
        if path.exists():
            arr = np.load(path)
            if arr.shape[1] == len(names) + 1:
                return arr[:, :-1], float(arr[0, -1])
        import open_clip

        model, _ = self.model()
        w = open_clip.build_zero_shot_classifier(
            model, tokenizer_for(self.src), names, [template], device=self.device
        )
        w_np = w.float().cpu().numpy()
        scale = float(model.logit_scale.exp().item())
        EmbedStats.texts += 1
        col = np.zeros((w_np.shape[0], 1), np.float32)
        col[0, 0] = scale
        atomic_save_npy(path, np.concatenate([w_np, col], axis=1).astype(np.float32))
        self.computed.append(path.name)
        return w_np.astype(np.float32), scale
