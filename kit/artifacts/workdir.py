"""The workdir is kit's: it writes there only into a folder it created (or an empty one) and marked.

kit replaces folds.csv, members/, blends/ and cache/ in its workdir whole, so a folder that already holds
someone else's files (a project folder, /etc, a home directory) is refused before anything is written. The
marker `.kit-workdir.json` says the folder is kit's; a workdir an earlier kit made without the marker is
recognised by holding nothing but kit's own entries (its folds.csv always comes with folds.fingerprint).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from kit.artifacts.atomic import TMP_PATTERN, atomic_write_text
from kit.errors import KitError

MARKER = ".kit-workdir.json"
# everything kit itself puts at the top of a workdir
KIT_ENTRIES = frozenset(
    {
        MARKER,
        "folds.csv",
        "folds.fingerprint",
        "cache",
        "members",
        "blends",
        "runs",
        "locks",
        "tune",
        "tracking",
        "clip-tiny",  # `kit demo`'s random-init CLIP
        "report.html",  # `kit report`'s page
        "report-label-overrides.csv",  # the label fixes it suggests, and their sidecar
        "report-label-overrides.csv.json",
    }
)


# files a user or tool may keep in any folder that kit never touches
HARMLESS = frozenset({".gitkeep", ".gitignore", ".keep", ".DS_Store", "Thumbs.db"})


def _foreign(entries: list[str]) -> list[str]:
    return sorted(e for e in entries if e not in KIT_ENTRIES | HARMLESS and not TMP_PATTERN.match(e))


def is_kit_workdir(workdir: Path) -> bool:
    """Whether kit has marked `workdir` as its own."""
    return (workdir / MARKER).is_file()


def workdir_problem(workdir: Path) -> str | None:
    """Why kit may not write into `workdir`, or None (it is kit's, empty, or not there yet). Writes nothing."""
    if not os.path.lexists(workdir):
        return None
    if not workdir.is_dir():
        return f"workdir: {workdir} is a file, not a folder; point workdir at a folder of its own, e.g. workdir: work"
    if is_kit_workdir(workdir):
        return None
    try:
        entries = os.listdir(workdir)
    except OSError as e:
        return f"workdir: {workdir} cannot be read ({e.strerror}); point workdir at a folder of yours"
    foreign = _foreign(entries)
    if not foreign and ("folds.fingerprint" in entries or not set(entries) & KIT_ENTRIES):
        return None  # empty (or only harmless dotfiles), or made by an earlier kit
    shown = foreign or sorted(entries)
    more = f" and {len(shown) - 5} more" if len(shown) > 5 else ""
    return (
        f"workdir: {workdir} already holds files kit did not write ({', '.join(shown[:5])}{more}); kit "
        "replaces what it finds in its workdir, so it writes only into a folder it created. Point workdir at "
        "a new folder (e.g. workdir: work next to kit.yaml); nothing was written there"
    )


def claim_workdir(workdir: Path) -> Path:
    """Refuse a workdir that holds files kit did not write; create and mark it otherwise. Call before the first
    write into the workdir."""
    problem = workdir_problem(workdir)
    if problem:
        raise KitError(problem)
    if not is_kit_workdir(workdir):
        workdir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            workdir / MARKER,
            json.dumps(
                {
                    "written_by": "kit",
                    "note": "kit's workdir: kit replaces what it finds here; keep your own files elsewhere",
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                },
                indent=2,
            )
            + "\n",
        )
    return workdir
