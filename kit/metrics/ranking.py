"""Rank and ordinal metrics in pure numpy: ROC AUC, quadratic weighted kappa, MAP@k and top-k accuracy.

Scores are [n, C] arrays: logits (`logits=True`) or probabilities. They equal scikit-learn's roc_auc_score
(binary; multi-class one-vs-rest, macro), cohen_kappa_score(weights='quadratic') and top_k_accuracy_score.

Ranking ties: top-k lists (top_k_accuracy, MAP@k) order equal scores as scikit-learn's top_k_accuracy_score
does (a stable ascending sort, reversed: among equal scores the higher class index comes first). ROC AUC gives
tied scores half credit (average ranks), as scikit-learn.
"""

from __future__ import annotations

import numpy as np


def _probs(scores: np.ndarray, logits: bool) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if not logits:
        return s
    z = np.exp(s - s.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of one score column against a boolean target (average ranks for ties).
    NaN when the target has a single value (the AUC is undefined)."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    s = np.asarray(score)[order]
    # average rank (1-based) of each run of equal scores
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    run_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(s))
    ranks[order] = np.repeat(run_rank, ends - starts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def weighted_auc(positive: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[B] ROC AUC of one score column under B row weightings `weights` [B, n] (a bootstrap's draw counts):
    one sort for all of them. Ties get half credit; NaN where a weighting has no positive or no negative."""
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(score, kind="mergesort")
    s = np.asarray(score)[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos = positive[order]
    w = np.asarray(weights, dtype=np.float64)[:, order]
    pos_run = np.add.reduceat(w * pos, starts, axis=1)
    neg_run = np.add.reduceat(w * ~pos, starts, axis=1)
    neg_below = np.cumsum(neg_run, axis=1) - neg_run
    credit = (pos_run * (neg_below + 0.5 * neg_run)).sum(axis=1)
    denom = pos_run.sum(axis=1) * neg_run.sum(axis=1)
    return np.divide(credit, denom, out=np.full(len(w), np.nan), where=denom > 0)


def roc_auc(
    y_true: np.ndarray, scores: np.ndarray, n_classes: int | None = None, *, logits: bool = True
) -> float:
    """Binary: AUC of the second class's probability. Multi-class: the mean one-vs-rest AUC over the classes
    present in y_true (scikit-learn's multi_class='ovr', average='macro', which needs every class present)."""
    y = np.asarray(y_true)
    p = _probs(scores, logits)
    if p.shape[1] == 2:
        return binary_auc(y == 1, p[:, 1])
    aucs = [binary_auc(y == c, p[:, c]) for c in range(p.shape[1])]
    valid = [a for a in aucs if not np.isnan(a)]
    return float(np.mean(valid)) if valid else float("nan")


def qwk_from_confusion(cm: np.ndarray) -> float:
    """Quadratic weighted kappa of a [true, pred] confusion matrix over ordered classes 0..C-1."""
    return float(qwk_from_confusions(np.asarray(cm)[None])[0])


def qwk_from_confusions(cms: np.ndarray) -> np.ndarray:
    """[B] quadratic weighted kappa of a batch of [B, C, C] confusion matrices (0 where undefined)."""
    cms = np.asarray(cms, dtype=np.float64)
    C = cms.shape[-1]
    if C < 2:
        return np.zeros(len(cms))
    i = np.arange(C)
    w = (i[:, None] - i[None, :]) ** 2 / (C - 1) ** 2
    n = cms.sum(axis=(1, 2))
    expected = cms.sum(axis=2)[:, :, None] * cms.sum(axis=1)[:, None, :] / np.maximum(n, 1)[:, None, None]
    observed = (w * cms).sum(axis=(1, 2))
    denom = (w * expected).sum(axis=(1, 2))
    return np.divide(observed, denom, out=np.ones_like(denom), where=denom > 0) * -1.0 + 1.0


def qwk(y_true: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> float:
    """Quadratic weighted kappa of class predictions (or the argmax of an [n, C] score array)."""
    a = np.asarray(y)
    pred = a.argmax(axis=1) if a.ndim == 2 else a
    C = n_classes or (a.shape[1] if a.ndim == 2 else int(max(np.max(y_true), pred.max())) + 1)
    idx = np.asarray(y_true, dtype=np.int64) * C + pred.astype(np.int64)
    return qwk_from_confusion(np.bincount(idx, minlength=C * C).reshape(C, C))


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """[n, k] class indices by descending score (ties: higher class index first, as scikit-learn)."""
    s = np.asarray(scores)
    k = min(k, s.shape[1])
    return np.argsort(s, axis=1, kind="mergesort")[:, ::-1][:, :k]


def true_rank(y_true: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Per row, the 1-based position of the true class in the top-k list, 0 when it is not in it."""
    hits = top_k(scores, k) == np.asarray(y_true)[:, None]
    pos = hits.argmax(axis=1) + 1
    return np.where(hits.any(axis=1), pos, 0)


def map_at_k(y_true: np.ndarray, scores: np.ndarray, k: int = 5) -> float:
    """Mean average precision at k with one true label a row: mean of 1/rank of the true class in the top k."""
    r = true_rank(y_true, scores, k)
    return float(np.where(r > 0, 1.0 / np.maximum(r, 1), 0.0).mean())


def top_k_accuracy(y_true: np.ndarray, scores: np.ndarray, k: int = 5) -> float:
    """Share of rows whose true class is among the k best-scored classes."""
    return float((true_rank(y_true, scores, k) > 0).mean())
