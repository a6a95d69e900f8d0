"""Vectorised metric for blend search: scores a running sum of candidates without allocating per call.

Candidate evaluation is the inner loop of every search. Two engines, one protocol (`Engine`), compute the same
numbers; `resolve_engine` picks one when a FastScorer is made:

- `NumbaEngine` (what blenders use): row-major arrays, running sum [n, C], candidates X [M, n, C]. One fused
  pass over rows adds the candidate, takes the argmax and counts the confusion matrix (kit.blend.kernels);
  greedy's rounds score every candidate at once over quantized tiles (TileSearch).
- `NumpyEngine` (the reference the tests compare against): class-major arrays, running sum [C, n], candidates
  [M, C, n]. Adds the candidate into a preallocated buffer, takes the argmax with a max-reduce plus one
  equality pass per class, builds the confusion matrix with one bincount of y*C + pred; greedy's rounds
  rescore only the rows a candidate can still flip (SettledSearch).

Both add in float32 in the same order and break ties to the lowest class index, as numpy's argmax, so argmax
metrics are identical and log loss agrees to float64 rounding. The metric itself comes from
kit.metrics.scores (`score_from_counts`), so results equal kit.metrics' scores (and scikit-learn's f1_score /
accuracy_score / log_loss).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from kit.blend.space import EPS32, Space, as_space
from kit.metrics.ranking import binary_auc, qwk_from_confusion, qwk_from_confusions, true_rank
from kit.metrics.scores import LABEL_METRICS, greater_is_better, parse_metric, score_from_counts

ENGINES = ("auto", "numba", "numpy")
PARALLEL_MIN_ROWS = 50_000  # below this, starting threads costs more than it saves
# below this many rows, and while numba's kernels are not compiled yet, 'auto' uses the numpy engine: compiling
# costs about 6 s, more than a search of this size takes with numpy (bench/bench_blend_vs_autogluon.py)
COLD_NUMBA_MIN_ROWS = 50_000
SPREAD_SAFETY, SPREAD_SLACK = 1 + 1e-5, 1e-6  # float32 rounding of the sums is far below this margin
SETTLED_MIN_SHARE = 0.25  # SettledSearch rescores only the open rows once this share of rows is settled


class Labels:
    """Labels y [n] of C classes, with reused buffers for the confusion matrices of class predictions."""

    def __init__(self, y: np.ndarray, n_classes: int) -> None:
        self.y = np.ascontiguousarray(y, dtype=np.intp)
        self.n, self.n_classes = len(self.y), n_classes
        self._yc = self.y * n_classes
        self._idx = np.empty(self.n, dtype=np.intp)

    def confusion(self, pred: np.ndarray) -> np.ndarray:
        """[true, pred] counts of predictions for every row."""
        np.add(self._yc, pred, out=self._idx)
        C = self.n_classes
        return np.bincount(self._idx, minlength=C * C).reshape(C, C)

    def confusion_of(self, rows: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """[true, pred] counts of a subset of rows with their predictions."""
        C = self.n_classes
        return np.bincount(self._yc[rows] + pred, minlength=C * C).reshape(C, C)


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


class Engine(Protocol):
    """How sums and candidates are laid out and scored; FastScorer turns the counts into the metric."""

    name: str
    class_axis: int  # the class axis of a running sum in this layout

    def layout(self, P: np.ndarray, copy: bool = True) -> np.ndarray:
        """Candidates [n, M, C] -> float32 X [M, ...] in this layout (contiguous unless `copy=False` allows a
        view: searches that read each candidate only a few times skip the copy)."""
        ...

    def zeros(self) -> np.ndarray:
        """An empty running sum."""
        ...

    def confusion(self, s: np.ndarray) -> np.ndarray:
        """[true, argmax] counts of the sum s."""
        ...

    def confusion_added(self, s: np.ndarray, p: np.ndarray, scale: float) -> np.ndarray:
        """[true, argmax] counts of s + scale * p."""
        ...

    def log_loss_added(self, s: np.ndarray, p: np.ndarray, scale: float, total: float, space: Space) -> float:
        """Log loss of the blend s + scale * p of `total` weight in `space`."""
        ...

    def search(self, scorer: FastScorer, X: np.ndarray, idx: list[int]) -> RoundSearch:
        """Greedy's round evaluator over candidates X[idx] (argmax metrics)."""
        ...


