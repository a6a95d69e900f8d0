"""Pure numpy metrics. Scores take class predictions or score arrays [n, C] (logits or probabilities).

They equal scikit-learn's f1_score(average='weighted'|'macro'), accuracy_score and log_loss, without a
per-call scikit-learn loop: one bincount builds the confusion matrix.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """[true, pred] counts."""
    idx = np.asarray(y_true, dtype=np.int64) * n_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def f1_from_confusion(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class F1, support (true counts), predicted counts. F1 is 0 where it is undefined (as sklearn)."""
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return f1, support, predicted


def _pred(y_score_or_pred: np.ndarray) -> np.ndarray:
    a = np.asarray(y_score_or_pred)
    return a.argmax(axis=-1) if a.ndim == 2 else a


def f1_per_class(y_true: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    pred = _pred(y)
    c = n_classes or (y.shape[1] if np.ndim(y) == 2 else int(max(y_true.max(), pred.max())) + 1)
    return f1_from_confusion(confusion_matrix(y_true, pred, c))[0]


def weighted_f1(y_true: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> float:
    pred = _pred(y)
    c = n_classes or (y.shape[1] if np.ndim(y) == 2 else int(max(y_true.max(), pred.max())) + 1)
    f1, support, _ = f1_from_confusion(confusion_matrix(y_true, pred, c))
    total = support.sum()
    return float((f1 * support).sum() / total) if total else 0.0


def macro_f1(y_true: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> float:
    """Mean F1 over classes present in y_true or the predictions (scikit-learn's default label set)."""
    pred = _pred(y)
    c = n_classes or (y.shape[1] if np.ndim(y) == 2 else int(max(y_true.max(), pred.max())) + 1)
    f1, support, predicted = f1_from_confusion(confusion_matrix(y_true, pred, c))
    present = (support + predicted) > 0
    return float(f1[present].mean()) if present.any() else 0.0


def accuracy(y_true: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> float:
    return float((_pred(y) == np.asarray(y_true)).mean())


def log_loss_rows(y_true: np.ndarray, scores: np.ndarray, *, logits: bool = True) -> np.ndarray:
    """Per-row negative log-likelihood of the true class (what `log_loss` averages)."""
    s = np.asarray(scores, dtype=np.float64)
    rows = np.arange(len(s))
    if logits:
        return np.asarray(-log_softmax(s)[rows, y_true])
    eps = np.finfo(np.asarray(scores).dtype if np.asarray(scores).dtype.kind == "f" else np.float64).eps
    p = np.clip(s / s.sum(axis=1, keepdims=True), eps, 1 - eps)
    return np.asarray(-np.log(p[rows, y_true]))


def log_loss(
    y_true: np.ndarray, scores: np.ndarray, n_classes: int | None = None, *, logits: bool = True
) -> float:
    """Mean negative log-likelihood. `logits=False` takes probabilities (renormalised and clipped as sklearn)."""
    return float(log_loss_rows(y_true, scores, logits=logits).mean())


METRICS: dict[str, Callable[..., float]] = {
    "weighted_f1": weighted_f1,
    "macro_f1": macro_f1,
    "accuracy": accuracy,
    "log_loss": log_loss,
}


def greater_is_better(metric: str) -> bool:
    return metric != "log_loss"


def score(metric: str, y_true: np.ndarray, scores: np.ndarray, *, logits: bool = True) -> float:
    """One metric on an [n, C] score array (logits by default)."""
    if metric == "log_loss":
        return log_loss(y_true, scores, scores.shape[1], logits=logits)
    return METRICS[metric](y_true, scores, scores.shape[1])


def all_scores(y_true: np.ndarray, scores: np.ndarray, *, logits: bool = True) -> dict[str, float]:
    return {m: score(m, y_true, scores, logits=logits) for m in METRICS}
