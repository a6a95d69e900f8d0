"""Vectorised metric for blend search: scores a running sum of candidates without allocating per call.

Candidate evaluation is the inner loop of every search. Arrays are class-major: a running sum is [C, n] and the
candidates X [M, C, n] (`layout`). `score_added` adds a candidate into a preallocated buffer, ranks the argmax
in whole-array passes (ties to the lowest class, as numpy's argmax: NumpyEngine.ranks) and builds the
confusion matrix with one bincount of the ranks (Labels.confusion_of_ranks); greedy's rounds score the rows in
blocks that stay in cache and rescore only the rows a candidate can still flip (SettledSearch). The metric
itself comes from kit.metrics.scores (`score_from_counts`), so results equal kit.metrics' scores (and
scikit-learn's f1_score / accuracy_score / log_loss).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from kit.blend.space import Space, as_space
from kit.metrics.ranking import binary_auc, qwk_from_confusion, qwk_from_confusions, true_rank
from kit.metrics.scores import LABEL_METRICS, greater_is_better, parse_metric, score_from_counts

SPREAD_SAFETY, SPREAD_SLACK = 1 + 1e-5, 1e-6  # float32 rounding of the sums is far below this margin
SETTLED_MIN_SHARE = 0.6  # SettledSearch rescores only a block's open rows once this share of them is settled
LAYOUT_BLOCK = 4096  # rows class_major transposes at once
ROW_BLOCK = 16384  # rows SettledSearch scores together, so that a block's [C, rows] arrays stay in cache


class Labels:
    """Labels y [n] of C classes, with reused buffers for the confusion matrices of class predictions."""

    def __init__(self, y: np.ndarray, n_classes: int) -> None:
        self.y = np.ascontiguousarray(y, dtype=np.intp)
        self.n, self.n_classes = len(self.y), n_classes
        self._yc = self.y * n_classes
        self._idx = np.empty(self.n, dtype=np.intp)
        # cell y * (C + 1) + C - top of a row whose argmax has rank `top` (class C - top; rank 0, no maximum:
        # class 0), so that one subtraction places every row (confusion_of_ranks)
        self._ranked = self.y * (n_classes + 1) + n_classes

    def confusion(self, pred: np.ndarray) -> np.ndarray:
        """[true, pred] counts of predictions for every row."""
        np.add(self._yc, pred, out=self._idx)
        C = self.n_classes
        return np.bincount(self._idx, minlength=C * C).reshape(C, C)

    def confusion_of_ranks(self, top: np.ndarray) -> np.ndarray:
        """[true, pred] counts from each row's argmax rank (NumpyEngine.ranks: class C - top, class 0 for 0)."""
        idx = np.subtract(self._ranked, top, out=self._idx)
        C = self.n_classes
        counts = np.bincount(idx, minlength=C * (C + 1)).reshape(C, C + 1)
        cm = counts[:, :C].copy()
        cm[:, 0] += counts[:, C]
        return cm


class RoundSearch(Protocol):
    """A search's evaluator over candidates X[idx] and a running sum S (argmax metrics: all at once):
    greedy adds to S and scores S + X[m] for every m; hill climbing and subsets set S and score
    S + scale * X[m] for many (m, scale) pairs."""

    def add(self, m: int) -> None: ...

    def gains(self) -> list[float]: ...

    def reset(self, m: int | None = None) -> None: ...

    def set_sum(self, S: np.ndarray, total: float) -> None: ...

    def gains_of(self, pairs: list[tuple[int, float]]) -> list[float]: ...

    def subset_gains(self) -> list[float]: ...


def class_major(P: np.ndarray) -> np.ndarray:
    """[n, M, C] -> contiguous float32 [M, C, n] (each candidate's classes as contiguous rows), transposed a block
    of rows at a time (a whole-array transposed copy strides across memory)."""
    n, M, C = P.shape
    out = np.empty((M, C, n), dtype=np.float32)
    for lo in range(0, n, LAYOUT_BLOCK):
        out[:, :, lo : lo + LAYOUT_BLOCK] = np.transpose(P[lo : lo + LAYOUT_BLOCK], (1, 2, 0))
    return out


