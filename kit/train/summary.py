"""Scores of a member's OOF logits: pooled over folds (never a mean of fold scores), per view, per fold."""

from __future__ import annotations

from typing import Any

import numpy as np

from kit.metrics.scores import all_scores, confusion_matrix, f1_from_confusion, score


def member_metrics(
    y: np.ndarray,
    oof: np.ndarray,
    fold: np.ndarray,
    views: list[str],
    classes: list[str],
    metric: str,
    worst: int = 5,
) -> dict[str, Any]:
    """oof: [n, V, C] logits. Pooled scores use view 0 (plain) and the mean of views' logits."""
    if np.ndim(y) == 2:
        return multilabel_member_metrics(y, oof, fold, views, classes, metric, worst)
    plain = oof[:, 0]
    mean = oof.mean(axis=1)
    f1, support, _ = f1_from_confusion(confusion_matrix(y, plain.argmax(1), len(classes)))
    order = np.argsort(f1[support > 0], kind="stable")[:worst]
    present = np.flatnonzero(support > 0)
    return {
        "metric": metric,
        "pooled": {**all_scores(y, plain), metric: score(metric, y, plain)},
        "pooled_tta_mean": {**all_scores(y, mean), metric: score(metric, y, mean)},
        "per_view": {v: score(metric, y, oof[:, i]) for i, v in enumerate(views)},
        "per_fold": {str(f): score(metric, y[fold == f], plain[fold == f]) for f in np.unique(fold).tolist()},
        "per_class_f1": {c: float(f1[i]) for i, c in enumerate(classes)},
        "worst_classes": [[classes[present[i]], float(f1[present[i]])] for i in order],
    }


def multilabel_member_metrics(
    Y: np.ndarray,
    oof: np.ndarray,
    fold: np.ndarray,
    views: list[str],
    labels: list[str],
    metric: str,
    worst: int = 5,
) -> dict[str, Any]:
    """A multi-label member's scores (sigmoid of the logits): pooled, per view, per fold, and each label's F1
    (at 0.5) and ROC AUC; `worst_classes` holds the labels of lowest F1."""
    from kit.metrics.multilabel import per_label, sigmoid

    plain = oof[:, 0]
    mean = oof.mean(axis=1)
    labs = per_label(Y, sigmoid(plain), labels)
    present = [c for c in labels if labs[c]["support"]]
    order = sorted(present, key=lambda c: labs[c]["f1"])[:worst]  # type: ignore[arg-type, return-value]
    return {
        "metric": metric,
        "task": "multilabel",
        "pooled": {**all_scores(Y, plain), metric: score(metric, Y, plain)},
        "pooled_tta_mean": {**all_scores(Y, mean), metric: score(metric, Y, mean)},
        "per_view": {v: score(metric, Y, oof[:, i]) for i, v in enumerate(views)},
        "per_fold": {str(f): score(metric, Y[fold == f], plain[fold == f]) for f in np.unique(fold).tolist()},
        "per_class_f1": {c: labs[c]["f1"] for c in labels},
        "per_label_auc": {c: labs[c]["auc"] for c in labels},
        "worst_classes": [[c, labs[c]["f1"]] for c in order],
    }
