"""New images for `kit predict`: where they come from, and decoding them once per (size, resample).

Decoding is training's (kit.data.cache.fit_image at the member's geometry: EXIF orientation, 16-bit scaling, the
model's resize filter, then the img_size centre crop evaluation takes), run in DataLoader workers, and written to
a temporary uint8 memory map [n, S, S, 3]: every fold
model of every member at that size reads it, so memory holds one batch of images whatever n is, and each image
is decoded once. Every unreadable image is listed in one KitError before any model runs. The map is allocated
whole before decoding (posix_fallocate), so a disk without room is an error naming the folder, not a SIGBUS.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import KitError

if TYPE_CHECKING:
    from kit.data.cache import Geometry

ImageInput = Any  # a path (str or Path), a PIL image, or a uint8 array [H, W], [H, W, 3] or [H, W, 4]


@dataclass(frozen=True)
class ImageSet:
    """Images to predict, with the ids a submission needs (folder: path stem; table: its id column)."""

    ids: list[str]
    items: list[ImageInput]


def read_images(path: Path, id_column: str | None = "id", image_column: str | None = None) -> ImageSet:
    """A folder of images (ids: relative paths without extension) or a table (CSV) with an id and an image
    column, image paths relative to the table's folder (the test table's columns, as kit.yaml names them)."""
    from kit.config.schema import Competition
    from kit.data.table import TABLE_SUFFIXES, folder_split, table_split

    if not path.exists():
        raise KitError(f"--images {path}: not found; give a folder of images or a CSV table of them")
    if path.is_dir():
        ids, paths, _ = folder_split(path, labelled=False)
        return ImageSet(ids, list(paths))
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise KitError(f"--images {path}: not a folder or a table ({', '.join(TABLE_SUFFIXES)})")
    comp = Competition.model_construct(
        id_column=id_column, image_column=image_column, root=path.parent, train=path
    )
    ids, paths, _, _ = table_split(comp, path, path.parent, "test", labelled=False)
    return ImageSet(ids, list(paths))


def plan_geometry(plan: Any) -> Geometry | None:
    """How a member's training stored its images (None: squashed straight to plan.size, as before)."""
    from kit.data.cache import Geometry

    if plan.cache_size is None:
        return None
    return Geometry(plan.resize, int(plan.cache_size))


def spool_key(plan: Any) -> tuple[int, str, str, int | None]:
    """Members whose images decode to the same pixels share one spool."""
    if plan.cache_size is None:
        return plan.size, plan.resample, "squash", None
    return plan.size, plan.resample, plan.resize, int(plan.cache_size)


def decode_item(item: ImageInput, size: int, resample: str, geometry: Geometry | None = None) -> np.ndarray:
    """uint8 [size, size, 3]: training's stored image (fit_image at `geometry`) and its centre crop, so a
    model sees the pixels its test pass saw; without a geometry, squashed to size."""
    from PIL import Image

    from kit.data.cache import Geometry, centre_crop, decode_path, fit_image, to_rgb

    g = geometry or Geometry("squash", size)
    if isinstance(item, (str, Path)):
        return np.ascontiguousarray(centre_crop(decode_path(Path(item), g, resample), size))
    if isinstance(item, np.ndarray):
        if (
            item.dtype != np.uint8
            or item.ndim not in (2, 3)
            or (item.ndim == 3 and item.shape[2] not in (3, 4))
        ):
            raise ValueError(
                f"array of dtype {item.dtype} and shape {item.shape}; expected uint8 [H, W(, 3|4)]"
            )
        item = Image.fromarray(item)
    if isinstance(item, Image.Image):
        return np.ascontiguousarray(centre_crop(fit_image(to_rgb(item), g, resample), size))
    raise ValueError(f"a {type(item).__name__}; give a path, a PIL image or a uint8 array")


def describe_item(item: ImageInput, i: int) -> str:
    return str(item) if isinstance(item, (str, Path)) else f"image {i} ({type(item).__name__})"


class DecodeSet:  # a torch Dataset by protocol (torch is imported lazily)
    """Item i: (i, uint8 [S, S, 3], problem text or '')."""

    def __init__(
        self, items: Sequence[ImageInput], size: int, resample: str, geometry: Geometry | None = None
    ) -> None:
        self.items, self.size, self.resample, self.geometry = items, size, resample, geometry

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray, str]:
        item = self.items[i]
        try:
            return i, decode_item(item, self.size, self.resample, self.geometry), ""
        except FileNotFoundError:
            problem = "missing"
        except Exception as e:  # PIL raises several types for corrupt files
            problem = f"unreadable ({type(e).__name__}: {e})"
        return i, np.zeros((self.size, self.size, 3), np.uint8), f"{describe_item(item, i)}: {problem}"


def _collate(batch: list[tuple[int, np.ndarray, str]]) -> list[tuple[int, np.ndarray, str]]:
    return batch


def reserve(path: Path) -> None:
    """Allocate the whole file now: a memory map over a sparse file on a disk that fills up later dies of
    SIGBUS at the first page it cannot write, with no message; this fails with ENOSPC first instead."""
    if not hasattr(os, "posix_fallocate"):
        return
    with path.open("r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as e:
            if e.errno not in (
                errno.EOPNOTSUPP,
                errno.EINVAL,
                errno.ENOSYS,
            ):  # not supported here: a sparse file
                raise


def spool(
    items: Sequence[ImageInput],
    size: int,
    resample: str,
    folder: Path,
    *,
    workers: int = 0,
    batch_size: int = 64,
    on_batch: Any = None,
    geometry: Geometry | None = None,
) -> np.ndarray:
    """Decode every image into folder/SIZE-RESAMPLE.npy (uint8 [n, S, S, 3], memory-mapped); raises a KitError
    listing every missing or unreadable image."""
    from torch.utils.data import DataLoader

    from kit.data.cache import RESAMPLE
    from kit.predict.scratch import no_room

    if resample not in RESAMPLE:
        raise KitError(f"unknown resample '{resample}'; choose from {sorted(RESAMPLE)}")
    path = folder / f"{size}px-{resample}{'' if geometry is None else '-' + geometry.key}.npy"
    try:
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(items), size, size, 3))
        reserve(path)
    except OSError as e:
        mb = len(items) * size * size * 3 / 1e6
        raise no_room(
            folder.parent, f"the decoded images ({len(items)} at {size} px: {mb:.1f} MB)", e
        ) from None
    loader: DataLoader[Any] = DataLoader(
        DecodeSet(items, size, resample, geometry),  # type: ignore[arg-type]
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
    )
    bad: list[str] = []
    for batch in loader:
        for i, pixels, problem in batch:
            out[i] = pixels
            if problem:
                bad.append(problem)
        if on_batch is not None:
            on_batch(len(batch))
    if bad:
        raise KitError(
            f"{len(bad)} image(s) could not be read; replace or remove them, then run again (nothing was written):",
            problems=bad,
        )
    out.flush()
    return out
