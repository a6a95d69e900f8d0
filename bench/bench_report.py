"""How long `kit report` takes, and how large its page is, on a large synthetic workspace.

Builds (once; reused from --dir) a competition of N train images (default 100,000) in C classes plus a test
set, as kit would leave it after training: the workspace opened (folds, file digests), the image cache store
`kit train` builds, the perceptual-hash cache, and M members whose OOF/test logits are written with kit's
artifact writer (random logits with the true class boosted, so the errors, calibration and label issues are
those of a mediocre model). No blend: a blend adds reading its small files and one [N, C] array. Then builds
the report R times (`--cold-hashes`: the first without the pHash cache, as a first report whose images
`kit init` did not hash) and prints the build time, the page size against SIZE_BOUND_BYTES and the load average.

    .venv/bin/python bench/bench_report.py --n 100000 --dir /tmp/kit-bench-report
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_workspace(root: Path, n: int, n_test: int, n_classes: int, n_members: int) -> Path:
    from PIL import Image

    from kit.artifacts.member import write_member
    from kit.config.load import load_config
    from kit.data.cache import Geometry, build_image_store
    from kit.data.duplicates import image_hashes
    from kit.workspace import open_workspace

    cfg_path = root / "kit.yaml"
    if (root / "ready").exists():
        return cfg_path
    rng = np.random.default_rng(0)
    data = root / "data"
    colours = rng.integers(0, 256, (n_classes, 3), dtype=np.uint8)
    y = np.concatenate([np.arange(n_classes), np.minimum(rng.zipf(1.3, n - n_classes) - 1, n_classes - 1)])
    lines = ["id,img_path,label"]
    t0 = time.perf_counter()
    for split, count in (("train", n), ("test", n_test)):
        for i in range(count):
            folder = data / split / f"{i // 1000:03d}"
            if i % 1000 == 0:
                folder.mkdir(parents=True, exist_ok=True)
            c = int(y[i]) if split == "train" else i % n_classes
            px = np.clip(colours[c] + rng.integers(-40, 40, (16, 20, 3)), 0, 255).astype(np.uint8)
            name = f"{split}/{i // 1000:03d}/{i:06d}.jpg"
            Image.fromarray(px).save(data / name, quality=85)
            if split == "train":
                lines.append(f"{i:06d},{name},class_{c:03d}")
    (data / "train.csv").write_text("\n".join(lines) + "\n")
    (data / "test.csv").write_text(
        "id,img_path\n" + "".join(f"t{i:06d},test/{i // 1000:03d}/{i:06d}.jpg\n" for i in range(n_test))
    )
    print(f"wrote {n + n_test} images in {time.perf_counter() - t0:.0f}s", flush=True)
    cfg = {
        "competition": {
            "root": str(data),
            "train": "train.csv",
            "test": "test.csv",
            "id_column": "id",
            "image_column": "img_path",
            "label_column": "label",
            "metric": "weighted_f1",
        },
        "folds": {"k": 5, "seed": 0},
        "workdir": str(root / "work"),
        "members": {
            f"m{j}": {"kind": "timm", "model": "test_convnext", "img_size": 32} for j in range(n_members)
        },
    }
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    config = load_config(cfg_path)
    t0 = time.perf_counter()
    ws = open_workspace(config)  # folds and the file digests (cached by stat for every later open)
    assert ws.test is not None
    fps = ws.fingerprints()
    print(f"opened the workspace (digests of every image) in {time.perf_counter() - t0:.0f}s", flush=True)
    t0 = time.perf_counter()
    for split, table, fp in (
        ("train", ws.train, ws.train_images_fingerprint),
        ("test", ws.test, ws.test_images_fingerprint),
    ):
        build_image_store(table, Geometry("shorter_side", 32), ws.cache_dir, split=split, fingerprint=fp)
    print(f"built the image cache in {time.perf_counter() - t0:.0f}s", flush=True)
    t0 = time.perf_counter()
    image_hashes(ws.train.paths, cache_dir=ws.cache_dir)
    image_hashes(ws.test.paths, cache_dir=ws.cache_dir)
    print(f"hashed every image (pHash cache) in {time.perf_counter() - t0:.0f}s", flush=True)
    labels = ws.train.labels
    assert labels is not None
    n_classes = len(ws.classes)  # the long tail may leave some of the drawn classes empty
    for j in range(n_members):
        oof = rng.normal(size=(n, 1, n_classes)).astype(np.float32)
        oof[np.arange(n), 0, labels] += 2.5 + 0.3 * j
        test = rng.normal(size=(n_test, 1, n_classes)).astype(np.float32)
        folds = {str(f): 0.5 for f in range(5)}
        write_member(
            ws.workdir, f"m{j}", oof=oof, test=test, views=["plain"], classes=ws.classes, fingerprints=fps,
            config={"member": config.members[f"m{j}"].model_dump(mode="json")},
            metrics={"metric": "weighted_f1", "pooled": {"weighted_f1": 0.5}, "per_fold": folds}, timings={},
        )  # fmt: skip
    (root / "ready").write_text("")
    return cfg_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--test", type=int, default=10_000)
    ap.add_argument("--classes", type=int, default=200)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/kit-bench-report"))
    ap.add_argument(
        "--cold-hashes",
        action="store_true",
        help="delete the pHash cache before the first run (a first report)",
    )
    a = ap.parse_args()
    from kit.config.load import load_config
    from kit.report.build import SIZE_BOUND_BYTES, build_report

    root = a.dir / f"n{a.n}-c{a.classes}-m{a.members}"
    root.mkdir(parents=True, exist_ok=True)
    cfg_path = build_workspace(root, a.n, a.test, a.classes, a.members)
    cfg = load_config(cfg_path)
    if a.cold_hashes:
        from kit.data.duplicates import CACHE_FILE

        (root / "work" / "cache" / CACHE_FILE).unlink(missing_ok=True)
    for r in range(a.repeats):
        t0 = time.perf_counter()
        result = build_report(cfg)
        took = time.perf_counter() - t0
        missing = [s.id for s in result.missing()]
        print(
            f"run {r + 1}{' (pHash cache cold)' if a.cold_hashes and r == 0 else ''}: report of {a.n} train / {a.test} test images, {a.classes} classes, {a.members} members "
            f"in {took:.1f}s; {result.size / 1e6:.2f} MB (bound {SIZE_BOUND_BYTES / 1e6:.1f} MB); sections "
            f"without input: {missing}; load average {os.getloadavg()}",
            flush=True,
        )


if __name__ == "__main__":
    main()
