"""The blend winner (or one member) as plain data, and applying it to new members' logits.

A recipe is what winner.json records of the fitted winner: the candidates in their order (member, views,
temperature, weight), the blending space, the stack's coefficients, and the fitted post-processing. `apply`
rebuilds the fitted objects of kit.blend (Stack, Chain and its steps: their own `from_params`) from it and
runs the very code `kit blend` ran on the test logits, so the result equals test_probs.npy bit for bit when
the member logits are equal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import KitError
from kit.submit.write import POOLED_OOF, blend_cv

if TYPE_CHECKING:
    from kit.artifacts.blend import RowRecord, Winner

Logits = dict[str, tuple[list[str], np.ndarray]]  # member -> (views, float32 logits [n, V, C])


def blend_recipe(winner: Winner) -> dict[str, Any]:
    """The winner as a recipe; an average of rows (selection rule average_1se) is a recipe with `parts`, one
    per averaged row, whose probabilities are averaged."""
    recipe = _row_recipe(winner, winner.pick)
    if winner.rows:
        recipe["parts"] = [_row_recipe(winner, row) for row in winner.rows]
    return recipe


def _row_recipe(winner: Winner, row: RowRecord) -> dict[str, Any]:
    if row.blender_kind == "stack" and row.stack is None:
        raise KitError(
            f"blend '{winner.name}': winner.json lacks the stack's coefficients; run `kit blend` again"
        )
    cv, _, score_kind = blend_cv(winner)
    return {
        "kind": "blend",
        "name": winner.name,
        "classes": list(winner.classes),
        "metric": winner.metric,
        "space": winner.space,
        "blender": row.blender,
        "blender_kind": row.blender_kind,
        "candidates": [
            {
                "name": n,
                "member": c.member,
                "views": list(c.views),
                "temperature": c.temperature,
                "weight": float(row.weights.get(n, 0.0)),
            }
            for n, c in winner.candidates.items()
        ],
        "stack": row.stack,
        "postprocess": row.postprocess,
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
    from kit.blend.blenders import Stack, combine
    from kit.blend.candidates import mean_logits, to_space
    from kit.blend.postprocess import Chain
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
        cols.append(to_space(mean_logits(arr, views, tuple(c["views"])), float(c["temperature"]), space))
    P = np.stack(cols, axis=1)
    if recipe["blender_kind"] == "stack":
        metric = recipe.get("metric") or "weighted_f1"
        q = Stack.from_params(recipe["stack"], metric, recipe["space"], C).predict(P)
    else:
        q = combine(
            P, np.array([c["weight"] for c in recipe["candidates"]], dtype=np.float64), recipe["space"]
        )
    return np.asarray(Chain.from_params(recipe["postprocess"]).transform(q))