def log_loss_of_sum(s: np.ndarray, total: float, labels: Labels, space: Space, axis: int) -> float:
    """Log loss of the blend s / total (classes on `axis`) in `space`."""
    z = np.asarray(s, dtype=np.float64) / total
    rows = np.arange(labels.n)
    true = z[rows, labels.y] if axis else z[labels.y, rows]
    return space.log_loss(z, true, axis)


class NumpyEngine:
    """Sums [C, n] and candidates [M, C, n] (class-major), scored into reused buffers."""

    class_axis = 0

    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        n, C = labels.n, labels.n_classes
        small = np.uint8 if C <= 255 else np.uint16
        # flat buffers: `_room` gives a contiguous [C, k] (or [k]) view for any k <= n rows
        self._buf = np.empty(C * n, dtype=np.float32)
        self._max = np.empty(n, dtype=np.float32)
        self._eq = np.empty(C * n, dtype=bool)
        self._rank = np.empty(C * n, dtype=small)
        self._top = np.empty(n, dtype=small)
        self._pred = np.empty(n, dtype=np.intp)
        # class c ranks C - c: among classes tied at the maximum the lowest ranks first
        self._first = np.arange(C, 0, -1, dtype=small)[:, None]

    def _room(self, flat: np.ndarray, k: int, rows: bool = True) -> np.ndarray:
        return flat[: self.labels.n_classes * k].reshape(self.labels.n_classes, k) if rows else flat[:k]

    def layout(self, P: np.ndarray) -> np.ndarray:
        return class_major(P)

    def zeros(self) -> np.ndarray:
        return np.zeros((self.labels.n_classes, self.labels.n), dtype=np.float32)

    def argmax(self, s: np.ndarray) -> np.ndarray:
        """Lowest index of the maximum over classes of a class-major [C, n] array, as numpy's argmax (a row
        without a maximum, all NaN, gets class 0): the classes equal to the maximum, ranked C - c, and the
        largest rank, in whole-array passes instead of one pass per class."""
        C, k = s.shape
        pred = self._pred[:k]
        np.subtract(C, self.ranks(s), out=pred)
        np.remainder(pred, C, out=pred)
        return pred

    def ranks(self, s: np.ndarray) -> np.ndarray:
        """The rank C - c of each row's argmax c (0 for a row without a maximum), for `argmax` and
        Labels.confusion_of_ranks."""
        k = s.shape[1]
        mx, eq, rank, top = self._max[:k], self._room(self._eq, k), self._room(self._rank, k), self._top[:k]
        np.maximum.reduce(s, axis=0, out=mx)
        np.equal(s, mx, out=eq)
        np.multiply(eq.view(np.uint8), self._first, out=rank)
        np.maximum.reduce(rank, axis=0, out=top)
        return top

    def _added(self, s: np.ndarray, p: np.ndarray, scale: float) -> np.ndarray:
        buf = self._room(self._buf, s.shape[1])
        if scale == 1.0:
            np.add(s, p, out=buf)
        else:
            np.multiply(p, scale, out=buf)
            buf += s
        return buf

    def confusion(self, s: np.ndarray) -> np.ndarray:
        return self.labels.confusion_of_ranks(self.ranks(s))

    def confusion_added(self, s: np.ndarray, p: np.ndarray, scale: float) -> np.ndarray:
        return self.confusion(self._added(s, p, scale))

    def log_loss_added(self, s: np.ndarray, p: np.ndarray, scale: float, total: float, space: Space) -> float:
        return log_loss_of_sum(self._added(s, p, scale), total, self.labels, space, self.class_axis)

    def search(self, scorer: FastScorer, X: np.ndarray, idx: list[int]) -> SettledSearch:
        return SettledSearch(scorer, X, idx)


