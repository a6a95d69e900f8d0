"""Batches for training and evaluation from the stored images (kit.data.cache: an `Images`).

Training: item b of `TrainBatches` is batch b, each image the member's TrainTransform (kit.train.transforms:
random resized crop from the stored image, flips, auto-augment, ...) of its stored image, seeded by
derive_seed(seed, b, j) for its position j in the global batch, so a resumed run, a DDP rank and any DataLoader
worker draw exactly what an uninterrupted single process would. Evaluation: item b of `EvalBatches` is the
uint8 centre crops of batch b's rows, normalised where the model runs (`Preprocess.normalize`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.config.schema import AugmentConfig, SamplerConfig
from kit.data.cache import Images
from kit.train.sampler import build_sampler

if TYPE_CHECKING:
    import torch

    from kit.train.transforms import TrainTransform


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
    """Images one after another as one index space (the train store, then extra data, then the test store for
    pseudo rows: kit.train.added), without copying them."""

    def __init__(self, parts: list[Images]) -> None:
        self.parts = parts
        self.starts = np.cumsum([0, *(len(p) for p in parts)])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _locate(self, i: int) -> tuple[int, int]:
        k = int(np.searchsorted(self.starts, i, side="right") - 1)
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} of {len(self)}")
        return k, int(i - self.starts[k])

    def image(self, i: int) -> np.ndarray:
        k, j = self._locate(int(i))
        return self.parts[k].image(j)

    def crops(self, idx: np.ndarray, size: int) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        out = np.empty((len(idx), size, size, 3), dtype=np.uint8)
        part = np.searchsorted(self.starts, idx, side="right") - 1
        for k in np.unique(part):
            sel = part == k
            out[sel] = self.parts[k].crops(idx[sel] - self.starts[k], size)
        return out


def _targets(labels: np.ndarray | None, weights: np.ndarray | None, idx: np.ndarray) -> tuple[Any, ...]:
    import torch

    y = torch.from_numpy(labels[idx]) if labels is not None else torch.empty(0, dtype=torch.long)
    return (y, torch.from_numpy(weights[idx])) if weights is not None else (y,)


class TrainBatches:  # a torch Dataset by protocol (torch is imported lazily)
    """Item b: (float32 [B, 3, S, S] augmented and normalised, labels [B]) and the rows' loss weights [B] when
    `weights` is given. `rows` are the global batches; `parts` (a DDP rank's slice of each, default all)
    choose which of their positions this process takes, each seeded as in the whole batch."""

    def __init__(
        self,
        images: Images,
        rows: list[np.ndarray],
        labels: np.ndarray,
        transform: TrainTransform,
        seed: int,
        *,
        parts: list[slice] | None = None,
        weights: np.ndarray | None = None,
    ) -> None:
        self.images, self.rows, self.labels, self.transform, self.seed = images, rows, labels, transform, seed
        self.parts, self.weights = parts, weights

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, b: int) -> tuple[torch.Tensor, ...]:
        import torch

        r = self.rows[b]
        pos = np.arange(len(r))[self.parts[b] if self.parts is not None else slice(None)]
        x = torch.stack(
            [self.transform(self.images.image(int(r[j])), derive_seed(self.seed, b, int(j))) for j in pos]
        )
        return (x, *_targets(self.labels, self.weights, r[pos]))


class EvalBatches:  # a torch Dataset by protocol
    """Item b: (uint8 centre crops [B, size, size, 3] of batch b's rows, labels [B] or empty)."""

    def __init__(
        self, images: Images, rows: list[np.ndarray], size: int, labels: np.ndarray | None = None
    ) -> None:
        self.images, self.rows, self.size, self.labels = images, rows, size, labels

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, b: int) -> tuple[torch.Tensor, ...]:
        import torch

        idx = self.rows[b]
        return (torch.from_numpy(self.images.crops(idx, self.size)), *_targets(self.labels, None, idx))


def iterate(
    dataset: TrainBatches | EvalBatches, *, num_workers: int = 0, pin_memory: bool = False
) -> Iterator[tuple[torch.Tensor, ...]]:
    """The dataset's batches in order (item b is batch b), built in `num_workers` DataLoader workers."""
    from torch.utils.data import DataLoader

    loader: DataLoader[tuple[torch.Tensor, ...]] = DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
    )
    yield from loader


@dataclass
class Preprocess:
    """A member's input pipeline: `transform` makes training images (None: a prediction-only pipeline);
    evaluation takes the `size` px centre crops and normalises them with the model's mean and std."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: int
    transform: TrainTransform | None = None

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC -> float NCHW, (x / 255 - mean) / std with the model's own mean and std."""
        import torch

        x = x.permute(0, 3, 1, 2).float()
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1) * 255
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1) * 255
        return (x - mean) / std


def build_mixup(cfg: AugmentConfig, n_classes: int) -> object | None:
    """timm's Mixup/CutMix (soft targets) with the member's prob, switch_prob and mode, or None when both
    alphas are 0."""
    if cfg.mixup <= 0 and cfg.cutmix <= 0:
        return None
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=cfg.mixup,
        cutmix_alpha=cfg.cutmix,
        prob=cfg.mixup_prob,
        switch_prob=cfg.switch_prob,
        mode=cfg.mixup_mode,
        label_smoothing=0.0,
        num_classes=n_classes,
    )


def mixup_epoch(mixup: object | None, cfg: AugmentConfig, epoch: int) -> None:
    """Switch mixing off from `mixup_off_epoch` on (epochs counted from 0), as timm's train.py does."""
    if mixup is not None:
        mixup.mixup_enabled = cfg.mixup_off_epoch is None or epoch < cfg.mixup_off_epoch  # type: ignore[attr-defined]


def apply_mixup(
    mixup: object, x: torch.Tensor, y: torch.Tensor, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's Mixup draws from numpy's global RNG: seed it for this batch and restore it afterwards.

    Soft targets [B, K] (pseudo-labels, or targets with a weight column appended: kit.train.loop) are mixed
    with the same lambda as the images (timm's own targets take class indices only); every mode pairs image
    i with image B-1-i. Once switched off (mixup_epoch) the batch passes through as without mixup."""
    if not mixup.mixup_enabled:  # type: ignore[attr-defined]
        return x, y
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        if x.shape[0] % 2:  # timm's Mixup needs an even batch
            x, y = x[:-1], y[:-1]
        if y.ndim == 2:
            mode = mixup.mode  # type: ignore[attr-defined]
            mix = {"elem": "_mix_elem", "pair": "_mix_pair"}.get(mode, "_mix_batch")
            lam = getattr(mixup, mix)(x)  # a float ("batch") or [B, 1] per image
            return x, y * lam + y.flip(0) * (1 - lam)
        return mixup(x, y)  # type: ignore[operator]
    finally:
        np.random.set_state(state)
