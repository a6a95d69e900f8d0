"""Vectorised metric for blend search: scores a class-major running sum [C, n] without allocating per call.

Candidate evaluation is the inner loop of every search: add a candidate to the running sum in a preallocated
buffer, take the argmax with a max-reduce plus one equality pass per class (class-major layout keeps both
contiguous), build the confusion matrix with one bincount of y*C + pred. Ties go to the lowest class index, as
numpy's argmax. Results equal kit.metrics.scores (and scikit-learn's f1_score / accuracy_score / log_loss).
"""

from __future__ import annotations

import numpy as np

from kit.metrics.scores import greater_is_better

ARGMAX_METRICS = ("weighted_f1", "macro_f1", "accuracy")


class FastScorer:
    """Scores class-major blends [C, n] (a weighted sum of candidates, in `space`) against labels y.

    `space='probs'`: the sum divided by `total` is a probability; `space='logits'`: it is a mean of
    log-probabilities (softmax gives the blend). Argmax metrics ignore `total`.
    """

    def __init__(self, metric: str, y: np.ndarray, n_classes: int, space: str = "probs") -> None:
        self.metric = metric
        self.space = space
        self.n_classes = n_classes
        self.y = np.ascontiguousarray(y, dtype=np.intp)
        self.n = len(self.y)
        self.sign = 1.0 if greater_is_better(metric) else -1.0
        self._yc = self.y * n_classes
        self._rows = np.arange(self.n)
        self._support = np.bincount(self.y, minlength=n_classes).astype(np.float64)
        self._buf = np.empty((n_classes, self.n), dtype=np.float32)
        self._max = np.empty(self.n, dtype=np.float32)
        self._eq = np.empty(self.n, dtype=bool)
        self._pred = np.empty(self.n, dtype=np.uint8 if n_classes <= 255 else np.intp)
        self._idx = np.empty(self.n, dtype=np.intp)

    def argmax(self, s: np.ndarray) -> np.ndarray:
        """Lowest index of the maximum over classes of a class-major [C, n] array (into a reused buffer)."""
        np.maximum.reduce(s, axis=0, out=self._max)
        pred = self._pred
        pred.fill(0)
        for c in range(self.n_classes - 1, -1, -1):
            np.equal(s[c], self._max, out=self._eq)
            np.copyto(pred, c, where=self._eq)
        return pred

    def confusion(self, pred: np.ndarray) -> np.ndarray:
        np.add(self._yc, pred, out=self._idx)
        return np.bincount(self._idx, minlength=self.n_classes * self.n_classes).reshape(
            self.n_classes, self.n_classes
        )

    def confusion_of(self, rows: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """Confusion matrix of a subset of rows with their predictions."""
        idx = self._yc[rows] + pred
        return np.bincount(idx, minlength=self.n_classes * self.n_classes).reshape(
            self.n_classes, self.n_classes
        )

    def from_pred(self, pred: np.ndarray) -> float:
        if self.metric == "accuracy":
            return float(np.count_nonzero(pred == self.y) / self.n)
        return self.from_confusion(self.confusion(pred))

    def from_confusion(self, cm: np.ndarray) -> float:
        """The metric from a full [true, pred] confusion matrix over this scorer's rows."""
        if self.metric == "accuracy":
            return float(np.trace(cm) / self.n)
        tp = np.diag(cm).astype(np.float64)
        predicted = cm.sum(axis=0)
        denom = self._support + predicted
        f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
        if self.metric == "weighted_f1":
            return float((f1 * self._support).sum() / self.n)
        present = denom > 0
        return float(f1[present].mean())

    def score(self, s: np.ndarray, total: float = 1.0) -> float:
        """The metric of the blend `s` ([C, n] class-major running sum of `total` weight)."""
        if self.metric in ARGMAX_METRICS:
            return self.from_pred(self.argmax(s))
        z = np.asarray(s, dtype=np.float64) / total
        if self.space == "logits":
            m = z.max(axis=0)
            lse = m + np.log(np.exp(z - m).sum(axis=0))
            return float(-(z[self.y, self._rows] - lse).mean())
        eps = np.finfo(np.float32).eps
        p = np.clip(z[self.y, self._rows] / z.sum(axis=0), eps, 1 - eps)
        return float(-np.log(p).mean())

    def score_added(self, s: np.ndarray, p: np.ndarray, total: float = 1.0, scale: float = 1.0) -> float:
        """The metric of `s + scale * p` without allocating (the candidate evaluation of every search)."""
        buf = self._buf
        if scale == 1.0:
            np.add(s, p, out=buf)
        else:
            np.multiply(p, scale, out=buf)
            buf += s
        return self.score(buf, total)

    def gain(self, value: float) -> float:
        """Greater is better for every metric (log loss negated), for comparisons in searches."""
        return self.sign * value
