"""The blend winner (or one member) as plain data, and applying it to new members' logits.

A recipe is what winner.json records of the fitted winner: the candidates in their order (member, views,
temperature, weight), the blending space, the stack's coefficients, and the fitted post-processing. `apply`
rebuilds the fitted objects of kit.blend (Stack, LogitAdjust, ClassBias, OrdinalThresholds, Chain) from it and
runs the very code `kit blend` ran on the test logits, so the result equals test_probs.npy bit for bit when
the member logits are equal.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kit.errors import KitError
from kit.submit.write import POOLED_OOF, blend_cv

Logits = dict[str, tuple[list[str], np.ndarray]]  # member -> (views, float32 logits [n, V, C])


def blend_recipe(winner: dict[str, Any]) -> dict[str, Any]:
    """The winner as a recipe; an average of rows (selection rule average_1se) is a recipe with `parts`, one
    per averaged row, whose probabilities are averaged."""
    if winner.get("rows"):
        parts = [blend_recipe({**winner, **row, "rows": None}) for row in winner["rows"]]
        return {**_blend_fields(winner), "parts": parts}
    return _blend_fields(winner)


def _blend_fields(winner: dict[str, Any]) -> dict[str, Any]:
    weights = winner.get("weights") or {}
    kind = winner.get("blender_kind")
    if kind == "stack" and "stack" not in winner:
        raise KitError(
            f"blend '{winner.get('name')}': winner.json lacks the stack's coefficients; run `kit blend` again"
        )
    cv, _, score_kind = blend_cv(winner)
    return {
        "kind": "blend",
        "name": winner["name"],
        "classes": list(winner["classes"]),
        "metric": winner.get("metric"),
        "space": winner.get("space", "probs"),
        "blender": winner.get("blender"),
        "blender_kind": kind,
        "candidates": [
            {
                "name": n,
                "member": c["member"],
                "views": list(c["views"]),
                "temperature": c["temperature"],
                "weight": float(weights.get(n, 0.0)),
            }
            for n, c in winner["candidates"].items()
        ],
        "stack": winner.get("stack"),
        "postprocess": winner.get("postprocess") or {},
        "cv_score": cv,  # as `kit submit` shows it (kit.submit.write.blend_cv)
        "score_kind": score_kind,
    }


def member_recipe(name: str, classes: list[str], views: list[str], cv_score: float | None) -> dict[str, Any]:
    return {
        "kind": "member",
        "name": name,
        "classes": list(classes),
        "views": list(views),
        "cv_score": cv_score,
        "score_kind": POOLED_OOF,
    }


def reads(part: dict[str, Any], candidate: dict[str, Any]) -> bool:
    """Whether a blend row (`part`, without parts of its own) reads `candidate`: a stack reads every input, a
    weighted average those of positive weight."""
    return part["blender_kind"] == "stack" or candidate["weight"] > 0


def _used(recipe: dict[str, Any]) -> list[dict[str, Any]]:
    cands = recipe["candidates"]
    if recipe.get("parts"):
        names = {c["name"] for part in recipe["parts"] for c in _used(part)}
        return [c for c in cands if c["name"] in names]
    return [c for c in cands if reads(recipe, c)]


def needed_views(recipe: dict[str, Any], member_views: dict[str, list[str]]) -> dict[str, list[str]]:
    """member -> the views the recipe reads (in the member's view order); members it does not read are absent."""
    if recipe["kind"] == "member":
        return {recipe["name"]: list(member_views[recipe["name"]])}
    want: dict[str, set[str]] = {}
    for c in _used(recipe):
        want.setdefault(c["member"], set()).update(c["views"])
    return {m: [v for v in member_views[m] if v in vs] for m, vs in want.items()}


def _chain(params: dict[str, Any]) -> Any:
    from kit.blend.postprocess import Chain, ClassBias, LogitAdjust, OrdinalThresholds, Step

    steps: list[tuple[str, Step]] = []
    for name, p in params.items():
        if name == "logit_adjust":
            la = LogitAdjust()
            la.prior_, la.tau_ = np.asarray(p["prior"], dtype=np.float64), float(p["tau"])
            la.offsets_ = -la.tau_ * np.log(la.prior_)  # as LogitAdjust.fit computes it
            steps.append((name, la))
        elif name == "class_bias":
            cb = ClassBias()
            cb.offsets_ = np.asarray(p["offsets"], dtype=np.float64)
            steps.append((name, cb))
        elif name == "ordinal_thresholds":
            ot = OrdinalThresholds()
            ot.cuts_ = np.asarray(p["cuts"], dtype=np.float64)
            steps.append((name, ot))
        else:
            raise KitError(
                f"unknown post-processing step '{name}' in the blend recipe; this kit is too old for it"
            )
    return Chain(steps)


def _stack(recipe: dict[str, Any]) -> Any:
    from kit.blend.blenders import Stack
    from kit.blend.logreg import Multinomial

    p = recipe["stack"]
    dtype = np.dtype(p.get("dtype", "float32"))
    st = Stack(recipe.get("metric") or "weighted_f1", recipe["space"], C=p["C"], features=p["features"])
    st.model_ = Multinomial(
        np.asarray(p["coef"], dtype=dtype),
        np.asarray(p["intercept"], dtype=dtype),
        np.asarray(p["classes_seen"], dtype=np.int64),
    )
    st.n_classes_ = len(recipe["classes"])
    return st


def apply(recipe: dict[str, Any], logits: Logits) -> np.ndarray:
    """Probabilities [n, C]: a member's mean over views of softmax (as `kit submit --member`), or the blend
    winner's test-time computation (float32, as test_probs.npy)."""
    if recipe["kind"] == "member":
        from kit.metrics.scores import mean_view_probs

        views, arr = logits[recipe["name"]]
        return mean_view_probs(arr[:, [views.index(v) for v in recipe["views"]]])

    if recipe.get("parts"):  # an average of rows: the mean of their probabilities, as `kit blend` takes it
        return np.asarray(
            np.mean([_blend(part, logits) for part in recipe["parts"]], axis=0), dtype=np.float32
        )
    return np.asarray(_blend(recipe, logits), dtype=np.float32)


def _blend(recipe: dict[str, Any], logits: Logits) -> np.ndarray:
    """One row's probabilities: candidates in the blending space, the blender, the post-processing chain."""
    from kit.artifacts.member import MemberArtifact
    from kit.blend.blenders import combine
    from kit.blend.candidates import _mean_logits, _to_space
    from kit.blend.space import as_space

    space = as_space(recipe["space"])
    used = {c["name"] for c in _used(recipe)}
    n = next(iter(logits.values()))[1].shape[0] if logits else 0
    C = len(recipe["classes"])
    cols = []
    for c in recipe["candidates"]:
        if c["name"] not in used:  # weight 0: its column adds exactly 0 to the blend, as at train time
            cols.append(np.zeros((n, C), np.float32))
            continue
        views, arr = logits[c["member"]]
        art = MemberArtifact(c["member"], oof=arr[:0], test=arr, views=views, classes=recipe["classes"])
        cols.append(_to_space(_mean_logits(arr, art, tuple(c["views"])), float(c["temperature"]), space))
    P = np.stack(cols, axis=1)
    if recipe["blender_kind"] == "stack":
        q = _stack(recipe).predict(P)
    else:
        q = combine(
            P, np.array([c["weight"] for c in recipe["candidates"]], dtype=np.float64), recipe["space"]
        )
    return np.asarray(_chain(recipe["postprocess"]).transform(q))
