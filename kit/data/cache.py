"""Decode every image once: a memory-mapped uint8 cache [N, S, S, 3] per (data fingerprint, size, resample).

Shared by epochs, folds and members. A bad image fails the whole build with every bad file named, and the
cache is written to a temporary file and renamed, so no half-written cache is ever read.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts.atomic import clean_stale_temps, tmp_name
from kit.data.table import Table
from kit.errors import KitError

DECODE_VERSION = 2  # bumped when decode_image's pixels change (2: 16-bit scaling, EXIF orientation)
RESAMPLE = {"nearest": 0, "bilinear": 2, "bicubic": 3, "lanczos": 1, "box": 4, "hamming": 5}


class DecodeStats:
    """How many images were decoded in this process (the benchmark shows epoch 2 decodes none)."""

    decoded = 0


# modes whose values go past 255: 16-bit PNG/TIFF ("I;16*"), 32-bit integer ("I") and float ("F") images
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def to_uint8(a: np.ndarray) -> np.ndarray:
    """Scale a wide grayscale array to 0..255: integers by the 16-bit range (x / 257), floats in [0, 1] by 255;
    values outside those ranges (negative, or past 65535 or 1.0) by the image's own min and max."""
    x = a.astype(np.float64)
    lo, hi = (0.0, 1.0) if np.issubdtype(a.dtype, np.floating) else (0.0, 65535.0)
    if x.size and (x.min() < lo or x.max() > hi):
        lo, hi = float(x.min()), float(x.max())
    scaled = (x - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(x)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def decode_image(path: Path, size: int, resample: str = "bicubic") -> np.ndarray:
    """uint8 RGB [size, size, 3]: EXIF orientation applied; 16-bit and float images scaled to 8 bits, not
    clipped (PIL's convert("RGB") clips 16-bit values at 255)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return decode_pil(im, size, resample)


def to_rgb(im: Any) -> Any:
    """The image as kit sees it, at its own size: EXIF orientation applied, wide modes scaled to 8 bits, RGB
    (a PIL image; decode_pil resizes it, kit.data.extra hashes its pixels)."""
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(im)
    if img.mode in WIDE_MODES:
        img = Image.fromarray(to_uint8(np.asarray(img)))
    return img.convert("RGB")


def decode_pil(im: Any, size: int, resample: str = "bicubic") -> np.ndarray:
    """decode_image's pixels from an open PIL image (kit predict takes images in memory too)."""
    rgb = to_rgb(im)
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), resample=RESAMPLE[resample])
    DecodeStats.decoded += 1
    return np.asarray(rgb, dtype=np.uint8)


def cache_path(cache_dir: Path, split: str, fingerprint: str, size: int, resample: str) -> Path:
    return cache_dir / "images" / f"{split}-{fingerprint}-{size}px-{resample}-d{DECODE_VERSION}.npy"


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
