"""Competition metrics on logits or probabilities, vectorised (bincount confusion matrix)."""

from kit.metrics.scores import (
    METRICS,
    accuracy,
    all_scores,
    confusion_matrix,
    greater_is_better,
    log_loss,
    macro_f1,
    score,
    softmax,
    weighted_f1,
)

__all__ = [
    "METRICS",
    "accuracy",
    "all_scores",
    "confusion_matrix",
    "greater_is_better",
    "log_loss",
    "macro_f1",
    "score",
    "softmax",
    "weighted_f1",
]
