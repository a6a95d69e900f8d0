"""numba kernels for kit.blend.logreg: the row-wise softmax and the softmax Hessian's row products in one pass
each (numpy needs five passes and a float64 cast for each; they were half of a stack fit's time on small
feature counts). Always used, so a stack's coefficients never depend on whether numba's cache is warm."""

from __future__ import annotations

import numpy as np

from kit.numba_setup import configure

configure()  # the cache folder and threading layer, before numba is imported

import numba  # noqa: E402


@numba.njit(cache=True, nogil=True)
def softmax_loss(Z: np.ndarray, yk: np.ndarray, P: np.ndarray) -> float:
    """P <- softmax of each row of Z [n, K] (float32); returns the summed log loss of labels yk (float64)."""
    n, K = Z.shape
    total = 0.0
    for i in range(n):
        m = Z[i, 0]
        for k in range(1, K):
            if Z[i, k] > m:
                m = Z[i, k]
        s = 0.0
        for k in range(K):
            e = np.exp(Z[i, k] - m)
            P[i, k] = e
            s += e
        inv = np.float32(1.0 / s)
        for k in range(K):
            P[i, k] *= inv
        total += np.log(s) - (Z[i, yk[i]] - m)
    return total


@numba.njit(cache=True, nogil=True)
def softmax_hessian_rows(P: np.ndarray, Zp: np.ndarray, out: np.ndarray) -> None:
    """out <- P * (Zp - sum_k P * Zp), row by row: the softmax Jacobian applied to each row of Zp (out may be
    Zp itself)."""
    n, K = P.shape
    for i in range(n):
        s = 0.0
        for k in range(K):
            s += P[i, k] * Zp[i, k]
        s32 = np.float32(s)
        for k in range(K):
            out[i, k] = P[i, k] * (Zp[i, k] - s32)
