"""numba kernels for class_bias's coordinate ascent (kit.blend.postprocess) under argmax metrics.

Moving class c's offset decides, per row, only between c and the best other class. These kernels keep each
row's best and second-best class (value, lowest index on ties: numpy's argmax rule) across the ascent, so the
best other class costs O(n) per class instead of an argmax over every class, and count each grid value's
confusion matrix in one pass. Sums are float32 exactly as the numpy path computes them (`L[c] + v`), so the
offsets are the same (tests/test_selection.py).
"""

from __future__ import annotations

import numpy as np

from kit.numba_setup import configure

configure()  # the cache folder and threading layer, before numba is imported

import numba  # noqa: E402


@numba.njit(cache=True, nogil=True)
def _row_top_two(S: np.ndarray, i: int) -> tuple[int, np.float32, int, np.float32]:
    """(best class, its value, second class, its value) of row i of S [C, n]; ties go to the lower class."""
    C = S.shape[0]
    bi, bv = 0, S[0, i]
    si, sv = 1, S[1, i]
    if sv > bv:
        bi, bv, si, sv = 1, sv, 0, bv
    for c in range(2, C):
        v = S[c, i]
        if v > bv:
            si, sv = bi, bv
            bi, bv = c, v
        elif v > sv:
            si, sv = c, v
    return bi, bv, si, sv


@numba.njit(cache=True, nogil=True)
def top_two(S: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row of S [C, n] (C >= 2): best class and value, second class and value."""
    n = S.shape[1]
    bi = np.empty(n, dtype=np.int64)
    si = np.empty(n, dtype=np.int64)
    bv = np.empty(n, dtype=np.float32)
    sv = np.empty(n, dtype=np.float32)
    for i in range(n):
        bi[i], bv[i], si[i], sv[i] = _row_top_two(S, i)
    return bi, bv, si, sv


@numba.njit(cache=True, nogil=True)
def set_class(
    S: np.ndarray, c: int, row: np.ndarray, bi: np.ndarray, bv: np.ndarray, si: np.ndarray, sv: np.ndarray
) -> None:
    """S[c] = row, keeping the top two of every row: a row whose top two held c is rescanned, others compare."""
    n = S.shape[1]
    for i in range(n):
        v = row[i]
        S[c, i] = v
        if bi[i] == c or si[i] == c:
            bi[i], bv[i], si[i], sv[i] = _row_top_two(S, i)
        elif v > bv[i] or (v == bv[i] and c < bi[i]):
            si[i], sv[i] = bi[i], bv[i]
            bi[i], bv[i] = c, v
        elif v > sv[i] or (v == sv[i] and c < si[i]):
            si[i], sv[i] = c, v


@numba.njit(cache=True, nogil=True)
def offset_confusions(
    Lc: np.ndarray,
    c: int,
    grid: np.ndarray,
    y: np.ndarray,
    bi: np.ndarray,
    bv: np.ndarray,
    si: np.ndarray,
    sv: np.ndarray,
    n_classes: int,
) -> np.ndarray:
    """[G, C, C] confusion (true, predicted) when class c's scores are Lc + grid[g]: each row predicts c when
    that beats its best other class (greater, or equal with c the lower class), else that class."""
    n = Lc.shape[0]
    G = grid.shape[0]
    base = np.zeros((n_classes, n_classes), dtype=np.int64)
    other = np.empty(n, dtype=np.int64)
    other_v = np.empty(n, dtype=np.float32)
    for i in range(n):
        if bi[i] == c:
            other[i], other_v[i] = si[i], sv[i]
        else:
            other[i], other_v[i] = bi[i], bv[i]
        base[y[i], other[i]] += 1
    out = np.empty((G, n_classes, n_classes), dtype=np.int64)
    for g in range(G):
        cm = out[g]
        cm[:, :] = base
        v = grid[g]
        for i in range(n):
            val = Lc[i] + v
            o = other[i]
            if val > other_v[i] or (val == other_v[i] and c < o):
                cm[y[i], o] -= 1
                cm[y[i], c] += 1
    return out
