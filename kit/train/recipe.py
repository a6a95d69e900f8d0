"""The fine-tuning recipe of a timm member beyond AdamW + warmup/cosine: parameter groups with layer-wise LR
decay and a head LR multiplier, gradient-accumulation batches, gradual unfreezing, and per-fold weight
averaging (SWA, or the mean of the top-k epochs' weights). Config: TimmMember keys (docs/train.md).

Layers come from timm itself: `group_matcher` (fine for layer decay, as timm's `param_groups_layer_decay`
takes them; coarse stages for unfreezing), or timm's `auto_group_layers` for models without one.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

    from kit.config.schema import TimmMember


# ---------------------------------------------------------------- parameter groups


def layer_ids(model: nn.Module, *, coarse: bool) -> dict[str, int]:
    """Parameter name -> layer index from the input (0) up to the head (the highest), as timm numbers them."""
    from timm.models import group_parameters
    from timm.optim._param_groups import auto_group_layers

    if hasattr(model, "group_matcher"):
        matcher = model.group_matcher(coarse=coarse)  # type: ignore[operator]
        return dict(group_parameters(model, matcher, reverse=True))
    return dict(auto_group_layers(model))


def param_groups(model: nn.Module, m: TimmMember, head: set[str]) -> list[dict[str, Any]]:
    """AdamW's groups, each with its own `lr` (what LambdaLR scales per step).

    Default: decay / no decay (norms, biases), every group at `lr`. `layer_decay` takes timm's
    `param_groups_layer_decay` (its `lr_scale` per layer, and the model's `no_weight_decay()` list, as timm's
    create_optimizer_v2 does); `head_lr` multiplies the classifier's groups (head: its parameter names)."""
    if m.layer_decay is None:
        decay: list[Any] = []
        no_decay: list[Any] = []
        for _, p in model.named_parameters():
            (no_decay if p.ndim <= 1 else decay).append(p)
        groups: list[dict[str, Any]] = [
            {"params": decay, "weight_decay": m.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        if m.head_lr == 1.0:
            return groups  # today's two groups, exactly (old last.pt files resume into them)
    else:
        from timm.optim import param_groups_layer_decay

        skip: set[str] = getattr(model, "no_weight_decay", set)()
        groups = param_groups_layer_decay(
            model, weight_decay=m.weight_decay, no_weight_decay_list=skip, layer_decay=m.layer_decay
        )
    name = {id(p): n for n, p in model.named_parameters()}
    out = []
    for g in groups:
        scale = float(g.get("lr_scale", 1.0))
        body = [p for p in g["params"] if name[id(p)] not in head]
        top = [p for p in g["params"] if name[id(p)] in head]
        for params, s in ((body, scale), (top, scale * m.head_lr)):
            if params:
                out.append({**g, "params": params, "lr_scale": s, "lr": m.lr * s})
    return out


# ---------------------------------------------------------------- batches


def accumulation_batches(rows: list[np.ndarray], accumulate: int) -> list[np.ndarray]:
    """Each optimizer batch (batch_size x accumulate rows) cut into `accumulate` micro-batches of batch_size,
    in order: the optimizer sees the same rows as one batch of the effective size would hold."""
    if accumulate == 1:
        return rows
    return [part for r in rows for part in np.array_split(r, accumulate) if len(part)]


def groups_of(rows: list[np.ndarray], accumulate: int) -> list[int]:
    """For each micro-batch, the rows of its optimizer batch (what its loss is divided by)."""
    sizes = []
    for i in range(0, len(rows), accumulate):
        group = rows[i : i + accumulate]
        sizes += [sum(len(r) for r in group)] * len(group)
    return sizes


def effective_batch(m: TimmMember) -> int:
    return m.batch_size * m.accumulate


# ---------------------------------------------------------------- freezing


@dataclass(frozen=True)
class Unfreezing:
    """Which parameters train at each epoch: the head alone for `freeze_epochs`, then the whole network
    (`unfreeze: all`), or one backbone stage more per epoch from the top (`unfreeze: gradual`)."""

    head: set[str]
    stage: dict[str, int]  # parameter name -> backbone stage (timm's coarse groups); the head is not in it
    freeze_epochs: int
    gradual: bool

    @classmethod
    def of(cls, model: nn.Module, head: set[str], m: TimmMember) -> Unfreezing:
        stage = {} if m.unfreeze == "all" else layer_ids(model, coarse=True)
        body = {n: i for n, i in stage.items() if n not in head}
        return cls(head, body, m.freeze_epochs, m.unfreeze == "gradual")

    def trains(self, name: str, epoch: int) -> bool:
        if name in self.head:
            return True
        if epoch < self.freeze_epochs:
            return False
        if not self.gradual:
            return True
        top = max(self.stage.values(), default=0)
        return self.stage.get(name, top) >= top - (epoch - self.freeze_epochs)

    def apply(self, model: nn.Module, epoch: int) -> None:
        for n, p in model.named_parameters():
            p.requires_grad_(self.trains(n, epoch))

    @property
    def leaves_unused(self) -> bool:
        """Whether some epochs train part of the network (DDP must not wait for the frozen parameters)."""
        return self.freeze_epochs > 0 or self.gradual


# ---------------------------------------------------------------- weight averaging


def swa_first_epoch(m: TimmMember) -> int:
    """The first epoch SWA averages: swa_start, else the last quarter of the epochs (at least the last)."""
    return m.swa_start if m.swa_start is not None else m.epochs - max(1, m.epochs // 4)


@dataclass
class Averaging:
    """The fold's weight average, kept beside the epochs and saved in last.pt (resume continues it).

    top_k: the eval weights of the k best epochs so far (by the held-out score), averaged at the end.
    swa: torch.optim.swa_utils.AveragedModel of the training weights, updated after each epoch from
    swa_start; BatchNorm statistics are recomputed on the training rows at the end (update_bn)."""

    kind: str  # swa | top_k
    k: int
    first: int  # swa: the first averaged epoch
    higher: bool
    swa: Any = None  # AveragedModel (swa)
    top: list[dict[str, Any]] = field(default_factory=list)  # top_k: {"epoch", "score", "model"}, best first

    @classmethod
    def of(cls, m: TimmMember, model: nn.Module, higher: bool) -> Averaging | None:
        if m.average == "none":
            return None
        swa = None
        if m.average == "swa":
            from torch.optim.swa_utils import AveragedModel

            swa = AveragedModel(model, use_buffers=False)
        return cls(m.average, m.average_k, swa_first_epoch(m), higher, swa)

    def after_epoch(self, epoch: int, s: float, model: nn.Module, eval_model: nn.Module) -> None:
        if self.kind == "swa":
            if epoch >= self.first:
                self.swa.update_parameters(model)
            return
        weights = {k: v.detach().cpu().clone() for k, v in eval_model.state_dict().items()}
        self.top.append({"epoch": epoch, "score": s, "model": weights})
        sign = -1.0 if self.higher else 1.0
        self.top.sort(key=lambda e: (np.nan_to_num(sign * e["score"], nan=np.inf), e["epoch"]))
        del self.top[self.k :]

    @property
    def epochs(self) -> list[int]:
        """The epochs in the average so far."""
        if self.kind == "top_k":
            return sorted(e["epoch"] for e in self.top)
        return [] if self.swa is None else list(range(self.first, self.first + int(self.swa.n_averaged)))

    def checkpoint(self) -> dict[str, Any]:
        if self.kind == "swa":
            return {"swa": self.swa.state_dict()}
        return {"top": self.top}

    def restore(self, ck: dict[str, Any]) -> None:
        if self.kind == "swa":
            self.swa.load_state_dict(ck["swa"])
        else:
            self.top = list(ck["top"])

    def averaged(self, like: nn.Module, bn_batches: Iterable[torch.Tensor]) -> nn.Module | None:
        """The averaged network (a copy of `like` carrying the mean weights), or None when nothing was
        averaged (early stopping before swa_start)."""
        import torch

        if not self.epochs:
            return None
        if self.kind == "swa":
            from torch.optim.swa_utils import update_bn

            model = copy.deepcopy(self.swa.module)
            with torch.no_grad():
                update_bn(bn_batches, model)
            return model
        states = [e["model"] for e in self.top]
        mean = {}
        for key, first in states[0].items():
            if first.is_floating_point():
                mean[key] = torch.stack([s[key].float() for s in states]).mean(0).to(first.dtype)
            else:  # counters (BatchNorm's num_batches_tracked): the best epoch's
                mean[key] = first
        model = copy.deepcopy(like)
        model.load_state_dict(mean)
        return model