class FastScorer:
    """Scores blends (a weighted sum of candidates, in `space`) against labels y.

    `space='probs'`: the sum divided by `total` is a probability; `space='logits'`: it is a mean of
    log-probabilities (softmax gives the blend); see kit.blend.space. Argmax metrics ignore `total`. Sums and
    candidates are class-major: `layout(P)` converts [n, M, C] candidates to [M, C, n], `zeros()` gives an
    empty sum [C, n].
    """

    def __init__(self, metric: str, y: np.ndarray, n_classes: int, space: str | Space = "probs") -> None:
        self.metric = metric
        self.name, self.k = parse_metric(metric)
        self.space = as_space(space)
        self.labels = Labels(y, n_classes)
        self.y, self.n, self.n_classes = self.labels.y, self.labels.n, n_classes
        self.engine = NumpyEngine(self.labels)
        self.sign = 1.0 if greater_is_better(metric) else -1.0
        self.argmax_metric = self.name in LABEL_METRICS
        self._support = np.bincount(self.y, minlength=n_classes).astype(np.float64)
        self._ranks: RankMetric | None = None

    def layout(self, P: np.ndarray) -> np.ndarray:
        """Candidates [n, M, C] -> contiguous float32 X [M, C, n]."""
        return self.engine.layout(P)

    def zeros(self) -> np.ndarray:
        return self.engine.zeros()

    def from_pred(self, pred: np.ndarray) -> float:
        """The metric of class predictions [n] (argmax metrics)."""
        if self.name == "accuracy":
            return float(np.count_nonzero(pred == self.y) / self.n)
        return self.from_confusion(self.labels.confusion(pred))

    def from_confusion(self, cm: np.ndarray) -> float:
        """The metric from a full [true, pred] confusion matrix over this scorer's rows."""
        if self.name == "qwk":
            return qwk_from_confusion(cm)
        return float(
            score_from_counts(self.name, np.diag(cm).astype(np.float64), cm.sum(axis=0), self._support)
        )

    def from_confusions(self, cms: np.ndarray) -> list[float]:
        """The metric of each of K confusion matrices [K, C, C] at once (greedy's round: one per candidate).
        Bit-equal to `from_confusion` of each: the same additions in the same order."""
        if self.name == "qwk":
            return [float(v) for v in qwk_from_confusions(cms)]
        tp = np.diagonal(cms, axis1=1, axis2=2).astype(np.float64)
        return [float(v) for v in score_from_counts(self.name, tp, cms.sum(axis=1), self._support)]

    def _rank(self) -> RankMetric:
        if self._ranks is None:
            self._ranks = RankMetric(self)
        return self._ranks

    def score(self, s: np.ndarray, total: float = 1.0) -> float:
        """The metric of the blend `s` (running sum [C, n] of `total` weight)."""
        if self.argmax_metric:
            return self.from_confusion(self.engine.confusion(s))
        if self.name == "log_loss":
            return log_loss_of_sum(s, total, self.labels, self.space, self.engine.class_axis)
        return self._rank().score(s, total)

    def score_added(self, s: np.ndarray, p: np.ndarray, total: float = 1.0, scale: float = 1.0) -> float:
        """The metric of `s + scale * p` without allocating (the candidate evaluation of every search)."""
        if self.argmax_metric:
            return self.from_confusion(self.engine.confusion_added(s, p, scale))
        if self.name == "log_loss":
            return self.engine.log_loss_added(s, p, scale, total, self.space)
        return self._rank().score_added(s, p, scale, total)

    def search(self, X: np.ndarray, idx: list[int]) -> RoundSearch:
        """Greedy's round evaluator over candidates X[idx]: SettledSearch for argmax metrics, else one candidate
        at a time (PlainSearch)."""
        if self.argmax_metric:
            return self.engine.search(self, X, idx)
        return PlainSearch(self, X, idx)

    def gain(self, value: float) -> float:
        """Greater is better for every metric (log loss negated), for comparisons in searches."""
        return self.sign * value


