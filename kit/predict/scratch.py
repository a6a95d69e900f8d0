"""Where `kit predict` and `kit export` write besides their output: scratch folders in the temporary folder
($TMPDIR) that a later kit run can prove abandoned and remove, and the errors when a disk refuses a write.

`kit predict` decodes images into a memory map there (4.4 GB for 10,000 images at 384 px) and `kit export
--wheels` copies kit's source there. Each folder is named as kit's atomic temps are (kit.artifacts.atomic:
`.kit-predict.kit-HOST-PID-RAND.tmp`), so when a run is killed (kill -9, a notebook's restart, the OOM killer)
the next run removes what it left: only names kit makes, only of dead processes of this host.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from kit.artifacts.atomic import clean_and_report, tmp_name
from kit.errors import KitError

TMP_VARIABLES = ("TMPDIR", "TEMP", "TMP")


def temp_root() -> Path:
    """The temporary folder the user named (TMPDIR, TEMP or TMP), else the system's. Unlike
    tempfile.gettempdir, a named folder that is full is not silently swapped for /tmp: the error names it."""
    for var in TMP_VARIABLES:
        if os.environ.get(var):
            return Path(os.environ[var])
    return Path(tempfile.gettempdir())


def clean_dead_temps(folder: Path) -> None:
    """Remove kit's temporary files and folders that dead kit processes left directly in `folder`; say so."""
    with suppress(OSError):  # a folder we may not list or clean: nothing of ours to remove there
        clean_and_report(folder, recursive=False)


def no_room(root: Path, what: str, e: OSError, command: str = "kit predict") -> KitError:
    """A KitError for a temporary folder that cannot take `what`: the folder, the reason, the fix."""
    reason = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = (
            f"free space there, or point TMPDIR at a disk with room (`TMPDIR=/path/with/room {command} ...`)"
        )
    elif e.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR):
        fix = f"point TMPDIR at a writable folder (`TMPDIR=/path/you/own {command} ...`)"
    else:
        fix = "check that folder, or point TMPDIR at another one"
    return KitError(
        f"temporary folder {root} (TMPDIR): cannot hold {what}: {reason}; {fix}. Nothing was written"
    )


@contextmanager
def scratch_dir(name: str, what: str, command: str = "kit predict") -> Iterator[Path]:
    """A new folder `.NAME.kit-HOST-PID-RAND.tmp` in the temporary folder, removed when the block ends
    (whatever happens short of a kill, which the next run's `clean_dead_temps` covers)."""
    root = temp_root()
    clean_dead_temps(root)
    path = tmp_name(root / name)
    try:
        path.mkdir()
    except OSError as e:
        raise no_room(root, what, e, command) from None
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_failed(flag: str, path: Path, e: OSError, what: str) -> KitError:
    """A KitError for an output (`--out PATH`) the disk refused: the path, the reason, the fix."""
    reason = e.strerror or str(e)
    fixes = {
        errno.ENOSPC: f"the disk is full: free space there, or give {flag} on a disk with room",
        errno.EDQUOT: f"the disk quota is used up: free space there, or give {flag} elsewhere",
        errno.EROFS: f"that filesystem is read-only: give {flag} in a writable folder",
        errno.EACCES: f"you may not write there: give {flag} in a folder of yours",
        errno.EPERM: f"the system refused it: give {flag} in a folder of yours",
        errno.ENAMETOOLONG: f"a name is longer than the filesystem allows: give a shorter {flag}",
    }
    fix = fixes.get(e.errno or -1, f"check that folder, or give another {flag}")
    return KitError(f"{flag} {path}: could not write {what}: {reason}; {fix}. Nothing was written")
