"""Decode every image once: a memory-mapped uint8 cache [N, S, S, 3] per (data fingerprint, size, resample).

Shared by epochs, folds and members. A bad image fails the whole build with every bad file named, and the
cache is written to a temporary file and renamed, so no half-written cache is ever read.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from kit.artifacts.atomic import clean_stale_temps, tmp_name
from kit.data.table import Table
from kit.errors import KitError

RESAMPLE = {"nearest": 0, "bilinear": 2, "bicubic": 3, "lanczos": 1, "box": 4, "hamming": 5}


class DecodeStats:
    """How many images were decoded in this process (the benchmark shows epoch 2 decodes none)."""

    decoded = 0


def decode_image(path: Path, size: int, resample: str = "bicubic") -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        rgb = im.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), resample=RESAMPLE[resample])
    DecodeStats.decoded += 1
    return np.asarray(rgb, dtype=np.uint8)


def cache_path(cache_dir: Path, split: str, fingerprint: str, size: int, resample: str) -> Path:
    return cache_dir / "images" / f"{split}-{fingerprint}-{size}px-{resample}.npy"


def build_image_cache(
    table: Table,
    size: int,
    cache_dir: Path,
    *,
    split: str,
    fingerprint: str | None = None,
    resample: str = "bicubic",
    workers: int | None = None,
) -> np.ndarray:
    """The cached array for `table` at `size`, building it when missing. Read-only memory map."""
    if resample not in RESAMPLE:
        raise KitError(f"unknown resample '{resample}'; choose from {sorted(RESAMPLE)}")
    fp = fingerprint or table.fingerprint()
    path = cache_path(cache_dir, split, fp, size, resample)
    if path.exists():
        arr = np.load(path, mmap_mode="r")
        if arr.shape == (len(table), size, size, 3):
            return arr
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path.parent, recursive=False)  # caches of killed builds can be gigabytes
    tmp = tmp_name(path)
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(table), size, size, 3))
    bad: list[str] = []

    def work(i: int) -> None:
        p = table.paths[i]
        try:
            out[i] = decode_image(p, size, resample)
        except FileNotFoundError:
            bad.append(f"{p}: missing")
        except Exception as e:  # PIL raises several types for corrupt files
            bad.append(f"{p}: unreadable ({type(e).__name__}: {e})")

    n_workers = workers or min(8, (os.cpu_count() or 1) + 2)
    try:
        with ThreadPoolExecutor(n_workers) as pool:
            list(pool.map(work, range(len(table))))
        if bad:
            raise KitError(
                f"{len(bad)} {split} image(s) could not be read; replace or remove them (and their table rows), "
                "then run again:",
                problems=sorted(bad),
            )
        out.flush()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return np.load(path, mmap_mode="r")
