"""Batches from the uint8 image cache, and augmentation as a few tensor ops on whole batches.

The cache (kit.data.cache) holds every image decoded once at the member's size, [N, S, S, 3] uint8. A batch
is a slice of it; augmentation runs on the batch where the model runs: one affine resample (random resized
crop, opt-in flips and 90-degree turns), a brightness/contrast jitter, then normalisation with the model's own
mean and std. Every random number comes from a generator seeded by (seed, fold, epoch, batch), so a resumed
run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from kit.config.schema import AugmentConfig, SamplerConfig
from kit.train.sampler import build_sampler

if TYPE_CHECKING:
    import torch

# preset -> (min crop area, max log aspect change, brightness/contrast jitter)
PRESETS: dict[str, tuple[float, float, float]] = {
    "none": (1.0, 0.0, 0.0),
    "light": (0.7, math.log(4 / 3), 0.1),
    "strong": (0.35, math.log(4 / 3), 0.3),
}


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers, e.g. (member seed, fold, epoch, batch)."""
    return int(
        np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1
    )


def epoch_order(labels: np.ndarray, sampler: SamplerConfig, seed: int, n_classes: int) -> np.ndarray:
    """Positions (into `labels`) in the order one epoch visits them: a permutation, or weighted draws."""
    import torch

    s = build_sampler(sampler, labels, seed, n_classes)
    if s is None:
        return torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).numpy()
    return np.fromiter(iter(s), dtype=np.int64, count=len(labels))


def split_batches(order: np.ndarray, batch_size: int, *, drop_last: bool) -> list[np.ndarray]:
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


class StackedCache:
    """Image caches one after another as one index space (the train cache, then extra data, then the test
    cache for pseudo rows: kit.train.added), without copying them; `np.take(stacked, idx, axis=0)` works."""

    def __init__(self, parts: list[np.ndarray]) -> None:
        self.parts = parts
        self.starts = np.cumsum([0, *(len(p) for p in parts)])
        self.shape = (int(self.starts[-1]), *parts[0].shape[1:])
        self.dtype = parts[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def take(
        self, indices: np.ndarray, axis: int | None = 0, out: None = None, mode: str = "raise"
    ) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        res = np.empty((len(idx), *self.shape[1:]), dtype=self.dtype)
        part = np.searchsorted(self.starts, idx, side="right") - 1
        for k in np.unique(part):
            sel = part == k
            res[sel] = np.take(self.parts[k], idx[sel] - self.starts[k], axis=0)
        return res


class CacheBatches:  # a torch Dataset by protocol (torch is imported lazily)
    """A map-style dataset whose item b is batch b: (uint8 images [B, S, S, 3], labels [B] or empty), and the
    rows' loss weights [B] when `weights` is given."""

    def __init__(
        self,
        cache: np.ndarray,
        rows: list[np.ndarray],
        labels: np.ndarray | None,
        weights: np.ndarray | None = None,
    ) -> None:
        self.cache, self.rows, self.labels, self.weights = cache, rows, labels, weights

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, b: int) -> tuple[torch.Tensor, ...]:
        import torch

        idx = self.rows[b]
        x = torch.from_numpy(np.ascontiguousarray(np.take(self.cache, idx, axis=0)))
        y = (
            torch.from_numpy(self.labels[idx])
            if self.labels is not None
            else torch.empty(0, dtype=torch.long)
        )
        if self.weights is not None:
            return x, y, torch.from_numpy(self.weights[idx])
        return x, y


def iterate(
    cache: np.ndarray,
    rows: list[np.ndarray],
    labels: np.ndarray | None,
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
    weights: np.ndarray | None = None,
) -> Iterator[tuple[torch.Tensor, ...]]:
    from torch.utils.data import DataLoader

    loader: DataLoader[tuple[torch.Tensor, ...]] = DataLoader(
        CacheBatches(cache, rows, labels, weights),  # type: ignore[arg-type]
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
    )
    yield from loader


