"""Content fingerprints of a table: labels and groups, and the bytes of every image, hashed once.

A file's digest is cached in workdir/cache/file_hashes.json by (absolute path, size, mtime_ns, ctime_ns,
inode), so a second call only stats the files. The inode and ctime catch what size and mtime miss: two files
of equal size swapped by renaming keep their own mtimes but move to other inodes, and a rename updates ctime.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kit.artifacts.atomic import atomic_write_json

if TYPE_CHECKING:
    from kit.data.table import Table

HASH_CACHE_FILE = "file_hashes.json"
HASH_CACHE_VERSION = 1
MISSING = "missing"
_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (hashlib releases the GIL, so threads hash files in parallel)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()[:32]


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class FileHashes:
    """Digests of files, cached on disk by their stat identity; `hashed` counts files read in this object."""

    def __init__(
        self, cache_file: Path | None = None, workers: int | None = None, *, save: bool = True
    ) -> None:
        self.cache_file = cache_file
        self.save = save  # False: read the cache, never write it (`kit validate` writes nothing)
        self.workers = workers or min(8, (os.cpu_count() or 1) + 2)
        self.hashed = 0
        self._entries: dict[str, list] = self._read() if cache_file is not None else {}

    def _read(self) -> dict[str, list]:
        assert self.cache_file is not None
        try:
            data = json.loads(self.cache_file.read_text("utf-8"))
        except (OSError, ValueError):
            return {}  # missing or damaged: it is only a cache, every file is hashed again
        if not isinstance(data, dict) or data.get("version") != HASH_CACHE_VERSION:
            return {}
        files = data.get("files")
        return files if isinstance(files, dict) else {}

    def digests(self, paths: list[Path]) -> list[str]:
        """One digest per path ('missing' for a file that is not there), hashing only changed files."""
        out: list[str] = [MISSING] * len(paths)
        todo: list[tuple[int, str, list[int]]] = []
        for i, p in enumerate(paths):
            key = os.path.abspath(p)
            try:
                stat = _stat_key(os.stat(key))
            except OSError:
                continue
            hit = self._entries.get(key)
            if isinstance(hit, list) and len(hit) == 5 and hit[:4] == stat:
                out[i] = str(hit[4])
            else:
                todo.append((i, key, stat))
        if todo:

            def work(item: tuple[int, str, list[int]]) -> tuple[int, str, list[int], str]:
                i, key, stat = item
                try:
                    return i, key, stat, file_digest(Path(key))
                except OSError:
                    return i, key, stat, MISSING

            with ThreadPoolExecutor(self.workers) as pool:
                for i, key, stat, digest in pool.map(work, todo):
                    out[i] = digest
                    if digest != MISSING:
                        self._entries[key] = [*stat, digest]
            self.hashed += len(todo)
            self._save()
        return out

    def _save(self) -> None:
        if self.cache_file is None or not self.save:
            return
        merged = self._read()  # keep what another process added meanwhile
        merged.update(self._entries)
        self._entries = merged
        with contextlib.suppress(OSError):  # a read-only workdir only costs the next run a re-hash
            atomic_write_json(self.cache_file, {"version": HASH_CACHE_VERSION, "files": merged})


@dataclass(frozen=True)
class TableFingerprints:
    """`labels`: classes, ids, labels and groups. `images`: ids, relative paths and image bytes."""

    labels: str
    images: str

    @property
    def combined(self) -> str:
        return hashlib.sha256(f"{self.labels}\x1f{self.images}".encode()).hexdigest()[:16]


def table_fingerprints(
    table: Table, root: Path | None = None, hashes: FileHashes | None = None
) -> TableFingerprints:
    """Fingerprints that change when any label, group or image byte changes, not when the data moves."""
    digests = (hashes or FileHashes()).digests(list(table.paths))
    lab_h, img_h = hashlib.sha256(), hashlib.sha256()
    lab_h.update("\x1f".join(table.classes).encode())
    prefix = None if root is None else os.path.join(os.path.abspath(root), "")
    for i, (id_, p) in enumerate(zip(table.ids, table.paths, strict=True)):
        rel = p.name if prefix is None else _relative(os.path.abspath(p), prefix)
        if table.labels is None:
            lab = ""
        elif table.labels.ndim == 2:  # multilabel: the row's 0/1 cells
            lab = "".join(map(str, table.labels[i].tolist()))
        else:
            lab = str(int(table.labels[i]))
        grp = "" if table.groups is None else table.groups[i]
        lab_h.update(f"{id_}\x1f{lab}\x1f{grp}\n".encode())
        img_h.update(f"{id_}\x1f{rel}\x1f{digests[i]}\n".encode())
    return TableFingerprints(labels=lab_h.hexdigest()[:16], images=img_h.hexdigest()[:16])


def _relative(path: str, prefix: str) -> str:
    """os.path.relpath for the common case of a path under the root, at a fraction of its cost."""
    return path[len(prefix) :] if path.startswith(prefix) else os.path.relpath(path, prefix)
