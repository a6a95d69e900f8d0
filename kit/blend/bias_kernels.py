"""numba kernels for class_bias's coordinate ascent (kit.blend.postprocess) under argmax metrics.

Moving class c's offset decides, per row, only between c and the best other class. These kernels keep each
row's best and second-best class (value, lowest index on ties: numpy's argmax rule) across the ascent, so the
best other class costs O(n) per class instead of an argmax over every class, and count every grid value's
confusion matrix in one pass. Sums are float32 exactly as the numpy path computes them (`L[c] + v`), so the
offsets are the same (tests/test_selection.py).
"""

from __future__ import annotations

import numpy as np

from kit.numba_setup import configure

configure()  # the cache folder and threading layer, before numba is imported

import numba  # noqa: E402


@numba.njit(cache=True, nogil=True, inline="always")
def _beats(v: np.float32, c: int, w: np.float32, k: int) -> bool:
    """Class c's value v beats class k's value w under numpy's argmax rule: greater, or equal and c is lower."""
    return bool(v > w) or bool(v == w and c < k)


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
        elif _beats(v, c, bv[i], bi[i]):
            si[i], sv[i] = bi[i], bv[i]
            bi[i], bv[i] = c, v
        elif _beats(v, c, sv[i], si[i]):
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
    """[G, C, C] confusion (true, predicted) when class c's scores are Lc + grid[g], for an ascending grid: each
    row predicts c when that beats its best other class (greater, or equal with c the lower class), else that
    class. The float32 sums Lc[i] + grid[g] rise with g (rounding is monotone), so each row switches to c at
    most once: one pass finds where, and the matrices are cumulative sums of the switches (O(n + G C^2)
    instead of O(G n))."""
    n = Lc.shape[0]
    G = grid.shape[0]
    out = np.zeros((G, n_classes, n_classes), dtype=np.int64)  # switches at g, summed below
    for i in range(n):
        if bi[i] == c:
            o, ov = si[i], sv[i]
        else:
            o, ov = bi[i], bv[i]
        t = y[i]
        out[0, t, o] += 1
        if not _beats(Lc[i] + grid[G - 1], c, ov, o):  # not even the largest offset makes c win: most rows
            continue
        for g in range(G):
            if _beats(Lc[i] + grid[g], c, ov, o):
                out[g, t, o] -= 1
                out[g, t, c] += 1
                break
    for g in range(1, G):
        out[g] += out[g - 1]
    return out