@dataclass
class BatchAugment:
    """uint8 NHWC batch -> normalised float NCHW batch, randomly augmented when `train`."""

    cfg: AugmentConfig
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC -> float NCHW, (x / 255 - mean) / std with the model's own mean and std."""
        import torch

        x = x.permute(0, 3, 1, 2).float()
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1) * 255
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1) * 255
        return (x - mean) / std

    @property
    def geometric(self) -> bool:
        min_area, _, _ = PRESETS[self.cfg.preset]
        return min_area < 1 or self.cfg.hflip or self.cfg.vflip or self.cfg.rot90

    def __call__(
        self, x: torch.Tensor, seed: int, part: slice | None = None, of: int | None = None
    ) -> torch.Tensor:
        """Augment one uint8 batch with random numbers drawn from `seed` alone (numpy, on the CPU); `x` may be
        `part` of a batch of `of` images (a DDP rank's shard), which gets those positions' numbers."""
        import torch
        import torch.nn.functional as F

        min_area, log_ratio, jitter = PRESETS[self.cfg.preset]
        n, size = x.shape[0], x.shape[1]
        u = np.random.default_rng(seed).random((of or n, 9))[part or slice(None)]
        x = x.permute(0, 3, 1, 2).float()
        if self.geometric:
            area = min_area + (1 - min_area) * u[:, 0]
            ratio = np.exp((2 * u[:, 1] - 1) * log_ratio)
            w, h = np.minimum(np.sqrt(area * ratio), 1), np.minimum(np.sqrt(area / ratio), 1)
            fx = np.where((u[:, 4] < 0.5) & self.cfg.hflip, -1.0, 1.0)
            fy = np.where((u[:, 5] < 0.5) & self.cfg.vflip, -1.0, 1.0)
            k = np.floor(u[:, 6] * 4) if self.cfg.rot90 else np.zeros(n)
            cos, sin = np.round(np.cos(k * np.pi / 2)), np.round(np.sin(k * np.pi / 2))
            theta = np.empty((n, 2, 3), dtype=np.float32)
            theta[:, 0, 0], theta[:, 0, 1] = cos * w * fx, -sin * h * fy
            theta[:, 1, 0], theta[:, 1, 1] = sin * w * fx, cos * h * fy
            theta[:, 0, 2], theta[:, 1, 2] = (2 * u[:, 2] - 1) * (1 - w), (2 * u[:, 3] - 1) * (1 - h)
            grid = F.affine_grid(
                torch.from_numpy(theta).to(x.device), [n, 3, size, size], align_corners=False
            )
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        # brightness b and contrast c around the image mean m, folded into the normalisation:
        # ((x - m) * c + m) * b, then (. / 255 - mean) / std  ==  x * scale + shift per image and channel
        mean = np.asarray(self.mean, dtype=np.float64)[None, :] * 255
        std = np.asarray(self.std, dtype=np.float64)[None, :] * 255
        b = 1 + (2 * u[:, 7:8] - 1) * jitter
        c = 1 + (2 * u[:, 8:9] - 1) * jitter
        scale = torch.from_numpy((b * c / std).astype(np.float32)).to(x.device).view(n, 3, 1, 1)
        shift = torch.from_numpy((-mean / std).repeat(n, 0).astype(np.float32)).to(x.device).view(n, 3, 1, 1)
        if jitter > 0:
            m = x.mean(dim=(1, 2, 3), keepdim=True)
            shift = shift + m * torch.from_numpy((b * (1 - c) / std).astype(np.float32)).to(x.device).view(
                n, 3, 1, 1
            )
        return torch.addcmul(shift, x, scale)


def build_mixup(cfg: AugmentConfig, n_classes: int) -> object | None:
    """timm's Mixup/CutMix (soft targets), or None when both alphas are 0."""
    if cfg.mixup <= 0 and cfg.cutmix <= 0:
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=0.0, num_classes=n_classes)


def apply_mixup(
    mixup: object, x: torch.Tensor, y: torch.Tensor, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's Mixup draws from numpy's global RNG: seed it for this batch and restore it afterwards.

    Soft targets [B, K] (pseudo-labels, or targets with a weight column appended: kit.train.loop) are mixed
    with the same lambda as the images (timm's own targets take class indices only)."""
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        if x.shape[0] % 2:  # timm's Mixup needs an even batch
            x, y = x[:-1], y[:-1]
        if y.ndim == 2:
            lam = mixup._mix_batch(x)  # type: ignore[attr-defined]  # mode "batch": what kit builds
            return x, y * lam + y.flip(0) * (1 - lam)
        return mixup(x, y)  # type: ignore[operator]
    finally:
        np.random.set_state(state)
