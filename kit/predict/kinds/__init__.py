"""Member kinds on the prediction side: the protocol a kind implements for `kit predict` and `kit export`, and
the registry of kinds.

A kind's predictor is a class in `kit.predict.kinds.KIND` (named after the config's `kind:` value, as its trainer
is `kit.train.kinds.KIND`) decorated with `@register_predictor(KIND)`. kit.predict owns what every kind shares
(the `MemberPlan`, decoding images once per geometry, averaging the folds, the bundle's manifest and checks); the
kind supplies

    weights_file, read_weights(path)         a fold's weights in the member's run folder, and reading them
    workspace_plan(ws, name, meta, member, folds)  the plan of a trained member (preprocessing, batch size, model)
    fold_logits(plan, images, views, ...)    each fold model's logits on the decoded images
    export(plan, folder, half)               a bundle's files beyond the fold weights; member.json's "model"
    bundle_model, check_member_file(m)       what member.json's "model" may hold; checks across its keys
    bundle_folders(model), from_bundle(...)  the model folders a library reads; the plan's model from member.json

The known kinds are the config's (kit.config.schema.MEMBER_KINDS): every kind kit trains, it predicts.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, TypeVar

from kit.config.schema import MEMBER_KINDS
from kit.errors import KitError

if TYPE_CHECKING:
    import numpy as np
    from pydantic import BaseModel

    from kit.predict.bundle_schema import MemberFile
    from kit.predict.members import MemberPlan
    from kit.progress import Reporter
    from kit.workspace import Workspace


class ModelFolder(NamedTuple):
    """A folder of a bundle that a library reads by itself (open_clip's or timm's `local-dir:`)."""

    key: str  # member.json's key that names it, for messages: "model.encoder_dir"
    folder: str  # relative to members/NAME/
    config: str  # its config JSON
    files: tuple[str, ...] = ()  # the other files it must hold


class MemberPredictor(Protocol):
    """How `kit predict` and `kit export` run, write and read the fold models of one member kind."""

    weights_file: ClassVar[str]  # fold{f}/FILE in the member's run folder
    bundle_model: ClassVar[type[BaseModel]]  # what members/NAME/member.json's "model" may hold

    def read_weights(self, path: Path) -> dict[str, Any]:
        """A run folder's fold weights: tensors or float32 arrays by name."""
        ...

    def workspace_plan(
        self, ws: Workspace, name: str, meta: dict[str, Any], member: dict[str, Any], folds: list[Path]
    ) -> MemberPlan:
        """The plan of a trained member from its meta.json, its resolved config and its fold weights."""
        ...

    def fold_logits(
        self, plan: MemberPlan, images: np.ndarray, views: list[str], device: str, reporter: Reporter
    ) -> list[np.ndarray]:
        """float32 logits [n, len(views), C] of each fold model on decoded images uint8 [n, S, S, 3]."""
        ...

    def export(self, plan: MemberPlan, folder: Path, half: bool) -> dict[str, Any]:
        """Write what the bundle needs beyond the fold weights into members/NAME/ (`folder`); returns
        member.json's "model"."""
        ...

    def check_member_file(self, m: MemberFile) -> None:
        """Checks across member.json's keys that `bundle_model` cannot make alone; a ValueError names the key."""
        ...

    def bundle_folders(self, model: Any) -> list[ModelFolder]:
        """The folders of a checked `bundle_model` that a library reads by itself."""
        ...

    def from_bundle(self, model: dict[str, Any], base: Path) -> dict[str, Any]:
        """The plan's model (what `fold_logits` reads) from member.json's, its folders inside `base`."""
        ...


P = TypeVar("P", bound=type[MemberPredictor])
PREDICTORS: dict[str, MemberPredictor] = {}


def register_predictor(kind: str) -> Callable[[P], P]:
    def deco(cls: P) -> P:
        PREDICTORS[kind] = cls()
        return cls

    return deco


def predictor_of(kind: Any, member: str) -> MemberPredictor:
    """The predictor of member `member`'s kind, importing kit.predict.kinds.KIND (lazily, as kit.train.kinds
    does); a kind kit does not know is a KitError naming the member and the kinds it knows."""
    if kind not in MEMBER_KINDS:
        raise KitError(
            f"member '{member}' is of kind '{kind}', which kit predict cannot run ({', '.join(MEMBER_KINDS)})"
        )
    if kind not in PREDICTORS:
        importlib.import_module(f"{__name__}.{kind}")  # a missing module is a bug: it fails loudly
    if kind not in PREDICTORS:
        raise RuntimeError(
            f"{__name__}.{kind} does not register a predictor with @register_predictor('{kind}')"
        )
    return PREDICTORS[kind]
