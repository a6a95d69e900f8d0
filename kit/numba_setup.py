"""Where numba keeps kit's compiled kernels and how its threads wait: set before kit imports numba.

- Cache: compiled kernels go to a user cache folder (`$XDG_CACHE_HOME/kit/numba`, else `~/.cache/kit/numba`,
  else a folder in the temp dir when neither is writable), never beside kit's sources, so a read-only install
  works and a second process loads the kernels instead of compiling them. `NUMBA_CACHE_DIR` set by the user wins.
- Threads: numba's `workqueue` threading layer, whose idle threads sleep instead of spin-waiting. OpenMP's
  default spin-wait made the threaded greedy kernel lose about half its speed whenever another process used the
  cores (docs/blend.md has the numbers). `NUMBA_THREADING_LAYER` set by the user wins.

Nothing here imports numba; `kernels_warm()` tells, without importing it, whether this install's kernels are
already compiled in the cache (kit.blend.scoring picks the numpy engine for small searches when they are not,
and class_bias its numpy search; rank_kernels and kit.cv's fold kernel compile on first use).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".kit-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return False
    return True


def default_cache_dir() -> Path:
    """The first writable of $XDG_CACHE_HOME/kit/numba, ~/.cache/kit/numba, $TMPDIR/kit-numba-USER."""
    candidates = []
    if os.environ.get("XDG_CACHE_HOME"):
        candidates.append(Path(os.environ["XDG_CACHE_HOME"]) / "kit" / "numba")
    candidates.append(Path.home() / ".cache" / "kit" / "numba")
    user = os.environ.get("USER") or str(os.getuid() if hasattr(os, "getuid") else "user")
    candidates.append(Path(tempfile.gettempdir()) / f"kit-numba-{user}")
    for c in candidates:
        if _writable(c):
            return c
    return candidates[-1]


def cache_dir() -> Path:
    return Path(os.environ["NUMBA_CACHE_DIR"]) if os.environ.get("NUMBA_CACHE_DIR") else default_cache_dir()


def configure() -> None:
    """Set the cache folder and the threading layer unless the user chose them (call before importing numba)."""
    if not os.environ.get("NUMBA_CACHE_DIR"):
        os.environ["NUMBA_CACHE_DIR"] = str(default_cache_dir())
    user_layer = bool(os.environ.get("NUMBA_THREADING_LAYER"))
    os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
    if "numba" in sys.modules:
        # numba was imported before kit and read its config then; both settings still apply (the cache folder
        # at the first compile, the threading layer when the threads first start)
        from numba.core import config

        config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]  # type: ignore[attr-defined]
        if not user_layer:
            config.THREADING_LAYER = "workqueue"  # type: ignore[attr-defined]


_WARM: set[str] = set()  # kernel modules found compiled: they stay so for this process


def kernels_warm(module: str = "kernels") -> bool:
    """Whether this install's kernels of kit.blend's `module` (the blend searches' by default) are compiled in
    the cache (numba's index files are there)."""
    if module in _WARM:
        return True
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "blend")  # where the kernel modules live
    # numba's UserProvidedCacheLocator: <cache>/<folder name>_<sha1 of the source folder's absolute path>
    folder = cache_dir() / f"{os.path.basename(here)}_{hashlib.sha1(here.encode()).hexdigest()}"
    if any(folder.glob(f"{module}.*.nbi")):
        _WARM.add(module)
        return True
    return False
