"""Where `kit predict` and `kit export` write besides their output: scratch folders in the temporary folder
($TMPDIR) that a later kit run can prove abandoned and remove, and the errors when a disk refuses a write.

`kit predict` decodes images into a memory map there (4.4 GB for 10,000 images at 384 px) and `kit export
--wheels` copies kit's source there. Each folder is named as kit's atomic temps are (kit.artifacts.atomic:
`.kit-predict.kit-HOST-PID-RAND.tmp`), so when a run is killed (kill -9, a notebook's restart, the OOM killer)
the next run removes what it left: only names kit makes, only of dead processes of this host.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from kit.artifacts.atomic import clean_and_report, tmp_name
from kit.errors import KitError, os_error_fix

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
    return KitError(
        f"temporary folder {root} (TMPDIR): cannot hold {what}: {e.strerror or e}; {os_error_fix(e, 'TMPDIR')} "
        f"(`TMPDIR=/path/with/room {command} ...`). Nothing was written"
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
    return KitError(
        f"{flag} {path}: could not write {what}: {e.strerror or e}; {os_error_fix(e, flag)}. Nothing was written"
    )
