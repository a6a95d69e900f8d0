"""Post-processing of blended probabilities for long tails, fitted on OOF rows and judged by nested CV.

Both act on log-probabilities: `LogitAdjust` subtracts tau * log(class prior) (one tau from a grid),
`ClassBias` adds per-class offsets found by coordinate ascent. `transform` returns probabilities again.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from kit.blend.scoring import FastScorer
from kit.config.ensemble import PostprocessSpec
from kit.errors import KitError
from kit.metrics.scores import parse_metric

EPS = 1e-7


def _log(Q: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(Q, dtype=np.float64), EPS, 1.0))


def _shift(Q: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """softmax(_log(Q) + offsets) computed as clip(Q) * exp(offsets), normalised per row: the same
    probabilities (to float64 rounding) without a log and an exp per entry."""
    R = np.clip(np.asarray(Q, dtype=np.float64), EPS, 1.0)
    R *= np.exp(offsets)
    R /= R.sum(axis=1, keepdims=True)
    return R


class LogitAdjust:
    def __init__(self, metric: str = "weighted_f1", taus: tuple[float, ...] = (0.0, 0.5, 1.0)) -> None:
        self.metric = metric
        self.taus = taus

    def fit(self, Q: np.ndarray, y: np.ndarray) -> LogitAdjust:
        C = Q.shape[1]
        self.prior_ = (np.bincount(y, minlength=C) + 1.0) / (len(y) + C)
        L = np.ascontiguousarray(_log(Q).T, dtype=np.float32)
        logp = np.log(self.prior_).astype(np.float32)[:, None]
        scorer = FastScorer(self.metric, y, C, "logits")
        gains = [scorer.gain(scorer.score(L - np.float32(t) * logp)) for t in self.taus]
        self.tau_ = float(self.taus[int(np.argmax(gains))])
        return self

    @property
    def offsets_(self) -> np.ndarray:
        return -self.tau_ * np.log(self.prior_)

    def transform(self, Q: np.ndarray) -> np.ndarray:
        return _shift(Q, self.offsets_)

    def fitted_params(self) -> dict[str, Any]:
        return {"tau": self.tau_, "prior": self.prior_.tolist()}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> LogitAdjust:
        la = cls()
        la.prior_, la.tau_ = np.asarray(params["prior"], dtype=np.float64), float(params["tau"])
        return la


class ClassBias:
    def __init__(
        self, metric: str = "weighted_f1", grid: tuple[float, ...] = (-0.5, 0.0, 0.5), passes: int = 2
    ) -> None:
        self.metric = metric
        self.grid = grid
        self.passes = passes

    def fit(self, Q: np.ndarray, y: np.ndarray) -> ClassBias:
        L = np.ascontiguousarray(_log(Q).T, dtype=np.float32)
        scorer = FastScorer(self.metric, y, Q.shape[1], "logits")
        trial: _FullTrial
        if not scorer.argmax_metric or Q.shape[1] < 2:
            trial = _FullTrial(L, scorer)
        else:
            trial = _TopTwoTrial(L, scorer)
        self.offsets_ = _coordinate_ascent(trial, Q.shape[1], self.grid, self.passes)
        return self

    def transform(self, Q: np.ndarray) -> np.ndarray:
        return _shift(Q, self.offsets_)

    def fitted_params(self) -> dict[str, Any]:
        return {"offsets": [float(v) for v in self.offsets_]}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ClassBias:
        cb = cls()
        cb.offsets_ = np.asarray(params["offsets"], dtype=np.float64)
        return cb


class OrdinalThresholds:
    """Ordinal classes scored by quadratic weighted kappa: the grade is the expected class index
    e = sum_c c * p_c cut at C-1 increasing thresholds (the standard post-processing of QWK competitions).

    The cuts start at the midpoints (0.5, 1.5, ...) and are tuned by coordinate ascent on the fit rows: each cut
    tries `candidates` evenly spaced values strictly between its neighbours and keeps the best QWK (ties: the
    current cut). `transform` returns 0.6 * one-hot(grade) + 0.4 * p, whose argmax is the grade.
    """

    def __init__(self, candidates: int = 40, passes: int = 3) -> None:
        self.candidates = candidates
        self.passes = passes

    @staticmethod
    def expected(Q: np.ndarray) -> np.ndarray:
        Q = np.asarray(Q, dtype=np.float64)
        return Q @ np.arange(Q.shape[1]) / Q.sum(axis=1)

    def fit(self, Q: np.ndarray, y: np.ndarray) -> OrdinalThresholds:
        from kit.metrics.ranking import qwk_from_confusion

        C = Q.shape[1]
        e = self.expected(Q)
        yC = np.asarray(y, dtype=np.int64) * C

        def kappa(cuts: np.ndarray) -> float:
            pred = np.searchsorted(cuts, e, side="right")
            return qwk_from_confusion(np.bincount(yC + pred, minlength=C * C).reshape(C, C))

        cuts = np.arange(C - 1) + 0.5
        best = kappa(cuts)
        for _ in range(self.passes):
            moved = False
            for j in range(C - 1):
                lo = cuts[j - 1] if j > 0 else -0.5
                hi = cuts[j + 1] if j < C - 2 else C - 0.5
                for v in np.linspace(lo, hi, self.candidates + 2)[1:-1]:
                    trial = cuts.copy()
                    trial[j] = v
                    k = kappa(trial)
                    if k > best:
                        best, cuts, moved = k, trial, True
            if not moved:
                break
        self.cuts_ = cuts
        self.kappa_ = best
        return self

    def grades(self, Q: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.cuts_, self.expected(Q), side="right")

    def transform(self, Q: np.ndarray) -> np.ndarray:
        Q = np.asarray(Q, dtype=np.float64)
        Q = Q / Q.sum(axis=1, keepdims=True)
        return 0.6 * np.eye(Q.shape[1])[self.grades(Q)] + 0.4 * Q

    def fitted_params(self) -> dict[str, Any]:
        return {"cuts": [float(c) for c in self.cuts_], "fit_qwk": self.kappa_}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> OrdinalThresholds:
        ot = cls()
        ot.cuts_ = np.asarray(params["cuts"], dtype=np.float64)
        ot.kappa_ = float(params.get("fit_qwk") or 0.0)
        return ot


class _FullTrial:
    """Scores an offset for class c by scoring the whole class-major sum (any metric)."""

    def __init__(self, L: np.ndarray, scorer: FastScorer) -> None:
        self.L, self.S, self.scorer = L, L.copy(), scorer

    def current(self) -> float:
        return self.scorer.gain(self.scorer.score(self.S))

    def gains(self, c: int, grid: tuple[float, ...]) -> list[float]:
        """The gain of each offset v of the grid for class c (the other classes' offsets as they are); the
        sums are left as they were."""
        self.prepare(c)
        saved = self.S[c].copy()
        out = [self.gain(c, v) for v in grid]
        self.S[c] = saved
        return out

    def gain(self, c: int, v: float) -> float:
        self.S[c] = self.L[c] + np.float32(v)
        return self.scorer.gain(self.scorer.score(self.S))

    def prepare(self, c: int) -> None:
        pass

    def set(self, c: int, v: float) -> None:
        self.S[c] = self.L[c] + np.float32(v)


class _TopTwoTrial(_FullTrial):
    """Argmax metrics without an argmax over all classes per grid value.

    Moving class c's offset only decides, per row, between c and the best of the other classes (value and
    lowest index, as numpy's argmax breaks ties). That is found once per class (`prepare`); the grid's values are
    then scored together. Same float32 sums, same ties: the offsets equal _FullTrial's (tests/test_selection.py).
    """

    def __init__(self, L: np.ndarray, scorer: FastScorer) -> None:
        super().__init__(L, scorer)
        self.rows = np.arange(L.shape[1])

    def current(self) -> float:
        return self.scorer.gain(self.scorer.from_pred(np.argmax(self.S, axis=0)))

    def prepare(self, c: int) -> None:
        saved = self.S[c].copy()
        self.S[c] = -np.inf
        self.other = np.argmax(self.S, axis=0)  # lowest index of the best class other than c
        self.other_val = self.S[self.other, self.rows]
        self.S[c] = saved

    def gains(self, c: int, grid: tuple[float, ...]) -> list[float]:
        """Every grid value's gain at once: one prediction row per value, one bincount for all confusions."""
        self.prepare(c)
        val = self.L[c][None, :] + np.asarray(grid, dtype=np.float32)[:, None]  # [G, n]
        wins = (val > self.other_val) | ((val == self.other_val) & (c < self.other))
        pred = np.where(wins, c, self.other)
        sc, C = self.scorer, self.scorer.n_classes
        cells = (np.arange(len(grid))[:, None] * (C * C) + sc.y * C + pred).ravel()
        cms = np.bincount(cells, minlength=len(grid) * C * C).reshape(len(grid), C, C)
        return [sc.gain(v) for v in sc.from_confusions(cms)]


def _coordinate_ascent(trial: _FullTrial, C: int, grid: tuple[float, ...], passes: int) -> np.ndarray:
    """Per-class offsets: for each class in turn keep the grid value with the best gain (ties: keep the current
    offset), until a pass changes nothing or `passes` run out."""
    b = np.zeros(C)
    cur = trial.current()
    for _ in range(passes):
        changed = False
        for c in range(C):
            best_v, best_gain = b[c], cur
            for v, gain in zip(grid, trial.gains(c, grid), strict=True):
                if gain > best_gain:
                    best_v, best_gain = v, gain
            if best_v != b[c]:  # (`gains` leaves the sums as they were: nothing to set otherwise)
                changed = True
                b[c] = best_v
                trial.set(c, best_v)
            cur = best_gain
        if not changed:
            break
    return b


Step = Any  # LogitAdjust | ClassBias | OrdinalThresholds | kit.blend.thresholds.Thresholds


class Chain:
    """Post-processing steps fitted one after another (an empty chain is the identity)."""

    def __init__(self, steps: list[tuple[str, Step]]) -> None:
        self.steps = steps

    @property
    def label(self) -> str:
        return "+".join(name for name, _ in self.steps)

    def fit(self, Q: np.ndarray, y: np.ndarray) -> Chain:
        for _, step in self.steps:
            Q = step.fit(Q, y).transform(Q)
        return self

    def transform(self, Q: np.ndarray) -> np.ndarray:
        for _, step in self.steps:
            Q = step.transform(Q)
        return Q

    def fitted_params(self) -> dict[str, Any]:
        return {name: step.fitted_params() for name, step in self.steps}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Chain:
        """The fitted chain `fitted_params` wrote (winner.json's `postprocess`), multiclass steps only."""
        steps: list[tuple[str, Step]] = []
        for name, p in params.items():
            if name not in FITTED_STEPS:
                raise KitError(
                    f"unknown post-processing step '{name}' in the blend recipe; this kit is too old for it"
                )
            steps.append((name, FITTED_STEPS[name].from_params(p)))
        return cls(steps)


FITTED_STEPS: dict[str, Any] = {
    "logit_adjust": LogitAdjust,
    "class_bias": ClassBias,
    "ordinal_thresholds": OrdinalThresholds,
}


# the steps that suit each metric: label decisions for label metrics, cut points for QWK, none for rank
# metrics (ROC AUC ranks scores; a monotone step cannot help it)
STEPS_FOR_METRIC = {
    "weighted_f1": ("logit_adjust", "class_bias"),
    "macro_f1": ("logit_adjust", "class_bias"),
    "accuracy": ("logit_adjust", "class_bias"),
    "log_loss": ("logit_adjust", "class_bias"),
    "qwk": ("logit_adjust", "class_bias", "ordinal_thresholds"),
}


def variants(
    spec: PostprocessSpec, metric: str | None = None, *, multilabel: bool = False
) -> list[tuple[str, ...]]:
    """Post-processing chains to judge: none, each enabled step that suits the metric alone, and
    logit_adjust followed by class_bias when both are on. Multi-label: none, and per-label thresholds for the
    label metrics (kit.blend.thresholds)."""
    if multilabel:
        from kit.metrics.multilabel import LABEL_DECISION_METRICS

        suited = metric is not None and parse_metric(metric)[0] in LABEL_DECISION_METRICS
        return [(), ("thresholds",)] if suited and spec.thresholds.enabled else [()]
    suits = (
        STEPS_FOR_METRIC.get(parse_metric(metric)[0], ())
        if metric is not None
        else ("logit_adjust", "class_bias")
    )
    on = [n for n in ("logit_adjust", "class_bias", "ordinal_thresholds") if getattr(spec, n).enabled]
    on = [n for n in on if n in suits]
    out: list[tuple[str, ...]] = [()]
    out += [(n,) for n in on]
    if "logit_adjust" in on and "class_bias" in on:
        out.append(("logit_adjust", "class_bias"))
    return out


def make_step(name: str, spec: PostprocessSpec, metric: str) -> Step:
    """One unfitted post-processing step."""
    if name == "logit_adjust":
        return LogitAdjust(metric, tuple(spec.logit_adjust.taus))
    if name == "class_bias":
        return ClassBias(metric, tuple(spec.class_bias.grid), spec.class_bias.passes)
    if name == "thresholds":
        from kit.blend.thresholds import Thresholds

        t = spec.thresholds
        return Thresholds(metric, tuple(t.grid), t.passes, bool(t.at_least_one))
    o = spec.ordinal_thresholds
    return OrdinalThresholds(o.candidates, o.passes)


def fit_chains(
    names: list[tuple[str, ...]], spec: PostprocessSpec, metric: str, Q: np.ndarray, y: np.ndarray
) -> dict[tuple[str, ...], tuple[Chain, np.ndarray, float]]:
    """Every chain of `names` fitted on (Q, y) as `Chain.fit` fits it, each distinct prefix once:
    (logit_adjust,) and (logit_adjust, class_bias) share one fitted logit_adjust. Each chain with Q through it
    and its seconds (a shared prefix's counted in every chain that uses it, as if fitted alone)."""
    done: dict[tuple[str, ...], tuple[list[tuple[str, Step]], np.ndarray, float]] = {(): ([], Q, 0.0)}
    out = {}
    for v in names:
        for i in range(1, len(v) + 1):
            if v[:i] not in done:
                steps, Qp, seconds = done[v[: i - 1]]
                t = time.perf_counter()
                step = make_step(v[i - 1], spec, metric).fit(Qp, y)
                Qn = step.transform(Qp)
                done[v[:i]] = ([*steps, (v[i - 1], step)], Qn, seconds + time.perf_counter() - t)
        steps, Qv, seconds = done[v]
        out[v] = (Chain(list(steps)), Qv, seconds)
    return out


def transform_chains(
    chains: dict[tuple[str, ...], Chain], Q: np.ndarray
) -> dict[tuple[str, ...], np.ndarray]:
    """Q through each chain of one `fit_chains` call (whose prefixes share fitted steps), each prefix once."""
    done: dict[tuple[str, ...], np.ndarray] = {(): Q}
    for v, chain in chains.items():
        for i in range(1, len(v) + 1):
            if v[:i] not in done:
                done[v[:i]] = chain.steps[i - 1][1].transform(done[v[: i - 1]])
    return {v: done[v] for v in chains}
