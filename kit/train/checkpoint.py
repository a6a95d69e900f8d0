"""Fold checkpoints, written atomically (a temporary file renamed into place), read back with weights_only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kit.artifacts.atomic import tmp_name


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
