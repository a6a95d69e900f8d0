"""External labelled data (`competition.extra_train`): tables or class folders mapped onto the competition's
classes, with exact duplicates of train and test images found by a hash of their decoded pixels.

Extra rows only ever join the training side of a fold (kit.train.added): they have no fold, are never
validated on and never get an OOF row, so the OOF score stays a score on the competition's own labelled
images. An extra image whose pixels equal a test image's is dropped (training on it leaks the test set);
one whose pixels equal a train image's is dropped too, because in the fold that holds that train image out
it would put the validation image on the training side and flatter the OOF score.

What is hashed: the decoded image at its own size (EXIF orientation applied, 16-bit and float images scaled
to 8 bits, RGB; `kit.data.cache.to_rgb`), its width and height and its bytes, so a PNG re-saved as another
PNG is a duplicate while a resized or re-compressed JPEG is not. Pixel digests are cached in
workdir/cache/pixel_hashes.json by the file's byte digest (kit.data.fingerprint), so a second call decodes
nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kit.artifacts.atomic import atomic_write_json
from kit.config.schema import Competition, ExtraTrain
from kit.data.fingerprint import MISSING, FileHashes, table_fingerprints
from kit.data.table import Table, read_split
from kit.errors import KitError

PIXEL_CACHE_FILE = "pixel_hashes.json"
PIXEL_CACHE_VERSION = 1


def key(i: int) -> str:
    return f"competition.extra_train[{i}]"


@dataclass(frozen=True)
class ExtraTable:
    """One source read and mapped onto the competition's classes (labels are class indices)."""

    index: int
    cfg: ExtraTrain
    table: Table
    unmapped: int  # rows whose label class_map sends to null (dropped on purpose)

    @property
    def key(self) -> str:
        return key(self.index)


@dataclass(frozen=True)
class ExtraSource:
    """One source ready for training: its rows after duplicates were dropped, and its fingerprints."""

    index: int
    cfg: ExtraTrain
    table: Table  # the rows that train; labels are competition class indices
    images_fingerprint: str  # what the image and embedding caches key on
    fingerprint: str  # labels and image bytes: what the run hash takes
    unmapped: int = 0
    test_duplicates: list[str] = field(default_factory=list)  # ids dropped: same pixels as a test image
    train_duplicates: list[str] = field(default_factory=list)  # ids dropped: same pixels as a train image

    @property
    def key(self) -> str:
        return key(self.index)

    def counts(self, n_classes: int) -> np.ndarray:
        return np.bincount(np.asarray(self.table.labels, dtype=np.int64), minlength=n_classes)

    def identity(self) -> dict[str, object]:
        return {"path": str(self.cfg.train), "fingerprint": self.fingerprint, "n": len(self.table)}

    def describe(self, classes: list[str]) -> str:
        counts = self.counts(len(classes))
        per = ", ".join(f"{c} {n}" for c, n in zip(classes, counts.tolist(), strict=True) if n)
        dropped = []
        if self.test_duplicates:
            dropped.append(f"{len(self.test_duplicates)} duplicate(s) of test images dropped (they leak)")
        if self.train_duplicates:
            dropped.append(
                f"{len(self.train_duplicates)} duplicate(s) of train images dropped (they would sit beside "
                "their own held-out copy)"
            )
        if self.unmapped:
            dropped.append(f"{self.unmapped} row(s) mapped to null dropped")
        return f"{self.key}: {len(self.table)} image(s) ({per})" + (
            f"; {'; '.join(dropped)}" if dropped else ""
        )


def check_extra_paths(comp: Competition) -> list[str]:
    """Paths of competition.extra_train that are not there, each naming its key."""
    problems = []
    for i, e in enumerate(comp.extra_train):
        for name in ("train", "images"):
            p = getattr(e, name)
            if p is not None and not p.exists():
                problems.append(
                    f"{key(i)}.{name}: {p} does not exist; fix the path (relative to competition.root)"
                )
    return problems


def _map_labels(i: int, e: ExtraTrain, labels: list[str], classes: list[str]) -> tuple[np.ndarray, list[str]]:
    """Class indices (-1: mapped to null) and the problems: labels that are no class and are not mapped."""
    lookup = {c: n for n, c in enumerate(classes)}
    problems = []
    bad_targets = sorted({v for v in e.class_map.values() if v is not None and v not in lookup})
    if bad_targets:
        problems.append(
            f"{key(i)}.class_map: {bad_targets} are not classes of this competition; map onto one of "
            f"{classes[:20]}{' ...' if len(classes) > 20 else ''}"
        )
    out = np.empty(len(labels), dtype=np.int64)
    unknown: set[str] = set()
    for n, lab in enumerate(labels):
        target = e.class_map.get(lab, lab)
        if target is None:
            out[n] = -1
        elif target in lookup:
            out[n] = lookup[target]
        else:
            out[n] = -1
            if lab not in e.class_map:
                unknown.add(lab)
    if unknown:
        shown = sorted(unknown)[:10]
        problems.append(
            f"{key(i)}.class_map: label(s) {shown} of {e.train} are not classes of this competition "
            f"({classes[:20]}{' ...' if len(classes) > 20 else ''}) and not mapped; add them to class_map, "
            f"e.g. class_map: {{{shown[0]!r}: {classes[0]!r}}}, or map them to null to drop their rows"
        )
    return out, problems


