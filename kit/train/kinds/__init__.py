"""Member kinds: the protocol a kind implements for the fold loop, and the registry of kinds.

A kind is a class in `kit.train.kinds.KIND` (the module is named after the config's `kind:` value) decorated
with `@register_kind(KIND)`. The fold loop (kit.train.fold_loop) owns run folders, resume, fold locks, the
assembly of OOF and test logits and `write_member`; the kind supplies only

    prepare(ws, name, member, reporter)   build what every fold shares (image caches, embeddings, the model spec)
    fit_predict_fold(f, fold_dir)         train fold f (resuming from fold_dir, where it may keep epoch
                                          checkpoints) and return its held-out rows' and the test set's logits
    describe(root, infos, clock)          the kind's own meta.json keys and timings

The known kinds come from the config's member union (kit.config.schema.MEMBER_KINDS): adding a kind means a
config class in that union and one module here (and, for `kit predict` / `kit export`, its predictor in
kit.predict.kinds).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, TypeVar

import numpy as np

from kit.config.schema import MEMBER_KINDS
from kit.errors import KitError

if TYPE_CHECKING:
    from kit.progress import Reporter
    from kit.workspace import Workspace


RESUME_FILE = "last.pt"  # a kind's state of an unfinished fold; not needed once the fold is done


def fold_lists(infos: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, list[Any]]:
    """Per-fold values for meta.json's `run`: {key: [fold 0's, fold 1's, ...]}."""
    return {key: [i[key] for i in infos] for key in keys}


@dataclass
class FoldResult:
    """What a kind hands back for one fold; the loop saves the logits and marks the fold done with `info`."""

    info: dict[str, Any]  # JSON: epochs, best_epoch, best_score and whatever the kind's `describe` reads
    oof: np.ndarray  # float32 [n_valid, n_views, n_classes] logits on the fold's held-out rows
    test: np.ndarray  # float32 [n_test, n_views, n_classes] logits on the test set


@dataclass(frozen=True)
class Clock:
    """Seconds this call spent preparing the kind and, after that, on the folds up to assembly."""

    prepare_s: float
    folds_s: float


@dataclass
class MemberSummary:
    """A kind's share of the member artifacts."""

    timings: dict[str, float]
    extra: dict[str, Any]  # meta.json keys of this kind (after "kind"): run, preprocess, ...
    note: str | None = None  # when set, reported once written: "NAME: OOF METRIC X (note) -> PATH"


class MemberKind(Protocol):
    """One member of a kind, prepared for the fold loop."""

    trains_images: ClassVar[bool]  # trains a network on the image cache (preflight sizes a batch for it)

    @classmethod
    def prepare(cls, ws: Workspace, name: str, member: Any, reporter: Reporter) -> Self: ...

    @property
    def run_extra(self) -> dict[str, Any] | None:
        """Hashed into the run's identity beyond the member config (e.g. the encoder's weights)."""
        ...

    def fit_predict_fold(self, f: int, fold_dir: Path) -> FoldResult: ...

    def describe(self, root: Path, infos: list[dict[str, Any]], clock: Clock) -> MemberSummary: ...


K = TypeVar("K", bound=type[MemberKind])
KINDS: dict[str, type[MemberKind]] = {}


def register_kind(kind: str) -> Callable[[K], K]:
    def deco(cls: K) -> K:
        KINDS[kind] = cls
        return cls

    return deco


def get_kind(kind: str) -> type[MemberKind]:
    """The class of member kind `kind`, importing kit.train.kinds.KIND (lazily: kinds pull in torch)."""
    if kind not in MEMBER_KINDS:
        raise KitError(f"no trainer for member kind '{kind}'; known kinds: {sorted(MEMBER_KINDS)}")
    if kind not in KINDS:
        importlib.import_module(f"{__name__}.{kind}")  # a missing module is a bug: it fails loudly
    if kind not in KINDS:
        raise RuntimeError(f"{__name__}.{kind} does not register a kind with @register_kind('{kind}')")
    return KINDS[kind]
