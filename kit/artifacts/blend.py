"""The blend artifact contract: workdir/blends/NAME/ written by `kit blend`, read by `kit submit`, `kit predict`
and pseudo-labels.

oof_probs.npy    float32 [n_train, C]  the winner's pooled nested-CV predictions (each row from a blend
                                       fitted without its fold; scoring it gives `nested_score`)
test_probs.npy   float32 [n_test, C]   the winner refitted on all OOF rows, applied to the test logits
winner.json      name, metric, blender, members, views, weights, postprocess, scores, classes, fingerprints
table.csv        per blender: insample, nested, overstatement, seconds
per_class_f1.csv best single candidate vs the blend, per class
spec.yaml        the ensemble spec as resolved
report.png       weights, per-class F1, confusion matrix
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts.fingerprints import Fingerprints
from kit.artifacts.member import Expected, artifact_id, config_changes, read_meta, stale_use
from kit.artifacts.names import plain_name
from kit.errors import KitError

OOF_FILE = "oof_probs.npy"
TEST_FILE = "test_probs.npy"
WINNER_FILE = "winner.json"


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _interval(v: Any) -> list[float] | None:
    return [float(v[0]), float(v[1])] if isinstance(v, (list, tuple)) and len(v) == 2 else None


@dataclass(frozen=True)
class CandidateRecord:
    """One blend input: a member's mean over `views` at `temperature`."""

    member: str
    views: list[str]
    temperature: float

    def to_json(self) -> dict[str, Any]:
        return {"member": self.member, "views": list(self.views), "temperature": self.temperature}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CandidateRecord:
        return cls(str(d["member"]), [str(v) for v in d["views"]], float(d.get("temperature", 1.0)))


@dataclass(frozen=True)
class RowRecord:
    """One fitted row of the table: its blender, weights, stack coefficients and fitted post-processing (what
    `kit predict` needs to apply it)."""

    blender: str
    blender_kind: str
    row: str
    weights: dict[str, float]  # candidate -> weight (non-zero only)
    weights_meaning: str
    postprocess: dict[str, Any]  # step -> its fitted parameters (Chain.fitted_params)
    nested_score: float | None = None
    fold_weights: list[list[float]] = field(default_factory=list)
    stack: dict[str, Any] | None = None  # the stack's fitted_params (Stack or MultilabelStack)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "blender": self.blender,
            "blender_kind": self.blender_kind,
            "row": self.row,
            "weights": dict(self.weights),
            "weights_meaning": self.weights_meaning,
            "postprocess": self.postprocess,
            "nested_score": self.nested_score,
            "fold_weights": self.fold_weights,
        }
        return out | ({"stack": self.stack} if self.stack is not None else {})

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RowRecord:
        return cls(
            blender=str(d.get("blender")),
            blender_kind=str(d.get("blender_kind")),
            row=str(d.get("row", d.get("blender"))),
            weights={str(k): float(v) for k, v in (d.get("weights") or {}).items()},
            weights_meaning=str(d.get("weights_meaning", "")),
            postprocess=dict(d.get("postprocess") or {}),
            nested_score=_float(d.get("nested_score")),
            fold_weights=list(d.get("fold_weights") or []),
            stack=d.get("stack"),
        )


@dataclass(frozen=True)
class Winner:
    """winner.json: the picked row (`pick`; an average of rows has blender_kind 'average' and the averaged rows
    in `rows`), its candidates, its scores and the selection evidence, and what the blend was made from.

    `to_json` writes the documented layout (docs/blend.md); `from_json` reads it, also from older kits (a key
    they did not write is None). `report` keeps the keys that are for reading only (contributions, best
    single, timings)."""

    name: str
    metric: str
    space: str
    classes: list[str]
    candidates: dict[str, CandidateRecord]
    pick: RowRecord
    rows: list[RowRecord] | None
    members: list[str]
    views: dict[str, list[str]]
    nested_score: float | None
    nested_interval: list[float] | None  # [lo, hi]
    selection_aware_score: float | None
    selection_aware_interval: list[float] | None
    insample_score: float | None
    selection: dict[str, Any]
    fingerprints: Fingerprints
    member_artifacts: dict[str, str] | None
    report: dict[str, Any] = field(default_factory=dict)

    REPORT_KEYS = (
        "contributions",
        "contributions_meaning",
        "overstatement",
        "best_single",
        "created",
        "seconds",
    )

    def to_json(self) -> dict[str, Any]:
        pick = self.pick.to_json()
        out: dict[str, Any] = {
            "name": self.name,
            "metric": self.metric,
            **{k: pick[k] for k in ("blender", "blender_kind", "row")},
            "space": self.space,
            "members": list(self.members),
            "views": self.views,
            **{k: pick[k] for k in ("weights", "weights_meaning")},
            **{k: self.report[k] for k in ("contributions", "contributions_meaning") if k in self.report},
            "candidates": {n: c.to_json() for n, c in self.candidates.items()},
            "postprocess": pick["postprocess"],
            "nested_score": self.nested_score,
            "nested_interval": self.nested_interval,
            "selection_aware_score": self.selection_aware_score,
            "selection_aware_interval": self.selection_aware_interval,
            "insample_score": self.insample_score,
            **{k: self.report[k] for k in ("overstatement", "best_single") if k in self.report},
            "selection": self.selection,
            "fold_weights": pick["fold_weights"],
            **({"stack": pick["stack"]} if "stack" in pick else {}),
            **({"rows": [r.to_json() for r in self.rows]} if self.rows is not None else {}),
            "classes": list(self.classes),
            **self.fingerprints.to_json(),
            **({"member_artifacts": self.member_artifacts} if self.member_artifacts is not None else {}),
            **{k: self.report[k] for k in ("created", "seconds") if k in self.report},
        }
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Winner:
        rows = d.get("rows")
        return cls(
            name=str(d.get("name")),
            metric=str(d.get("metric")),
            space=str(d.get("space", "probs")),
            classes=[str(c) for c in d.get("classes", [])],
            candidates={str(n): CandidateRecord.from_json(c) for n, c in (d.get("candidates") or {}).items()},
            pick=RowRecord.from_json(d),
            rows=[RowRecord.from_json(r) for r in rows] if rows else None,
            members=[str(m) for m in d.get("members") or []],
            views={str(m): list(v) for m, v in (d.get("views") or {}).items()},
            nested_score=_float(d.get("nested_score")),
            nested_interval=_interval(d.get("nested_interval")),
            selection_aware_score=_float(d.get("selection_aware_score")),
            selection_aware_interval=_interval(d.get("selection_aware_interval")),
            insample_score=_float(d.get("insample_score")),
            selection=dict(d.get("selection") or {}),
            fingerprints=Fingerprints.from_json(d),
            member_artifacts=dict(d["member_artifacts"])
            if isinstance(d.get("member_artifacts"), dict)
            else None,
            report={k: d[k] for k in cls.REPORT_KEYS if k in d},
        )


