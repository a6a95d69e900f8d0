"""numba's compiled kernels go to a user cache folder (a read-only install works), its threads do not spin-wait,
and the first small blend after an install does not wait for the compiler."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import time
import numpy as np
from kit.numba_setup import kernels_warm
from kit.blend.scoring import FastScorer
from kit.blend.blenders import Greedy
rng = np.random.default_rng(0)
X = rng.random((3000, 4, 5)).astype(np.float32)
y = rng.integers(0, 5, 3000)
print("warm", kernels_warm())
print("auto engine", FastScorer("weighted_f1", y, 5, "probs", "auto").engine.name)
t = time.perf_counter()
w_auto = Greedy("weighted_f1", "probs", rounds=10).fit(X, y).weights_
auto_s = time.perf_counter() - t
w_numba = Greedy("weighted_f1", "probs", rounds=10, engine="numba").fit(X, y).weights_
import numba
print("same weights", bool(np.array_equal(w_auto, w_numba)))
print("layer", numba.config.THREADING_LAYER)
print("cache", numba.config.CACHE_DIR)
print("auto seconds", round(auto_s, 3))
"""


def _run(pythonpath: Path, cache_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(PYTHONPATH=str(pythonpath), XDG_CACHE_HOME=str(cache_home), PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=cache_home
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return dict(line.rsplit(" ", 1) for line in r.stdout.strip().splitlines())


def test_read_only_install_caches_kernels_in_the_user_cache_and_starts_cold_on_numpy(tmp_path: Path) -> None:
    ro = tmp_path / "site"
    shutil.copytree(REPO / "kit", ro / "kit", ignore=shutil.ignore_patterns("__pycache__"))
    before = sorted(p.relative_to(ro).as_posix() for p in ro.rglob("*"))
    for p in [ro, *ro.rglob("*")]:  # the installed package is read-only
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        cold = _run(ro, tmp_path)
        cache = tmp_path / "kit" / "numba"
        assert (
            cold["warm"] == "False" and cold["auto engine"] == "numpy"
        )  # no compile for a small first blend
        assert cold["same weights"] == "True" and cold["layer"] == "workqueue"
        assert Path(cold["cache"]) == cache and any(cache.rglob("kernels.*.nbi"))
        after = sorted(p.relative_to(ro).as_posix() for p in ro.rglob("*"))
        assert after == before  # nothing written beside kit's sources
        warm = _run(ro, tmp_path)  # a second process loads the compiled kernels
        assert warm["warm"] == "True" and warm["auto engine"] == "numba"
    finally:
        for p in [ro, *ro.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