def class_major(P: np.ndarray) -> np.ndarray:
    """[n, M, C] -> contiguous float32 [M, C, n] (each candidate's classes as contiguous rows)."""
    return np.ascontiguousarray(np.transpose(P, (1, 2, 0)), dtype=np.float32)


def row_major(P: np.ndarray) -> np.ndarray:
    """[n, M, C] -> contiguous float32 [M, n, C] (each candidate's rows contiguous)."""
    return np.ascontiguousarray(np.transpose(P, (1, 0, 2)), dtype=np.float32)


def log_loss_of_sum(s: np.ndarray, total: float, labels: Labels, space: Space, axis: int) -> float:
    """Log loss of the blend s / total (classes on `axis`) in `space`."""
    z = np.asarray(s, dtype=np.float64) / total
    rows = np.arange(labels.n)
    true = z[rows, labels.y] if axis else z[labels.y, rows]
    return space.log_loss(z, true, axis)


class NumpyEngine:
    """Class-major reference engine: sums [C, n], candidates [M, C, n]."""

    name = "numpy"
    class_axis = 0

    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        n, C = labels.n, labels.n_classes
        self._buf = np.empty((C, n), dtype=np.float32)
        self._max = np.empty(n, dtype=np.float32)
        self._eq = np.empty(n, dtype=bool)
        self._pred = np.empty(n, dtype=np.uint8 if C <= 255 else np.intp)

    def layout(self, P: np.ndarray, copy: bool = True) -> np.ndarray:
        return class_major(P)

    def zeros(self) -> np.ndarray:
        return np.zeros((self.labels.n_classes, self.labels.n), dtype=np.float32)

    def argmax(self, s: np.ndarray) -> np.ndarray:
        """Lowest index of the maximum over classes of a class-major [C, n] array (into a reused buffer)."""
        np.maximum.reduce(s, axis=0, out=self._max)
        pred = self._pred
        pred.fill(0)
        for c in range(s.shape[0] - 1, -1, -1):
            np.equal(s[c], self._max, out=self._eq)
            np.copyto(pred, c, where=self._eq)
        return pred

    def _added(self, s: np.ndarray, p: np.ndarray, scale: float) -> np.ndarray:
        buf = self._buf
        if scale == 1.0:
            np.add(s, p, out=buf)
        else:
            np.multiply(p, scale, out=buf)
            buf += s
        return buf

    def confusion(self, s: np.ndarray) -> np.ndarray:
        return self.labels.confusion(self.argmax(s))

    def confusion_added(self, s: np.ndarray, p: np.ndarray, scale: float) -> np.ndarray:
        return self.confusion(self._added(s, p, scale))

    def log_loss_added(self, s: np.ndarray, p: np.ndarray, scale: float, total: float, space: Space) -> float:
        return log_loss_of_sum(self._added(s, p, scale), total, self.labels, space, self.class_axis)

    def search(self, scorer: FastScorer, X: np.ndarray, idx: list[int]) -> SettledSearch:
        return SettledSearch(scorer, self, X, idx)


