"""Stratified group k-fold, owned by kit: scikit-learn 1.8+'s StratifiedGroupKFold(shuffle=True), fold for fold.

Why kit has its own: scikit-learn before 1.8 shuffled the groups' class counts without re-mapping the groups
(scikit-learn PR #32540), so its "stratified" group folds were in effect random group folds; kit's folds must
not depend on which scikit-learn a machine has. And its greedy loop runs in Python, a few numpy calls per
(group, fold): 3.6 s for 20,000 groups of 50 classes, where this numba kernel takes 0.26 s (docs/reliability.md).

The algorithm (scikit-learn's): shuffle the groups (RandomState(seed)), order them by the standard deviation of
their class counts (largest first, stable), and put each group in the fold that minimises the mean over
classes of the standard deviation over folds of (class count in fold / class count); near-ties (np.isclose) go
to the fold with fewer rows. The kernel computes every float exactly as numpy does (the same operations in the
same order, numpy's pairwise summation for the mean over classes), so the folds are identical
(tests/test_folds.py compares them with scikit-learn's on many random inputs).
"""

from __future__ import annotations

import numpy as np

from kit.numba_setup import configure

configure()  # the cache folder and threading layer, before numba is imported

import numba  # noqa: E402


@numba.njit(cache=True, nogil=True)
def _block_sum(a: np.ndarray, lo: int, n: int) -> float:
    """numpy's float64 add.reduce of a[lo:lo + n] for n <= 128: 8 accumulators (a plain loop below 8)."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - n % 8:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@numba.njit(cache=True, nogil=True)
def _pairwise_sum(a: np.ndarray, lo: int, n: int) -> float:
    """numpy's float64 add.reduce of a[lo:lo + n] (contiguous): above 128 values, the sum of the two halves
    (the first rounded down to a multiple of 8), each summed the same way. Written with explicit stacks: numba
    cannot load a recursive function from its cache."""
    if n <= 128:
        return _block_sum(a, lo, n)
    todo_lo = np.empty(128, dtype=np.int64)
    todo_n = np.empty(128, dtype=np.int64)  # -1: add the last two values
    values = np.empty(128)
    top, nv = 1, 0
    todo_lo[0], todo_n[0] = lo, n
    while top > 0:
        top -= 1
        start, m = todo_lo[top], todo_n[top]
        if m == -1:
            nv -= 1
            values[nv - 1] = values[nv - 1] + values[nv]
        elif m <= 128:
            values[nv] = _block_sum(a, start, m)
            nv += 1
        else:
            half = m // 2
            half -= half % 8
            todo_n[top] = -1  # after both halves
            todo_lo[top + 1], todo_n[top + 1] = start + half, m - half  # the second half, done after
            todo_lo[top + 2], todo_n[top + 2] = start, half  # the first half, done first
            top += 3
    return values[0]


@numba.njit(cache=True, nogil=True)
def _fold_sum(col: np.ndarray, k: int, single_column: bool) -> float:
    """numpy's sum over axis 0 of a [k, C] array, one column of it in `col`: row by row, except when the array
    has a single column (numpy then sums it as one contiguous run, pairwise)."""
    if single_column:
        return _pairwise_sum(col, 0, k)
    s = 0.0
    for j in range(k):
        s += col[j]
    return s


@numba.njit(cache=True, nogil=True)
def greedy_group_folds(counts: np.ndarray, class_sizes: np.ndarray, order: np.ndarray, k: int) -> np.ndarray:
    """Fold [G] of each group (rows of `counts` [G, C], float64 class counts), placed in `order`."""
    G, C = counts.shape
    per_fold = np.zeros((k, C))
    std = np.empty(C)
    ratio = np.empty(k)  # one class's (count in fold / class count) over the folds
    square = np.empty(k)
    fold_of = np.full(G, -1, dtype=np.int64)
    for g in order:
        best = -1
        min_eval = np.inf
        min_rows = np.inf
        for i in range(k):
            for c in range(C):
                per_fold[i, c] += counts[g, c]
            for c in range(C):  # np.std(per_fold / class_sizes, axis=0), as numpy computes it
                for j in range(k):
                    ratio[j] = per_fold[j, c] / class_sizes[c]
                mean = _fold_sum(ratio, k, C == 1) / k
                for j in range(k):
                    d = ratio[j] - mean
                    square[j] = d * d
                std[c] = np.sqrt(_fold_sum(square, k, C == 1) / k)
            for c in range(C):
                per_fold[i, c] -= counts[g, c]
            fold_eval = _pairwise_sum(std, 0, C) / C
            rows = _pairwise_sum(per_fold[i], 0, C)  # whole numbers: exact in any order
            close = np.isfinite(min_eval) and abs(fold_eval - min_eval) <= 1e-8 + 1e-5 * abs(min_eval)
            if fold_eval < min_eval or (close and rows < min_rows):
                min_eval = fold_eval
                min_rows = rows
                best = i
        for c in range(C):
            per_fold[best, c] += counts[g, c]
        fold_of[g] = best
    return fold_of


def stratified_group_folds(labels: np.ndarray, group_codes: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index [n] per row: stratified by `labels`, every group (`group_codes`, any integers) in one fold."""
    _, y_inv, y_cnt = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    _, g_inv = np.unique(np.asarray(group_codes), return_inverse=True)
    y_inv, g_inv = y_inv.ravel(), g_inv.ravel()
    G = int(g_inv.max()) + 1
    counts = np.zeros((G, len(y_cnt)))
    np.add.at(counts, (g_inv, y_inv), 1.0)
    perm = np.arange(G)
    np.random.RandomState(seed).shuffle(perm)
    counts = counts[perm]
    inv = np.empty_like(perm)
    inv[perm] = np.arange(G)
    order = np.argsort(-np.std(counts, axis=1), kind="stable")
    fold_of = greedy_group_folds(counts, y_cnt.astype(np.float64), order.astype(np.int64), k)
    return fold_of[inv[g_inv]]
