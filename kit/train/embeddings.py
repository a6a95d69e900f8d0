"""An on-disk cache of open_clip embeddings: cache keys, encoding under TTA views, and `EmbeddingCache`.

Embeddings are computed once per (split data, model, weights, image size, preprocessing, TTA view) and stored
as float32 [n, D] under `<workdir>/cache/embeddings/`, written atomically. Later runs of the same probe, or
probes with other head settings, read them back without loading the encoder (kit.train.clip_model). Class-name
text embeddings for zero-shot init are cached the same way.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.artifacts.atomic import atomic_save_npy, atomic_write_json
from kit.errors import KitError
from kit.train.clip_model import LOCAL_DIR, ClipSource, check_local_dir, load_clip, tokenizer_for
from kit.train.hub import cache_resample

if TYPE_CHECKING:
    import torch

    from kit.data.table import Table
    from kit.progress import Reporter


class EmbedStats:
    """How many images were encoded in this process (tests and the bench read it)."""

    images = 0


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
        from kit.progress import NullReporter

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
            resample = cache_resample(pp.get("interpolation", "bicubic"))
            rep = reporter or NullReporter()
            imgs = build_image_cache(
                table,
                size,
                self.cache_dir,
                split=split,
                fingerprint=data_fp,
                resample=resample,
                report=rep.line,
            )
            desc = f"{self.src.member}: embed {split} ({', '.join(missing)})"
            with rep.task(desc, total=len(table)) as task:
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
        col = np.zeros((w_np.shape[0], 1), np.float32)
        col[0, 0] = scale
        atomic_save_npy(path, np.concatenate([w_np, col], axis=1).astype(np.float32))
        self.computed.append(path.name)
        return w_np.astype(np.float32), scale
