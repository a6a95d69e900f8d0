"""Multi-label metrics (competition.task: multilabel), pure numpy over a 0/1 label matrix Y [n, L].

Scores take per-label probabilities or logits [n, L]; a label is predicted where its probability is >= 0.5
(the per-label decision thresholds of kit.blend.thresholds map each threshold onto 0.5). They equal
scikit-learn's multilabel versions (tests/test_metrics_multilabel.py):

    f1_samples      f1_score(average='samples'): the mean over images of each image's F1
    f1_micro        f1_score(average='micro'): F1 of all (image, label) cells pooled
    f1_macro        f1_score(average='macro'): the mean over labels of each label's F1
    accuracy_cells  the share of (image, label) cells predicted right (Dacon's dirty MNIST)
    roc_auc         roc_auc_score(average='macro'): the mean over labels of each column's ROC AUC (columns
                    with one class only are left out)
    log_loss        the mean binary cross-entropy over cells
"""

from __future__ import annotations

import numpy as np

LABEL_DECISION_METRICS = ("f1_samples", "f1_micro", "f1_macro", "accuracy_cells")
EPS = 1e-7


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -np.asarray(x, dtype=np.float64))


def decide(probs: np.ndarray) -> np.ndarray:
    """The predicted 0/1 cells of probabilities [n, L]."""
    return np.asarray(probs) >= 0.5


def cell_counts(Y: np.ndarray, pred: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true positives, predicted, true) counts summed along `axis` (0: per label, 1: per image)."""
    Yb = np.asarray(Y, dtype=bool)
    return (
        np.count_nonzero(Yb & pred, axis=axis).astype(np.float64),
        np.count_nonzero(pred, axis=axis).astype(np.float64),
        np.count_nonzero(Yb, axis=axis).astype(np.float64),
    )


def f1_of_counts(tp: np.ndarray, predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """F1 per entry, 0 where undefined (no true and no predicted label: scikit-learn's zero_division=0)."""
    denom = predicted + true
    return np.divide(2 * tp, denom, out=np.zeros(np.shape(denom)), where=denom > 0)


def row_values(metric: str, Y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-image values whose mean is f1_samples, accuracy_cells or log_loss (probabilities in)."""
    if metric == "f1_samples":
        return f1_of_counts(*cell_counts(Y, decide(probs), axis=1))
    if metric == "accuracy_cells":
        return (decide(probs) == np.asarray(Y, dtype=bool)).mean(axis=1)
    if metric == "log_loss":
        p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
        Yf = np.asarray(Y, dtype=np.float64)
        return -(Yf * np.log(p) + (1 - Yf) * np.log1p(-p)).mean(axis=1)
    raise ValueError(f"{metric!r} is not a per-image multi-label metric")


ROW_METRICS = ("f1_samples", "accuracy_cells", "log_loss")


def column_aucs(Y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """[L] ROC AUC of each column (NaN for a column with one class only)."""
    from kit.metrics.ranking import binary_auc

    Yb = np.asarray(Y, dtype=bool)
    return np.array(
        [binary_auc(Yb[:, j], np.asarray(scores[:, j], dtype=np.float64)) for j in range(Yb.shape[1])]
    )


def score(metric: str, Y: np.ndarray, scores: np.ndarray, *, logits: bool = True) -> float:
    """One multi-label metric of logits (default) or probabilities [n, L]."""
    if metric == "roc_auc":  # ranks only: logits and probabilities give the same columns' orders
        aucs = column_aucs(Y, scores)
        return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")
    if metric == "log_loss" and logits:
        x = np.asarray(scores, dtype=np.float64)
        Yf = np.asarray(Y, dtype=np.float64)
        return float(-(Yf * log_sigmoid(x) + (1 - Yf) * log_sigmoid(-x)).mean())
    probs = sigmoid(scores) if logits else np.asarray(scores, dtype=np.float64)
    if metric in ROW_METRICS:
        return float(row_values(metric, Y, probs).mean())
    tp, predicted, true = cell_counts(Y, decide(probs), axis=0)
    if metric == "f1_micro":
        return float(f1_of_counts(tp.sum(), predicted.sum(), true.sum()))
    if metric == "f1_macro":
        return float(f1_of_counts(tp, predicted, true).mean())
    raise ValueError(f"{metric!r} is not a multi-label metric")


def per_label(Y: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict[str, dict[str, float | None]]:
    """label -> {f1, auc, support}: each label's F1 at the 0.5 decision and its column's ROC AUC."""
    tp, predicted, true = cell_counts(Y, decide(probs), axis=0)
    f1 = f1_of_counts(tp, predicted, true)
    aucs = column_aucs(Y, probs)
    return {
        c: {
            "f1": float(f1[j]),
            "auc": float(aucs[j]) if np.isfinite(aucs[j]) else None,
            "support": int(true[j]),
        }
        for j, c in enumerate(labels)
    }
