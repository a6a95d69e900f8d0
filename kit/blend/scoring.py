"""Vectorised metric for blend search: scores a running sum of candidates without allocating per call.

Candidate evaluation is the inner loop of every search. Two engines compute the same numbers:

- `numba` (what blenders use): row-major arrays, running sum [n, C], candidates X [M, n, C]. One fused pass
  over rows adds the candidate, takes the argmax and counts the confusion matrix (kit.blend.kernels).
- `numpy` (the reference the tests compare against): class-major arrays, running sum [C, n], candidates
  [M, C, n]. Adds the candidate into a preallocated buffer, takes the argmax with a max-reduce plus one
  equality pass per class, builds the confusion matrix with one bincount of y*C + pred.

Both add in float32 in the same order and break ties to the lowest class index, as numpy's argmax, so argmax
metrics are identical and log loss agrees to float64 rounding. Results equal kit.metrics.scores (and
scikit-learn's f1_score / accuracy_score / log_loss).
"""

from __future__ import annotations

import numpy as np

from kit.metrics.scores import greater_is_better

ARGMAX_METRICS = ("weighted_f1", "macro_f1", "accuracy")
ENGINES = ("auto", "numba", "numpy")
PARALLEL_MIN_ROWS = 50_000  # below this, starting threads costs more than it saves
SPREAD_SAFETY, SPREAD_SLACK = 1 + 1e-5, 1e-6  # float32 rounding of the sums is far below this margin