class RankMetric:
    """ROC AUC, MAP@k and top-k accuracy of a running sum, for FastScorer.

    They depend on the order of scores only, so the blend's probabilities are not needed where an order-keeping
    key exists: binary AUC ranks class 1's summed probability (`probs`) or z1 - z0 (`logits`, the order of
    softmax's P(class 1)); top-k metrics rank each row's sums. Multi-class AUC (one-vs-rest, macro) takes each
    class's probability column.
    """

    def __init__(self, scorer: FastScorer) -> None:
        self.scorer = scorer
        self.axis = scorer.engine.class_axis
        self._pos = [np.ascontiguousarray(scorer.y == c) for c in range(scorer.n_classes)]

    def _column(self, b: np.ndarray, c: int) -> np.ndarray:
        return np.ascontiguousarray(b[:, c] if self.axis == 1 else b[c], dtype=np.float32)

    def _auc(self, key: np.ndarray, c: int) -> float:
        return binary_auc(self._pos[c], key)

    def score(self, b: np.ndarray, total: float) -> float:
        """The metric of the blend sum b ([C, n]) of `total` weight."""
        sc = self.scorer
        if sc.name == "roc_auc":
            if sc.n_classes == 2:
                key = self._column(b, 1)
                if sc.space.logits:
                    key = key - self._column(b, 0)
                return self._auc(key, 1)
            probs = sc.space.blend(np.moveaxis(np.asarray(b, dtype=np.float64), self.axis, 1), total)
            aucs = [
                self._auc(np.ascontiguousarray(probs[:, c], dtype=np.float32), c) for c in range(sc.n_classes)
            ]
            valid = [a for a in aucs if not np.isnan(a)]
            return float(np.mean(valid)) if valid else float("nan")
        rows = np.asarray(b if self.axis == 1 else b.T)
        return self._from_ranks(true_rank(sc.y, rows, sc.k or 1))

    def score_added(self, s: np.ndarray, p: np.ndarray, scale: float, total: float) -> float:
        b = s + p if scale == 1.0 else s + np.float32(scale) * p
        return self.score(b, total)

    def _from_ranks(self, r: np.ndarray) -> float:
        k = self.scorer.k or 1
        if self.scorer.name == "map_at_k":
            return float(np.where((r > 0) & (r <= k), 1.0 / np.maximum(r, 1), 0.0).mean())
        return float(((r > 0) & (r <= k)).mean())


