"""The blend output contract: workdir/blends/NAME/ written by `kit blend`, read by `kit submit`.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts.member import Expected, artifact_id, config_changes, data_changes, read_meta, stale_use
from kit.artifacts.names import plain_name
from kit.errors import KitError

OOF_FILE = "oof_probs.npy"
TEST_FILE = "test_probs.npy"
WINNER_FILE = "winner.json"


@dataclass
class BlendResult:
    name: str
    oof_probs: np.ndarray
    test_probs: np.ndarray
    winner: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.winner["classes"])


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
        winner = json.loads((d / WINNER_FILE).read_text("utf-8"))
        oof = np.load(d / OOF_FILE)
        test = np.load(d / TEST_FILE)
    except (OSError, ValueError) as e:
        raise KitError(f"blend '{name}' in {d} is unreadable ({e}); {fix} again") from None
    problems = []
    remedy = f"{fix} again"
    C = len(winner.get("classes", []))
    for which, arr in (("OOF", oof), ("test", test)):
        if arr.ndim != 2 or arr.shape[1] != C:
            problems.append(f"{which} probabilities have shape {arr.shape}, expected [n, {C}]")
        elif not np.isfinite(arr).all():
            problems.append(f"{which} probabilities contain NaN or inf")
    if expected is not None:
        if list(winner["classes"]) != list(expected.classes):
            problems.append(
                f"class order {winner['classes'][:5]}... differs from the config's {list(expected.classes)[:5]}..."
            )
        if winner["train_ids_fingerprint"] != expected.train_ids_fingerprint:
            problems.append("its train ids differ from the current train table")
        if winner["folds_fingerprint"] != expected.folds_fingerprint:
            problems.append("its folds differ from the current folds")
        if (
            expected.test_ids_fingerprint is not None
            and winner.get("test_ids_fingerprint") != expected.test_ids_fingerprint
        ):
            problems.append("its test ids differ from the current test table")
        data = data_changes(winner, expected, "the blend")
        problems += data
        members = dict(winner.get("member_artifacts") or {})
        if "member_artifacts" not in winner:
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
