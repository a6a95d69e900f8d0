"""Content fingerprint cost: hashing N real image files cold (no hash cache: every byte read and hashed)
against warm (workdir/cache/file_hashes.json present: one stat per file), in the same process. Also the old
names-and-sizes fingerprint (stat only, no cache) as a baseline for the warm path.

"Cold" reads files the OS has just written, so they come from the page cache: it measures hashing, not disk
reads. Goal: warm >= 10x faster than cold, and close to the stat-only baseline.

Run: .venv/bin/python bench/bench_fingerprint.py [--images 3000] [--size 96] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def make_table(root: Path, n: int, size: int):
    from PIL import Image

    from kit.data.table import Table

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = root / f"{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    labels = rng.integers(0, 10, n).astype(np.int64)
    return Table([f"{i:05d}" for i in range(n)], paths, labels, None, [str(c) for c in range(10)])


def names_and_sizes(table, root: Path) -> str:
    """The fingerprint kit used before content hashing (names, sizes, labels): the stat-only baseline."""
    h = hashlib.sha256()
    for i, (id_, p) in enumerate(zip(table.ids, table.paths, strict=True)):
        h.update(f"{id_}\x1f{os.path.relpath(p, root)}\x1f{p.stat().st_size}\x1f{table.labels[i]}\n".encode())
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--size", type=int, default=96, help="side of the random RGB PNGs")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from kit.data.fingerprint import FileHashes, table_fingerprints

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "img").mkdir()
        table = make_table(root / "img", args.images, args.size)
        mb = sum(p.stat().st_size for p in table.paths) / 1e6
        cold, warm, base = [], [], []
        for r in range(args.rounds):
            cache = root / f"hashes-{r}.json"
            t0 = time.perf_counter()
            fh = FileHashes(cache)
            fp_cold = table_fingerprints(table, root, fh).combined
            cold.append(time.perf_counter() - t0)
            assert fh.hashed == len(table)
            t0 = time.perf_counter()
            fh = FileHashes(cache)
            fp_warm = table_fingerprints(table, root, fh).combined
            warm.append(time.perf_counter() - t0)
            assert fh.hashed == 0 and fp_warm == fp_cold
            t0 = time.perf_counter()
            names_and_sizes(table, root)
            base.append(time.perf_counter() - t0)
        c, w, b = statistics.median(cold), statistics.median(warm), statistics.median(base)
        print(
            f"{len(table)} PNGs, {mb:.1f} MB, {FileHashes().workers} hashing threads, {args.rounds} rounds (median)"
        )
        print(
            f"cold (hash every file)        {c * 1000:8.1f} ms  {len(table) / c:9.0f} files/s  {mb / c:7.1f} MB/s"
        )
        print(f"warm (stat + cached digests)  {w * 1000:8.1f} ms  {len(table) / w:9.0f} files/s")
        print(f"names+sizes (old, stat only)  {b * 1000:8.1f} ms")
        print(f"cold / warm = {c / w:.1f}x; warm / names+sizes = {w / b:.2f}x")
        print(
            f"per 100k images: warm {w / len(table) * 1e5:.1f} s, cold {c / len(table) * 1e5:.1f} s (page-cached)"
        )
        print(f"load average: {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
