"""WeightedRandomSampler with inverse class frequency to a configurable power (0: uniform, 1: balanced)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kit.config.schema import SamplerConfig

if TYPE_CHECKING:
    from torch.utils.data import WeightedRandomSampler


def sample_weights(labels: np.ndarray, power: float, n_classes: int | None = None) -> np.ndarray:
    """Per-image weight (1 / count of its class)^power. Multi-label [n, L]: (1 / count of its rarest label)^power,
    images without a label counted as a group of their own."""
    if np.ndim(labels) == 2:
        Y = np.asarray(labels, dtype=bool)
        label_counts = Y.sum(axis=0).astype(np.float64)
        rarest = np.where(Y, label_counts, np.inf).min(axis=1)
        empty = ~Y.any(axis=1)
        rarest[empty] = max(int(empty.sum()), 1)
        return rarest**-power
    counts = np.bincount(labels, minlength=n_classes or 0).astype(np.float64)
    return counts[labels] ** -power


def build_sampler(
    cfg: SamplerConfig, labels: np.ndarray, seed: int, n_classes: int | None = None
) -> WeightedRandomSampler | None:
    if cfg.kind == "none":
        return None
    import torch
    from torch.utils.data import WeightedRandomSampler

    g = torch.Generator().manual_seed(seed)
    w = torch.as_tensor(sample_weights(labels, cfg.power, n_classes), dtype=torch.double)
    return WeightedRandomSampler(
        w,  # type: ignore[arg-type]  # a tensor is what torch itself passes
        num_samples=len(labels),
        replacement=True,
        generator=g,
    )
