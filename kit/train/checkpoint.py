"""Fold checkpoints, written atomically (kit.artifacts.atomic), read back with weights_only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kit.artifacts.atomic import atomic_file


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import torch

    with atomic_file(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
