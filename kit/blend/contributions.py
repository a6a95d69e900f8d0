"""What each member contributes to a blend's winner, measured: the winner's in-sample score without it.

A stack's coefficient shares are not weights of a mixture (a member with no skill can hold a large share), so
the one number comparable across blenders is what the fitted winner loses when the member is left out: a
weighted average rescales the other candidates' weights, a stack is refit at its chosen C on the other
members' candidates, and the fitted post-processing is kept. Pure array code over the fitted rows; reporting
only, the winner and its predictions are not changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kit.blend.blenders import combine
from kit.blend.nested import Candidate
from kit.metrics.scores import greater_is_better, score


@dataclass(frozen=True)
class Contribution:
    """One member of a blend (BlendResult.contributions, winner.json `contributions`)."""

    member: str
    alone: float  # the pooled OOF score of the member's best candidate, as the blend sees it
    weight: (
        float | None
    )  # its mixture weight in the winner (mean over averaged rows); None when a stack is in it
    without: float | None  # the winner's in-sample score with the member left out; None when nothing is left
    gain: float | None  # how much better the winner's score is with it (metric units; negative: it hurts)


MEANING = (
    "alone: the member's best candidate's pooled OOF score; weight: its mixture weight in the winner (mean "
    "over averaged rows; null when a stack is among them: coefficient shares are not mixture weights); "
    "without: the winner's in-sample score (fitted and scored on all OOF rows) with the member left out (a "
    "weighted average rescales the other weights, a stack is refit at its C, fitted post-processing kept; null "
    "when nothing is left); gain: how much better the winner scores with it, in metric units"
)


def _without(
    row: Candidate, P: np.ndarray, y: np.ndarray, keep: np.ndarray, refits: dict[Any, np.ndarray]
) -> np.ndarray | None:
    """The row's in-sample predictions with the candidates outside `keep` left out; None when none is left.
    `refits` holds a stack's refit predictions: the rows of one blender (its post-processing variants) share
    one fitted blender, so one refit per member."""
    b: Any = row.blender
    if row.kind == "stack":
        if not keep.any():
            return None
        key = (id(b), keep.tobytes())
        if key not in refits:
            refit = type(b)(b.metric, b.space, C=b.C_, features=b.features, max_iter=b.max_iter)
            refits[key] = refit.fit(P[:, keep], y).predict(P[:, keep])
        return row.chain.transform(refits[key])
    w = np.where(keep, np.asarray(b.weights_, dtype=np.float64), 0.0)
    if w.sum() <= 0:
        return None
    if np.array_equal(w, b.weights_):  # the member had no weight here: the row is unchanged
        return row.insample_oof
    return row.chain.transform(combine(P, w / w.sum(), b.space))


def contributions(
    picked: list[Candidate],
    P: np.ndarray,
    y: np.ndarray,
    candidate_members: list[str],
    single_scores: list[float],
    metric: str,
    insample: float,
) -> list[Contribution]:
    """Per member (in candidate order): its best candidate's score, its mixture weight and what the winner (the
    mean of the `picked` rows' predictions, in-sample score `insample`) loses without it. A row made of that
    member alone drops out of the mean."""
    sign = 1.0 if greater_is_better(metric) else -1.0
    owner = np.asarray(candidate_members)
    mixture = all(r.kind != "stack" for r in picked)
    out: list[Contribution] = []
    refits: dict[Any, np.ndarray] = {}
    for m in dict.fromkeys(candidate_members):
        mine = owner == m
        alone = max((single_scores[i] for i in np.flatnonzero(mine)), key=lambda s: sign * s)
        weight = (
            float(np.mean([np.asarray(r.blender.weights_)[mine].sum() for r in picked])) if mixture else None
        )
        preds = [q for r in picked if (q := _without(r, P, y, ~mine, refits)) is not None]
        without = score(metric, y, np.mean(preds, axis=0), logits=False) if preds else None
        gain = None if without is None else sign * (insample - without)
        out.append(Contribution(member=m, alone=float(alone), weight=weight, without=without, gain=gain))
    return out
