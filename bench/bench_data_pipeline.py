"""Can the per-image data pipeline feed the model? Images/s of the data pipeline alone (read each stored image
from an aspect-keeping uint8 cache on disk + kit.train.transforms' augmentation, through torch DataLoader
workers, batched as training batches them) divided by convnext_tiny's training-step images/s at 224 px on the
CPU, both measured in this run. Goal (issue 28): >= 3 with the default light preset and with rand-augment +
random erasing.

The store is synthetic (random uint8 images, shorter side 256 = 224 / crop_pct 0.875, aspect ratios from 3:4
to 16:9, packed in one memory-mapped .npy file, as an aspect-keeping cache holds them); reading it is what a
training Dataset does per row. The load average is printed beside every figure: on a shared machine the
model's and the workers' rates move with it.

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


class PackedImages:
    """uint8 images of any shape back to back in one .npy file, memory-mapped; `image(i)` is row i."""

    def __init__(self, path: Path, shapes: np.ndarray) -> None:
        self.path, self.shapes = path, shapes
        sizes = shapes[:, 0] * shapes[:, 1] * 3
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self._data: np.ndarray | None = None

    @classmethod
    def write(cls, path: Path, n: int, short: int, seed: int = 0) -> PackedImages:
        rng = np.random.default_rng(seed)
        shapes = []
        for i in range(n):
            a = ASPECTS[i % len(ASPECTS)]
            shapes.append((short, round(short * a)) if a >= 1 else (round(short / a), short))
        store = cls(path, np.array(shapes, dtype=np.int64))
        data = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(int(store.offsets[-1]),))
        for i, (h, w) in enumerate(shapes):
            data[store.offsets[i] : store.offsets[i + 1]] = rng.integers(0, 256, h * w * 3, dtype=np.uint8)
        data.flush()
        return store

    def __len__(self) -> int:
        return len(self.shapes)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_data": None}  # each worker maps the file itself

    def image(self, i: int) -> np.ndarray:
        if self._data is None:
            self._data = np.load(self.path, mmap_mode="r")
        h, w = self.shapes[i]
        return np.asarray(self._data[self.offsets[i] : self.offsets[i + 1]]).reshape(h, w, 3)


class Augmented:  # a torch Dataset by protocol
    def __init__(self, store: PackedImages, transform: Any, seed: int) -> None:
        self.store, self.transform, self.seed = store, transform, seed

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> Any:
        from kit.train.data import derive_seed

        return self.transform(self.store.image(i), derive_seed(self.seed, i)), i % 10


def pipeline_rate(store: PackedImages, transform: Any, workers: int, batch: int) -> float:
    from torch.utils.data import DataLoader

    loader = DataLoader(Augmented(store, transform, 0), batch_size=batch, shuffle=True, num_workers=workers)
    it = iter(loader)
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
        store = PackedImages.write(Path(tmp) / "images.npy", args.images, short)
        print(f"store: {args.images} images, shorter side {short}, {store.offsets[-1] / 2**20:.0f} MiB")
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
