"""Near-duplicate search (kit.data.duplicates): the threshold's evidence, hashing speed, search speed.

1. threshold: pHash distances between distinct crops of photographs and 8x8 digits, and between a crop and
   its resized / recompressed / brightened copy (the figures behind MAX_DISTANCE).
2. hashing: N JPEGs (random drawings, 1% of them planted copies) in a temp folder. Baseline: imagehash's
   phash on the fully decoded image, one thread, on a subset; against it, kit's ImageHasher (JPEG draft,
   thread pool) on the same subset, then on all N cold (file digests + decode, cache written) and warm (a
   second run: one stat per file, no image opened).
3. search: 100k random hashes with planted near-duplicates: near_duplicates (pigeonhole banding), its recall,
   and brute force (every pair's popcount) against banding on a subset, side by side.

Files the OS has just written come from the page cache: "cold" measures decoding, not disk reads.

Run: .venv/bin/python bench/bench_duplicates.py [--images 20000] [--hashes 100000]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_image

    return [load_sample_image(n) for n in ("china.jpg", "flower.jpg")]


def crop(rng: np.random.Generator, arr: np.ndarray, out: tuple[int, int]):
    from PIL import Image

    h, w = arr.shape[:2]
    cw = int(w * rng.uniform(0.25, 0.6))
    ch = min(h - 1, int(cw * rng.uniform(0.7, 1.3)))
    x, y = int(rng.integers(0, w - cw)), int(rng.integers(0, h - ch))
    return Image.fromarray(arr[y : y + ch, x : x + cw]).resize(out)


def jpeg(im, q: int):
    from PIL import Image

    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=q)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def threshold_figures(n_crops: int) -> None:
    from PIL import Image, ImageEnhance, ImageFilter
    from sklearn.datasets import load_digits

    from kit.data.duplicates import phash_image

    rng = np.random.default_rng(0)
    base = [crop(rng, photos()[k % 2], (256, 256)) for k in range(n_crops)]
    h = np.array([phash_image(b) for b in base], dtype=np.uint64)
    d = np.bitwise_count(h[:, None] ^ h[None, :])[np.triu_indices(len(h), 1)]
    print(
        f"distinct photo crops ({len(d)} pairs, crops may overlap): quantiles 0.1% {np.quantile(d, 0.001):.0f}, "
        f"1% {np.quantile(d, 0.01):.0f}, 50% {np.quantile(d, 0.5):.0f}; pairs <= 4/6/8: "
        f"{(d <= 4).sum()}/{(d <= 6).sum()}/{(d <= 8).sum()}"
    )
    digits = load_digits().images[:600]
    dh = np.array(
        [
            phash_image(
                Image.fromarray((x * 16).clip(0, 255).astype(np.uint8)).resize((64, 64), Image.BICUBIC)
            )
            for x in digits
        ],
        dtype=np.uint64,
    )
    dd = np.bitwise_count(dh[:, None] ^ dh[None, :])[np.triu_indices(len(dh), 1)]
    print(
        f"distinct 8x8 digits ({len(dd)} pairs): quantiles 0.01% {np.quantile(dd, 0.0001):.0f}, "
        f"0.1% {np.quantile(dd, 0.001):.0f}; pairs <= 4/6/8: {(dd <= 4).sum()}/{(dd <= 6).sum()}/{(dd <= 8).sum()}"
    )
    transforms = {
        "resize 50%": lambda im: im.resize((128, 128)),
        "resize 25%": lambda im: im.resize((64, 64)),
        "jpeg q30": lambda im: jpeg(im, 30),
        "jpeg q10": lambda im: jpeg(im, 10),
        "brightness +25%": lambda im: ImageEnhance.Brightness(im).enhance(1.25),
        "brightness -25%": lambda im: ImageEnhance.Brightness(im).enhance(0.75),
        "contrast -30%": lambda im: ImageEnhance.Contrast(im).enhance(0.7),
        "blur 1px": lambda im: im.filter(ImageFilter.GaussianBlur(1)),
        "aspect 256x200": lambda im: im.resize((256, 200)),
        "resize+jpeg+bright": lambda im: ImageEnhance.Brightness(jpeg(im.resize((128, 128)), 40)).enhance(
            1.15
        ),
        "crop 3% (not a target)": lambda im: im.crop((8, 8, 248, 248)),
        "rotate 3deg (not a target)": lambda im: im.rotate(3),
    }
    flat = np.array([np.asarray(b.convert("L")).std() < 25 for b in base])
    print(
        f"copies of {len(base)} crops: textured ({(~flat).sum()}) | flat ({flat.sum()}, grayscale std < 25)"
    )
    for name, f in transforms.items():
        c = np.array([phash_image(f(b)) for b in base], dtype=np.uint64)
        dist = np.bitwise_count(h ^ c)
        cells = [
            f"max {x.max():2d}  99% {np.quantile(x, 0.99):4.1f}  mean {x.mean():.2f}" if len(x) else "-"
            for x in (dist[~flat], dist[flat])
        ]
        print(f"  {name:28s} {cells[0]}  |  {cells[1]}")


def drawing(rng: np.random.Generator, size: tuple[int, int]):
    """A distinct image: a random gradient under a dozen random ellipses and rectangles."""
    from PIL import Image, ImageDraw

    w, h = size
    ramp = np.linspace(0, 1, w)[None, :, None] * rng.uniform(0, 255, 3) + rng.uniform(0, 255, 3) / 2
    im = Image.fromarray(np.broadcast_to(ramp, (h, w, 3)).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x0, x1 = sorted(rng.integers(0, w, 2).tolist())
        y0, y1 = sorted(rng.integers(0, h, 2).tolist())
        fill = tuple(rng.integers(0, 256, 3).tolist())
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1 + 8, y1 + 8), fill=fill)
    return im


def make_jpegs(root: Path, n: int, size: tuple[int, int]) -> tuple[list[Path], list[tuple[int, int]]]:
    """n JPEGs of random drawings, the last 1% copies (half size, quality 60) of earlier ones; returns paths
    and (original, copy) rows."""
    from PIL import Image

    rng = np.random.default_rng(1)
    n_copies = max(1, n // 100)
    paths, planted = [], []
    for i in range(n - n_copies):
        p = root / f"{i:06d}.jpg"
        drawing(rng, size).save(p, quality=90)
        paths.append(p)

    for k, src in enumerate(rng.choice(n - n_copies, n_copies, replace=False).tolist()):
        p = root / f"copy{k:05d}.jpg"
        with Image.open(paths[src]) as im:
            im.resize((size[0] // 2, size[1] // 2)).save(p, quality=60)
        planted.append((src, len(paths)))
        paths.append(p)
    return paths, planted


def bench_hashing(n: int, size: tuple[int, int], subset: int, workers: int | None) -> None:
    import imagehash
    from PIL import Image

    from kit.data.duplicates import ImageHasher, near_duplicates

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "img").mkdir()
        t = time.perf_counter()
        paths, planted = make_jpegs(root / "img", n, size)
        mb = sum(p.stat().st_size for p in paths) / 1e6
        print(
            f"\n{n} JPEGs {size[0]}x{size[1]} ({mb:.0f} MB) written in {time.perf_counter() - t:.1f} s; {load()}"
        )
        sub = paths[:subset]
        t = time.perf_counter()
        for p in sub:
            with Image.open(p) as im:
                imagehash.phash(im)
        base = time.perf_counter() - t
        t = time.perf_counter()
        ImageHasher(None, workers).hashes(sub)
        ours = time.perf_counter() - t
        print(
            f"subset of {len(sub)}: imagehash.phash, full decode, 1 thread {base:.2f} s ({1e3 * base / len(sub):.2f} "
            f"ms/image); kit draft + {ImageHasher(None, workers).workers} threads {ours:.2f} s: {base / ours:.1f}x; "
            f"{load()}"
        )
        cache = root / "cache"
        t = time.perf_counter()
        cold = ImageHasher(cache, workers)
        h = cold.hashes(paths)
        t_cold = time.perf_counter() - t
        t = time.perf_counter()
        warm = ImageHasher(cache, workers)
        h2 = warm.hashes(paths)
        t_warm = time.perf_counter() - t
        assert np.array_equal(h, h2) and warm.decoded == 0 and warm.files.hashed == 0
        t = time.perf_counter()
        found = near_duplicates(h)
        t_search = time.perf_counter() - t
        together = {frozenset(c) for c in found.train_clusters}
        hit = sum(any({a, b} <= c for c in together) for a, b in planted)
        print(
            f"all {n}: cold (digest + decode, cache written) {t_cold:.1f} s ({1e3 * t_cold / n:.2f} ms/image), warm "
            f"(second run, {warm.decoded} decoded) {t_warm:.2f} s: {t_cold / t_warm:.0f}x; search {t_search:.2f} s; "
            f"planted copies found {hit}/{len(planted)}; clusters {len(found.train_clusters)} "
            f"({found.n_clustered} images); {load()}"
        )


def bench_search(n: int, n_planted: int, subset: int) -> None:
    from kit.data.duplicates import MAX_DISTANCE, hash_pairs, near_duplicates

    rng = np.random.default_rng(2)
    base = rng.integers(0, np.iinfo(np.uint64).max, n - n_planted, dtype=np.uint64, endpoint=True)
    src = rng.choice(len(base), n_planted, replace=False)
    copies = base[src].copy()
    for k in range(n_planted):
        for bit in rng.choice(64, int(rng.integers(0, MAX_DISTANCE + 1)), replace=False):
            copies[k] ^= np.uint64(1) << np.uint64(bit)
    h = np.concatenate([base, copies])
    t = time.perf_counter()
    found = near_duplicates(h)
    t_all = time.perf_counter() - t
    together = {frozenset(c) for c in found.train_clusters}
    hit = sum(any({int(a), len(base) + k} <= c for c in together) for k, a in enumerate(src))
    print(
        f"\nsearch over {n} random hashes ({n_planted} planted copies within {MAX_DISTANCE} bits): "
        f"near_duplicates {t_all:.2f} s, planted found {hit}/{n_planted}; {load()}"
    )
    k = min(n_planted, subset // 10)  # the subset holds k planted pairs
    rest = np.setdiff1d(np.arange(len(base)), src[:k])[: subset - 2 * k]
    sub = h[np.concatenate([src[:k], len(base) + np.arange(k), rest])]
    t = time.perf_counter()
    i, _, _ = hash_pairs(sub, None, MAX_DISTANCE)
    t_band = time.perf_counter() - t
    t = time.perf_counter()
    n_brute = 0
    cols = np.arange(len(sub))
    for s in range(0, len(sub), 2000):  # all pairs, in blocks of rows
        d = np.bitwise_count(sub[s : s + 2000, None] ^ sub[None, :])
        n_brute += int(((d <= MAX_DISTANCE) & (cols[None, :] > cols[s : s + 2000, None])).sum())
    t_brute = time.perf_counter() - t
    assert n_brute == len(i), (n_brute, len(i))
    print(
        f"subset of {subset}: brute force {t_brute:.2f} s, banding {t_band:.3f} s: {t_brute / t_band:.0f}x, "
        f"{len(i)} pairs each; {load()}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--size", type=int, nargs=2, default=(320, 240))
    ap.add_argument("--subset", type=int, default=1000, help="images for the single-thread baseline")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--hashes", type=int, default=100_000)
    ap.add_argument("--crops", type=int, default=300, help="photo crops for the threshold figures")
    args = ap.parse_args()
    print(load())
    threshold_figures(args.crops)
    bench_hashing(args.images, tuple(args.size), args.subset, args.workers)
    bench_search(args.hashes, args.hashes // 100, 20_000)


if __name__ == "__main__":
    main()