@dataclass
class BlendResult:
    name: str
    oof_probs: np.ndarray
    test_probs: np.ndarray
    winner: Winner

    @property
    def classes(self) -> list[str]:
        return list(self.winner.classes)


def blends_dir(workdir: Path) -> Path:
    return workdir / "blends"


def blend_dir(workdir: Path, name: str) -> Path:
    """workdir/blends/NAME; NAME must be a plain name (`ensembles/..yaml` must never mean workdir/blends)."""
    return blends_dir(workdir) / plain_name(name, "blend")


def list_blends(workdir: Path) -> list[str]:
    root = blends_dir(workdir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / WINNER_FILE).exists() and not p.name.startswith("."))


def load_blend(workdir: Path, name: str, expected: Expected | None = None) -> BlendResult:
    """Load a blend and refuse it when it does not fit the current config (classes, ids, folds)."""
    d = blend_dir(workdir, name)
    fix = f"run `kit blend ensembles/{name}.yaml`"
    if not (d / WINNER_FILE).exists():
        have = list_blends(workdir)
        raise KitError(
            f"blend '{name}' not found in {d}; {fix}" + (f" (blends here: {have})" if have else "")
        )
    try:
        winner = Winner.from_json(json.loads((d / WINNER_FILE).read_text("utf-8")))
        oof = np.load(d / OOF_FILE)
        test = np.load(d / TEST_FILE)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise KitError(f"blend '{name}' in {d} is unreadable ({e}); {fix} again") from None
    problems = []
    remedy = f"{fix} again"
    C = len(winner.classes)
    for which, arr in (("OOF", oof), ("test", test)):
        if arr.ndim != 2 or arr.shape[1] != C:
            problems.append(f"{which} probabilities have shape {arr.shape}, expected [n, {C}]")
        elif not np.isfinite(arr).all():
            problems.append(f"{which} probabilities contain NaN or inf")
    if expected is not None:
        if winner.classes != list(expected.classes):
            problems.append(
                f"class order {winner.classes[:5]}... differs from the config's {list(expected.classes)[:5]}..."
            )
        problems += winner.fingerprints.problems(expected.fingerprints, "the blend")
        data = winner.fingerprints.content_changes(expected.fingerprints, "the blend")
        members = dict(winner.member_artifacts or {})
        if winner.member_artifacts is None:
            problems.append(
                "it does not record which member artifacts it was made from (an older kit made it)"
            )
        changes = []
        for m, made_from in members.items():
            now = artifact_id(workdir, m)  # the same training keeps its identity (kit.artifacts.member)
            if not now:
                problems.append(f"member '{m}' has no artifacts any more (removed after the blend was made)")
            elif now != made_from:
                problems.append(f"member '{m}' was retrained after the blend was made")
            else:
                changes += config_changes(m, read_meta(workdir, m), expected)
        if data:
            remedy = f"retrain its members (`kit train {' '.join(members)}`), then run `kit blend ensembles/{name}.yaml`"
        changed = stale_use("blend", name, changes, expected)
        if changed and not problems:
            remedy = (
                f"retrain the members named and run `kit blend ensembles/{name}.yaml`, or pass --allow-stale"
            )
        problems += changed
    if problems:
        raise KitError(f"blend '{name}' ({d}) cannot be used; {remedy}:", problems=problems)
    return BlendResult(name=name, oof_probs=oof, test_probs=test, winner=winner)
