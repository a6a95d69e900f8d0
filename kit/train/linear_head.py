"""A linear head on frozen, L2-normalised embeddings: kit's losses and sampler, AdamW, best epoch by the metric.

Pure computation over arrays (no files): the CLIP probe calls it once per fold on cached embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from kit.config.schema import LossConfig, SamplerConfig
from kit.metrics.scores import greater_is_better, score


@dataclass
class LinearHead:
    """logits = x @ weight.T + bias, x L2-normalised [.., D]."""

    weight: np.ndarray  # [C, D]
    bias: np.ndarray  # [C]
    best_epoch: int = 0
    best_score: float = float("nan")
    history: list[float] = field(default_factory=list)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return (l2_normalize(x) @ self.weight.T + self.bias).astype(np.float32)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def zero_shot_head(text_weights: np.ndarray, logit_scale: float) -> LinearHead:
    """The head whose logits equal CLIP's zero-shot logits: W = text_weights.T * logit_scale, bias 0.

    text_weights: [D, C] normalised class embeddings (open_clip.build_zero_shot_classifier).
    """
    w = np.ascontiguousarray(text_weights.T * logit_scale, dtype=np.float32)
    return LinearHead(weight=w, bias=np.zeros(w.shape[0], np.float32))


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Tiny matmuls run fastest on one CPU thread; torch's default pool only adds contention (CUDA unaffected)."""
    import torch

    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@_threads(1)
def fit_linear_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    *,
    n_classes: int,
    loss: LossConfig,
    sampler: SamplerConfig,
    metric: str,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    patience: int | None = None,
    init: LinearHead | None = None,
    seed: int = 0,
    device: str = "cpu",
    on_epoch: Callable[[int, float], None] | None = None,
    targets: np.ndarray | None = None,
    row_weight: np.ndarray | None = None,
) -> LinearHead:
    """Train on `x_train` [n, D] (labels `y_train`); keep the epoch with the best `metric` on `x_valid`.

    `x_valid` is [m, D] or [m, V, D] (views); the metric is taken on view 0. With `init` (e.g. a zero-shot
    head) the untrained head is epoch 0 and wins when no epoch beats it. `targets` [n, C] (soft pseudo-labels)
    replace `y_train` in the loss, `row_weight` [n] weighs each row's loss (kit.train.added); the sampler and
    the loss's class counts still take `y_train`.
    """
    import torch

    from kit.train.losses import make_loss
    from kit.train.sampler import sample_weights

    torch.manual_seed(seed)
    x_np = l2_normalize(np.asarray(x_train, np.float32))
    # optimise in standardised coordinates z = (x - mu) / sigma (well conditioned whatever the embedding's
    # common component); the returned head maps raw x, so a zero-shot init is reproduced exactly
    mu = x_np.mean(axis=0)
    sigma = np.maximum(x_np.std(axis=0), 1e-6)
    xt = torch.as_tensor((x_np - mu) / sigma, device=device)
    multilabel = np.ndim(y_train) == 2  # a 0/1 label matrix: sigmoid outputs
    yt = torch.as_tensor(np.asarray(y_train, np.float32 if multilabel else np.int64), device=device)
    tt = yt if targets is None else torch.as_tensor(np.asarray(targets, np.float32), device=device)
    wt = None if row_weight is None else torch.as_tensor(np.asarray(row_weight, np.float32), device=device)
    xv = np.asarray(x_valid, np.float32)
    xv_plain = torch.as_tensor((l2_normalize(xv[:, 0] if xv.ndim == 3 else xv) - mu) / sigma, device=device)
    dim = xt.shape[1]

    head = torch.nn.Linear(dim, n_classes).to(device)
    with torch.no_grad():
        if init is not None:
            head.weight.copy_(torch.as_tensor(init.weight * sigma))
            head.bias.copy_(torch.as_tensor(init.bias + mu @ init.weight.T))
        else:
            head.weight.zero_()
            head.bias.zero_()
    criterion = make_loss(loss, np.asarray(y_train), n_classes)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    higher = greater_is_better(metric)
    gen = torch.Generator().manual_seed(seed)
    probs = None
    if sampler.kind == "weighted":
        probs = torch.as_tensor(
            sample_weights(np.asarray(y_train), sampler.power, n_classes), dtype=torch.double
        )

    def evaluate() -> float:
        with torch.no_grad():
            return score(metric, y_valid, head(xv_plain).cpu().numpy())

    def snapshot() -> tuple[np.ndarray, np.ndarray]:
        """The head in raw-x coordinates: W = W'/sigma, b = b' - (mu/sigma) @ W'.T."""
        w = head.weight.detach().cpu().numpy().astype(np.float64)
        b = head.bias.detach().cpu().numpy().astype(np.float64)
        return (w / sigma).astype(np.float32), (b - (mu / sigma) @ w.T).astype(np.float32)

    best_w, best_b = snapshot()
    best_epoch, best = 0, (evaluate() if init is not None else (-np.inf if higher else np.inf))
    history: list[float] = [best] if init is not None else []
    n = len(yt)
    for epoch in range(1, epochs + 1):
        if probs is not None:
            order = torch.multinomial(probs, n, replacement=True, generator=gen)
        else:
            order = torch.randperm(n, generator=gen)
        order = order.to(device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad(set_to_none=True)
            out = head(xt[idx])
            (criterion(out, tt[idx]) if wt is None else criterion(out, tt[idx], wt[idx])).backward()
            opt.step()
        s = evaluate()
        history.append(s)
        if on_epoch is not None:
            on_epoch(epoch, s)
        if (s > best) if higher else (s < best):
            best, best_epoch = s, epoch
            best_w, best_b = snapshot()
        elif patience is not None and epoch - best_epoch >= patience:
            break
    return LinearHead(
        weight=best_w, bias=best_b, best_epoch=best_epoch, best_score=float(best), history=history
    )
