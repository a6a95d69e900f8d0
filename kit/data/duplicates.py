"""Near-duplicate images: a 64-bit perceptual hash of every image, and the pairs within a Hamming distance.

Hashes are imagehash's pHash (the DCT of a 32 x 32 grayscale copy), of the image as kit sees it (EXIF
orientation applied); JPEGs are decoded at 1/2 to 1/8 scale (`Image.draft`, at least DRAFT px a side), which
moves a hash by far less than the threshold. `ImageHasher` caches the hashes in cache_dir by each file's
content digest (kit.data.fingerprint.FileHashes, whose own cache means a second run only stats the files),
so a second run over the same images decodes none.

The search never compares all pairs: a hash is four 16-bit chunks, and two hashes within distance d agree to
within d // 4 bits on at least one chunk (pigeonhole), so each hash is looked up in per-chunk bucket tables
under every flip of at most d // 4 bits, and only those candidates are measured exactly.

MAX_DISTANCE, the default threshold, comes from measuring pHash (bench/bench_duplicates.py prints the
figures): on 300 crops of photographs, a copy resized to 25-50%, recompressed at JPEG quality 10-30,
brightened or darkened by 25%, with contrast -30%, blurred by 1 px or squashed in aspect moved the hash of a
textured crop by at most 8 bits and by 6 or fewer in 99% of copies; distinct crops lay 10 or more bits apart
in 99.9% of pairs, and distinct 8x8 digits (the hardest case: alike, tiny images) 6 or more in 99.99%. Flat
images (sky, blank pages: grayscale std < 25) hash unstably, up to 30 bits apart for the same edits, so their
copies can be missed. Crops beyond ~3% and rotations are not found: pHash is not built for them.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.errors import KitError

if TYPE_CHECKING:
    import numpy as np

MAX_DISTANCE = 6
DRAFT = 64  # JPEGs decode at the smallest DCT scale that keeps both sides at least this many px
HASH_VERSION = 1  # bumped when a hash of the same bytes would change
CACHE_FILE = f"image_hashes-phash64-v{HASH_VERSION}.npz"
_CHUNKS, _CHUNK_BITS = 4, 16
DECODE_CHUNK = 256  # files one thread decodes per task
_BLOCK = 1 << 22  # candidate pairs measured at once (bounds memory on skewed hash sets)


def gray_32(im: Any) -> np.ndarray:
    """The 32 x 32 grayscale copy pHash transforms (imagehash.phash's: `convert("L")`, Lanczos resize) of an
    opened PIL image as kit sees it, a JPEG decoded at reduced scale first."""
    import numpy as np
    from PIL import Image

    from kit.data.cache import to_rgb

    if im.format == "JPEG":
        im.draft("L", (DRAFT, DRAFT))
    return np.asarray(to_rgb(im).convert("L").resize((32, 32), Image.Resampling.LANCZOS))


def phash_pixels(px: np.ndarray) -> np.ndarray:
    """uint64 [N]: imagehash.phash of each [32, 32] grayscale image in px [N, 32, 32], in one batched DCT: the
    8 x 8 lowest frequencies of the 2-D DCT-II against their median, the first bit the highest."""
    import numpy as np
    from scipy.fftpack import dct

    low = dct(dct(px.astype(np.float64), axis=1), axis=2)[:, :8, :8].reshape(len(px), 64)
    bits = low > np.median(low, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").reshape(-1).astype(np.uint64)


def phash_image(im: Any) -> int:
    """The 64-bit pHash of an opened PIL image."""
    return int(phash_pixels(gray_32(im)[None])[0])


def _gray_files(paths: list[Path]) -> list[np.ndarray | str]:
    """gray_32 of each file, or why it could not be read."""
    from PIL import Image

    out: list[np.ndarray | str] = []
    for p in paths:
        try:
            with Image.open(p) as im:
                out.append(gray_32(im))
        except FileNotFoundError:
            out.append(f"{p}: missing")
        except Exception as e:  # PIL raises several types for corrupt files
            out.append(f"{p}: unreadable ({type(e).__name__}: {e})")
    return out


class ImageHasher:
    """Hashes image files, reading each content once: `decoded` counts the images decoded by this object,
    `files.hashed` the files it read to digest (both 0 when every hash came from cache_dir)."""

    def __init__(self, cache_dir: Path | None = None, workers: int | None = None) -> None:
        from kit.data.fingerprint import HASH_CACHE_FILE, FileHashes

        self.workers = workers or min(8, os.cpu_count() or 1)  # PIL decodes outside the GIL
        self.cache_file = None if cache_dir is None else cache_dir / CACHE_FILE
        self.files = FileHashes(None if cache_dir is None else cache_dir / HASH_CACHE_FILE, self.workers)
        self.decoded = 0
        self._known: dict[str, int] = self._read()

    def _read(self) -> dict[str, int]:
        import numpy as np

        if self.cache_file is None:
            return {}
        try:
            with np.load(self.cache_file) as z:
                digests, hashes = z["digests"], z["hashes"]
        except (OSError, ValueError, KeyError):
            return {}  # missing or damaged: only a cache
        if digests.shape != hashes.shape or hashes.dtype != np.uint64:
            return {}
        return dict(zip(digests.astype(str).tolist(), hashes.tolist(), strict=True))

    def hashes(self, paths: list[Path]) -> np.ndarray:
        """uint64 [len(paths)]: each image's pHash; unreadable or missing images: a KitError naming each."""
        import numpy as np

        from kit.data.fingerprint import MISSING

        paths = [Path(p) for p in paths]
        # without a cache there is nothing to key on by content: every path is decoded
        keys = [str(p) for p in paths] if self.cache_file is None else self.files.digests(paths)
        todo: dict[str, Path] = {}  # one decode per content (or per path without a cache)
        bad: list[str] = []
        for p, k in zip(paths, keys, strict=True):
            if k == MISSING:
                bad.append(f"{p}: missing")
            elif k not in self._known:
                todo.setdefault(k, p)
        if todo:
            keys_todo, files = list(todo), list(todo.values())
            starts = range(0, len(files), DECODE_CHUNK)
            with ThreadPoolExecutor(self.workers) as pool:
                parts = pool.map(_gray_files, [files[i : i + DECODE_CHUNK] for i in starts])
                for start, part in zip(starts, parts, strict=True):
                    ok = [j for j, g in enumerate(part) if not isinstance(g, str)]
                    bad += [g for g in part if isinstance(g, str)]
                    if ok:
                        hashes = phash_pixels(np.stack([part[j] for j in ok]))
                        self._known.update(
                            zip((keys_todo[start + j] for j in ok), hashes.tolist(), strict=True)
                        )
            self.decoded += len(todo)
            self._save()
        if bad:
            raise KitError(
                f"{len(bad)} image(s) could not be hashed; replace or remove them (and their table rows):",
                problems=sorted(bad),
            )
        return np.fromiter((self._known[k] for k in keys), dtype=np.uint64, count=len(keys))

    def _save(self) -> None:
        import contextlib

        import numpy as np

        from kit.artifacts.atomic import atomic_file

        if self.cache_file is None:
            return
        merged = {**self._read(), **self._known}  # keep what another process added meanwhile
        self._known = merged
        with contextlib.suppress(OSError), atomic_file(self.cache_file) as tmp, tmp.open("wb") as f:
            np.savez(
                f,
                digests=np.array(list(merged), dtype="S32"),
                hashes=np.fromiter(merged.values(), dtype=np.uint64, count=len(merged)),
            )


def image_hashes(
    paths: list[Path], *, cache_dir: Path | None = None, workers: int | None = None
) -> np.ndarray:
    """uint64 pHash of every image in `paths` (cached in cache_dir by content; see ImageHasher)."""
    return ImageHasher(cache_dir, workers).hashes(paths)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between uint64 hashes, elementwise."""
    import numpy as np

    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


def _flips(radius: int) -> np.ndarray:
    """Every 16-bit mask with at most `radius` bits set (0 first)."""
    import numpy as np

    masks = np.arange(1 << _CHUNK_BITS, dtype=np.uint32)
    return masks[np.bitwise_count(masks) <= radius]


def hash_pairs(
    a: np.ndarray, b: np.ndarray | None = None, max_distance: int = MAX_DISTANCE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, distance) of every pair with hamming(a[i], b[j]) <= max_distance, sorted by (i, j); with b None,
    the pairs within a (i < j). Identical hashes are pairs too."""
    import numpy as np

    if not 0 <= max_distance <= 16:
        raise ValueError(
            f"max_distance {max_distance}: choose 0..16 (of 64 bits; past ~12 distinct images match)"
        )
    a = np.ascontiguousarray(a, dtype=np.uint64)
    within = b is None
    bb = a if b is None else np.ascontiguousarray(b, dtype=np.uint64)
    flips = _flips(max_distance // _CHUNKS)
    found_i: list[np.ndarray] = []
    found_j: list[np.ndarray] = []
    for c in range(_CHUNKS):
        shift = np.uint64(c * _CHUNK_BITS)
        ca = ((a >> shift) & np.uint64(0xFFFF)).astype(np.int64)
        cb = ((bb >> shift) & np.uint64(0xFFFF)).astype(np.int64)
        order = np.argsort(cb, kind="stable")
        counts = np.bincount(cb, minlength=1 << _CHUNK_BITS)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        for f in flips.tolist():
            q = ca ^ f
            n = counts[q]
            rows = np.flatnonzero(n)
            if within and f == 0:
                rows = rows[n[rows] > 1]  # a bucket of one holds only the row itself
            if not len(rows):
                continue
            cum = np.cumsum(n[rows])  # in blocks of rows whose candidates fit in _BLOCK
            for part in np.split(
                rows, np.searchsorted(cum, np.arange(_BLOCK, cum[-1], _BLOCK), side="right")
            ):
                if not len(part):
                    continue
                k = n[part]
                ii = np.repeat(part, k)
                offs = np.arange(len(ii)) - np.repeat(np.cumsum(k) - k, k)
                jj = order[np.repeat(starts[q[part]], k) + offs]
                keep = (ii < jj) if within else np.ones(len(ii), dtype=bool)
                ii, jj = ii[keep], jj[keep]
                close = hamming(a[ii], bb[jj]) <= max_distance
                found_i.append(ii[close])
                found_j.append(jj[close])
    if not found_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    key = np.unique(np.concatenate(found_i) * len(bb) + np.concatenate(found_j))  # one pair, many chunks
    i, j = key // len(bb), key % len(bb)
    return i, j, hamming(a[i], bb[j])


@dataclass(frozen=True)
class Duplicates:
    """Near-duplicates found by `near_duplicates`: clusters within train (row indices, size >= 2, largest
    first, rows ascending) and train/test pairs (train row, test row, distance; by distance, then rows)."""

    train_clusters: list[list[int]]
    train_test: list[tuple[int, int, int]] = field(default_factory=list)
    max_distance: int = MAX_DISTANCE

    @property
    def n_clustered(self) -> int:
        """Train rows in some cluster."""
        return sum(len(c) for c in self.train_clusters)

    def cluster_of(self, n_train: int) -> np.ndarray:
        """int64 [n_train]: a group id per train row, the cluster's index for clustered rows (0 the largest)
        and a new id each for the rest."""
        import numpy as np

        out = np.full(n_train, -1, dtype=np.int64)
        for c, rows in enumerate(self.train_clusters):
            out[rows] = c
        rest = np.flatnonzero(out < 0)
        out[rest] = len(self.train_clusters) + np.arange(len(rest))
        return out


def _rows_of(values: np.ndarray, k: int) -> list[np.ndarray]:
    """For each value 0..k-1, the rows holding it (ascending)."""
    import numpy as np

    return np.split(np.argsort(values, kind="stable"), np.cumsum(np.bincount(values, minlength=k))[:-1])


def near_duplicates(
    train_hashes: np.ndarray, test_hashes: np.ndarray | None = None, max_distance: int = MAX_DISTANCE
) -> Duplicates:
    """Clusters of train images within `max_distance` bits of each other (connected components: a chain of
    close pairs is one cluster) and the train/test pairs within it."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    train = np.asarray(train_hashes, dtype=np.uint64)
    uniq, inv = np.unique(train, return_inverse=True)  # identical hashes are one node
    i, j, _ = hash_pairs(uniq, None, max_distance)
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(len(uniq), len(uniq)))
    _, label = connected_components(graph, directed=False)
    clusters = [g.tolist() for g in _rows_of(label[inv], int(label.max(initial=-1)) + 1) if len(g) >= 2]
    clusters.sort(key=lambda g: (-len(g), g[0]))
    pairs: list[tuple[int, int, int]] = []
    if test_hashes is not None and len(test_hashes) and len(train):
        test = np.asarray(test_hashes, dtype=np.uint64)
        tuniq, tinv = np.unique(test, return_inverse=True)
        ui, vj, d = hash_pairs(uniq, tuniq, max_distance)
        train_rows, test_rows = _rows_of(inv, len(uniq)), _rows_of(tinv, len(tuniq))
        for u, v, dist in zip(ui.tolist(), vj.tolist(), d.tolist(), strict=True):
            pairs += [(r, t, dist) for r in train_rows[u].tolist() for t in test_rows[v].tolist()]
        pairs.sort(key=lambda p: (p[2], p[0], p[1]))
    return Duplicates(train_clusters=clusters, train_test=pairs, max_distance=max_distance)
