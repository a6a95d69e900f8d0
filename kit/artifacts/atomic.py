"""Atomic writes: everything lands under a temporary name first and is renamed into place."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from kit.errors import KitError


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with tmp.open("w", encoding=encoding, newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with tmp.open("wb") as f:
            np.save(f, arr)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_strictly_inside(path: Path, parent: Path) -> None:
    """Refuse `path` unless it lies strictly inside `parent` (compared after normalising '.' and '..')."""
    p, q = Path(os.path.abspath(path)), Path(os.path.abspath(parent))
    if path.name in ("", ".", "..") or q not in p.parents:
        raise KitError(f"refusing to replace {path}: it is not a folder strictly inside {parent}")


@contextmanager
def atomic_dir(path: Path, *, parent: Path | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` whole, on failure it is removed.

    `parent` is the folder `path` is meant to live in (default: `path.parent`); a path that is not strictly
    inside it (`blends/.`, `members/..`, `.`) is refused before anything is created or removed.
    """
    check_strictly_inside(path, path.parent if parent is None else parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
