"""numba kernels of the multi-label blend scorer (kit.blend.multilabel): one fused pass over the cells.

For the label-decision metrics a blend candidate is scored from counts the kernel gathers while it adds the
candidate to the running sum and compares with the space's cut: per label the true positives and predictions,
per image the F1 summed over images, and the wrong cells. `decision_counts_many` scores several candidates at
once (one thread per candidate), as greedy's rounds need. Importing this module imports numba.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _one(S, P, scale, cut, Y, row_true, tp, pred):  # type: ignore[no-untyped-def]
    n, L = S.shape
    f1_sum = 0.0
    wrong = 0
    for i in range(n):
        rt = 0
        rp = 0
        for j in range(L):
            d = S[i, j] + scale * P[i, j] >= cut
            y = Y[i, j]
            if d:
                pred[j] += 1
                rp += 1
                if y:
                    tp[j] += 1
                    rt += 1
                else:
                    wrong += 1
            elif y:
                wrong += 1
        den = rp + row_true[i]
        if den > 0:
            f1_sum += 2.0 * rt / den
    return f1_sum, wrong


@numba.njit(cache=True, nogil=True)
def decision_counts(S, P, scale, cut, Y, row_true, tp, pred):  # type: ignore[no-untyped-def]
    """Counts of the decisions S + scale * P >= cut: fills tp[L], pred[L]; returns (sum of image F1s, wrong
    cells)."""
    return _one(S, P, scale, cut, Y, row_true, tp, pred)


@numba.njit(cache=True, parallel=True)
def decision_counts_many(S, X, idx, cut, Y, row_true, tp, pred, f1_sum, wrong):  # type: ignore[no-untyped-def]
    """decision_counts of S + X[idx[k]] for every k (rows k of tp, pred, f1_sum, wrong)."""
    one = np.float32(1.0)
    for k in numba.prange(len(idx)):
        f, w = _one(S, X[idx[k]], one, cut, Y, row_true, tp[k], pred[k])
        f1_sum[k] = f
        wrong[k] = w
