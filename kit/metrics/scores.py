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


def mean_view_probs(logits: np.ndarray, multilabel: bool = False) -> np.ndarray:
    """[n, V, C] logits -> [n, C]: the mean over views of each view's softmax (not softmax of mean logits);
    multilabel: of each view's per-label sigmoid."""
    from kit.metrics.multilabel import sigmoid

    x = np.asarray(logits, dtype=np.float64)
    return (sigmoid(x) if multilabel else softmax(x, axis=-1)).mean(axis=1)


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


ARGMAX_METRICS = ("weighted_f1", "macro_f1", "accuracy")  # from per-class counts of the argmax prediction
LABEL_METRICS = (*ARGMAX_METRICS, "qwk")  # from the confusion matrix of the argmax prediction
ROW_MEAN_METRICS = ("log_loss", "map_at_k", "top_k_accuracy")  # the mean of a per-row value
# roc_auc, the one metric in neither family, comes from the ranking of each class's scores over the rows


def parse_metric(metric: str) -> tuple[str, int | None]:
    """'map_at_k@5' -> ('map_at_k', 5); a metric without k -> (name, None). kit.yaml's competition.metric and
    metric_k make this name (`Competition.scored_by`), so every scorer sees k."""
    name, _, k = metric.partition("@")
    return name, int(k) if k else None


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """[true, pred] counts."""
    idx = np.asarray(y_true, dtype=np.int64) * n_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def f1_from_counts(tp: np.ndarray, predicted: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Per-class F1 [..., C] from per-class counts [..., C]: true positives, predictions and true rows (support).
    F1 is 0 where it is undefined (as sklearn)."""
    denom = support + predicted
    return np.divide(2 * tp, denom, out=np.zeros_like(denom, dtype=np.float64), where=denom > 0)


def mean_present(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """The mean of `values` over the entries where `present`, along the last axis (0 where none is): a masked
    sum over the last axis, so one set of values [C] and a C-ordered batch [..., C] (the blend searches'
    candidates, FastScorer.from_confusions) add the same numbers in the same order, bit for bit."""
    v, keep = np.asarray(values), np.asarray(present, dtype=bool)
    return np.asarray((v * keep).sum(axis=-1) / np.maximum(keep.sum(axis=-1), 1))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0."""
    if np.ndim(den) == 0:  # one table (the blend search's inner loop): skip the masked ufunc's overhead
        return np.asarray(num / den if den > 0 else 0.0)
    return np.divide(num, den, out=np.zeros(np.shape(den)), where=den > 0)


def score_from_counts(metric: str, tp: np.ndarray, predicted: np.ndarray, support: np.ndarray) -> np.ndarray:
    """An argmax metric (ARGMAX_METRICS) from per-class counts [..., C] (true positives, predictions, true rows):
    one value per leading index, a 0-d array for one set of counts. The one implementation of these metrics:
    kit.metrics' scores, the blend search (kit.blend.scoring) and the group bootstrap (kit.blend.selection).

    macro_f1 averages over the classes present in y_true or the predictions (scikit-learn's default label set)."""
    if metric == "accuracy":
        return _ratio(tp.sum(axis=-1), support.sum(axis=-1))
    f1 = f1_from_counts(tp, predicted, support)
    if metric == "weighted_f1":
        return _ratio((f1 * support).sum(axis=-1), support.sum(axis=-1))
    if metric == "macro_f1":
        return mean_present(f1, (support + predicted) > 0)
    raise ValueError(f"{metric!r} is not one of {ARGMAX_METRICS}")


def counts_from_confusion(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true positives as float64, predictions, support) per class of a [true, pred] confusion matrix."""
    return np.diag(cm).astype(np.float64), cm.sum(axis=0), cm.sum(axis=1)


def f1_from_confusion(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class F1, support (true counts), predicted counts. F1 is 0 where it is undefined (as sklearn)."""
    tp, predicted, support = counts_from_confusion(cm)
    return f1_from_counts(tp, predicted, support), support, predicted


def score_from_confusion(metric: str, cm: np.ndarray) -> float:
    """An argmax metric from a [true, pred] confusion matrix."""
    return float(score_from_counts(metric, *counts_from_confusion(cm)))


def _pred(y_score_or_pred: np.ndarray) -> np.ndarray:
    a = np.asarray(y_score_or_pred)
    return a.argmax(axis=-1) if a.ndim == 2 else a


def _confusion(y_true: np.ndarray, y: np.ndarray, n_classes: int | None) -> np.ndarray:
    """Confusion matrix of class predictions or scores y [n, C] (classes: n_classes, y's columns, or the labels seen)."""
    pred = _pred(y)
    c = n_classes or (y.shape[1] if np.ndim(y) == 2 else int(max(y_true.max(), pred.max())) + 1)
    return confusion_matrix(y_true, pred, c)


def weighted_f1(y_true: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> float:
    return score_from_confusion("weighted_f1", _confusion(y_true, y, n_classes))


def macro_f1(y_true: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> float:
    """Mean F1 over classes present in y_true or the predictions (scikit-learn's default label set)."""
    return score_from_confusion("macro_f1", _confusion(y_true, y, n_classes))


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


def row_values(metric: str, y_true: np.ndarray, scores: np.ndarray, *, logits: bool = True) -> np.ndarray:
    """Per-row values whose mean is a ROW_MEAN_METRICS metric (log loss, 1/rank within k, hit within k)."""
    from kit.metrics.ranking import true_rank

    name, k = parse_metric(metric)
    if name == "log_loss":
        return log_loss_rows(y_true, scores, logits=logits)
    r = true_rank(y_true, scores, k or 1)
    if name == "map_at_k":
        return np.where(r > 0, 1.0 / np.maximum(r, 1), 0.0)
    if name == "top_k_accuracy":
        return (r > 0).astype(np.float64)
    raise ValueError(f"{metric!r} is not one of {ROW_MEAN_METRICS}")


METRICS: dict[str, Callable[..., float]] = {
    "weighted_f1": weighted_f1,
    "macro_f1": macro_f1,
    "accuracy": accuracy,
    "log_loss": log_loss,
}


def greater_is_better(metric: str) -> bool:
    return parse_metric(metric)[0] != "log_loss"


def score(metric: str, y_true: np.ndarray, scores: np.ndarray, *, logits: bool = True) -> float:
    """One metric (a kit metric name, `map_at_k@5` with its k) on an [n, C] score array (logits by default)."""
    from kit.metrics import ranking

    name, _ = parse_metric(metric)
    if np.ndim(y_true) == 2:  # a multi-label matrix [n, L]
        from kit.metrics import multilabel

        return multilabel.score(name, y_true, scores, logits=logits)
    if name in ROW_MEAN_METRICS:
        return float(row_values(metric, y_true, scores, logits=logits).mean())
    if name == "roc_auc":
        return ranking.roc_auc(y_true, scores, logits=logits)
    if name == "qwk":
        return ranking.qwk(y_true, scores, scores.shape[1])
    return METRICS[name](y_true, scores, scores.shape[1])


def all_scores(y_true: np.ndarray, scores: np.ndarray, *, logits: bool = True) -> dict[str, float]:
    if np.ndim(y_true) == 2:
        from kit.config.schema import MULTILABEL_METRICS

        return {m: score(m, y_true, scores, logits=logits) for m in MULTILABEL_METRICS}
    return {m: score(m, y_true, scores, logits=logits) for m in METRICS}
