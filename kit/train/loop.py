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

from kit.data.cache import Images
from kit.errors import KitError
from kit.progress import Reporter
from kit.train.data import EvalBatches, Preprocess, TrainBatches, apply_mixup, derive_seed, iterate
from kit.train.device import DeviceSetup
from kit.train.recipe import groups_of
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
    augment: Preprocess  # the member's train transform and eval crop + normalisation (kit.train.data)
    setup: DeviceSetup
    grad_clip: float | None = None
    ema: Any = None
    mixup: Any = None
    ddp: Any = None  # the DistributedDataParallel wrapper of `model` under torchrun (kit.train.ddp)
    compiled: Any = None  # torch.compile(model) when the member sets compile: true (same weights as model)
    accumulate: int = 1  # micro-batches per optimizer step (kit.train.recipe.accumulation_batches)

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def optimizer_step(self) -> None:
        """Clip, step the optimizer (through the grad scaler), the schedule and EMA: once per optimizer batch."""
        import torch

        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)


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
    images: Images,
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
    """One pass over `rows` (batches of row indices into `images`). Image j of batch b is augmented with
    derive_seed(seed, b, j) (kit.train.data.TrainBatches); mixup draws from derive_seed(seed, b, 1).

    `labels` are class indices [N] or soft targets [N, C] (pseudo-labels); `weights` [N] the rows' loss weights
    (kit.train.added), None for all 1. With `shard` (a kit.train.dist.Dist), `rows` are the global batches and
    this rank trains its contiguous part of each, augmented with the random numbers of those positions in the
    global batch."""
    import torch

    t.model.train()
    net = t.compiled if t.compiled is not None else t.ddp if t.ddp is not None else t.model
    group_rows = groups_of(rows, t.accumulate)  # rows of each micro-batch's optimizer batch
    parts = [slice(None) if shard is None else shard.shard(len(r)) for r in rows]
    assert t.augment.transform is not None, "a training Preprocess has a transform"
    data = TrainBatches(images, rows, labels, t.augment.transform, seed, parts=parts, weights=weights)
    total, seen, start = 0.0, 0, time.perf_counter()
    with reporter.task(label, total=len(rows)) as task:
        for b, batch in enumerate(iterate(data, num_workers=num_workers, pin_memory=t.setup.pin_memory)):
            x, yb = _to_device(batch[0], t.setup), batch[1]
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
            if b % t.accumulate == 0:  # the first micro-batch of an optimizer step
                t.optimizer.zero_grad(set_to_none=True)
            # accumulated: each micro-batch's mean loss weighted by its share of the optimizer batch, so the
            # summed gradient is that of the mean over the whole batch
            part = loss if t.accumulate == 1 else loss * (len(rows[b]) / group_rows[b])
            t.scaler.scale(part).backward()
            if (b + 1) % t.accumulate == 0 or b == len(rows) - 1:
                t.optimizer_step()
            total += float(loss.detach()) * x.shape[0]
            seen += x.shape[0]
            task.advance()
    return EpochStats(total / max(seen, 1), seen, time.perf_counter() - start)


def predict(
    model: nn.Module,
    images: Images,
    idx: np.ndarray,
    views: list[str],
    augment: Preprocess,
    setup: DeviceSetup,
    batch_size: int,
    reporter: Reporter | None = None,
    label: str = "predict",
    num_workers: int = 0,
) -> np.ndarray:
    """Logits [len(idx), n_views, C] (float32) of `model` on the centre crops of rows `idx`, view 0 plain."""
    import torch

    from kit.progress import NullReporter

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
        data = EvalBatches(images, rows, augment.size)
        for xb, _ in iterate(data, num_workers=num_workers, pin_memory=setup.pin_memory):
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
