"""The report's view of the images: thumbnails from kit's image cache, and size statistics from headers.

Nothing here touches every image: thumbnails come from a cache store `kit train` already decoded (the smallest
one of the split's current images), else from the file decoded at reduced size (PIL's draft mode for JPEG),
for the few rows the page shows; sizes are read from the headers of a bounded sample.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kit.data.cache import ImageStore, header_size, to_rgb
from kit.report.figures import thumbnail

THUMB_PX = 96
SIZE_SAMPLE = 400  # images per split whose headers are read for the size statistics


class Thumbs:
    """Thumbnails of one split's rows, by row: from the cache store when there is one, else decoded small."""

    def __init__(self, paths: list[Path], store: ImageStore | None) -> None:
        self.paths, self.store = paths, store
        self.decoded = 0  # rows read from their files (no store)

    def __call__(self, row: int) -> str | None:
        try:
            if self.store is not None:
                return thumbnail(self.store.image(row), THUMB_PX)
            self.decoded += 1
            return thumbnail(decode_small(self.paths[row], THUMB_PX), THUMB_PX)
        except (OSError, ValueError):  # a file gone since training: the row is listed without its picture
            return None


def decode_small(path: Path, size: int) -> np.ndarray:
    """The image at about `size` px (JPEG decoded at reduced scale by PIL's draft mode), as kit sees it."""
    from PIL import Image

    with Image.open(path) as im:
        if im.format == "JPEG":
            im.draft("RGB", (size, size))
        im.load()
        return np.asarray(to_rgb(im))


@dataclass
class SizeStats:
    """Image sizes of one split (from a sample of headers) and file types (from every path)."""

    split: str
    n: int
    sampled: int
    width: tuple[int, int, int] = (0, 0, 0)  # min, median, max
    height: tuple[int, int, int] = (0, 0, 0)
    aspect: tuple[float, float, float] = (0.0, 0.0, 0.0)  # width / height
    common: list[tuple[str, int]] = field(default_factory=list)  # "W x H", count in the sample
    suffixes: list[tuple[str, int]] = field(default_factory=list)
    unreadable: int = 0


def size_stats(split: str, paths: list[Path], sample: int = SIZE_SAMPLE, seed: int = 0) -> SizeStats:
    n = len(paths)
    rows = (
        np.arange(n) if n <= sample else np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))
    )
    sizes: list[tuple[int, int]] = []
    bad = 0
    for i in rows:
        try:
            sizes.append(header_size(paths[int(i)]))
        except Exception:  # PIL raises several types for broken files; counted, not fatal
            bad += 1
    suffixes = Counter(p.suffix.lower() or "(none)" for p in paths).most_common(6)
    out = SizeStats(split, n, len(rows), suffixes=suffixes, unreadable=bad)
    if sizes:
        a = np.asarray(sizes, dtype=np.float64)
        out.width = _spread(a[:, 0])  # type: ignore[assignment]
        out.height = _spread(a[:, 1])  # type: ignore[assignment]
        ratio = a[:, 0] / np.maximum(a[:, 1], 1)
        out.aspect = tuple(round(float(v), 2) for v in np.quantile(ratio, [0, 0.5, 1]))  # type: ignore[assignment]
        out.common = [(f"{w} x {h}", c) for (w, h), c in Counter(sizes).most_common(5)]
    return out


def _spread(v: np.ndarray) -> tuple[Any, ...]:
    return tuple(round(float(q)) for q in np.quantile(v, [0, 0.5, 1]))