def settled_rows(S: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Rows whose argmax no candidate can change: the leader is the only class of S within the row's largest
    spread of the top (a tie at the top leaves two).

    Adding P_m moves each class score by at most max_c P_m - min_c P_m, so the leader stays strictly ahead.
    """
    floor = np.maximum.reduce(S, axis=0) - spread
    near = np.greater_equal(S, floor)
    count = np.uint8 if S.shape[0] <= 255 else np.uint16
    return np.add.reduce(near.view(np.uint8), axis=0, dtype=count) == 1


class PlainSearch:
    """Greedy's round evaluator that scores S + X[m] one candidate at a time (any metric, any scorer)."""

    def __init__(self, scorer: FastScorer, X: np.ndarray, idx: list[int]) -> None:
        self.scorer, self.X, self.idx = scorer, X, list(idx)
        self.S = scorer.zeros()
        self.total: float = 0

    def add(self, m: int) -> None:
        self.S += self.X[m]
        self.total += 1

    def gains(self) -> list[float]:
        return self.gains_of([(m, 1.0) for m in self.idx])

    def reset(self, m: int | None = None) -> None:
        if m is None:
            self.S, self.total = self.scorer.zeros(), 0
        else:
            self.S, self.total = self.X[m].copy(), 1

    def set_sum(self, S: np.ndarray, total: float) -> None:
        self.S, self.total = S.copy(), total

    def gains_of(self, pairs: list[tuple[int, float]]) -> list[float]:
        scorer, S, t = self.scorer, self.S, self.total
        return [scorer.gain(scorer.score_added(S, self.X[m], t + sc, sc)) for m, sc in pairs]

    def subset_gains(self) -> list[float]:
        """Gains of every equal-weight subset of one or two of idx: the singles, then the pairs a < b in order."""
        self.reset()
        out = self.gains_of([(m, 1.0) for m in self.idx])
        for i, a in enumerate(self.idx):
            self.reset(a)
            out += self.gains_of([(m, 1.0) for m in self.idx[i + 1 :]])
        return out


class SettledSearch:
    """Greedy's round evaluator for argmax metrics over class-major X [M, C, n], exact.

    A round scores the rows in blocks of ROW_BLOCK, every candidate on one block before the next, so that the
    block's sums and buffers stay in cache. In a block where enough rows are settled (no candidate can change
    their argmax) the settled rows are counted once and only the open rows are rescored per candidate; elsewhere
    every row is."""

    def __init__(self, scorer: FastScorer, X: np.ndarray, idx: list[int]) -> None:
        self.plain = PlainSearch(scorer, X, idx)
        n = X.shape[2]
        self.blocks = [
            (rows, Labels(scorer.y[rows], scorer.n_classes))
            for rows in (slice(lo, min(n, lo + ROW_BLOCK)) for lo in range(0, n, ROW_BLOCK))
        ]
        # one set of buffers per block length, reused every round (only the buffers: its labels are the first block's)
        self._engines: dict[int, NumpyEngine] = {}
        # per candidate and row, max - min over classes (with a margin for float32 rounding of the sums): how
        # far adding that candidate can move the gap between two classes; the widest per row
        widest = np.zeros(X.shape[2], dtype=np.float32)
        for m in idx:  # one candidate at a time: no copy of every candidate
            spread = np.maximum.reduce(X[m], axis=0) - np.minimum.reduce(X[m], axis=0)
            np.maximum(widest, spread, out=widest)
        self.widest = widest * SPREAD_SAFETY + SPREAD_SLACK

    def add(self, m: int) -> None:
        self.plain.add(m)

    def reset(self, m: int | None = None) -> None:
        self.plain.reset(m)

    def set_sum(self, S: np.ndarray, total: float) -> None:
        self.plain.set_sum(S, total)

    def gains_of(self, pairs: list[tuple[int, float]]) -> list[float]:
        return self.plain.gains_of(pairs)

    def subset_gains(self) -> list[float]:
        return self.plain.subset_gains()

    def gains(self) -> list[float]:
        scorer = self.plain.scorer
        parts = [self._confusions(rows, labels) for rows, labels in self.blocks]
        return [scorer.gain(scorer.from_confusion(cm)) for cm in np.sum(parts, axis=0)]

    def _confusions(self, rows: slice, labels: Labels) -> list[np.ndarray]:
        """Each candidate's confusion matrix over one block of rows."""
        X, idx = self.plain.X, self.plain.idx
        S = self.plain.S[:, rows]
        if labels.n not in self._engines:
            self._engines[labels.n] = NumpyEngine(labels)
        engine = self._engines[labels.n]
        if not self.plain.total:  # the empty blend: each candidate alone
            return [labels.confusion_of_ranks(engine.ranks(X[m][:, rows])) for m in idx]
        settled = settled_rows(S, self.widest[rows])
        if settled.mean() <= SETTLED_MIN_SHARE:
            return [
                labels.confusion_of_ranks(engine.ranks(engine._added(S, X[m][:, rows], 1.0))) for m in idx
            ]
        keep, open_rows = np.flatnonzero(settled), np.flatnonzero(~settled)
        C = labels.n_classes
        base = Labels(labels.y[keep], C).confusion_of_ranks(engine.ranks(S)[keep])
        S_open, open_labels = S[:, open_rows], Labels(labels.y[open_rows], C)
        cols = open_rows + rows.start
        summed = engine._room(engine._buf, len(open_rows))
        out = []
        for m in idx:  # S + X[m] on the open rows, into the engine's buffer
            np.add(X[m][:, cols], S_open, out=summed)
            out.append(base + open_labels.confusion_of_ranks(engine.ranks(summed)))
        return out