def load_extra_tables(comp: Competition, classes: list[str]) -> list[ExtraTable]:
    """Every extra source read (no image is opened) and mapped onto `classes`; all problems at once."""
    problems = check_extra_paths(comp)
    if problems:
        raise KitError("competition.extra_train names files that are not there:", problems=problems)
    out = []
    for i, e in enumerate(comp.extra_train):
        view = comp.model_copy(
            update={
                "train": e.train,
                "train_images": e.images,
                "id_column": e.id_column or comp.id_column,
                "image_column": e.image_column or comp.image_column,
                "label_column": e.label_column or comp.label_column,
                "label_columns": None,
                "group_column": None,
            }
        )
        try:
            ids, paths, labels, _ = read_split(view, e.train, e.images, f"{key(i)}", labelled=True)
        except KitError as err:
            problems.append(f"{key(i)} ({e.train}): {err}")
            continue
        assert labels is not None
        y, bad = _map_labels(i, e, labels, classes)
        problems += bad
        keep = y >= 0
        table = _subset(Table([f"extra{i}:{x}" for x in ids], paths, y, classes=list(classes)), keep)
        out.append(ExtraTable(i, e, table, unmapped=int((~keep).sum()) if not bad else 0))
    if problems:
        raise KitError("competition.extra_train cannot be used:", problems=problems)
    return out


def pixel_digest(path: Path) -> str:
    """sha256 of the decoded image at its own size (kit.data.cache.to_rgb): width, height and RGB bytes."""
    from PIL import Image

    from kit.data.cache import to_rgb

    with Image.open(path) as im:
        im.load()
        rgb = to_rgb(im)
    h = hashlib.sha256(f"{rgb.size[0]}x{rgb.size[1]}\n".encode())
    h.update(np.asarray(rgb, dtype=np.uint8).tobytes())
    return h.hexdigest()[:32]


class PixelHashes:
    """Pixel digests cached by file byte digest: identical bytes decode to identical pixels."""

    def __init__(self, cache_file: Path | None, files: FileHashes, workers: int | None = None) -> None:
        self.cache_file, self.files = cache_file, files
        self.workers = workers or min(8, (os.cpu_count() or 1) + 2)
        self._entries = self._read()

    def _read(self) -> dict[str, str]:
        if self.cache_file is None:
            return {}
        try:
            data = json.loads(self.cache_file.read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != PIXEL_CACHE_VERSION:
            return {}
        d = data.get("digests")
        return d if isinstance(d, dict) else {}

    def digests(self, paths: list[Path]) -> list[str]:
        file_d = self.files.digests(paths)
        todo = [i for i, d in enumerate(file_d) if d != MISSING and d not in self._entries]
        if todo:

            def work(i: int) -> tuple[int, str]:
                try:
                    return i, pixel_digest(paths[i])
                except Exception:  # an unreadable image is reported when the caches are built
                    return i, f"unreadable:{file_d[i]}"

            with ThreadPoolExecutor(self.workers) as pool:
                for i, d in pool.map(work, todo):
                    self._entries[file_d[i]] = d
            if self.cache_file is not None:
                merged = {**self._read(), **self._entries}
                self._entries = merged
                with contextlib.suppress(OSError):
                    atomic_write_json(self.cache_file, {"version": PIXEL_CACHE_VERSION, "digests": merged})
        return [self._entries.get(d, f"missing:{p}") for d, p in zip(file_d, paths, strict=True)]


def _subset(table: Table, keep: np.ndarray) -> Table:
    return Table(
        ids=[x for x, k in zip(table.ids, keep, strict=True) if k],
        paths=[p for p, k in zip(table.paths, keep, strict=True) if k],
        labels=np.asarray(table.labels)[keep],
        classes=table.classes,
    )


def load_extra(
    comp: Competition, train: Table, test: Table | None, cache_dir: Path, file_hashes: FileHashes
) -> list[ExtraSource]:
    """competition.extra_train for a workspace (kit.workspace): tables mapped onto the train classes,
    duplicates of train and test images (by decoded pixels) dropped and counted, fingerprints taken; pixel
    digests cached in `cache_dir`. [] without extra_train."""
    if not comp.extra_train:
        return []
    tables = load_extra_tables(comp, train.classes)
    pixels = PixelHashes(cache_dir / PIXEL_CACHE_FILE, file_hashes)
    train_px = dict(zip(pixels.digests(list(train.paths)), train.ids, strict=True))
    test_px: dict[str, str] = {}
    if test is not None:
        test_px = dict(zip(pixels.digests(list(test.paths)), test.ids, strict=True))
    out = []
    for et in tables:
        digests = pixels.digests(list(et.table.paths))
        in_test = np.array([d in test_px for d in digests], dtype=bool)
        in_train = np.array([d in train_px and d not in test_px for d in digests], dtype=bool)
        keep = ~(in_test | in_train)
        table = _subset(et.table, keep)
        fps = table_fingerprints(table, comp.root, file_hashes)
        dropped = (_subset(et.table, in_test).ids, _subset(et.table, in_train).ids)
        out.append(ExtraSource(et.index, et.cfg, table, fps.images, fps.combined, et.unmapped, *dropped))
    return out