class NumbaEngine:
    """Row-major fused kernels (kit.blend.kernels): sums [n, C], candidates [M, n, C]."""

    name = "numba"
    class_axis = 1

    def __init__(self, labels: Labels) -> None:
        from kit.blend import kernels

        self.labels, self.kernels = labels, kernels
        self._cm = np.zeros((labels.n_classes, labels.n_classes), dtype=np.int64)

    def layout(self, P: np.ndarray, copy: bool = True) -> np.ndarray:
        if not copy and P.dtype == np.float32:
            return np.transpose(P, (1, 0, 2))  # X[m] is candidate m's [n, C] rows, strided
        return row_major(P)

    def zeros(self) -> np.ndarray:
        return np.zeros((self.labels.n, self.labels.n_classes), dtype=np.float32)

    def confusion(self, s: np.ndarray) -> np.ndarray:
        self._cm.fill(0)
        self.kernels.confusion_of_sum(s, self.labels.y, self._cm)
        return self._cm

    def confusion_added(self, s: np.ndarray, p: np.ndarray, scale: float) -> np.ndarray:
        self._cm.fill(0)
        self.kernels.confusion_added(s, p, np.float32(scale), self.labels.y, self._cm)
        return self._cm

    def log_loss_added(self, s: np.ndarray, p: np.ndarray, scale: float, total: float, space: Space) -> float:
        y = self.labels.y
        loss = self.kernels.log_loss_sum(s, p, np.float32(scale), float(total), y, space.logits, EPS32)
        return float(loss / self.labels.n)

    def threads(self) -> int:
        """numba threads for the multi-candidate kernels (numba's default: one per core; NUMBA_NUM_THREADS)."""
        import numba

        return int(numba.get_num_threads())

    def search(self, scorer: FastScorer, X: np.ndarray, idx: list[int]) -> TileSearch:
        return TileSearch(scorer, X, idx)


ENGINE_CLASSES: dict[str, type[NumpyEngine] | type[NumbaEngine]] = {
    "numpy": NumpyEngine,
    "numba": NumbaEngine,
}


