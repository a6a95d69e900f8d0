"""A member's fold models over decoded images: the same prediction code `kit train` ran on the test set.

A `MemberPlan` says everything needed without a workspace: the kind, the preprocessing, the batch size of the
train-time test pass, and one weights file per fold. What differs by kind (how a fold model is built, loaded and
run, and what a bundle holds for it) is the kind's predictor (kit.predict.kinds); fold models load one at a
time, and fold logits are averaged as the fold loop does (kit.train.fold_loop.assemble). On the CPU, with the
train-time batch size and views, the logits equal the member's test_logits.npy bit for bit.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import KitError
from kit.predict.kinds import predictor_of
from kit.progress import NullReporter, Reporter

if TYPE_CHECKING:
    from kit.predict.kinds import MemberPredictor
    from kit.workspace import Workspace


@dataclass
class MemberPlan:
    name: str
    kind: str  # a member kind (kit.config.schema.MEMBER_KINDS); kit.predict.kinds.KIND runs it
    classes: list[str]
    views: list[str]  # the member's TTA views, in the order of its artifacts
    size: int  # images are decoded to size x size ...
    resample: str  # ... with this PIL filter (the model's interpolation)
    batch_size: int  # the train-time test pass's batch size (kept for bit-equal logits)
    folds: list[Path]  # one weights file per fold: the kind's weights_file (workspace) or fold{f}.safetensors
    model: dict[str, Any] = field(default_factory=dict)  # timm: model, model_kwargs, mean, std; clip: source
    amp: bool = True
    channels_last: bool = True
    resize: str = "squash"  # stored as training stored them (kit.data.cache.Geometry) at cache_size ...
    cache_size: int | None = None  # ... then centre-cropped to size; None: decoded straight to size
    source: str = ""  # where the plan was read, for messages ("bundle B: members/NAME/member.json")
    fix: str = ""  # what to do when its files cannot be used

    @property
    def where(self) -> str:
        return self.source or f"member '{self.name}'"

    @property
    def remedy(self) -> str:
        return self.fix or f"run `kit train {self.name}` again"

    @property
    def predictor(self) -> MemberPredictor:
        return predictor_of(self.kind, self.name)

    def to_json(self, base: Path) -> dict[str, Any]:
        d = asdict(self)
        d["folds"] = [p.relative_to(base).as_posix() for p in self.folds]
        del d["source"], d["fix"]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], base: Path) -> MemberPlan:
        """The plan of a bundle's member.json (checked: kit.predict.bundle_schema), its files inside `base`."""
        d = dict(d)
        d["folds"] = [base / p for p in d["folds"]]
        d["model"] = predictor_of(d["kind"], d["name"]).from_bundle(dict(d.get("model") or {}), base)
        return cls(**d)


def load_fold(plan: MemberPlan, path: Path) -> dict[str, Any]:
    """A fold's weights: the kind's own file in a run folder (a timm state dict, a head's float32 arrays), else
    safetensors. Every file kit export writes is safetensors: a file it cannot parse is a KitError, not a
    traceback."""
    if path.suffix != ".safetensors":
        return plan.predictor.read_weights(path)
    from safetensors.torch import load_file

    try:
        return dict(load_file(str(path)))
    except KitError:
        raise
    except Exception as e:  # safetensors raises its own error type for a damaged header or body
        raise KitError(f"{path}: not a readable safetensors file ({str(e)[:200]})") from None


def fold_weights(plan: MemberPlan, f: int, path: Path) -> dict[str, Any]:
    """Fold f's weights, or a KitError naming the plan's file, the fold and the fix."""
    try:
        return load_fold(plan, path)
    except KitError as e:
        raise KitError(f"{plan.where}: folds.{f}: {e}; {plan.remedy}") from None


def run_member(
    plan: MemberPlan,
    images: np.ndarray,
    views: list[str],
    *,
    device: str = "auto",
    reporter: Reporter | None = None,
) -> np.ndarray:
    """float32 logits [n, len(views), C]: the mean over the member's fold models."""
    outs = plan.predictor.fold_logits(plan, images, views, device, reporter or NullReporter())
    return np.mean(outs, axis=0).astype(np.float32)


# ---------------------------------------------------------------- plans from a workspace


def workspace_plan(ws: Workspace, name: str, meta: dict[str, Any]) -> tuple[MemberPlan | None, list[str]]:
    """The plan of a trained member from its meta.json and run folder, or the problems that prevent it."""
    try:
        predictor = predictor_of(meta.get("kind"), name)
    except KitError as e:
        return None, [str(e)]
    run = meta.get("run") or {}
    root = ws.workdir / "runs" / name / str(run.get("hash"))
    fix = f"run `kit train {name}` again"
    if not (root / "run.json").is_file():
        return None, [f"member '{name}': its run folder {root} is gone, so its fold models are too; {fix}"]
    mcfg = dict((meta.get("config") or {}).get("member") or {})
    ran = json.loads((root / "run.json").read_text("utf-8")).get("config")
    if ran != {k: v for k, v in mcfg.items() if k != "name"}:
        return None, [
            f"member '{name}': its artifacts no longer match their run {root} (another config); {fix}"
        ]
    folds = [root / f"fold{f}" / predictor.weights_file for f in range(ws.folds.k)]
    problems = [
        f"member '{name}' fold {f}: {p} is missing; rebuild it with `rm -r {p.parent}` then `kit train {name}` "
        "(and `kit blend` again for blends using it)"
        for f, p in enumerate(folds)
        if not p.is_file()
    ]
    if problems:
        return None, problems
    return predictor.workspace_plan(ws, name, meta, mcfg, folds), []
