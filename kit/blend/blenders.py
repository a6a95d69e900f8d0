"""Blenders, scikit-learn style: `__init__` stores parameters, `fit(P, y, fold=None)` returns self, fitted state ends in `_`.
`fold` (the saved fold of each fit row) is used only by blenders that tune inside the fit rows (stack).

`P` is [n, M, C] float32: M candidates' probabilities (space='probs') or log-probabilities (space='logits').
Weighted blenders learn `weights_` (M, non-negative, summing to one); `predict(P)` returns blended
probabilities [n, C]. Searches score candidates with FastScorer on a copy of P in its engine's layout (`engine`:
'auto' = the fused numba kernels, 'numpy' = the class-major reference), never with a scikit-learn metric call
per candidate. Both engines choose the same weights.
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from kit.blend import logreg
from kit.blend.scoring import FastScorer
from kit.blend.space import as_space
from kit.config.ensemble import BlenderSpec, StackSpec
from kit.errors import KitError


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
    engine: str = "auto"
    weights_: np.ndarray = field(init=False, repr=False)

    def _scorer(self, P: np.ndarray, y: np.ndarray, copy: bool = True) -> tuple[FastScorer, np.ndarray]:
        """A scorer for labels y and the candidates P [n, M, C] in its engine's layout (a label matrix y
        [n, L]: kit.blend.multilabel's scorer, which has FastScorer's interface). `copy=False`: a view of P
        where the engine allows one (searches that read each candidate only a few times)."""
        if np.ndim(y) == 2:
            from kit.blend.multilabel import MultilabelScorer

            ml = MultilabelScorer(self.metric, y, self.space, self.engine)  # type: ignore[arg-type]
            return ml, ml.layout(P)  # type: ignore[return-value]
        scorer = FastScorer(self.metric, y, P.shape[2], self.space, self.engine)
        return scorer, scorer.layout(P, copy)

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
    metrics, numba engine: all candidates in one pass over quantized tiles; numpy engine: only the rows a
    candidate can still flip (exact: settled rows keep their prediction, counted once per round into the
    confusion matrix); log loss: one candidate at a time.
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
        scorer, Pt = self._scorer(P, y, copy=False)
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
        scorer, Pt = self._scorer(P, y, copy=self.weights != "uniform")  # greedy rounds read candidates often
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
# Stack fits stop after a Newton step that was predicted to lower the objective by at most this (logreg.fit's
# `decrease`, about the distance left to the minimum in log-loss units; a gradient tolerance is not: on
# 7,000-12,000 rows max |gradient| <= 3e-3 left C = 1.0's fit 0.13-0.28 above its minimum, zero steps from
# C = 0.1's model, and tied C values a decade apart; 1e-4 left final models whose probabilities moved by 0.1
# with the start)
SELECT_DECREASE = 1e-4  # the inner CV's fits, which rank C values by held-out log loss
FIT_DECREASE = 1e-6  # the models that predict: from two starts, the same probabilities to about 3e-3


class Stack:
    """Multinomial logistic regression (L2; scikit-learn's objective, kit's solver: kit.blend.logreg) on the
    stacked candidate probabilities.

    `C="auto"` chooses the L2 strength inside the fit rows: an inner CV over `fold` (the saved folds of the fit
    rows, so groups stay apart; 3 stratified splits when no folds are given) scores each C in `C_grid` by pooled
    held-out log loss and keeps the best (ties: the stronger regularisation). Inside kit's nested CV this makes
    the choice of C itself nested. Every fit walks the grid from strong to weak regularisation with warm starts
    (preconditioned Newton-CG, float32) until the objective is within about SELECT_DECREASE of its minimum,
    which ranks the C values; the final model is the path's model at the chosen C, refined to FIT_DECREASE on
    the same rows.

    `path_cache` (a dict, with `rows` in `fit`: the fit rows' indices in one shared P and y) lets the fits of one
    nested CV share regularisation paths: the inner split (outer f, inner g) and (outer g, inner f) fit the
    same rows, and so do the inner split g of the all-rows fit and outer fold g's final model. Keys are the
    fitted row sets, so one cache must serve one (P, y) only. Paths also seed paths on more rows (`_path`): a
    fold's final model starts from its inner splits' models, so nested CV fits the outer folds before all rows.
    """

    def __init__(
        self,
        metric: str = "weighted_f1",
        space: str = "probs",
        C: float | str = "auto",
        features: str = "probs",
        max_iter: int = 1000,
        C_grid: tuple[float, ...] = STACK_C_GRID,
        path_cache: dict[Any, list[Any]] | None = None,
    ) -> None:
        self.metric = metric
        self.space = space
        self.C = C
        self.features = features
        self.max_iter = max_iter
        self.C_grid = C_grid
        self.path_cache = path_cache

    def _features(self, P: np.ndarray) -> np.ndarray:
        probs = as_space(self.space).to_probs(P.astype(np.float32))
        x = np.log(np.clip(probs, 1e-7, 1.0)) if self.features == "log_probs" else probs
        return x.reshape(len(P), -1)

    def _key(self, rows: np.ndarray | None, idx: np.ndarray, *what: Any) -> Any:
        if rows is None:
            return None
        return (np.sort(rows[idx]).tobytes(), self.features, self.space, self.max_iter, *what)

    def _cached(self, key: Any, make: Any) -> Any:
        if key is None:
            return make()
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def _gram(
        self, X1i: np.ndarray, idx: np.ndarray, rows: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The preconditioner's feature factor of the fit rows X1i = X1[idx] (logreg.gram), cached under them."""
        return self._cached(self._key(rows, idx, "gram"), lambda: logreg.gram(X1i, ones=True))

    def _path(
        self, X1: np.ndarray, y: np.ndarray, idx: np.ndarray, rows: np.ndarray | None, upto: float
    ) -> list[logreg.Multinomial]:
        """The models fitted on X[idx] at each C of the grid up to `upto`, to SELECT_DECREASE (on the
        preconditioner's estimate: logreg.fit_path's `estimate`), cached under the fitted rows. Enough to rank
        the grid's C values by held-out log loss; `_final` refines one.

        Each C starts from the model its C got on these rows less their lowest fold, when that path is cached
        (a nested CV fits a fold's inner splits before its final model: a start 3-4 Newton steps from the
        minimum instead of 4-7; no held-out row is in it), else from the previous C's model (the first C from
        `tied_start`). The start moves a fit only within its stopping rule."""
        grid = sorted({*self.C_grid, upto})
        key = self._key(rows, idx, "path", tuple(grid))
        path = self._cache.get(key, []) if key is not None else []
        if len(path) <= grid.index(upto):
            X1i, yi = X1[idx], y[idx]
            new = grid[len(path) : grid.index(upto) + 1]
            parent = self._parent_path(rows, idx, grid)
            starts = [parent[i] if i < len(parent) else None for i in range(len(path), len(path) + len(new))]
            if path:
                start = path[-1]
            elif starts[0] is not None and np.array_equal(starts[0].classes, np.unique(yi)):
                start = None  # the first C starts from the parent's model: no tied start to compute
            else:
                start = logreg.tied_start(X1i[:, :-1], yi, grid[0], self.n_members_)
            path += logreg.fit_path(
                X1i,
                yi,
                new,
                tol=None,
                max_iter=self.max_iter,
                start=start,
                feat=self._gram(X1i, idx, rows),
                decrease=SELECT_DECREASE,
                starts=starts,
                estimate=True,
                ones=True,
            )
        if key is not None:
            self._cache[key] = path
        return path[: grid.index(upto) + 1]

    def _parent_path(self, rows: np.ndarray | None, idx: np.ndarray, grid: list[float]) -> list[Any]:
        """The cached path (same grid) of the rows idx less those of their lowest fold; [] when there is none."""
        if rows is None or self._fold is None:
            return []
        f = self._fold[idx]
        keep = idx[f != f.min()]
        if len(keep) == 0:
            return []
        return list(self._cache.get(self._key(rows, keep, "path", tuple(grid)), []))

    def _final(
        self, X1: np.ndarray, y: np.ndarray, idx: np.ndarray, rows: np.ndarray | None, C: float
    ) -> Any:
        """The model that predicts: `_path`'s model at C refined to FIT_DECREASE (on the preconditioner's estimate)
        on the same rows, cached under the fitted rows."""

        def refine() -> logreg.Multinomial:
            start, X1i = self._path(X1, y, idx, rows, C)[-1], X1[idx]
            return logreg.fit(
                X1i,
                y[idx],
                C,
                tol=None,
                max_iter=self.max_iter,
                start=start,
                feat=self._gram(X1i, idx, rows),
                decrease=FIT_DECREASE,
                estimate=True,
                ones=True,
            )

        return self._cached(self._key(rows, idx, "final", tuple(sorted({*self.C_grid, C})), C), refine)

    def _choose_C(
        self, X1: np.ndarray, y: np.ndarray, fold: np.ndarray | None, rows: np.ndarray | None
    ) -> tuple[float, list[float]]:
        """The C of `C_grid` with the best pooled inner-CV log loss on the fit rows, and every C's loss."""
        from sklearn.model_selection import StratifiedKFold

        grid = sorted(self.C_grid)
        if fold is not None and len(np.unique(fold)) >= 2:
            splits = [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in np.unique(fold)]
        else:
            k = int(min(3, np.bincount(y).max()))
            if k < 2:
                return grid[0], []
            splits = list(StratifiedKFold(k, shuffle=True, random_state=0).split(X1, y))
            rows = None  # these splits are not the saved folds: nothing to share
        loss = np.zeros(len(grid))
        for tr, va in splits:
            Xva = X1[va, :-1]
            for i, model in enumerate(self._path(X1, y, tr, rows, grid[-1])):
                proba = np.full((len(va), self.n_classes_), 1e-15)
                proba[:, model.classes] = np.clip(model.predict_proba(Xva), 1e-15, 1.0)
                loss[i] -= np.log(proba[np.arange(len(va)), y[va]]).sum()
        loss /= sum(len(va) for _, va in splits)
        best = int(np.flatnonzero(loss <= loss.min() + 1e-12)[0])
        return grid[best], loss.tolist()

    def fit(
        self, P: np.ndarray, y: np.ndarray, fold: np.ndarray | None = None, rows: np.ndarray | None = None
    ) -> Stack:
        self.n_members_, self.n_classes_ = P.shape[1:]
        self._fold = None if fold is None else np.asarray(fold)
        self._cache: dict[Any, list[Any]] = {}
        if self.path_cache is not None and rows is not None:
            self._cache = self.path_cache
        else:  # a fit without a shared cache keeps its own: its inner splits' paths seed its final model's
            rows = np.arange(len(y))
        X1 = logreg.with_ones(self._features(P))  # copied once: the fits take row subsets of [X, 1]
        if self.C == "auto":
            self.C_, self.C_losses_ = self._choose_C(X1, y, fold, rows)
        else:
            self.C_, self.C_losses_ = float(self.C), []
        self.model_ = self._final(X1, y, np.arange(len(y)), rows, self.C_)
        del self._cache, self._fold  # fit-time state
        coef = np.abs(self.model_.coef).reshape(-1, P.shape[1], P.shape[2])
        share = coef.sum(axis=(0, 2))
        self.weights_ = share / share.sum() if share.sum() > 0 else np.full(P.shape[1], 1.0 / P.shape[1])
        return self

    def predict(self, P: np.ndarray) -> np.ndarray:
        proba = self.model_.predict_proba(self._features(P))
        out = np.zeros((len(P), self.n_classes_))
        out[:, self.model_.classes] = proba
        return out

    def fitted_params(self) -> dict[str, Any]:
        return {
            "C": self.C_,
            "C_choice": "inner CV on the fit rows (log loss)" if self.C == "auto" else "fixed",
            "C_grid": list(self.C_grid) if self.C == "auto" else None,
            "C_inner_log_loss": self.C_losses_ or None,
            "features": self.features,
            "classes_seen": [int(c) for c in self.model_.classes],
            "coef": self.model_.coef.tolist(),
            "intercept": self.model_.intercept.tolist(),
            "dtype": str(self.model_.coef.dtype),  # kit predict rebuilds the model bit for bit
        }


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
    spec: BlenderSpec, metric: str, space: Any, path_cache: dict[Any, list[Any]] | None = None
) -> Blender:
    """The estimator a validated blender spec describes: the spec's fields (but `kind` and `name`) are the
    blender's parameters of the same names (`path_cache`: see Stack)."""
    params: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in spec if k not in ("kind", "name")
    }
    if isinstance(spec, StackSpec):
        params["path_cache"] = path_cache
        if getattr(space, "multilabel", False):
            from kit.blend.multilabel import MultilabelStack

            return MultilabelStack(metric, space, **params)  # type: ignore[return-value]
    return BLENDERS[spec.kind](metric, space, **params)
