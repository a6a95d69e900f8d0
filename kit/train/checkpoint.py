"""Fold checkpoints, written atomically (kit.artifacts.atomic), read back with weights_only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kit.artifacts.atomic import atomic_file


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import torch

    # through a Python file: a full disk is then an OSError (ENOSPC) naming the checkpoint, where torch's own
    # file writer raises a RuntimeError ("file write failed") that says neither
    with atomic_file(path) as tmp, tmp.open("wb") as f:
        torch.save(state, f)


def load_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
