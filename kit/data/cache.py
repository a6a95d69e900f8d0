"""Decode every image once into a memory-mapped store, per (split, data fingerprint, geometry, resample).

A geometry (`Geometry`: members.NAME.resize at the member's cache size) says what shape each image is stored
at: squashed to a square, padded to a square with its aspect kept, or with its shorter side at the size and
its longer side centre-cropped to at most `max_aspect` times that. Stored images of any shape sit one after
another in one flat uint8 .npy (memory-mapped), with an index [N, 3] of (offset, h, w); training draws its
random crops from the stored image, evaluation takes the centre crop (`Images.crops`).

The build runs in two passes: the first reads every image's header (its size, EXIF orientation) and so knows
the exact bytes on disk before anything is decoded; the second decodes in threads. Shared by epochs, folds and
members. A bad image fails the whole build with every bad file named; both files are written to temporary
names and renamed (the index last), and a store is read back only when both exist and agree.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from kit.artifacts.atomic import clean_stale_temps, tmp_name
from kit.data.table import Table
from kit.errors import KitError

DECODE_VERSION = 3  # bumped when stored pixels change (2: 16-bit scaling, EXIF orientation; 3: geometries)
RESAMPLE = {"nearest": 0, "bilinear": 2, "bicubic": 3, "lanczos": 1, "box": 4, "hamming": 5}


class Images(Protocol):
    """What training and prediction read, by row (the contract between the image cache and the data loaders).

    `image(i)` is the stored image (uint8 [h, w, 3]; train crops are drawn from it); `crops(idx, size)` the
    eval input of rows `idx` (uint8 [len(idx), size, size, 3], the centre crop)."""

    def __len__(self) -> int: ...

    def image(self, i: int) -> np.ndarray: ...

    def crops(self, idx: np.ndarray, size: int) -> np.ndarray: ...


class ArrayImages:
    """Images over a square uint8 array [N, S, S, 3] (an in-memory batch, a decoded predict set)."""

    def __init__(self, arr: np.ndarray) -> None:
        self.arr = arr

    def __len__(self) -> int:
        return len(self.arr)

    def image(self, i: int) -> np.ndarray:
        return np.asarray(self.arr[int(i)])

    def crops(self, idx: np.ndarray, size: int) -> np.ndarray:
        x = np.take(self.arr, np.asarray(idx, dtype=np.int64), axis=0)
        s = x.shape[1]
        if s < size:
            raise ValueError(f"images of {s} px cannot give {size} px crops")
        top = (s - size) // 2
        return np.ascontiguousarray(x[:, top : top + size, top : top + size])


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


Resize = Literal["squash", "shorter_side", "pad"]


@dataclass(frozen=True)
class Geometry:
    """How an image is stored: `resize` at `size` px (squash: size x size; pad: the longer side at size on a
    black size x size square; shorter_side: the shorter side at size, the longer one centre-cropped to at most
    round(size * max_aspect))."""

    resize: Resize
    size: int
    max_aspect: float = 2.0

    @property
    def key(self) -> str:
        """The geometry's part of a store's file names."""
        if self.resize == "shorter_side":
            return f"short{self.size}px-a{self.max_aspect:g}"
        return f"{self.resize}{self.size}px"

    @classmethod
    def from_key(cls, key: str) -> Geometry | None:
        """The geometry a store's file names carry (the inverse of `key`), or None for another name."""
        import re

        if m := re.fullmatch(r"short(\d+)px-a([0-9.]+)", key):
            return cls("shorter_side", int(m[1]), float(m[2]))
        if m := re.fullmatch(r"(squash|pad)(\d+)px", key):
            return cls(m[1], int(m[2]))  # type: ignore[arg-type]
        return None

    @property
    def cap(self) -> int:
        return max(self.size, round(self.size * self.max_aspect))

    def resized(self, w: int, h: int) -> tuple[int, int]:
        """(width, height) an image of w x h is resized to (before padding or cropping)."""
        s = self.size
        if self.resize == "squash":
            return s, s
        scale = s / max(w, h) if self.resize == "pad" else s / min(w, h)
        rw, rh = max(1, round(w * scale)), max(1, round(h * scale))
        if self.resize == "pad":
            return min(rw, s), min(rh, s)
        return (s, max(s, rh)) if w <= h else (max(s, rw), s)

    def shape(self, w: int, h: int) -> tuple[int, int]:
        """(height, width) stored for an image of w x h (its orientation applied)."""
        if self.resize != "shorter_side":
            return self.size, self.size
        rw, rh = self.resized(w, h)
        return min(rh, self.cap), min(rw, self.cap)

    def describe(self) -> str:
        s = self.size
        if self.resize == "squash":
            return f"squashed to {s} x {s} px"
        if self.resize == "pad":
            return f"padded to {s} x {s} px (aspect kept)"
        return f"at shorter side {s} px (longer side up to {self.cap})"


