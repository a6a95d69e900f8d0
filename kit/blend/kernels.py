"""Fused numba kernels for blend search: one pass over rows per candidate evaluation.

Arrays are row-major: a running sum S [n, C] float32 and candidates [n, C] float32 (one contiguous block per
candidate, `X` [M, n, C]). Each kernel computes every row's blended scores in float32 exactly as numpy does
(`P * scale + S`, no fused multiply-add), takes the argmax with ties to the lowest class (numpy's rule) and
counts (true class, prediction) into a confusion matrix, so scores equal kit.blend.scoring's numpy path.
NaN scores are not handled (members with NaN logits are refused when loaded).

Importing this module imports numba (about 0.5 s); kit.blend.scoring imports it lazily. `cache=True` keeps the
compiled code in __pycache__, so the compile cost (a few seconds) is paid once per machine.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def confusion_of_sum(S: np.ndarray, y: np.ndarray, cm: np.ndarray) -> None:
    """cm[y_i, argmax_c S[i, c]] += 1 for every row."""
    n, C = S.shape
    for i in range(n):
        best = S[i, 0]
        arg = 0
        for c in range(1, C):
            v = S[i, c]
            if v > best:
                best = v
                arg = c
        cm[y[i], arg] += 1


@numba.njit(cache=True, nogil=True)
def confusion_added(S: np.ndarray, P: np.ndarray, scale: np.float32, y: np.ndarray, cm: np.ndarray) -> None:
    """cm[y_i, argmax_c (P[i, c] * scale + S[i, c])] += 1 for every row (float32 arithmetic)."""
    n, C = S.shape
    for i in range(n):
        best = P[i, 0] * scale + S[i, 0]
        arg = 0
        for c in range(1, C):
            v = P[i, c] * scale + S[i, c]
            if v > best:
                best = v
                arg = c
        cm[y[i], arg] += 1


@numba.njit(cache=True, nogil=True)
def row_swing(X: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Per row, the largest max_c - min_c over candidates X[idx[k]] (float32): how far one can move a margin."""
    n, C = X.shape[1], X.shape[2]
    out = np.zeros(n, dtype=np.float32)
    for i in range(n):
        widest = np.float32(0.0)
        for k in range(idx.shape[0]):
            lo = X[idx[k], i, 0]
            hi = lo
            for c in range(1, C):
                v = X[idx[k], i, c]
                lo = min(lo, v)
                hi = max(hi, v)
            widest = max(widest, hi - lo)
        out[i] = widest
    return out


@numba.njit(cache=True, nogil=True)
def confusion_all(
    S: np.ndarray,
    X: np.ndarray,
    idx: np.ndarray,
    y: np.ndarray,
    swing: np.ndarray,
    prune: bool,
    cms: np.ndarray,
    base: np.ndarray,
) -> None:
    """Confusion matrices of S + X[idx[k]] for every k, reading S once.

    With `prune`, only a row's contenders are compared: classes whose S is within swing[i] of the row's top
    (adding a candidate moves each class by at most swing[i], so no other class can reach the leader). A row
    whose only contender is an untied leader is settled (the rule of kit.blend.blenders.settled_rows): it is
    counted once into `base` (to add to every cms[k]) and its candidate rows are not read.
    """
    n, C = S.shape
    K = idx.shape[0]
    cand = np.empty(C, dtype=np.int64)
    for i in range(n):
        yi = y[i]
        Si = S[i]
        if prune:
            sw = swing[i]
            top = Si[0]
            arg = 0
            for c in range(1, C):
                v = Si[c]
                if v > top:
                    top = v
                    arg = c
            n_cand = 0
            for c in range(C):  # branchless: write always, advance when c is a contender
                cand[n_cand] = c
                n_cand += top - Si[c] <= sw
            if n_cand == 1:
                base[yi, arg] += 1
                continue
            for k in range(K):
                Xi = X[idx[k], i]
                c = cand[0]
                best = Xi[c] + Si[c]
                arg = c
                for j in range(1, n_cand):
                    c = cand[j]
                    v = Xi[c] + Si[c]
                    if v > best:
                        best = v
                        arg = c
                cms[k, yi, arg] += 1
            continue
        for k in range(K):
            Xi = X[idx[k], i]
            best = Xi[0] + Si[0]
            arg = 0
            for c in range(1, C):
                v = Xi[c] + Si[c]
                if v > best:
                    best = v
                    arg = c
            cms[k, yi, arg] += 1


@numba.njit(cache=True, nogil=True)
def log_loss_sum(
    S: np.ndarray, P: np.ndarray, scale: np.float32, total: float, y: np.ndarray, logits: bool, eps: float
) -> float:
    """Sum over rows of -log p(true class) of the blend (P * scale + S) / total (float32 sum, float64 loss).

    logits: the blend is a mean of log-probabilities (log-softmax); else probabilities, renormalised and
    clipped to [eps, 1 - eps] as scikit-learn's log_loss.
    """
    n, C = S.shape
    out = 0.0
    for i in range(n):
        zy = np.float64(P[i, y[i]] * scale + S[i, y[i]]) / total
        if logits:
            m = -np.inf
            for c in range(C):
                z = np.float64(P[i, c] * scale + S[i, c]) / total
                if z > m:
                    m = z
            acc = 0.0
            for c in range(C):
                acc += np.exp(np.float64(P[i, c] * scale + S[i, c]) / total - m)
            out -= zy - (m + np.log(acc))
        else:
            acc = 0.0
            for c in range(C):
                acc += np.float64(P[i, c] * scale + S[i, c]) / total
            p = min(max(zy / acc, eps), 1.0 - eps)
            out -= np.log(p)
    return out
