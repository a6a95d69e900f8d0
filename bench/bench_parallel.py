"""`kit train --jobs 2` (2 worker processes, cores // 2 torch threads each) against the serial `kit train`
(one process, torch's default threads) on the demo's timm members, side by side in one run.

Both runs are real `python -m kit train` processes on their own copy of the demo workdir, so each pays the
same image decoding and startup; the parallel run also pays the workers' spawn (each imports torch and timm
and opens the workspace). Prints the wall time of each with the load average (/proc/loadavg) before and after
it, and the ratio serial / parallel (> 1: the workers are faster).

Run: .venv/bin/python bench/bench_parallel.py [--epochs 2] [--k 4] [--members convnext,swin,effnet] [--jobs 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def timed_train(folder: Path, members: list[str], overrides: list[str], extra: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    sets = [a for s in overrides for a in ("--set", s)]
    cmd = [sys.executable, "-m", "kit", "train", *members, "-c", str(folder / "kit.yaml"), *sets, *extra]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--k", type=int, default=4, help="folds.k (tasks = members x k)")
    ap.add_argument("--members", default="convnext,swin,effnet")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()

    from kit.demo.run import prepare_demo_folder
    from kit.train.threads import usable_cores
    from kit.train.workers import worker_threads

    members = args.members.split(",")
    overrides = [f"folds.k={args.k}", *(f"members.{m}.epochs={args.epochs}" for m in members)]
    with tempfile.TemporaryDirectory(prefix="kit-bench-parallel-") as tmp:
        serial_dir, par_dir = Path(tmp) / "serial", Path(tmp) / "parallel"
        prepare_demo_folder(serial_dir)
        prepare_demo_folder(par_dir)
        print(
            f"demo members {members}, folds.k={args.k}, {args.epochs} epochs: {len(members) * args.k} "
            f"(member, fold) tasks; {usable_cores()} usable cores"
        )
        before = loadavg()
        serial = timed_train(serial_dir, members, overrides, [])
        print(f"serial   (1 process, torch default threads) {serial:7.1f} s   load {before} -> {loadavg()}")
        before = loadavg()
        par = timed_train(par_dir, members, overrides, ["--jobs", str(args.jobs)])
        print(
            f"--jobs {args.jobs} ({worker_threads(args.jobs)} thread(s) per worker)     {par:7.1f} s   "
            f"load {before} -> {loadavg()}"
        )
        print(f"ratio serial / --jobs {args.jobs}: {serial / par:.2f}x")


if __name__ == "__main__":
    main()
