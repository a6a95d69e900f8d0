"""Blenders, scikit-learn style: `__init__` stores parameters, `fit(P, y, fold=None)` returns self, fitted state ends in `_`.
`fold` (the saved fold of each fit row) is used only by blenders that tune inside the fit rows (stack).

`P` is [n, M, C] float32: M candidates' probabilities (space='probs') or log-probabilities (space='logits').
Weighted blenders learn `weights_` (M, non-negative, summing to one); `predict(P)` returns blended
probabilities [n, C]. Searches score candidates with FastScorer (kit.blend.scoring) on a class-major copy of P,
never with a scikit-learn metric call per candidate.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import KW_ONLY, dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from kit.blend.scoring import FastScorer
from kit.blend.space import as_space
from kit.config.ensemble import BlenderSpec, StackSpec
from kit.errors import KitError
from kit.metrics.scores import softmax


def combine(P: np.ndarray, weights: np.ndarray, space: str) -> np.ndarray:
    """Blended probabilities [n, C] (float64) of candidates P [n, M, C] under `weights`."""
    w = np.asarray(weights, dtype=np.float64)
    s = np.zeros((P.shape[0], P.shape[2]))
    for m in np.flatnonzero(w):  # in member order, as einsum sums; a weight of 0 adds exactly 0
        s += P[:, m] * w[m]
    return as_space(space).blend(s, w.sum())


@dataclass(eq=False)
class WeightedBlender:
    """Shared parameters and predict for blenders that learn one non-negative weight per candidate.

    A dataclass: the generated `__init__` stores the parameters (scikit-learn's convention); every parameter
    after `space` is keyword-only."""

    metric: str = "weighted_f1"
    space: str = "probs"
    _: KW_ONLY
    weights_: np.ndarray = field(init=False, repr=False)

    def _scorer(self, P: np.ndarray, y: np.ndarray) -> tuple[FastScorer, np.ndarray]:
        """A scorer for labels y and the candidates P [n, M, C] in its layout (a label matrix y [n, L]:
        kit.blend.multilabel's scorer, which has FastScorer's interface)."""
        if np.ndim(y) == 2:
            from kit.blend.multilabel import MultilabelScorer

            ml = MultilabelScorer(self.metric, y, self.space)  # type: ignore[arg-type]
            return ml, ml.layout(P)  # type: ignore[return-value]
        scorer = FastScorer(self.metric, y, P.shape[2], self.space)
        return scorer, scorer.layout(P)

    def predict(self, P: np.ndarray) -> np.ndarray:
        return combine(P, self.weights_, self.space)

    def fitted_params(self) -> dict[str, Any]:
        return {}


def _single_gains(X: np.ndarray, scorer: FastScorer, allowed: list[int] | None = None) -> np.ndarray:
    idx = range(X.shape[0]) if allowed is None else allowed
    return np.array([scorer.gain(scorer.score(X[m])) for m in idx])


@dataclass(eq=False)
class BestSingle(WeightedBlender):
    def fit(self, P: np.ndarray, y: np.ndarray, fold: np.ndarray | None = None) -> BestSingle:
        scorer, X = self._scorer(P, y)
        self.best_ = int(np.argmax(_single_gains(X, scorer)))
        self.weights_ = np.eye(P.shape[1])[self.best_]
        return self


@dataclass(eq=False)
class Uniform(WeightedBlender):
    def fit(self, P: np.ndarray, y: np.ndarray, fold: np.ndarray | None = None) -> Uniform:
        self.weights_ = np.full(P.shape[1], 1.0 / P.shape[1])
        return self


def greedy_counts(
    Pt: np.ndarray,
    scorer: FastScorer,
    rounds: int,
    init: int = 0,
    allowed: list[int] | None = None,
) -> tuple[np.ndarray, float, list[float]]:
    """Caruana selection with replacement over candidates Pt in the scorer's layout (`scorer.layout(P)`).

    Returns the pick counts of the best prefix (earliest among ties), its gain, and the gain per round.
    Each round scores every allowed candidate with the scorer's round evaluator (FastScorer.search): argmax
    metrics rescore only the rows a candidate can still flip (exact: settled rows keep their prediction,
    counted once per round into the confusion matrix); other metrics score one candidate at a time.
    """
    M = Pt.shape[0]
    idx = list(range(M)) if allowed is None else list(allowed)
    counts = np.zeros(M, dtype=np.int64)
    best_gain, best_counts = -math.inf, counts.copy()
    search = scorer.search(Pt, idx)
    if init:
        order = np.argsort(-_single_gains(Pt, scorer, idx), kind="stable")
        S = scorer.zeros()  # the search keeps its own running sum; this one scores the starting blend
        for j in order[: min(init, len(idx))]:
            S += Pt[idx[j]]
            counts[idx[j]] += 1
            search.add(idx[j])
        best_gain, best_counts = scorer.gain(scorer.score(S, int(counts.sum()))), counts.copy()
    history = []
    for _ in range(rounds):
        gains = search.gains()
        j = int(np.argmax(gains))
        m = idx[j]
        search.add(m)
        counts[m] += 1
        history.append(gains[j])
        if gains[j] > best_gain:
            best_gain, best_counts = gains[j], counts.copy()
    return best_counts, best_gain, history


@dataclass(eq=False)
class Greedy(WeightedBlender):
    _: KW_ONLY
    rounds: int = 50
    init: int = 0
    bags: int = 1
    bag_fraction: float = 0.5
    seed: int = 0

    def fit(self, P: np.ndarray, y: np.ndarray, fold: np.ndarray | None = None) -> Greedy:
        scorer, Pt = self._scorer(P, y)
        M = P.shape[1]
        if self.bags == 1:
            counts, _, self.history_ = greedy_counts(Pt, scorer, self.rounds, self.init)
            self.counts_ = counts
            self.weights_ = counts / counts.sum()
            return self
        rng = np.random.default_rng(self.seed)
        size = max(1, round(self.bag_fraction * M))
        weights = np.zeros(M)
        for _ in range(self.bags):
            allowed = sorted(rng.choice(M, size=size, replace=False).tolist())
            counts, _, _ = greedy_counts(Pt, scorer, self.rounds, self.init, allowed)
            weights += counts / counts.sum()
        self.weights_ = weights / self.bags
        return self


@dataclass(eq=False)
class HillClimb(WeightedBlender):
    _: KW_ONLY
    grid: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
    max_steps: int = 20
    tol: float = 1e-6

    def fit(self, P: np.ndarray, y: np.ndarray, fold: np.ndarray | None = None) -> HillClimb:
        """From the best single candidate, repeatedly move weight g (from `grid`) onto the candidate m that
        gains most, (1 - g) * S + g * P_m, until no move gains more than `tol`. Every (m, g) move of a step is
        scored in one pass (S + r * P_m with r = g / (1 - g) ranks classes as the move does)."""
        scorer, Pt = self._scorer(P, y)
        M = P.shape[1]
        search = scorer.search(Pt, list(range(M)))
        search.reset()
        gains = search.gains_of([(m, 1.0) for m in range(M)])  # the single candidates, in one pass
        start = int(np.argmax(gains))
        w = np.eye(M)[start]
        S = Pt[start].copy()
        cur = float(gains[start])
        moves = [(m, g) for m in range(M) for g in self.grid]
        pairs = [(m, g / (1 - g)) for m, g in moves]
        self.steps_: list[tuple[int, float]] = []
        for _ in range(self.max_steps):
            search.set_sum(S, 1.0)
            step_gains = search.gains_of(pairs)
            j = int(np.argmax(step_gains))  # the first best move, in (candidate, grid) order
            if step_gains[j] - cur <= self.tol:
                break
            cur = step_gains[j]
            m, g = moves[j]
            S *= 1 - g
            S += np.float32(g) * Pt[m]
            w = (1 - g) * w
            w[m] += g
            self.steps_.append((m, g))
        self.weights_ = w / w.sum()
        return self


@dataclass(eq=False)
class Subsets(WeightedBlender):
    _: KW_ONLY
    max_size: int = 3
    weights: str = "uniform"
    rounds: int = 20
    max_subsets: int = 20000

    def fit(self, P: np.ndarray, y: np.ndarray, fold: np.ndarray | None = None) -> Subsets:
        M = P.shape[1]
        top = min(self.max_size, M)
        n_subsets = sum(math.comb(M, k) for k in range(1, top + 1))
        if n_subsets > self.max_subsets:
            raise KitError(
                f"blender subsets: {M} candidates up to max_size {self.max_size} make {n_subsets} subsets, "
                f"more than max_subsets ({self.max_subsets}); lower max_size or use kind: greedy"
            )
        scorer, Pt = self._scorer(P, y)
        best_gain, best_w = -math.inf, np.zeros(M)
        if self.weights == "uniform":
            best_gain, best_w = self._best_uniform(scorer, Pt, top)
        else:
            for k in range(1, top + 1):
                for combo in combinations(range(M), k):
                    counts, gain, _ = greedy_counts(Pt, scorer, self.rounds, 0, list(combo))
                    if gain > best_gain:
                        best_gain, best_w = gain, counts / counts.sum()
        self.weights_ = best_w
        self.subset_ = [int(i) for i in np.flatnonzero(best_w)]
        return self

    @staticmethod
    def _best_uniform(scorer: FastScorer, Pt: np.ndarray, top: int) -> tuple[float, np.ndarray]:
        """The best equal-weight subset of up to `top` candidates (the first in lexicographic order on ties).
        Every single and pair is scored in one pass (`subset_gains`); larger subsets sharing a head (all members
        but the last) in one pass each: the head's sum, summed in order, plus each possible last member."""
        M = Pt.shape[0]
        search = scorer.search(Pt, list(range(M)))
        subsets: list[tuple[int, ...]] = [(m,) for m in range(M)]
        if top == 1:
            search.reset()
            gains = search.gains_of([(m, 1.0) for m in range(M)])
        else:
            subsets += list(combinations(range(M), 2))
            gains = search.subset_gains()
        j = int(np.argmax(gains))
        best_gain, best = gains[j], subsets[j]
        buf = scorer.zeros() if top > 2 else None
        for k in range(3, top + 1):
            for head in combinations(range(M), k - 1):
                rest = list(range(head[-1] + 1, M))
                if not rest:
                    continue
                S = np.add(Pt[head[0]], Pt[head[1]], out=buf)  # the head summed in order
                for h in head[2:]:
                    S += Pt[h]
                search.set_sum(S, len(head))  # the search keeps its own copy
                gains = search.gains_of([(m, 1.0) for m in rest])
                j = int(np.argmax(gains))
                if gains[j] > best_gain:
                    best_gain, best = gains[j], (*head, rest[j])
        w = np.zeros(M)
        w[list(best)] = 1.0 / len(best)
        return best_gain, w


STACK_C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def _linear_probs(
    X: np.ndarray, coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray, n_classes: int
) -> np.ndarray:
    """[n, n_classes] float64: scikit-learn's predict_proba of a fitted logistic regression (one coefficient
    row over two classes: a binary model); classes absent from its fit rows get 0."""
    z = X @ coef.T + intercept
    if len(coef) == 1 and len(classes) == 2:
        p = 1.0 / (1.0 + np.exp(-z[:, 0].astype(np.float64)))
        proba = np.stack([1.0 - p, p], axis=1)
    else:
        proba = softmax(z.astype(np.float64), axis=1)
    out = np.zeros((len(X), n_classes))
    out[:, classes] = proba
    return out


class Stack:
    """Multinomial L2 logistic regression (scikit-learn's LogisticRegression) on the stacked candidates'
    probabilities (`features="probs"`) or log-probabilities (`"log_probs"`).

    `C="auto"` chooses the L2 strength inside the fit rows: an inner CV over `fold` (the saved folds of the fit
    rows, so groups stay apart; 3 stratified splits when no folds are given) scores each C of `C_grid` by pooled
    held-out log loss and keeps the best (ties: the stronger regularisation). Inside kit's nested CV this makes
    the choice of C itself nested. Each inner split walks the grid from strong to weak regularisation, each fit
    warm-started from the previous one.

    Fitted: `C_`, `C_losses_`, `classes_` (the labels seen in the fit rows), `coef_` [K, d] and `intercept_` [K]
    (one row for two classes: a binary model, as scikit-learn fits it), `weights_` (each candidate's share of
    |coefficients|). `predict` reads only the coefficients, so `fitted_params`/`from_params` round-trip what a
    fitted stack predicts exactly.
    """

    def __init__(
        self,
        metric: str = "weighted_f1",
        space: str = "probs",
        C: float | str = "auto",
        features: str = "probs",
        max_iter: int = 1000,
        C_grid: tuple[float, ...] = STACK_C_GRID,
        paths: dict[bytes, list[Any]] | None = None,
    ) -> None:
        self.metric = metric
        self.space = space
        self.C = C
        self.features = features
        self.max_iter = max_iter
        self.C_grid = C_grid
        self.paths = paths

    def _features(self, P: np.ndarray) -> np.ndarray:
        probs = as_space(self.space).to_probs(P.astype(np.float32))
        x = np.log(np.clip(probs, 1e-7, 1.0)) if self.features == "log_probs" else probs
        return np.ascontiguousarray(x.reshape(len(P), -1), dtype=np.float32)

    def _model(self, C: float) -> Any:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=C, max_iter=self.max_iter, warm_start=True)

    def _path(self, X: np.ndarray, y: np.ndarray, grid: list[float]) -> list[tuple[np.ndarray, ...]]:
        """(coef, intercept, classes) at each C of the grid on rows X, y, each fit warm-started from the
        previous one. With `paths` (a dict shared by the stacks of one nested CV, whose inner splits fit the
        same rows more than once) a path is fitted once per content of its rows."""
        key = None
        if self.paths is not None:
            digest = hashlib.blake2b(X.tobytes(), digest_size=16)
            digest.update(np.ascontiguousarray(y).tobytes())
            digest.update(repr((grid, self.max_iter)).encode())
            key = digest.digest()
            if key in self.paths:
                return self.paths[key]
        model, out = self._model(grid[0]), list[tuple[np.ndarray, ...]]()
        for C in grid:  # strong to weak regularisation
            model.set_params(C=C).fit(X, y)
            out.append((model.coef_.copy(), model.intercept_.copy(), model.classes_))
        if key is not None:
            self.paths[key] = out  # type: ignore[index]
        return out

    def _choose_C(self, X: np.ndarray, y: np.ndarray, fold: np.ndarray | None) -> tuple[float, list[float]]:
        """The C of `C_grid` with the best pooled inner-CV log loss on the fit rows, and every C's loss."""
        from sklearn.model_selection import StratifiedKFold

        grid = sorted(self.C_grid)
        if fold is not None and len(np.unique(fold)) >= 2:
            splits = [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in np.unique(fold)]
        else:
            k = int(min(3, np.bincount(y).max()))
            if k < 2:
                return grid[0], []
            splits = list(StratifiedKFold(k, shuffle=True, random_state=0).split(X, y))
        loss = np.zeros(len(grid))
        for tr, va in splits:
            if len(np.unique(y[tr])) < 2:  # one class in the split's fit rows: it predicts that class
                loss -= np.log(np.where(y[va] == y[tr][0], 1.0, 1e-15)).sum()
                continue
            for i, (coef, intercept, classes) in enumerate(self._path(X[tr], y[tr], grid)):
                proba = np.clip(_linear_probs(X[va], coef, intercept, classes, self.n_classes_), 1e-15, 1.0)
                loss[i] -= np.log(proba[np.arange(len(va)), y[va]]).sum()
        loss /= sum(len(va) for _, va in splits)
        best = int(np.flatnonzero(loss <= loss.min() + 1e-12)[0])
        return grid[best], loss.tolist()

    def fit(self, P: np.ndarray, y: np.ndarray, fold: np.ndarray | None = None) -> Stack:
        self.n_classes_ = P.shape[2]
        X = self._features(P)
        if self.C == "auto":
            self.C_, self.C_losses_ = self._choose_C(X, y, None if fold is None else np.asarray(fold))
        else:
            self.C_, self.C_losses_ = float(self.C), []
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:  # one class: a constant model
            self.coef_ = np.zeros((1, X.shape[1]), dtype=np.float32)
            self.intercept_ = np.zeros(1, dtype=np.float32)
        else:
            model = self._model(self.C_).fit(X, y)
            self.coef_, self.intercept_ = model.coef_, model.intercept_
        share = np.abs(self.coef_).reshape(-1, P.shape[1], P.shape[2]).sum(axis=(0, 2))
        self.weights_ = share / share.sum() if share.sum() > 0 else np.full(P.shape[1], 1.0 / P.shape[1])
        return self

    def predict(self, P: np.ndarray) -> np.ndarray:
        """Probabilities [n, C] (float64): scikit-learn's predict_proba from the fitted coefficients; classes
        absent from the fit rows get 0."""
        return _linear_probs(self._features(P), self.coef_, self.intercept_, self.classes_, self.n_classes_)

    def fitted_params(self) -> dict[str, Any]:
        """The fitted stack as JSON (winner.json's `stack`); `from_params` rebuilds it bit for bit."""
        return {
            "C": self.C_,
            "C_choice": "inner CV on the fit rows (log loss)" if self.C == "auto" else "fixed",
            "C_grid": list(self.C_grid) if self.C == "auto" else None,
            "C_inner_log_loss": self.C_losses_ or None,
            "features": self.features,
            "n_classes": self.n_classes_,
            "classes_seen": [int(c) for c in self.classes_],
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_.tolist(),
            "dtype": str(self.coef_.dtype),
        }

    @classmethod
    def from_params(cls, params: dict[str, Any], metric: str, space: str, n_classes: int) -> Stack:
        """The fitted stack `fitted_params` wrote (winner.json's `stack`)."""
        dtype = np.dtype(params.get("dtype", "float32"))
        st = cls(metric, space, C=params["C"], features=params["features"])
        st.C_, st.C_losses_ = float(params["C"]), list(params.get("C_inner_log_loss") or [])
        st.n_classes_ = int(params.get("n_classes", n_classes))
        st.classes_ = np.asarray(params["classes_seen"], dtype=np.int64)
        st.coef_ = np.asarray(params["coef"], dtype=dtype)
        st.intercept_ = np.asarray(params["intercept"], dtype=dtype)
        return st


Blender = BestSingle | Uniform | Greedy | HillClimb | Subsets | Stack
BLENDERS: dict[str, type[Blender]] = {
    "best_single": BestSingle,
    "uniform": Uniform,
    "greedy": Greedy,
    "hill_climb": HillClimb,
    "subsets": Subsets,
    "stack": Stack,
}


def make_blender(
    spec: BlenderSpec, metric: str, space: Any, paths: dict[bytes, list[Any]] | None = None
) -> Blender:
    """The estimator a validated blender spec describes: the spec's fields (but `kind` and `name`) are the
    blender's parameters of the same names (`paths`: fits the stacks of one nested CV share, see Stack)."""
    params: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in spec if k not in ("kind", "name")
    }
    if isinstance(spec, StackSpec) and getattr(space, "multilabel", False):
        from kit.blend.multilabel import MultilabelStack

        return MultilabelStack(metric, space, **params)  # type: ignore[return-value]
    if isinstance(spec, StackSpec):
        return Stack(metric, space, paths=paths, **params)
    return BLENDERS[spec.kind](metric, space, **params)
