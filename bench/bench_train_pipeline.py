"""Data pipeline overhead of `kit train` on the CPU: images/s through the real pipeline (uint8 cache + batch
augmentation + weighted sampler + DataLoader) divided by images/s on pre-made tensors, same model, same step
code, same process. Goal: >= 0.9. Also shows that epoch 2 decodes no image (kit.data.cache.DecodeStats).

Run: .venv/bin/python bench/bench_train_pipeline.py [--images 384] [--size 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def make_table(root: Path, n: int, n_classes: int = 10):
    from PIL import Image

    from kit.data.table import Table

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = root / f"{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    labels = np.minimum(rng.geometric(0.3, n) - 1, n_classes - 1).astype(np.int64)  # long-tailed
    return Table([f"{i:05d}" for i in range(n)], paths, labels, None, [str(c) for c in range(n_classes)])


class BatchClock:
    """A Reporter that records the time between training batches (train_one_epoch advances once per batch)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._last = 0.0

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[BatchClock]:
        self._last = time.perf_counter()
        yield self

    def advance(self, n: int = 1) -> None:
        now = time.perf_counter()
        self.times.append(now - self._last)
        self._last = now

    def describe(self, text: str) -> None:
        pass

    def line(self, text: str) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=384)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", default="test_convnext")
    args = ap.parse_args()

    import timm
    import torch

    from kit.config.schema import AugmentConfig, LossConfig, SamplerConfig
    from kit.data.cache import DecodeStats, Geometry, build_image_store
    from kit.train.data import Preprocess, derive_seed, epoch_order, split_batches
    from kit.train.device import select_device
    from kit.train.loop import Trainee, train_one_epoch
    from kit.train.losses import KitLoss
    from kit.train.transforms import build_train_transform

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "img").mkdir()
        table = make_table(root / "img", args.images)
        n_classes = len(table.classes)
        d0 = DecodeStats.decoded
        cache = build_image_store(table, Geometry("shorter_side", args.size), root / "cache", split="train")
        decoded_build = DecodeStats.decoded - d0

        model = timm.create_model(args.model, num_classes=n_classes)
        from timm.data import resolve_model_data_config

        data_cfg = resolve_model_data_config(model)
        mean, std = tuple(data_cfg["mean"]), tuple(data_cfg["std"])
        setup = select_device("bench", "cpu")
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        t = Trainee(
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=torch.amp.GradScaler("cpu", enabled=False),
            loss_fn=KitLoss(LossConfig(kind="focal"), np.bincount(table.labels, minlength=n_classes)),
            augment=Preprocess(
                mean,
                std,
                args.size,
                build_train_transform(
                    AugmentConfig(preset="light", hflip=True), args.size, mean, std, "bicubic"
                ),
            ),
            setup=setup,
            grad_clip=1.0,
        )
        y = table.labels
        sampler = SamplerConfig(kind="weighted", power=0.5)
        n_batches = args.images // args.batch

        # baseline: the same step on tensors made before the clock starts
        premade = [
            (torch.randn(args.batch, 3, args.size, args.size), torch.randint(0, n_classes, (args.batch,)))
            for _ in range(n_batches)
        ]

        def baseline_epoch() -> list[float]:
            model.train()
            times, last = [], time.perf_counter()
            for x, yb in premade:
                loss = t.loss_fn(model(x), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                now = time.perf_counter()
                times.append(now - last)
                last = now
            return times

        def pipeline_epoch(epoch: int) -> list[float]:
            order = epoch_order(y, sampler, derive_seed(0, 0, epoch, 2), n_classes)
            rows = split_batches(order, args.batch, drop_last=True)
            clock = BatchClock()
            train_one_epoch(t, cache, rows, y, derive_seed(0, 0, epoch, 3), clock)
            return clock.times

        baseline_epoch()  # warm-up (oneDNN primitives, allocator)
        d1 = DecodeStats.decoded
        pipeline_epoch(0)
        decoded_epoch1 = DecodeStats.decoded - d1
        base: list[list[float]] = []
        pipe: list[list[float]] = []
        d2 = DecodeStats.decoded
        for r in range(args.rounds):  # interleaved, so background load hits both alike
            base.append(baseline_epoch())
            pipe.append(pipeline_epoch(r + 1))
        decoded_later = DecodeStats.decoded - d2
        d3 = DecodeStats.decoded
        build_image_store(table, Geometry("shorter_side", args.size), root / "cache", split="train")
        decoded_rebuild = DecodeStats.decoded - d3

    # per-batch medians: robust to other processes stealing the CPU now and then
    b = args.batch / statistics.median([x for r in base for x in r])
    p = args.batch / statistics.median([x for r in pipe for x in r])
    b_mean = args.batch * sum(map(len, base)) / sum(map(sum, base))
    p_mean = args.batch * sum(map(len, pipe)) / sum(map(sum, pipe))
    print(
        f"model {args.model}, {args.images} images {args.size}px, batch {args.batch}, CPU fp32, "
        f"{torch.get_num_threads()} threads, {args.rounds} interleaved epochs each"
    )
    print(f"pre-made tensors : {b:8.1f} images/s (median batch)   {b_mean:8.1f} images/s (whole epochs)")
    print(f"real pipeline    : {p:8.1f} images/s (median batch)   {p_mean:8.1f} images/s (whole epochs)")
    print(
        f"pipeline / pre-made = {p / b:.3f} (median batch), {p_mean / b_mean:.3f} (whole epochs)   (goal >= 0.9)"
    )
    print(
        f"decoded: building the cache {decoded_build}, epoch 1 {decoded_epoch1}, "
        f"epochs 2..{args.rounds + 1} {decoded_later}, opening the cache again {decoded_rebuild}"
    )


if __name__ == "__main__":
    main()