def resolve_engine(engine: str) -> str:
    """'auto' is numba when it imports, else numpy."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine != "auto":
        return engine
    try:
        import kit.blend.kernels  # noqa: F401
    except ImportError:
        return "numpy"
    return "numba"


class FastScorer:
    """Scores blends (a weighted sum of candidates, in `space`) against labels y.

    `space='probs'`: the sum divided by `total` is a probability; `space='logits'`: it is a mean of
    log-probabilities (softmax gives the blend). Argmax metrics ignore `total`. Sums and candidates are in
    the engine's layout: `layout(P)` converts [n, M, C] candidates, `candidate(X, m)` and `zeros()` give
    the arrays to add (numpy: class-major [C, n]; numba: row-major [n, C]).
    """

    def __init__(
        self, metric: str, y: np.ndarray, n_classes: int, space: str = "probs", engine: str = "numpy"
    ) -> None:
        self.metric = metric
        self.space = space
        self.engine = resolve_engine(engine)
        self.n_classes = n_classes
        self.y = np.ascontiguousarray(y, dtype=np.intp)
        self.n = len(self.y)
        self.sign = 1.0 if greater_is_better(metric) else -1.0
        self._yc = self.y * n_classes
        self._rows = np.arange(self.n)
        self._support = np.bincount(self.y, minlength=n_classes).astype(np.float64)
        if self.engine == "numba":
            from kit.blend import kernels

            self._k = kernels
            self._cm = np.zeros((n_classes, n_classes), dtype=np.int64)
            return
        self._buf = np.empty((n_classes, self.n), dtype=np.float32)
        self._max = np.empty(self.n, dtype=np.float32)
        self._eq = np.empty(self.n, dtype=bool)
        self._pred = np.empty(self.n, dtype=np.uint8 if n_classes <= 255 else np.intp)
        self._idx = np.empty(self.n, dtype=np.intp)

    def _threads(self) -> int:
        """numba threads for the multi-candidate kernel (numba's default: one per core; NUMBA_NUM_THREADS)."""
        import numba

        return int(numba.get_num_threads())

    # ------------------------------------------------------------ layout

    def layout(self, P: np.ndarray) -> np.ndarray:
        """Candidates [n, M, C] -> contiguous float32 X in this engine's layout: numba [M, n, C], numpy [M, C, n]."""
        axes = (1, 0, 2) if self.engine == "numba" else (1, 2, 0)
        return np.ascontiguousarray(np.transpose(P, axes), dtype=np.float32)

    def candidate(self, X: np.ndarray, m: int) -> np.ndarray:
        return X[m]

    def zeros(self) -> np.ndarray:
        shape = (self.n, self.n_classes) if self.engine == "numba" else (self.n_classes, self.n)
        return np.zeros(shape, dtype=np.float32)

    # ------------------------------------------------------------ numpy engine (class-major)

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
        """The metric of the blend `s` (running sum of `total` weight, in the engine's layout)."""
        if self.metric in ARGMAX_METRICS:
            if self.engine == "numba":
                self._cm.fill(0)
                self._k.confusion_of_sum(s, self.y, self._cm)
                return self.from_confusion(self._cm)
            return self.from_pred(self.argmax(s))
        axis = 1 if self.engine == "numba" else 0
        z = np.asarray(s, dtype=np.float64) / total
        true = z[self._rows, self.y] if axis else z[self.y, self._rows]
        if self.space == "logits":
            m = z.max(axis=axis)
            lse = m + np.log(np.exp(z - np.expand_dims(m, axis)).sum(axis=axis))
            return float(-(true - lse).mean())
        eps = np.finfo(np.float32).eps
        p = np.clip(true / z.sum(axis=axis), eps, 1 - eps)
        return float(-np.log(p).mean())

    def score_added(self, s: np.ndarray, p: np.ndarray, total: float = 1.0, scale: float = 1.0) -> float:
        """The metric of `s + scale * p` without allocating (the candidate evaluation of every search)."""
        if self.engine == "numba":
            if self.metric in ARGMAX_METRICS:
                self._cm.fill(0)
                self._k.confusion_added(s, p, np.float32(scale), self.y, self._cm)
                return self.from_confusion(self._cm)
            eps = float(np.finfo(np.float32).eps)
            loss = self._k.log_loss_sum(
                s, p, np.float32(scale), float(total), self.y, self.space == "logits", eps
            )
            return loss / self.n
        buf = self._buf
        if scale == 1.0:
            np.add(s, p, out=buf)
        else:
            np.multiply(p, scale, out=buf)
            buf += s
        return self.score(buf, total)

    def candidate_spreads(self, X: np.ndarray, idx: list[int]) -> np.ndarray:
        """[len(idx), n] per candidate X[idx[k]] (numpy layout) and row, max - min over classes, with a margin
        of safety for float32 rounding of the sums: how far adding that candidate can move the gap between two
        classes."""
        spread = X[idx].max(axis=1) - X[idx].min(axis=1)
        return spread * SPREAD_SAFETY + SPREAD_SLACK

    def search(self, X: np.ndarray, idx: list[int]) -> TileSearch:
        """Greedy's round evaluator over candidates X[idx] (numba engine, argmax metrics)."""
        return TileSearch(self, X, idx)

    def gain(self, value: float) -> float:
        """Greater is better for every metric (log loss negated), for comparisons in searches."""
        return self.sign * value


class TileSearch:
    """Scores S + X[m] for every candidate m in idx at once, round after round, as greedy selection needs.

    Numba engine, argmax metrics. Candidates are quantized to uint8 tiles once (kit.blend.kernels.quantize);
    each round reads the running sum and the tiles, recomputing exactly from float32 only the rows where the
    quantized blend cannot certify the argmax. Results equal the exact kernels' (and the numpy engine's).
    `add(m)` is folded into the next `gains()` pass over the rows.
    """

    def __init__(self, scorer: FastScorer, X: np.ndarray, idx: list[int]) -> None:
        if X.shape[1] != scorer.n:
            raise ValueError(f"candidates have {X.shape[1]} rows, the scorer's labels {scorer.n}")
        k = scorer._k
        self.scorer, self.X, self._kernels = scorer, X, k
        self.idx = np.asarray(idx, dtype=np.int64)
        threads = scorer._threads()
        self.Q, self.step, big = k.quantize(X, self.idx, threads)
        self.big = dict(zip(idx, big.tolist(), strict=True))
        n, C = X.shape[1], X.shape[2]
        self.T = np.zeros(((n + k.BLOCK - 1) // k.BLOCK, C, k.BLOCK), dtype=np.float32)
        self.bound = 0.0  # upper bound of |T|
        self.pending = -1
        self.exact = 0  # (row, candidate) pairs recomputed exactly, for benchmarks and tests
        self.chunks = threads if threads > 1 and n >= PARALLEL_MIN_ROWS else 1
        self.yC = np.zeros(self.T.shape[0] * k.BLOCK, dtype=np.int32)  # y * C, padded to whole blocks
        self.yC[:n] = scorer.y * C

    def add(self, m: int) -> None:
        """Running sum += X[m] (m must be one of idx)."""
        if self.pending >= 0:
            self._kernels.add_tiles(self.T, self.X[self.pending])
        self.pending = m
        self.bound += self.big[m]

    def gains(self) -> list[float]:
        """Gains of S + X[m] for each m in idx."""
        K, C = len(self.idx), self.scorer.n_classes
        H = np.zeros((K, self._kernels.LANES, C * C), dtype=np.int64)
        # float32 rounding of sums is below 2**-23 of the magnitudes involved: a 30x margin
        slack = np.float32(4e-6 * (self.bound + 2 * max(self.big.values())) + 1e-30)
        args = (self.T, self.Q, self.step, self.X, self.idx, self.yC, self.pending, slack, H)
        if self.chunks > 1:
            self.exact += self._kernels.search_threads(*args, self.chunks)
        else:
            self.exact += self._kernels.search_blocks(*args, 0, self.T.shape[0])
        self.pending = -1
        cms = H.sum(axis=1).reshape(K, C, C)
        return [self.scorer.gain(self.scorer.from_confusion(cms[k])) for k in range(K)]
