"""Honest selection: every blender (and post-processing chain) re-fitted inside a CV over the saved folds.

For each fold f: fit on the other folds' OOF rows, predict fold f; pool the held-out predictions and score them
once. The in-sample score (fit and score on all OOF rows) is reported beside it; the gap is the overstatement.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kit.blend.blenders import Blender, make_blender
from kit.blend.postprocess import Chain, fit_chains, transform_chains
from kit.blend.selection import (
    BootstrapScorer,
    Comparison,
    Resampler,
    SelectionAware,
    average,
    compare,
    complexity,
    fold_comparisons,
    select,
    selection_aware,
)
from kit.config.ensemble import BlenderSpec, PostprocessSpec, SelectionSpec
from kit.metrics.scores import greater_is_better, score


@dataclass
class Candidate:
    """One row of the selection table: a blender with a post-processing chain."""

    label: str
    blender_label: str
    kind: str  # the blender's kind (its complexity rank)
    postprocess: tuple[str, ...]
    insample: float
    nested: float
    seconds: float
    blender: Blender  # fitted on all OOF rows
    chain: Chain  # fitted on all OOF rows (after the blender)
    nested_oof: np.ndarray  # [n, C] pooled held-out predictions
    insample_oof: np.ndarray  # [n, C]
    fold_weights: list[list[float]] = field(default_factory=list)
    metric_hint: str = "weighted_f1"

    @property
    def complexity(self) -> int:
        return complexity(self.kind, self.postprocess)

    @property
    def overstatement(self) -> float:
        """How much the in-sample score flatters the blend (positive = overstated), in metric units."""
        d = self.insample - self.nested
        return d if greater_is_better(self.metric_hint) else -d


def metric_of(metric: str, y: np.ndarray, Q: np.ndarray) -> float:
    return score(metric, y, Q, logits=False)


def evaluate_blender(
    spec: BlenderSpec,
    pp_variants: list[tuple[str, ...]],
    pp_spec: PostprocessSpec,
    P: np.ndarray,
    y: np.ndarray,
    fold: np.ndarray,
    metric: str,
    space: Any,
) -> list[Candidate]:
    """In-sample and nested scores of one blender under each post-processing chain."""
    # the stacks' inner fits, shared: the inner splits of two outer folds fit the same rows
    paths: dict[bytes, list[Any]] = {}

    def fit(rows: np.ndarray) -> Blender:
        return make_blender(spec, metric, space, paths).fit(P[rows], y[rows], fold=fold[rows])

    base_seconds = 0.0
    pooled = {v: np.zeros((len(y), P.shape[2])) for v in pp_variants}
    pp_seconds = dict.fromkeys(pp_variants, 0.0)
    fold_weights = []
    for f in np.unique(fold):
        tr, va = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        t1 = time.perf_counter()
        b = fit(tr)
        Q_tr, Q_va = b.predict(P[tr]), b.predict(P[va])
        base_seconds += time.perf_counter() - t1
        fold_weights.append([float(w) for w in b.weights_])
        fitted = fit_chains(pp_variants, pp_spec, metric, Q_tr, y[tr])
        t2 = time.perf_counter()
        held = transform_chains({v: chain for v, (chain, _, _) in fitted.items()}, Q_va)
        share = (time.perf_counter() - t2) / len(pp_variants)
        for v in pp_variants:
            pooled[v][va] = held[v]
            pp_seconds[v] += fitted[v][2] + share
    t1 = time.perf_counter()
    blender = fit(np.arange(len(y)))
    Q_all = blender.predict(P)
    base_seconds += time.perf_counter() - t1
    out = []
    for v, (chain, Q_in, seconds) in fit_chains(pp_variants, pp_spec, metric, Q_all, y).items():
        pp_seconds[v] += seconds
        out.append(
            Candidate(
                label="+".join((spec.label, *v)),
                blender_label=spec.label,
                kind=spec.kind,
                postprocess=v,
                insample=metric_of(metric, y, Q_in),
                nested=metric_of(metric, y, pooled[v]),
                seconds=base_seconds + pp_seconds[v],
                blender=blender,
                chain=chain,
                nested_oof=pooled[v],
                insample_oof=Q_in,
                fold_weights=fold_weights,
                metric_hint=metric,
            )
        )
    return out


@dataclass
class Judgement:
    """The table's rows compared under uncertainty, the pick, and the estimate of the whole procedure."""

    winners: list[int]  # the rows the rule picks (average_1se: several, their predictions averaged)
    pick_oof: np.ndarray  # [n, C] the pick's pooled nested predictions (the winners' mean)
    pick_score: float  # the pick's nested estimate
    pick_interval: tuple[float, float]
    pick_p_beats_single: float
    max_nested: int  # the row the raw maximum would pick (reported beside the rule's pick)
    baseline: int  # the best_single row
    comparison: Comparison
    intervals: np.ndarray  # [R, 2]
    p_beats_single: np.ndarray  # [R]
    aware: SelectionAware
    n_groups: int


def baseline_row(rows: list[Candidate]) -> int:
    """The best_single row without post-processing: what `kit submit --member` of the best member gives."""
    for i, r in enumerate(rows):
        if r.kind == "best_single" and not r.postprocess:
            return i
    raise ValueError("the table has no plain best_single row")


def judge(
    rows: list[Candidate], y: np.ndarray, fold: np.ndarray, codes: np.ndarray, metric: str, sel: SelectionSpec
) -> Judgement:
    """Compare every row with a paired group bootstrap of its pooled nested predictions, pick by `sel.rule`,
    and estimate the whole procedure (the pick included) by running the rule inside each outer fold."""
    preds = [r.nested_oof for r in rows]
    comp = [r.complexity for r in rows]
    base = baseline_row(rows)
    rs = Resampler.make(codes, sel.resamples, sel.seed)
    bs = BootstrapScorer(metric, y, preds[0].shape[1], rs)
    cmp = compare(bs, preds, comp, base)
    per_fold = fold_comparisons(metric, y, preds, comp, base, fold, rs, sel.seed)
    aware = selection_aware(bs, preds, fold, per_fold, sel.rule, sel.confidence, sel.level)
    winners = select(cmp, sel.rule, sel.confidence)
    _, b = cmp.gain()
    one = winners[0] if len(winners) == 1 else None  # a single row's scores are in the comparison already
    pick_oof = average(preds, winners)
    boot = cmp.boot[one] if one is not None else bs.scores(pick_oof)
    a = (1 - sel.level) / 2
    lo, hi = np.quantile(boot, [a, 1 - a])
    return Judgement(
        winners=winners,
        pick_oof=pick_oof,
        pick_score=float(cmp.point[one]) if one is not None else bs.point(pick_oof),
        pick_interval=(float(lo), float(hi)),
        pick_p_beats_single=float((cmp.sign * boot > b[base]).mean()),
        max_nested=select(cmp, "max_nested", sel.confidence)[0],
        baseline=base,
        comparison=cmp,
        intervals=cmp.interval(sel.level),
        p_beats_single=cmp.p_beats(base),
        aware=aware,
        n_groups=rs.n_groups,
    )


def describe(rows: list[Candidate], j: Judgement) -> list[dict[str, Any]]:
    return [
        {
            "blender": r.label,
            "complexity": r.complexity,
            "insample": r.insample,
            "nested": r.nested,
            "nested_lo": float(j.intervals[i, 0]),
            "nested_hi": float(j.intervals[i, 1]),
            "p_beats_single": float(j.p_beats_single[i]),
            "overstatement": r.overstatement,
            "seconds": r.seconds,
            "picked": i in j.winners,
        }
        for i, r in enumerate(rows)
    ]
