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
def candidate_swing(X: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """[K, n]: for candidate X[idx[k]] and row i, max_c - min_c (float32)."""
    K = idx.shape[0]
    n, C = X.shape[1], X.shape[2]
    out = np.empty((K, n), dtype=np.float32)
    for k in range(K):
        Xk = X[idx[k]]
        for i in range(n):
            lo = Xk[i, 0]
            hi = lo
            for c in range(1, C):
                v = Xk[i, c]
                lo = min(lo, v)
                hi = max(hi, v)
            out[k, i] = hi - lo
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _argmax_of_sum(Xi: np.ndarray, Si: np.ndarray) -> int:
    """argmax_c (Xi[c] + Si[c]) in float32, ties to the lowest class (numpy's rule)."""
    best = Xi[0] + Si[0]
    arg = 0
    for c in range(1, Si.shape[0]):
        v = Xi[c] + Si[c]
        if v > best:
            best = v
            arg = c
    return arg


@numba.njit(cache=True, nogil=True)
def _confusion_rows(
    S: np.ndarray,
    X: np.ndarray,
    idx: np.ndarray,
    y: np.ndarray,
    swing: np.ndarray,
    prune: bool,
    cms: np.ndarray,
    lo: int,
    hi: int,
) -> None:
    """confusion_all over rows lo..hi-1."""
    C = S.shape[1]
    K = idx.shape[0]
    for i in range(lo, hi):
        yi = y[i]
        Si = S[i]
        if prune:
            top = Si[0]
            arg = 0
            second = -np.inf
            for c in range(1, C):
                v = Si[c]
                if v > top:
                    second = top
                    top = v
                    arg = c
                elif v > second:
                    second = v
            margin = top - second  # 0 when tied: no candidate row can be skipped then
            for k in range(K):
                if margin > swing[k, i]:  # this candidate cannot overturn the leader: its row is not read
                    cms[k, yi, arg] += 1
                    continue
                cms[k, yi, _argmax_of_sum(X[idx[k], i], Si)] += 1
            continue
        for k in range(K):
            cms[k, yi, _argmax_of_sum(X[idx[k], i], Si)] += 1


@numba.njit(cache=True, nogil=True)
def confusion_all(
    S: np.ndarray,
    X: np.ndarray,
    idx: np.ndarray,
    y: np.ndarray,
    swing: np.ndarray,
    prune: bool,
    cms: np.ndarray,
) -> None:
    """Confusion matrices of S + X[idx[k]] for every k, reading S once.

    With `prune`, swing [K, n] holds each candidate's per-row spread (max_c - min_c, with a margin of safety,
    see candidate_swings): adding candidate k moves the gap between two classes by at most swing[k, i], so
    where the row's leader in S leads by more than that, the leader stays and candidate k's row is not read
    (the rule of kit.blend.blenders.settled_rows, per candidate). Ties in S are never skipped.
    """
    _confusion_rows(S, X, idx, y, swing, prune, cms, 0, S.shape[0])


@numba.njit(cache=True, nogil=True, parallel=True)
def confusion_all_threads(
    S: np.ndarray,
    X: np.ndarray,
    idx: np.ndarray,
    y: np.ndarray,
    swing: np.ndarray,
    prune: bool,
    cms: np.ndarray,
    chunks: int,
) -> None:
    """confusion_all with row blocks spread over threads; each block counts into its own matrices, summed at
    the end (integer counts, so the result equals the one-thread kernel's exactly)."""
    n = S.shape[0]
    step = (n + chunks - 1) // chunks
    K, C = cms.shape[0], cms.shape[1]
    cms_t = np.zeros((chunks, K, C, C), dtype=np.int64)
    for t in numba.prange(chunks):
        _confusion_rows(S, X, idx, y, swing, prune, cms_t[t], t * step, min(n, (t + 1) * step))
    for t in range(chunks):
        cms += cms_t[t]


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