def fit_image(rgb: Any, geometry: Geometry, resample: str = "bicubic") -> np.ndarray:
    """uint8 [h, w, 3] of an RGB PIL image (to_rgb's) stored at `geometry` with the PIL filter `resample`."""
    from PIL import Image

    w, h = rgb.size
    rw, rh = geometry.resized(w, h)
    img = rgb if (rw, rh) == (w, h) else rgb.resize((rw, rh), resample=RESAMPLE[resample])
    if geometry.resize == "pad":
        s = geometry.size
        canvas = Image.new("RGB", (s, s))
        canvas.paste(img, ((s - rw) // 2, (s - rh) // 2))
        img = canvas
    elif geometry.resize == "shorter_side":
        oh, ow = geometry.shape(w, h)
        if (ow, oh) != (rw, rh):
            left, top = (rw - ow) // 2, (rh - oh) // 2
            img = img.crop((left, top, left + ow, top + oh))
    DecodeStats.decoded += 1
    return np.asarray(img, dtype=np.uint8)


def centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The size x size centre of a stored image [h, w, 3] (evaluation's input)."""
    h, w = img.shape[:2]
    if h < size or w < size:
        raise ValueError(f"a stored image of {h} x {w} px cannot give a {size} px crop")
    top, left = (h - size) // 2, (w - size) // 2
    return img[top : top + size, left : left + size]


def decode_image(path: Path, size: int, resample: str = "bicubic") -> np.ndarray:
    """uint8 RGB [size, size, 3] (squashed): EXIF orientation applied; 16-bit and float images scaled to 8
    bits, not clipped (PIL's convert("RGB") clips 16-bit values at 255)."""
    return decode_path(path, Geometry("squash", size), resample)


def decode_path(path: Path, geometry: Geometry, resample: str = "bicubic") -> np.ndarray:
    """The stored pixels of the image file at `path` (fit_image of to_rgb)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return fit_image(to_rgb(im), geometry, resample)


def to_rgb(im: Any) -> Any:
    """The image as kit sees it, at its own size: EXIF orientation applied, wide modes scaled to 8 bits, RGB
    (a PIL image; fit_image resizes it, kit.data.extra hashes its pixels)."""
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(im)
    if img.mode in WIDE_MODES:
        img = Image.fromarray(to_uint8(np.asarray(img)))
    return img.convert("RGB")


def header_size(path: Path) -> tuple[int, int]:
    """(width, height) of the image file as kit sees it, from its header: EXIF orientations 5-8 (the turns
    by 90 degrees) swap them. PIL opens lazily: no pixels are decoded."""
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
        try:
            orientation = im.getexif().get(0x0112, 1)
        except Exception:  # a broken EXIF block: exif_transpose ignores it the same way
            orientation = 1
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


class ImageStore:
    """Images (the protocol above) over a store's flat uint8 file and its index [N, 3] of (offset, h, w).

    Pickles as its paths (DataLoader workers map the files themselves)."""

    def __init__(self, data_path: Path, index: np.ndarray, geometry: Geometry) -> None:
        self.data_path, self.index, self.geometry = data_path, index, geometry
        self._data: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_data": None}

    @property
    def data(self) -> np.ndarray:
        if self._data is None:
            self._data = np.load(self.data_path, mmap_mode="r")
        return self._data

    def __len__(self) -> int:
        return len(self.index)

    @property
    def nbytes(self) -> int:
        return int((self.index[:, 1] * self.index[:, 2]).sum() * 3)

    def image(self, i: int) -> np.ndarray:
        off, h, w = (int(v) for v in self.index[int(i)])
        return np.asarray(self.data[off : off + h * w * 3]).reshape(h, w, 3)

    def crops(self, idx: np.ndarray, size: int) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        out = np.empty((len(idx), size, size, 3), dtype=np.uint8)
        for k, i in enumerate(idx):
            out[k] = centre_crop(self.image(int(i)), size)
        return out

    def array(self) -> np.ndarray:
        """The store as one array [N, S, S, 3] (squash and pad: every image is S x S)."""
        s = self.geometry.size
        if self.geometry.resize == "shorter_side":
            raise ValueError("images stored at their shorter side differ in shape; use image(i) or crops()")
        return self.data[: len(self) * s * s * 3].reshape(len(self), s, s, 3)


def store_paths(
    cache_dir: Path, split: str, fingerprint: str, geometry: Geometry, resample: str
) -> tuple[Path, Path]:
    """The store's data and index files: split, fingerprint, geometry, filter and DECODE_VERSION in the name."""
    stem = f"{split}-{fingerprint}-{geometry.key}-{resample}-d{DECODE_VERSION}"
    folder = cache_dir / "images"
    return folder / f"{stem}.npy", folder / f"{stem}.index.npy"


def stored_sizes(folder: Path, split: str, fingerprint: str, resize: str) -> list[int]:
    """The sizes of the stores in `folder` of this split, fingerprint ('*': any) and resize mode, any filter
    (the preflight's "is it built already"; store_paths names them)."""
    import re

    prefix = "short" if resize == "shorter_side" else resize
    pattern = re.compile(rf"-{prefix}(\d+)px(-a[0-9.]+)?-[a-z]+-d{DECODE_VERSION}\.npy$")
    return [
        int(m.group(1))
        for p in folder.glob(f"{split}-{fingerprint}-{prefix}*px*-d{DECODE_VERSION}.npy")
        if (m := pattern.search(p.name)) is not None
    ]


def find_store(cache_dir: Path, split: str, fingerprint: str, n: int) -> ImageStore | None:
    """The smallest whole store of these n images (any geometry, any filter), or None when none was built."""
    found = []
    head, tail = f"{split}-{fingerprint}-", f"-d{DECODE_VERSION}.index.npy"
    for index in (cache_dir / "images").glob(f"{head}*{tail}") if fingerprint else ():
        geometry_key, _, _resample = index.name[len(head) : -len(tail)].rpartition("-")
        if (geometry := Geometry.from_key(geometry_key)) is not None:
            found.append((geometry.size, index.name, geometry, index))
    for _, _, geometry, index in sorted(found, key=lambda f: f[:2]):
        store = _read_store(
            index.with_name(index.name.removesuffix(".index.npy") + ".npy"), index, n, geometry
        )
        if store is not None:
            return store
    return None


def _read_store(data: Path, index: Path, n: int, geometry: Geometry) -> ImageStore | None:
    """The store when both files exist and agree (n rows; the index's last image ends at the data's end)."""
    if not (data.exists() and index.exists()):
        return None
    try:
        idx = np.load(index)
        arr = np.load(data, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if idx.shape != (n, 3) or idx.dtype != np.int64 or arr.dtype != np.uint8 or arr.ndim != 1:
        return None
    total = int((idx[:, 1] * idx[:, 2]).sum() * 3)
    if n and (int(idx[-1, 0] + idx[-1, 1] * idx[-1, 2] * 3) != arr.shape[0] or total != arr.shape[0]):
        return None
    store = ImageStore(data, idx, geometry)
    store._data = arr
    return store


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e7 else f"{n / 1e6:.1f} MB"


def store_line(split: str, store: ImageStore) -> str:
    """The one line `kit train` prints per split: how many images, their geometry, bytes on disk, where."""
    return (
        f"{split} images: {len(store):,} {store.geometry.describe()}: {_gb(store.nbytes)} on disk at "
        f"{store.data_path}, memory-mapped"
    )


def build_image_store(
    table: Table,
    geometry: Geometry,
    cache_dir: Path,
    *,
    split: str,
    fingerprint: str | None = None,
    resample: str = "bicubic",
    workers: int | None = None,
    report: Callable[[str], None] | None = None,
) -> ImageStore:
    """The store of `table` at `geometry`, building it when missing; `report` gets store_line before any
    image is decoded (or when the store is read back)."""
    if resample not in RESAMPLE:
        raise KitError(f"unknown resample '{resample}'; choose from {sorted(RESAMPLE)}")
    fp = fingerprint or table.fingerprint()
    data_path, index_path = store_paths(cache_dir, split, fp, geometry, resample)
    n = len(table)
    found = _read_store(data_path, index_path, n, geometry)
    if found is not None:
        if report is not None:
            report(store_line(split, found))
        return found
    n_workers = workers or min(8, (os.cpu_count() or 1) + 2)
    bad: list[str] = []

    def problem(p: Path, e: BaseException) -> str:
        if isinstance(e, FileNotFoundError):
            return f"{p}: missing"
        return f"{p}: unreadable ({type(e).__name__}: {e})"  # PIL raises several types for corrupt files

    # pass 1: every stored shape from the headers alone (squash: all size x size, nothing to read)
    shapes = np.full((n, 2), geometry.size, dtype=np.int64)
    if geometry.resize == "shorter_side":

        def head(i: int) -> None:
            p = table.paths[i]
            try:
                shapes[i] = geometry.shape(*header_size(p))
            except Exception as e:
                bad.append(problem(p, e))

        with ThreadPoolExecutor(n_workers) as pool:
            list(pool.map(head, range(n)))
        _raise_bad(bad, split)
    index = np.zeros((n, 3), dtype=np.int64)
    index[:, 1:] = shapes
    sizes = shapes[:, 0] * shapes[:, 1] * 3
    index[1:, 0] = np.cumsum(sizes)[:-1]
    total = int(sizes.sum())
    data_path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(data_path.parent, recursive=False)  # stores of killed builds can be gigabytes
    tmp = tmp_name(data_path)
    tmp_index = tmp_name(index_path)
    store = ImageStore(data_path, index, geometry)
    if report is not None:
        report(store_line(split, store))
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(total,))

        def work(i: int) -> None:
            p = table.paths[i]
            try:
                pixels = decode_path(p, geometry, resample)
            except Exception as e:
                bad.append(problem(p, e))
                return
            off, h, w = (int(v) for v in index[i])
            if pixels.shape != (h, w, 3):  # the header said otherwise (an orientation PIL reads late)
                bad.append(
                    f"{p}: decoded to {pixels.shape[1]} x {pixels.shape[0]} px, its header says {w} x {h}"
                )
                return
            out[off : off + h * w * 3] = pixels.reshape(-1)

        with ThreadPoolExecutor(n_workers) as pool:
            list(pool.map(work, range(n)))
        _raise_bad(bad, split)
        out.flush()
        os.replace(tmp, data_path)
        with tmp_index.open("wb") as f:
            np.save(f, index)
        os.replace(tmp_index, index_path)  # last: a store without its index is never read
    finally:
        for t in (tmp, tmp_index):
            if t.exists():
                t.unlink()
    found = _read_store(data_path, index_path, n, geometry)
    assert found is not None
    return found


def _raise_bad(bad: list[str], split: str) -> None:
    if bad:
        raise KitError(
            f"{len(bad)} {split} image(s) could not be read; replace or remove them (and their table rows), "
            "then run again:",
            problems=sorted(bad),
        )


def build_image_cache(
    table: Table,
    size: int,
    cache_dir: Path,
    *,
    split: str,
    fingerprint: str | None = None,
    resample: str = "bicubic",
    workers: int | None = None,
    report: Callable[[str], None] | None = None,
) -> np.ndarray:
    """The squashed store of `table` at `size` as one read-only memory-mapped array [N, S, S, 3] (clip_probe's
    input: the pixels DECODE_VERSION 2 squashed, in the same store)."""
    return build_image_store(
        table,
        Geometry("squash", size),
        cache_dir,
        split=split,
        fingerprint=fingerprint,
        resample=resample,
        workers=workers,
        report=report,
    ).array()