def resolve_engine(engine: str, n: int | None = None) -> type[NumpyEngine] | type[NumbaEngine]:
    """The engine class `engine` names. 'auto' is numba when it imports and either its kernels are already
    compiled in the cache or the search is large (n >= COLD_NUMBA_MIN_ROWS rows); else numpy, so the first blend
    after an install does not wait for the compiler on a search that takes well under a second either way."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "auto":
        return NumbaEngine if kernels_ready("kernels", n, COLD_NUMBA_MIN_ROWS) else NumpyEngine
    return ENGINE_CLASSES[engine]


def kernels_ready(module: str, work: int | None, cold_min: int) -> bool:
    """Whether to run kit.blend's numba kernel module `module`: it imports, and either it is already compiled
    in the cache or the work (`work` >= `cold_min`, in the caller's units) pays for compiling it."""
    from importlib import import_module

    from kit.numba_setup import kernels_warm

    if work is not None and work < cold_min and not kernels_warm(module):
        return False
    try:
        import_module(f"kit.blend.{module}")
    except ImportError:
        return False
    return True


class FastScorer:
    """Scores blends (a weighted sum of candidates, in `space`) against labels y.

    `space='probs'`: the sum divided by `total` is a probability; `space='logits'`: it is a mean of
    log-probabilities (softmax gives the blend); see kit.blend.space. Argmax metrics ignore `total`. Sums and
    candidates are in the engine's layout: `layout(P)` converts [n, M, C] candidates, `zeros()` gives an empty
    sum (numpy: class-major [C, n]; numba: row-major [n, C]).
    """

    def __init__(
        self, metric: str, y: np.ndarray, n_classes: int, space: str | Space = "probs", engine: str = "numpy"
    ) -> None:
        self.metric = metric
        self.name, self.k = parse_metric(metric)
        self.space = as_space(space)
        self.labels = Labels(y, n_classes)
        self.y, self.n, self.n_classes = self.labels.y, self.labels.n, n_classes
        self.engine: NumpyEngine | NumbaEngine = resolve_engine(engine, len(self.labels.y))(self.labels)
        self.sign = 1.0 if greater_is_better(metric) else -1.0
        self.argmax_metric = self.name in LABEL_METRICS
        self._support = np.bincount(self.y, minlength=n_classes).astype(np.float64)
        self._ranks: RankMetric | None = None

    def layout(self, P: np.ndarray, copy: bool = True) -> np.ndarray:
        """Candidates [n, M, C] -> float32 X in this engine's layout: numba [M, n, C], numpy [M, C, n]; contiguous
        unless `copy=False` (numba: a transposed view of P, no copy)."""
        return self.engine.layout(P, copy)

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
        """The metric of the blend `s` (running sum of `total` weight, in the engine's layout)."""
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
        """Greedy's round evaluator over candidates X[idx]: the engine's for argmax metrics (TileSearch,
        SettledSearch), else one candidate at a time (PlainSearch)."""
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
    class's probability column. With the numba engine the sort is a radix sort (kit.blend.rank_kernels) and the
    rank of the true class a fused kernel.
    """

    def __init__(self, scorer: FastScorer) -> None:
        self.scorer = scorer
        self.axis = scorer.engine.class_axis
        self.numba = isinstance(scorer.engine, NumbaEngine)
        n = scorer.n
        if self.numba:
            from kit.blend import rank_kernels

            self.kernels: Any = rank_kernels
            self._keys, self._tmp = np.empty(n, np.uint64), np.empty(n, np.uint64)
            self._rank = np.empty(n, np.int64)
        self._pos = [np.ascontiguousarray(scorer.y == c) for c in range(scorer.n_classes)]

    def _column(self, b: np.ndarray, c: int) -> np.ndarray:
        return np.ascontiguousarray(b[:, c] if self.axis == 1 else b[c], dtype=np.float32)

    def _auc(self, key: np.ndarray, c: int) -> float:
        if self.numba:
            return float(self.kernels.auc_of(key, self._pos[c], self._keys, self._tmp))
        return binary_auc(self._pos[c], key)

    def score(self, b: np.ndarray, total: float) -> float:
        """The metric of the blend sum b (engine layout) of `total` weight."""
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
        sc = self.scorer
        if self.numba and sc.name != "roc_auc":
            self.kernels.true_rank_added(s, p, np.float32(scale), sc.y, self._rank)
            return self._from_ranks(self._rank)
        b = s + p if scale == 1.0 else s + np.float32(scale) * p
        return self.score(b, total)

    def _from_ranks(self, r: np.ndarray) -> float:
        k = self.scorer.k or 1
        if self.scorer.name == "map_at_k":
            return float(np.where((r > 0) & (r <= k), 1.0 / np.maximum(r, 1), 0.0).mean())
        return float(((r > 0) & (r <= k)).mean())


def settled_rows(S: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Rows whose argmax no candidate can change: top-1 minus top-2 of S exceeds the row's largest spread.

    Adding P_m moves each class score by at most max_c P_m - min_c P_m, so the leader stays strictly ahead.
    """
    top = S.max(axis=0)
    is_top = top == S
    second = np.where(is_top, -np.inf, S).max(axis=0)
    tied = is_top.sum(axis=0) > 1
    return ~tied & (top - second > spread)


class PlainSearch:
    """Greedy's round evaluator that scores S + X[m] one candidate at a time (any metric, any engine)."""

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
    """Greedy's round evaluator for the numpy engine (class-major X [M, C, n]), argmax metrics, exact.

    Once enough rows are settled (no candidate can change their argmax), each round counts the settled rows
    once and rescores only the open rows per candidate; until then it scores as PlainSearch."""

    def __init__(self, scorer: FastScorer, engine: NumpyEngine, X: np.ndarray, idx: list[int]) -> None:
        self.plain, self.engine = PlainSearch(scorer, X, idx), engine
        # per candidate and row, max - min over classes (with a margin for float32 rounding of the sums): how
        # far adding that candidate can move the gap between two classes; the widest per row
        spread = X[idx].max(axis=1) - X[idx].min(axis=1)
        self.widest = (spread * SPREAD_SAFETY + SPREAD_SLACK).max(axis=0)

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
        scorer, S, X = self.plain.scorer, self.plain.S, self.plain.X
        if not self.plain.total or (settled := settled_rows(S, self.widest)).mean() <= SETTLED_MIN_SHARE:
            return self.plain.gains()
        keep, open_rows = np.flatnonzero(settled), np.flatnonzero(~settled)
        base = scorer.labels.confusion_of(keep, self.engine.argmax(S)[keep])
        sub = NumpyEngine(Labels(scorer.y[open_rows], scorer.n_classes))
        S_open = np.ascontiguousarray(S[:, open_rows])
        return [
            scorer.gain(scorer.from_confusion(base + sub.confusion(S_open + X[m][:, open_rows])))
            for m in self.plain.idx
        ]


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
        engine = scorer.engine
        if not isinstance(engine, NumbaEngine):
            raise ValueError(f"TileSearch needs the numba engine, the scorer has {engine.name!r}")
        k: Any = engine.kernels
        self.scorer, self.X, self._kernels = scorer, X, k
        self.idx = np.asarray(idx, dtype=np.int64)
        n_rows = X.shape[1]
        threads = (
            engine.threads() if n_rows >= PARALLEL_MIN_ROWS else 1
        )  # small searches: one thread, unasked
        self.Q, self.step, big = k.quantize(X, self.idx, threads)
        self.big = dict(zip(idx, big.tolist(), strict=True))
        n, C = X.shape[1], X.shape[2]
        self.T = np.zeros(((n + k.BLOCK - 1) // k.BLOCK, C, k.BLOCK), dtype=np.float32)
        self.bound = 0.0  # upper bound of |T|
        self.pending = -1
        self.cleared = False  # T is to be zeroed (reset) in the next pass
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

    def reset(self, m: int | None = None) -> None:
        """Running sum := X[m] (m one of idx), or zeros; folded into the next pass."""
        self.pending, self.cleared = (-1 if m is None else m), True
        self.bound = 0.0 if m is None else self.big[m]

    def set_sum(self, S: np.ndarray, total: float) -> None:
        """Running sum := S (row-major [n, C] float32), e.g. hill climbing's rescaled blend or a subset's head."""
        self.bound = self._kernels.set_tiles(self.T, S)
        self.pending, self.cleared = -1, False

    def gains(self) -> list[float]:
        """Gains of S + X[m] for each m in idx."""
        return self._gains(list(self.idx), np.ones(len(self.idx), dtype=np.float32))

    def gains_of(self, pairs: list[tuple[int, float]]) -> list[float]:
        """Gains of S + scale * X[m] for each (m, scale) in pairs (m one of idx, scale > 0)."""
        return self._gains([m for m, _ in pairs], np.array([sc for _, sc in pairs], dtype=np.float32))

    def subset_gains(self) -> list[float]:
        """Gains of every equal-weight subset of one or two of idx (singles, then pairs a < b in order), all in
        one pass over the tiles (kit.blend.kernels.pair_blocks); the running sum is not used."""
        K, C = len(self.idx), self.scorer.n_classes
        H = np.zeros((K + K * (K - 1) // 2, self._kernels.LANES, C * C), dtype=np.int64)
        slack = np.float32(4e-6 * 4 * max(self.big.values()) + 1e-30)  # sums of two candidates, with margin
        args = (self.Q, self.step, self.X, self.idx, self.yC, slack, H)
        if self.chunks > 1:
            self.exact += self._kernels.pair_threads(*args, self.chunks)
        else:
            self.exact += self._kernels.pair_blocks(*args, 0, self.Q.shape[0])
        cms = H.sum(axis=1).reshape(len(H), C, C)
        return [self.scorer.gain(v) for v in self.scorer.from_confusions(cms)]

    def _gains(self, ms: list[int], scale: np.ndarray) -> list[float]:
        if not ms:
            return []
        pos = {m: k for k, m in enumerate(self.idx.tolist())}
        qk = np.array([pos[m] for m in ms], dtype=np.int64)
        xm = np.asarray(ms, dtype=np.int64)
        P, C = len(ms), self.scorer.n_classes
        H = np.zeros((P, self._kernels.LANES, C * C), dtype=np.int64)
        # float32 rounding of sums is below 2**-23 of the magnitudes involved: a 30x margin
        widest = max(self.big[m] * float(sc) for m, sc in zip(ms, scale.tolist(), strict=True))
        slack = np.float32(4e-6 * (self.bound + 2 * widest) + 1e-30)
        args = (
            self.T,
            self.Q,
            self.step,
            self.X,
            qk,
            xm,
            scale,
            self.yC,
            self.cleared,
            self.pending,
            slack,
            H,
        )
        if self.chunks > 1:
            self.exact += self._kernels.search_threads(*args, self.chunks)
        else:
            self.exact += self._kernels.search_blocks(*args, 0, self.T.shape[0])
        self.pending, self.cleared = -1, False  # folded into this pass
        cms = H.sum(axis=1).reshape(P, C, C)
        return [self.scorer.gain(v) for v in self.scorer.from_confusions(cms)]
