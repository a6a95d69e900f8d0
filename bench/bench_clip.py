"""CLIP probe speed: retraining the heads from cached embeddings vs recomputing the embeddings.

1. The demo competition (real PNGs) with a ViT-B-32 encoder (random weights: the same compute as pretrained
   ones, no download) at 224 px, 5 folds. Run A computes the embeddings and trains the heads; run B, the
   same member with other head settings, reads the cached embeddings. The uint8 image cache is built before
   both, so A's extra time is encoding only. Ratio = A / B (goal >= 10x).
2. The heads alone on 10,000 synthetic cached embeddings (D=512, 50 long-tailed classes, 5 folds, the
   clip_probe defaults: focal loss, weighted sampler, 100 epochs, early stopping 20).

Run: `.venv/bin/python bench/bench_clip.py [--model ViT-B-32] [--device cpu]`
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import yaml


def probe_ratio(model: str, device: str, tmp: Path) -> None:
    from kit.config.load import load_config
    from kit.data.cache import build_image_cache
    from kit.demo.digits import build_demo, competition_section
    from kit.train.embeddings import EmbedStats
    from kit.train.fold_loop import train_member
    from kit.workspace import open_workspace

    demo = build_demo(tmp / "demo")
    member = {"kind": "clip_probe", "model": model, "tta": ["plain"], "device": device}
    cfg_path = tmp / "kit.yaml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "competition": competition_section(demo),
                "folds": {"k": 5},
                "workdir": str(tmp / "work"),
                "members": {"clip": member},
            }
        )
    )
    ws = open_workspace(load_config(cfg_path))
    import open_clip  # import cost is not what is measured

    size = open_clip.get_model_preprocess_cfg(open_clip.create_model(model))["size"]
    size = size[0] if isinstance(size, (list, tuple)) else size
    for split, table, fp in [
        ("train", ws.train, ws.data_fingerprint),
        ("test", ws.test, ws.test_fingerprint),
    ]:
        build_image_cache(table, size, ws.cache_dir, split=split, fingerprint=fp)
    n = len(ws.train) + len(ws.test or [])

    cfg_a = load_config(cfg_path)
    t = time.perf_counter()
    before = EmbedStats.images
    train_member(ws, "clip", cfg_a.members["clip"], None)
    a = time.perf_counter() - t
    encoded_a = EmbedStats.images - before

    cfg_b = load_config(cfg_path, ["members.clip.loss.kind=ce", "members.clip.lr=0.02"])
    t = time.perf_counter()
    before = EmbedStats.images
    train_member(ws, "clip", cfg_b.members["clip"], None)
    b = time.perf_counter() - t
    encoded_b = EmbedStats.images - before

    print(
        f"probe on the demo: {n} images ({len(ws.train)} train, {len(ws.test or [])} test), {model} at {size}px, "
        f"5 folds, device {device}"
    )
    print(f"  A  embeddings recomputed + heads : {a:8.2f} s  ({encoded_a} images encoded)")
    print(f"  B  heads from cached embeddings  : {b:8.2f} s  ({encoded_b} images encoded)")
    print(f"  ratio A / B                      : {a / b:8.1f}x  (goal >= 10x)")


def heads_on_synthetic(device: str, n: int = 10_000, dim: int = 512, n_classes: int = 50) -> None:
    from kit.config.schema import ClipProbeMember
    from kit.cv.folds import assign_folds
    from kit.train.kinds.clip_probe import fit_member_head

    rng = np.random.default_rng(0)
    p = 0.93 ** np.arange(n_classes)
    y = rng.choice(n_classes, size=n, p=p / p.sum())
    common = rng.normal(size=dim) * 3  # CLIP embeddings share a large common direction
    x = (common + rng.normal(size=(n_classes, dim))[y] * 0.15 + rng.normal(size=(n, dim))).astype(np.float32)
    m = ClipProbeMember(kind="clip_probe", model="ViT-B-32")
    fold = assign_folds(y, 5, seed=0)
    t = time.perf_counter()
    epochs, scores = [], []
    for f in range(5):
        tr, va = fold != f, fold == f
        h = fit_member_head(m, x[tr], y[tr], x[va], y[va], n_classes, "weighted_f1", None, f, device)
        epochs.append(len(h.history))
        scores.append(h.best_score)
    s = time.perf_counter() - t
    print(
        f"heads on {n:,} synthetic embeddings (D={dim}, {n_classes} classes, 5 folds, device {device}, "
        f"defaults: focal, weighted sampler, batch {m.batch_size}, up to {m.epochs} epochs, patience "
        f"{m.early_stopping})"
    )
    print(
        f"  wall {s:.2f} s for 5 folds ({s / sum(epochs) * 1000:.1f} ms/epoch); epochs run {epochs}; "
        f"fold weighted F1 {np.round(scores, 3).tolist()}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    with tempfile.TemporaryDirectory() as d:
        probe_ratio(args.model, args.device, Path(d))
    heads_on_synthetic(args.device)


if __name__ == "__main__":
    main()
