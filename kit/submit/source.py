"""Where a submission's test probabilities come from: a blend (`kit blend`) or one member (`kit train`).

Both give probabilities [n_test, C] in the workspace's test-table order and class order, plus the
cross-validated score a competitor should pick final submissions by (never the public leaderboard): a blend's
selection-aware estimate (the winner's own nested score is optimistic: it was picked by it), a member's pooled
OOF score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts.member import load_member
from kit.artifacts.names import plain_name
from kit.metrics.multilabel import sigmoid
from kit.metrics.scores import mean_view_probs, score, softmax
from kit.submit.write import POOLED_OOF, SELECTION_AWARE, blend_cv
from kit.workspace import Workspace


@dataclass
class Source:
    kind: str  # "blend" | "member"
    name: str
    test_probs: np.ndarray  # [n_test, C], rows sum to 1
    metric: str
    cv_score: float | None
    score_kind: str  # what cv_score estimates: kit.submit.write.SELECTION_AWARE, POOLED_OOF or WINNER_NESTED
    details: dict[str, Any] = field(default_factory=dict)
    cv_interval: list[float] | None = None  # group-bootstrap interval of cv_score


def _dig(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _number(v: Any, prefer: tuple[str, ...] = ("tta", "mean", "plain")) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, dict):
        for k in prefer:
            if isinstance(v.get(k), (int, float)):
                return float(v[k])
    return None


def member_meta_score(meta: dict[str, Any], metric: str) -> tuple[float | None, str]:
    """The pooled OOF score the trainer recorded; tolerant of how meta.json nests it."""
    metrics = meta.get("metrics") or {}
    for keys in (("pooled", metric), ("oof", metric), ("pooled",), (metric,)):
        v = _number(_dig(metrics, *keys))
        if v is not None:
            return v, "metrics." + ".".join(keys)
    return None, ""


def member_source(ws: Workspace, name: str, *, allow_stale: bool = False) -> Source:
    art = load_member(ws.workdir, name, ws.expected(allow_stale=allow_stale))
    metric = ws.cfg.competition.scored_by
    ml = ws.train.multilabel
    test = mean_view_probs(np.asarray(art.test), ml)
    oof = mean_view_probs(np.asarray(art.oof), ml)
    assert ws.train.labels is not None
    submitted = score(metric, ws.train.labels, oof, logits=False)
    recorded, key = member_meta_score(art.meta, metric)
    cv = recorded if recorded is not None else submitted
    from kit.blend.selection import score_interval

    plain, lo, hi = score_interval(
        metric,
        ws.train.labels,
        (sigmoid if ml else softmax)(np.asarray(art.oof[:, 0, :], np.float64)),
        ws.train.groups,
    )
    return Source(
        kind="member",
        name=name,
        test_probs=test,
        metric=metric,
        cv_score=cv,
        cv_interval=[lo, hi],
        score_kind=POOLED_OOF,
        details={
            "path": str(art.path),
            "score_from": f"meta.json {key}" if recorded is not None else "computed from oof_logits.npy",
            "views": art.views,
            "oof_score_of_submitted_probs": submitted,
            "cv_interval_of": f"plain-view pooled OOF {metric} {plain:.6f}, 95% group bootstrap (1000 resamples)",
            "probabilities": f"mean over views of {'sigmoid' if ml else 'softmax'}(logits)",
        },
    )


def blend_name(ensemble: str | Path) -> str:
    """`ensembles/all.yaml` -> 'all'; a bare name stays as it is. Either way a plain name, never a path."""
    p = Path(ensemble)
    return plain_name(p.stem if p.suffix.lower() in (".yaml", ".yml") else str(ensemble), "blend")


def blend_source(ws: Workspace, name: str, *, allow_stale: bool = False) -> Source:
    from kit.artifacts.blend import blend_dir, load_blend

    res = load_blend(ws.workdir, name, ws.expected(allow_stale=allow_stale))
    test, winner, path = np.asarray(res.test_probs), res.winner, blend_dir(ws.workdir, name)
    nested, aware = winner.nested_score, winner.selection_aware_score
    cv, interval, kind = blend_cv(winner)
    frm = "selection_aware" if kind == SELECTION_AWARE else "nested"
    return Source(
        kind="blend",
        name=name,
        test_probs=np.asarray(test, dtype=np.float64),
        metric=winner.metric,
        cv_score=cv,
        cv_interval=interval,
        score_kind=kind,
        details={
            "score_from": f"winner.json {frm}_score"
            + ("" if aware is not None else " (run `kit blend` again for the selection-aware estimate)"),
            "path": str(path),
            "blender": winner.pick.blender,
            "members": winner.members,
            "nested_score": nested,
            "nested_interval": winner.nested_interval,
            "nested_score_is": "the winner's own nested CV estimate: optimistic, the winner was picked by it",
            "insample_score": winner.insample_score,
            "selection_rule": winner.selection.get("rule"),
            "selection_aware_score": aware,
            "selection_aware_interval": winner.selection_aware_interval,
            **({"postprocess": winner.pick.postprocess} if ws.train.multilabel else {}),
        },
    )
