"""Can the per-image data pipeline feed the model? Images/s of the data pipeline alone (read each stored image
from an aspect-keeping uint8 cache on disk + kit.train.transforms' augmentation, through torch DataLoader
workers, batched as training batches them) divided by convnext_tiny's training-step images/s at 224 px on the
CPU, both measured in this run. Goal (issue 28): >= 3 with the default light preset and with rand-augment +
random erasing.

The store is kit's own (kit.data.cache.build_image_store, resize shorter_side 256 = 224 / crop_pct 0.875)
built from random JPEG files of aspect ratios 3:4 to 16:9, read by kit's training loader (TrainBatches over
`iterate`'s DataLoader), as `kit train` reads it. The load average is printed beside every figure: on a shared
machine the model's and the workers' rates move with it.

Run: .venv/bin/python bench/bench_data_pipeline.py [--images 384] [--workers 2] [--batch 16] [--steps 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ASPECTS = (3 / 4, 1.0, 4 / 3, 3 / 2, 16 / 9)
CONFIGS: dict[str, dict[str, Any]] = {
    "light (default)": {},
    "rand-augment + random erasing": {"auto_augment": "rand-m9-mstd0.5-inc1", "re_prob": 0.25, "hflip": True},
    "augmix": {"auto_augment": "augmix-m5-w4-d2", "hflip": True},
    "strong + jitter + blur": {"preset": "strong", "color_jitter": 0.4, "blur_prob": 0.3, "hflip": True},
    "albumentations (2 steps)": {
        "albumentations": [
            {"name": "HorizontalFlip", "p": 0.5},
            {"name": "RandomBrightnessContrast", "p": 0.5},
        ]
    },
}


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def write_store(folder: Path, n: int, short: int, seed: int = 0) -> Any:
    """kit's own image store (kit.data.cache.build_image_store, resize shorter_side) of `n` JPEG files of
    the ASPECTS at 1.5x the stored size, as `kit train` builds it."""
    from PIL import Image

    from kit.data.cache import Geometry, build_image_store
    from kit.data.table import Table

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        a = ASPECTS[i % len(ASPECTS)]
        s = round(short * 1.5)
        h, w = (s, round(s * a)) if a >= 1 else (round(s / a), s)
        p = folder / "images" / f"{i:05d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p, quality=90)
        paths.append(p)
    table = Table([p.stem for p in paths], paths)
    return build_image_store(
        table, Geometry("shorter_side", short), folder / "cache", split="train", report=print
    )


def pipeline_rate(store: Any, transform: Any, workers: int, batch: int) -> float:
    """Images/s through kit's training loader (kit.train.data.TrainBatches over the store, `iterate`'s
    DataLoader with `workers` workers): stored image -> augmented, normalised batch tensor."""
    from kit.train.data import TrainBatches, iterate

    order = np.random.default_rng(0).permutation(len(store))
    rows = [order[i : i + batch] for i in range(0, len(order) - batch + 1, batch)]
    labels = (np.arange(len(store)) % 10).astype(np.int64)
    it = iterate(TrainBatches(store, rows, labels, transform, 0), num_workers=workers)
    next(it)  # workers started and warmed up
    t0, n = time.perf_counter(), 0
    for x, _ in it:
        n += len(x)
    return n / (time.perf_counter() - t0)


def model_rate(batch: int, steps: int, size: int) -> float:
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model("convnext_tiny", pretrained=False, num_classes=10).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=384)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16, help="model step batch (the pipeline batches 32)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()

    import torch

    from kit.config.schema import AugmentConfig
    from kit.train.transforms import build_train_transform

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # convnext_tiny's pretrained config
    short = round(args.size / 0.875)
    print(f"torch threads {torch.get_num_threads()}, {os.cpu_count()} cores; {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        store = write_store(Path(tmp), args.images, short)
        m = model_rate(args.batch, args.steps, args.size)
        print(f"convnext_tiny train step at {args.size} px, batch {args.batch}: {m:.1f} img/s   ({load()})")
        for name, kw in CONFIGS.items():
            t = build_train_transform(AugmentConfig(**kw), args.size, mean, std, "bicubic")
            p = pipeline_rate(store, t, args.workers, 32)
            print(
                f"{name:32s} pipeline {p:7.1f} img/s with {args.workers} workers = {p / m:5.1f}x the model "
                f"(goal >= 3)   ({load()})"
            )
        m2 = model_rate(args.batch, args.steps, args.size)
        print(f"convnext_tiny again (drift check): {m2:.1f} img/s   ({load()})")


if __name__ == "__main__":
    main()
