"""Atomic writes: everything lands under a temporary name first and is renamed into place.

Temporary names carry the writer's host and pid, `.NAME.kit-HOST-PID-RAND.tmp` (`.old` for a folder being
replaced), so a later process can tell a dead writer's leftovers from a live one's: `clean_stale_temps`
removes those of dead processes on this host (kill -9 while a multi-GB image cache was written) and nothing
else.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from kit.errors import KitError

HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"
TMP_PATTERN = re.compile(
    r"^\.(?P<name>.+)\.kit-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[0-9a-f]{8}\.(?P<kind>tmp|old)$"
)


def tmp_name(path: Path, kind: str = "tmp") -> Path:
    """A hidden sibling of `path` naming this host and process: `.NAME.kit-HOST-PID-RAND.tmp`."""
    return path.with_name(f".{path.name}.kit-{HOST}-{os.getpid()}-{secrets.token_hex(4)}.{kind}")


def _process_start(pid: int) -> float | None:
    """When process `pid` started (epoch seconds), from /proc; None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
        if stat[0] == "Z":  # a zombie: dead, not yet reaped by its parent
            return float("inf")
        return boot + int(stat[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return None


def writer_alive(pid: int, written: float) -> bool:
    """Whether process `pid` may still be writing a temp last modified at `written` (epoch seconds).

    A pid that runs but started after the temp was last written is a reused pid, not the writer."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    start = _process_start(pid)
    return start is None or start <= written + 1.0


def clean_stale_temps(folder: Path, *, recursive: bool = True) -> list[tuple[Path, int]]:
    """Remove kit's temporary files and folders left by dead processes of this host under `folder`.

    Only names made by `tmp_name` are touched; temps of live processes and of other hosts are kept. A `.old`
    folder whose target is missing (killed between the two renames of `atomic_dir`) is put back in place.
    Returns the removed paths with their sizes in bytes."""
    removed: list[tuple[Path, int]] = []
    if not folder.is_dir():
        return removed
    for dirpath, dirnames, filenames in os.walk(folder):
        base = Path(dirpath)
        for entry in [*dirnames, *filenames]:
            m = TMP_PATTERN.match(entry)
            if m is None or m["host"] != HOST:
                continue
            path = base / entry
            try:
                st = path.lstat()
            except OSError:
                continue
            if writer_alive(int(m["pid"]), st.st_mtime):
                continue
            target = base / m["name"]
            if m["kind"] == "old" and not target.exists():
                os.replace(path, target)
            else:
                size = _size(path)
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append((path, size))
        dirnames[:] = [d for d in dirnames if recursive and not TMP_PATTERN.match(d)]
    return removed


def clean_and_report(folder: Path, *, recursive: bool = True) -> list[tuple[Path, int]]:
    """`clean_stale_temps`, with a warning saying what was removed and how much room it gave back."""
    import warnings

    removed = clean_stale_temps(folder, recursive=recursive)
    if removed:
        size = sum(n for _, n in removed) / 1e6
        warnings.warn(
            f"removed {len(removed)} temporary file(s) that killed kit processes left in {folder} "
            f"({size:.1f} MB): {', '.join(str(p) for p, _ in removed[:5])}",
            stacklevel=3,
        )
    return removed


def _size(path: Path) -> int:
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file())


@contextmanager
def _named(path: Path) -> Iterator[None]:
    """OSErrors that name no file (a full disk fails a write(), not an open()) or only kit's temporary name
    are raised again naming `path`, the artifact being written, so the user sees which one failed."""
    try:
        yield
    except OSError as e:
        name = None if e.filename is None else Path(e.filename).name
        if e.errno is not None and (name is None or TMP_PATTERN.match(name)):
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on success it is renamed onto `path`, on failure removed."""
    with _named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_name(path)
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            with suppress(OSError):  # a read-only folder: there is no temp to remove
                tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    with atomic_file(path) as tmp, tmp.open("w", encoding=encoding, newline="") as f:
        f.write(text)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as tmp, tmp.open("wb") as f:
        f.write(data)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_file(path) as tmp, tmp.open("wb") as f:
        np.save(f, arr)


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
    with _named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_name(path)
        tmp.mkdir()
        try:
            yield tmp
            old = None
            if path.exists():
                old = tmp_name(path, "old")
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
