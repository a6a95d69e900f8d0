"""Member kinds register their trainer by decoration; `train_members` dispatches on `kind`.

A trainer takes (workspace, member name, member config, reporter) and writes the member's artifacts
(kit.artifacts.member.write_member), returning their folder (None when another process still trains some of
its folds: kit.train.fold_loop).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kit.errors import KitError

Trainer = Callable[..., Path | None]  # None: other processes still train some folds
TRAINERS: dict[str, Trainer] = {}
# modules that register trainers when imported (imported lazily: they pull in torch)
TRAINER_MODULES = {"timm": "kit.train.timm_member", "clip_probe": "kit.train.clip_probe"}


def register_trainer(kind: str) -> Callable[[Trainer], Trainer]:
    def deco(fn: Trainer) -> Trainer:
        TRAINERS[kind] = fn
        return fn

    return deco


def get_trainer(kind: str) -> Trainer:
    if kind not in TRAINERS and kind in TRAINER_MODULES:
        importlib.import_module(TRAINER_MODULES[kind])
    if kind not in TRAINERS:
        raise KitError(f"no trainer for member kind '{kind}'; known kinds: {sorted(TRAINER_MODULES)}")
    return TRAINERS[kind]


def select_members(members: dict[str, Any], names: list[str] | None) -> list[str]:
    if not members:
        raise KitError(
            "kit.yaml has no members; add one under `members:` (see `kit init` output for an example)"
        )
    if not names:
        return list(members)
    unknown = [n for n in names if n not in members]
    if unknown:
        import difflib

        hints = [
            f"'{n}'"
            + (f" (did you mean '{m[0]}'?)" if (m := difflib.get_close_matches(n, members, 1)) else "")
            for n in unknown
        ]
        raise KitError(f"unknown member(s) {', '.join(hints)}; kit.yaml defines {list(members)}")
    return names
