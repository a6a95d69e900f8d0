"""Post-processing of blended probabilities for long tails, fitted on OOF rows and judged by nested CV.

Both act on log-probabilities: `LogitAdjust` subtracts tau * log(class prior) (one tau from a grid),
`ClassBias` adds per-class offsets found by coordinate ascent. `transform` returns probabilities again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kit.blend.scoring import FastScorer
from kit.blend.spec import PostprocessSpec
from kit.metrics.scores import ARGMAX_METRICS, softmax

EPS = 1e-7


def _log(Q: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(Q, dtype=np.float64), EPS, 1.0))


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
        self.offsets_ = -self.tau_ * np.log(self.prior_)
        return self

    def transform(self, Q: np.ndarray) -> np.ndarray:
        return softmax(_log(Q) + self.offsets_)

    def fitted_params(self) -> dict[str, Any]:
        return {"tau": self.tau_, "prior": self.prior_.tolist()}


class ClassBias:
    def __init__(
        self, metric: str = "weighted_f1", grid: tuple[float, ...] = (-0.5, 0.0, 0.5), passes: int = 2
    ) -> None:
        self.metric = metric
        self.grid = grid
        self.passes = passes

    def fit(self, Q: np.ndarray, y: np.ndarray) -> ClassBias:
        C = Q.shape[1]
        L = np.ascontiguousarray(_log(Q).T, dtype=np.float32)
        scorer = FastScorer(self.metric, y, C, "logits")
        if self.metric in ARGMAX_METRICS:
            self.offsets_ = _coordinate_ascent_argmax(L, scorer, self.grid, self.passes)
            return self
        S = L.copy()
        b = np.zeros(C)
        cur = scorer.gain(scorer.score(S))
        for _ in range(self.passes):
            changed = False
            for c in range(C):
                best_v, best_gain = b[c], cur
                for v in self.grid:
                    S[c] = L[c] + np.float32(v)
                    gain = scorer.gain(scorer.score(S))
                    if gain > best_gain:
                        best_v, best_gain = v, gain
                if best_v != b[c]:
                    changed = True
                b[c], cur = best_v, best_gain
                S[c] = L[c] + np.float32(b[c])
            if not changed:
                break
        self.offsets_ = b
        return self

    def transform(self, Q: np.ndarray) -> np.ndarray:
        return softmax(_log(Q) + self.offsets_)

    def fitted_params(self) -> dict[str, Any]:
        return {"offsets": [float(v) for v in self.offsets_]}


def _coordinate_ascent_argmax(
    L: np.ndarray, scorer: FastScorer, grid: tuple[float, ...], passes: int
) -> np.ndarray:
    """ClassBias's coordinate ascent for argmax metrics, without an argmax over all classes per grid value.

    Moving class c's offset only decides, per row, between c and the best of the other classes (value and
    lowest index, as numpy's argmax breaks ties). Those come from each row's top two classes, recomputed once
    per class instead of once per grid value; each grid value then costs O(n). Same sums in float32, same ties,
    same visiting order: the offsets equal the plain search's (tests/test_blend.py checks it).
    """
    C, n = L.shape
    S = L.copy()
    rows = np.arange(n)
    b = np.zeros(C)
    cur = scorer.gain(scorer.from_pred(np.argmax(S, axis=0)))
    for _ in range(passes):
        changed = False
        for c in range(C):
            saved = S[c].copy()
            S[c] = -np.inf
            other = np.argmax(S, axis=0)  # lowest index of the best class other than c
            other_val = S[other, rows]
            S[c] = saved
            best_v, best_gain = b[c], cur
            for v in grid:
                val = L[c] + np.float32(v)
                wins = (val > other_val) | ((val == other_val) & (c < other))
                gain = scorer.gain(scorer.from_pred(np.where(wins, c, other)))
                if gain > best_gain:
                    best_v, best_gain = v, gain
            if best_v != b[c]:
                changed = True
            b[c], cur = best_v, best_gain
            S[c] = L[c] + np.float32(b[c])
        if not changed:
            break
    return b


class Chain:
    """Post-processing steps fitted one after another (an empty chain is the identity)."""

    def __init__(self, steps: list[tuple[str, LogitAdjust | ClassBias]]) -> None:
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


def variants(spec: PostprocessSpec) -> list[tuple[str, ...]]:
    """Post-processing chains to judge: none, each enabled step alone, and both together."""
    on = [n for n in ("logit_adjust", "class_bias") if getattr(spec, n).enabled]
    out: list[tuple[str, ...]] = [()]
    out += [(n,) for n in on]
    if len(on) == 2:
        out.append(tuple(on))
    return out


def make_chain(names: tuple[str, ...], spec: PostprocessSpec, metric: str) -> Chain:
    steps: list[tuple[str, LogitAdjust | ClassBias]] = []
    for n in names:
        if n == "logit_adjust":
            steps.append((n, LogitAdjust(metric, tuple(spec.logit_adjust.taus))))
        else:
            steps.append((n, ClassBias(metric, tuple(spec.class_bias.grid), spec.class_bias.passes)))
    return Chain(steps)
