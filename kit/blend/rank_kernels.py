"""Numba kernels for rank metrics in blend search: binary ROC AUC of a blended score column, and the rank of
the true class for top-k metrics, each one pass (plus a radix sort) per candidate evaluation.

AUC: each float32 score is mapped to a uint32 whose unsigned order is the float order (-0.0 and +0.0 are one
key), and sorted with a stable LSD radix sort
(three passes of 11 bits: O(n), no comparisons). Runs of equal keys get half credit, as scikit-learn's
roc_auc_score (average ranks). Importing this module imports numba; kit.blend.scoring imports it lazily.
"""

from __future__ import annotations

import numpy as np

from kit.numba_setup import configure

configure()  # the cache folder and threading layer, before numba is imported

import numba  # noqa: E402

RADIX_BITS = 11
RADIX = 1 << RADIX_BITS
PASSES = 3  # 3 * 11 >= 32 bits


@numba.njit(cache=True, nogil=True)
def auc_of(vals: np.ndarray, pos: np.ndarray, keys: np.ndarray, tmp: np.ndarray) -> float:
    """ROC AUC of the float32 scores `vals` [n] (contiguous) against the boolean target `pos` [n].

    `keys` and `tmp` are uint64 work buffers [n] (the sortable key in the high 32 bits, the label in bit 0, so
    one sort carries both). NaN when `pos` holds a single value.
    """
    n = vals.shape[0]
    bits = vals.view(np.uint32)
    sign = np.uint32(0x80000000)
    zero = np.uint32(0x80000000)  # -0.0's bits: read as +0.0 (one key)
    for i in range(n):
        b = bits[i]
        if b == zero:
            b = np.uint32(0)
        k = ~b if b & sign else b | sign  # unsigned order = float order
        keys[i] = (np.uint64(k) << np.uint64(32)) | np.uint64(1 if pos[i] else 0)
    count = np.zeros(RADIX, dtype=np.int64)
    src, dst = keys, tmp
    for p in range(PASSES):
        shift = np.uint64(32 + p * RADIX_BITS)
        mask = np.uint64(RADIX - 1)
        count[:] = 0
        for i in range(n):
            count[(src[i] >> shift) & mask] += 1
        total = 0
        for d in range(RADIX):
            c = count[d]
            count[d] = total
            total += c
        for i in range(n):
            d = (src[i] >> shift) & mask
            dst[count[d]] = src[i]
            count[d] += 1
        src, dst = dst, src
    # walk the sorted keys: each run of equal keys credits its positives with the negatives below it plus
    # half of the negatives in the run
    n_pos = 0
    n_neg = 0
    credit = 0.0
    i = 0
    while i < n:
        key = src[i] >> np.uint64(32)
        run_pos = 0
        run_neg = 0
        while i < n and (src[i] >> np.uint64(32)) == key:
            if src[i] & np.uint64(1):
                run_pos += 1
            else:
                run_neg += 1
            i += 1
        credit += run_pos * (n_neg + 0.5 * run_neg)
        n_pos += run_pos
        n_neg += run_neg
    if n_pos == 0 or n_neg == 0:
        return np.nan
    return credit / (n_pos * n_neg)


@numba.njit(cache=True, nogil=True)
def true_rank_added(S: np.ndarray, P: np.ndarray, scale: np.float32, y: np.ndarray, out: np.ndarray) -> None:
    """out[i] = 1-based position of the true class in row i of `P * scale + S` [n, C] ordered by descending
    score, ties to the higher class index first (scikit-learn's top_k_accuracy_score order)."""
    n, C = S.shape
    for i in range(n):
        t = y[i]
        vt = P[i, t] * scale + S[i, t]
        r = 1
        for c in range(C):
            v = P[i, c] * scale + S[i, c]
            if v > vt or (v == vt and c > t):
                r += 1
        out[i] = r
