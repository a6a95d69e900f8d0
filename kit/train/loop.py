"""The one training loop: an epoch of optimisation and a prediction pass, the same for every backbone.

Variation comes from the objects handed in (model, optimizer, scheduler, loss, augmentation, mixup, EMA,
device setup), which the timm kind (kit.train.kinds.timm) builds from the validated member config.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import KitError
from kit.train.data import BatchAugment, apply_mixup, derive_seed, iterate
from kit.train.device import DeviceSetup
from kit.train.progress import Reporter
from kit.train.tta import predict_views

if TYPE_CHECKING:
    import torch
    from torch import nn


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, floor: float = 0.01) -> float:
    """LR multiplier: linear warmup from 1/warmup to 1, then cosine down to `floor`."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


@dataclass
class Trainee:
    """What one optimisation step touches."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    loss_fn: Any
    augment: BatchAugment
    setup: DeviceSetup
    grad_clip: float | None = None
    ema: Any = None
    mixup: Any = None
    ddp: Any = None  # the DistributedDataParallel wrapper of `model` under torchrun (kit.train.ddp)

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model


@dataclass
class EpochStats:
    loss: float
    images: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def _to_device(x: torch.Tensor, setup: DeviceSetup) -> torch.Tensor:
    return x.to(setup.device, non_blocking=setup.pin_memory)


def train_one_epoch(
    t: Trainee,
    cache: np.ndarray,
    rows: list[np.ndarray],
    labels: np.ndarray,
    seed: int,
    reporter: Reporter,
    *,
    label: str = "batches",
    num_workers: int = 0,
    shard: Any = None,
    weights: np.ndarray | None = None,
) -> EpochStats:
    """One pass over `rows` (batches of cache row indices). Batch b is augmented with derive_seed(seed, b).

    `labels` are class indices [N] or soft targets [N, C] (pseudo-labels); `weights` [N] the rows' loss weights
    (kit.train.added), None for all 1. With `shard` (a kit.train.ddp.Dist), `rows` are the global batches and
    this rank trains its contiguous part of each, augmented with the random numbers of those positions in the
    global batch."""
    import torch

    t.model.train()
    net = t.ddp if t.ddp is not None else t.model
    parts = [slice(None) if shard is None else shard.shard(len(r)) for r in rows]
    local = [r[p] for r, p in zip(rows, parts, strict=True)]
    total, seen, start = 0.0, 0, time.perf_counter()
    with reporter.task(label, total=len(rows)) as task:
        batches = iterate(
            cache, local, labels, num_workers=num_workers, pin_memory=t.setup.pin_memory, weights=weights
        )
        for b, batch in enumerate(batches):
            xb, yb = batch[0], batch[1]
            x = t.augment(_to_device(xb, t.setup), derive_seed(seed, b), parts[b], len(rows[b]))
            y = _to_device(yb, t.setup)
            w = _to_device(batch[2], t.setup) if len(batch) > 2 else None
            if t.mixup is not None and w is not None:  # the weights mix like the targets: one more column
                soft = y if y.ndim == 2 else torch.nn.functional.one_hot(y, t.mixup.num_classes).float()
                x, yw = apply_mixup(t.mixup, x, torch.cat([soft, w[:, None]], 1), derive_seed(seed, b, 1))
                y, w = yw[:, :-1], yw[:, -1]
            elif t.mixup is not None:
                x, y = apply_mixup(t.mixup, x, y, derive_seed(seed, b, 1))
            if t.setup.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with t.setup.autocast():
                logits = net(x)
            loss = t.loss_fn(logits, y) if w is None else t.loss_fn(logits, y, w)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at batch {b}")
            t.optimizer.zero_grad(set_to_none=True)
            t.scaler.scale(loss).backward()
            if t.grad_clip is not None:
                t.scaler.unscale_(t.optimizer)
                torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.grad_clip)
            t.scaler.step(t.optimizer)
            t.scaler.update()
            t.scheduler.step()
            if t.ema is not None:
                t.ema.update(t.model)
            total += float(loss.detach()) * x.shape[0]
            seen += x.shape[0]
            task.advance()
    return EpochStats(total / max(seen, 1), seen, time.perf_counter() - start)


def predict(
    model: nn.Module,
    cache: np.ndarray,
    idx: np.ndarray,
    views: list[str],
    augment: BatchAugment,
    setup: DeviceSetup,
    batch_size: int,
    reporter: Reporter | None = None,
    label: str = "predict",
    num_workers: int = 0,
) -> np.ndarray:
    """Logits [len(idx), n_views, C] (float32) of `model` on cache rows `idx`, view 0 plain."""
    import torch

    from kit.train.progress import NullReporter

    model.eval()
    rows = [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
    out: list[np.ndarray] = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        if setup.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with setup.autocast():
            return model(x).float()

    rep = reporter or NullReporter()
    with torch.inference_mode(), rep.task(label, total=len(rows)) as task:
        for xb, _ in iterate(cache, rows, None, num_workers=num_workers, pin_memory=setup.pin_memory):
            x = augment.normalize(_to_device(xb, setup))
            out.append(predict_views(forward, x, views).cpu().numpy())
            task.advance()
    if not out:
        n_classes = int(getattr(model, "num_classes", 0))
        return np.zeros((0, len(views), n_classes), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


def oom_error(name: str, batch_size: int) -> KitError:
    return KitError(
        f"out of GPU memory at members.{name}.batch_size = {batch_size}; lower it "
        f"(e.g. --set members.{name}.batch_size={max(1, batch_size // 2)}) or members.{name}.img_size. "
        "Finished folds and epoch checkpoints are kept; the next run resumes"
    )
