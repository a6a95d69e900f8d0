"""Long-tail losses. All take logits [B, C] and integer targets [B] or soft targets [B, C] (mixup/cutmix).

ce, label_smoothing, weighted_ce ((1/freq)^power), focal (gamma, alpha), logit_adjusted (Menon et al. 2021:
CE on logits + tau * log prior) and balanced_softmax (Ren et al. 2020: CE on logits + log class count). The
adjusted losses change training only; predictions use the raw logits.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from kit.config.schema import LossConfig, SamplerConfig

if TYPE_CHECKING:
    import torch


class RebalanceWarning(UserWarning):
    """Several class rebalancers are stacked; each one alone already shifts toward rare classes."""


def inverse_frequency(counts: np.ndarray, power: float) -> np.ndarray:
    """(1/count)^power normalised to mean 1 over classes that occur; 0 for absent classes."""
    counts = np.asarray(counts, dtype=np.float64)
    w = np.zeros_like(counts)
    present = counts > 0
    w[present] = counts[present] ** -power
    return w / w[present].mean()


def _soft(target: torch.Tensor, n_classes: int) -> torch.Tensor:
    import torch.nn.functional as F

    return target if target.ndim == 2 else F.one_hot(target, n_classes).float()


class KitLoss:
    """A callable loss built from LossConfig and the train fold's class counts."""

    def __init__(self, cfg: LossConfig, class_counts: np.ndarray) -> None:
        import torch

        self.cfg = cfg
        self.n_classes = len(class_counts)
        counts = np.maximum(np.asarray(class_counts, dtype=np.float64), 0)
        prior = counts / counts.sum()
        self.log_prior = torch.tensor(np.log(np.maximum(prior, 1e-12)), dtype=torch.float32)
        self.log_counts = torch.tensor(np.log(np.maximum(counts, 1e-12)), dtype=torch.float32)
        self.class_weight = torch.tensor(
            inverse_frequency(counts, cfg.class_weight_power), dtype=torch.float32
        )
        if isinstance(cfg.alpha, float):
            self.alpha: torch.Tensor | None = torch.full((self.n_classes,), float(cfg.alpha))
        elif cfg.alpha == "balanced":
            self.alpha = self.class_weight
        else:
            self.alpha = None

    def __call__(
        self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The batch's loss: the mean over rows, or with `weight` [B] (pseudo-label rows: kit.train.added)
        the weighted mean sum(w * loss) / sum(w) (weighted_ce: its class-weighted ratio with w in both sums)."""
        import torch
        import torch.nn.functional as F

        kind = self.cfg.kind
        logits = logits.float()
        dev = logits.device
        if kind == "logit_adjusted":
            logits = logits + self.cfg.tau * self.log_prior.to(dev)
        elif kind == "balanced_softmax":
            logits = logits + self.log_counts.to(dev)
        soft = _soft(target, self.n_classes)
        if kind == "label_smoothing":
            eps = self.cfg.label_smoothing
            soft = soft * (1 - eps) + eps / self.n_classes
        logp = F.log_softmax(logits, dim=-1)
        if kind == "focal":
            p = logp.exp()
            per_class = -((1 - p) ** self.cfg.gamma) * logp * soft
            if self.alpha is not None:
                per_class = per_class * self.alpha.to(dev)
            return _row_mean(per_class.sum(-1), weight)
        per_class = -logp * soft
        if kind == "weighted_ce":
            w = self.class_weight.to(dev)
            eps = torch.finfo(torch.float32).eps
            if weight is not None:
                r = weight.float()[:, None]
                return (per_class * w * r).sum() / (soft * w * r).sum().clamp_min(eps)
            # normalise by the target's weight, as torch's CrossEntropyLoss(weight=...) does
            return (per_class * w).sum() / (soft * w).sum().clamp_min(eps)
        return _row_mean(per_class.sum(-1), weight)


def _row_mean(per_row: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return per_row.mean()
    w = weight.float()
    return (per_row * w).sum() / w.sum().clamp_min(1e-12)


class MultilabelLoss:
    """A callable loss over logits [B, L] and 0/1 targets [B, L], from LossConfig and the fold's label counts."""

    def __init__(self, cfg: LossConfig, label_counts: np.ndarray, n_rows: int) -> None:
        import torch

        self.cfg = cfg
        counts = np.maximum(np.asarray(label_counts, dtype=np.float64), 0)
        self.alpha: torch.Tensor | None = None
        if isinstance(cfg.alpha, float):
            self.alpha = torch.full((len(counts),), float(cfg.alpha))
        elif cfg.alpha == "balanced":  # positives weighted by the inverse of their label's frequency
            self.alpha = torch.tensor(inverse_frequency(counts, cfg.class_weight_power), dtype=torch.float32)

    def __call__(
        self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        import torch.nn.functional as F

        x, t = logits.float(), target.float()
        log_p, log_q = F.logsigmoid(x), F.logsigmoid(-x)  # log p, log (1 - p)
        kind = self.cfg.kind
        if kind == "asl":
            p = log_p.exp()
            q = (1 - p + self.cfg.clip).clamp(max=1.0) if self.cfg.clip > 0 else 1 - p  # shifted 1 - p
            log_q = q.clamp_min(1e-8).log() if self.cfg.clip > 0 else log_q
            pos = t * (1 - p) ** self.cfg.gamma_pos * log_p
            neg = (1 - t) * (1 - q) ** self.cfg.gamma_neg * log_q
            return _row_mean(-(pos + neg).sum(-1), weight)
        pos, neg = t * log_p, (1 - t) * log_q
        if kind == "focal":
            p = log_p.exp()
            pos = pos * (1 - p) ** self.cfg.gamma
            neg = neg * p**self.cfg.gamma
        if self.alpha is not None and kind == "focal":
            pos = pos * self.alpha.to(x.device)
        return _row_mean(-(pos + neg).sum(-1), weight)


def make_loss(cfg: LossConfig, labels: np.ndarray, n_outputs: int) -> KitLoss | MultilabelLoss:
    """The loss for a fold's train labels: class indices [n] (softmax losses) or a 0/1 matrix [n, L]."""
    if np.ndim(labels) == 2:
        return MultilabelLoss(cfg, np.asarray(labels).sum(axis=0), len(labels))
    return KitLoss(cfg, np.bincount(labels, minlength=n_outputs))


def warn_stacked_rebalancers(name: str, loss: LossConfig, sampler: SamplerConfig) -> list[str]:
    """Warn when sampler + class weights + prior-adjusted losses are combined; returns what is stacked."""
    stacked = []
    if sampler.kind == "weighted" and sampler.power > 0:
        stacked.append(f"sampler: weighted (power {sampler.power})")
    if loss.kind == "weighted_ce":
        stacked.append("loss: weighted_ce")
    if loss.kind == "focal" and loss.alpha == "balanced":
        stacked.append("focal alpha: balanced")
    if loss.kind in ("logit_adjusted", "balanced_softmax"):
        stacked.append(f"loss: {loss.kind}")
    if len(stacked) > 1:
        warnings.warn(
            f"member '{name}' stacks {len(stacked)} class rebalancers ({', '.join(stacked)}); together they "
            "over-correct toward rare classes. Keep one unless CV says otherwise.",
            RebalanceWarning,
            stacklevel=2,
        )
    return stacked
