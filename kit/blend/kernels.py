"""Fused numba kernels for blend search: one pass over rows per candidate evaluation.

Arrays are row-major: a running sum S [n, C] float32 and candidates [n, C] float32 (one contiguous block per
candidate, `X` [M, n, C]); greedy's round evaluator (search_blocks) reads tiled copies, see below. Each kernel
computes every row's blended scores in float32 exactly as numpy does (`P * scale + S`, no fused multiply-add),
takes the argmax with ties to the lowest class (numpy's rule) and counts (true class, prediction) into a
confusion matrix, so scores equal kit.blend.scoring's numpy path.
NaN scores are not handled (members with NaN logits are refused when loaded).

Importing this module imports numba (about 0.5 s); kit.blend.scoring imports it lazily. `cache=True` keeps the
compiled code in __pycache__, so the compile cost (a few seconds) is paid once per machine.
"""

from __future__ import annotations

import numpy as np

from kit.numba_setup import configure

configure()  # the cache folder and threading layer, before numba is imported

import numba  # noqa: E402


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


# ------------------------------------------------------------------ greedy search: quantized tiles
#
# Greedy scores M candidates per round. Instead of reading every candidate's float32 rows, each round reads
# uint8 copies made once per search: per candidate and row, q_c = round((x_c - min_c x) / step) with
# step = (max_c x - min_c x) / LEVELS, so |x_c - min - q_c * step| <= step / 2 (plus float32 rounding, kept
# below 1e-4 * step). Arrays are tiled by blocks of BLOCK rows: running sum T [nblocks, C, BLOCK] and
# Q [nblocks, K, C, BLOCK], so a block's classes lie in one contiguous run (and a round reads Q front to back)
# and the class loop vectorises across rows (SIMD) with the tiles in L1 cache. The approximate blend
# a_c = T_c + q_c * step differs from the exact float32 blend e_c = T_c + x_c by the row's common min_c x plus
# at most step / 2 per class, so when the approximate leader leads the runner-up by more than step (with margins
# for rounding), it is the exact argmax and unique. Other rows (ties included) are recomputed exactly from the
# float32 candidate: counts equal the exact kernel's, always.

BLOCK = 256
LANES = 4  # counters per candidate, see search_blocks
LEVELS = 254  # quantization levels: q <= 254 even after rounding, so it fits uint8 unclipped
STEP_SAFETY = np.float32(1.001)  # two classes' quantization errors: at most (0.5 + 1e-4) * step each
_FAST = {"nnan", "ninf", "nsz", "contract"}  # no reassociation: selects below stay exact
_NEG = np.float32(-3.0e38)
_TINY = np.float32(1e-30)


@numba.njit(cache=True, nogil=True, inline="always")
def _select(m: np.float32, a: np.float32, b: np.float32) -> np.float32:
    """a where m == 1 else b (m is 0 or 1), as exact arithmetic: a * 1 + b * 0. A conditional store in its
    place keeps loops from vectorising, or vectorises them with masked stores, which are slow on some CPUs."""
    return a * m + b * (np.float32(1) - m)


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _quantize_block(
    Xk: np.ndarray,
    i0: int,
    nb: int,
    tile: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    Qb: np.ndarray,
    st: np.ndarray,
) -> float:
    """Quantize rows i0..i0+nb-1 of one candidate into tile Qb [C, BLOCK] and steps st; returns max |x|."""
    C = tile.shape[0]
    for j in range(nb):
        row = Xk[i0 + j]
        for c in range(C):
            tile[c, j] = row[c]
    for j in range(nb, BLOCK):
        for c in range(C):
            tile[c, j] = 0
    for j in range(BLOCK):
        lo[j] = tile[0, j]
        hi[j] = tile[0, j]
    for c in range(1, C):
        tc = tile[c]
        for j in range(BLOCK):
            t = tc[j]
            lo[j] = _select(np.float32(t < lo[j]), t, lo[j])
            hi[j] = _select(np.float32(t > hi[j]), t, hi[j])
    big = np.float32(0)
    for j in range(BLOCK):
        big = max(big, max(abs(lo[j]), abs(hi[j])))
        s = max((hi[j] - lo[j]) / np.float32(LEVELS), _TINY)
        st[j] = s
        hi[j] = np.float32(1) / s  # hi now holds 1 / step
    for c in range(C):
        tc = tile[c]
        qc = Qb[c]
        for j in range(BLOCK):
            qc[j] = np.uint8(np.int32((tc[j] - lo[j]) * hi[j] + np.float32(0.5)))
    return float(big)


@numba.njit(cache=True, nogil=True, parallel=True)
def quantize(X: np.ndarray, idx: np.ndarray, chunks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates X[idx[k]] [n, C] -> Q [nblocks, K, C, BLOCK] uint8, step [nblocks, K, BLOCK] float32 and
    max |x| per candidate [K] (padding rows are zeros). `chunks`: runs of blocks spread over threads."""
    K = idx.shape[0]
    n, C = X.shape[1], X.shape[2]
    nblocks = (n + BLOCK - 1) // BLOCK
    Q = np.empty((nblocks, K, C, BLOCK), dtype=np.uint8)
    step = np.empty((nblocks, K, BLOCK), dtype=np.float32)
    per = (K * nblocks + chunks - 1) // chunks
    big = np.zeros((chunks, K), dtype=np.float64)
    for t in numba.prange(chunks):
        tile = np.empty((C, BLOCK), dtype=np.float32)
        lo = np.empty(BLOCK, dtype=np.float32)
        hi = np.empty(BLOCK, dtype=np.float32)
        for u in range(t * per, min(K * nblocks, (t + 1) * per)):
            b, k = u // K, u % K  # block-major: a block's rows of every candidate are read together
            i0 = b * BLOCK
            m = _quantize_block(X[idx[k]], i0, min(BLOCK, n - i0), tile, lo, hi, Q[b, k], step[b, k])
            big[t, k] = max(big[t, k], m)
    out = np.zeros(K, dtype=np.float64)
    for t in range(chunks):
        for k in range(K):
            out[k] = max(out[k], big[t, k])
    return Q, step, out


@numba.njit(cache=True, nogil=True)
def _add_block(Tb: np.ndarray, Xm: np.ndarray, i0: int, nb: int) -> None:
    for j in range(nb):
        row = Xm[i0 + j]
        for c in range(Tb.shape[0]):
            Tb[c, j] += row[c]


@numba.njit(cache=True, nogil=True, parallel=True)
def add_tiles(T: np.ndarray, Xm: np.ndarray) -> None:
    """T [nblocks, C, BLOCK] += Xm [n, C] (float32, the same sums as the row-major S + Xm)."""
    n = Xm.shape[0]
    for b in numba.prange(T.shape[0]):
        _add_block(T[b], Xm, b * BLOCK, min(BLOCK, n - b * BLOCK))


@numba.njit(cache=True, nogil=True, parallel=True)
def set_tiles(T: np.ndarray, S: np.ndarray) -> float:
    """T [nblocks, C, BLOCK] := S [n, C] (padding rows zero); returns max |S| (0 when S is empty)."""
    n, C = S.shape
    nblocks = T.shape[0]
    big = np.zeros(nblocks, dtype=np.float32)
    for b in numba.prange(nblocks):
        Tb = T[b]
        i0 = b * BLOCK
        nb = min(BLOCK, n - i0)
        m = np.float32(0)
        for j in range(nb):
            row = S[i0 + j]
            for c in range(C):
                v = row[c]
                Tb[c, j] = v
                m = max(m, abs(v))
        for j in range(nb, BLOCK):
            for c in range(C):
                Tb[c, j] = 0
        big[b] = m
    return float(big.max()) if nblocks else 0.0


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _approx_top2(Tb: np.ndarray, Qb: np.ndarray, st: np.ndarray, W: np.ndarray) -> None:
    """Per row of the block: W[0] best and W[1] second-best of T_c + q_c * step, W[2] the best's class (lowest
    on ties)."""
    best, second, arg = W[0], W[1], W[2]
    T0, Q0 = Tb[0], Qb[0]
    for j in range(BLOCK):
        best[j] = T0[j] + np.float32(Q0[j]) * st[j]
        second[j] = _NEG
        arg[j] = 0
    for c in range(1, Tb.shape[0]):
        cf = np.float32(c)
        Tc, Qc = Tb[c], Qb[c]
        for j in range(BLOCK):
            v = Tc[j] + np.float32(Qc[j]) * st[j]
            b = best[j]
            m = np.float32(v > b)
            low = _select(m, b, v)  # the smaller of v and the best so far
            second[j] = _select(np.float32(low > second[j]), low, second[j])
            arg[j] = _select(m, cf, arg[j])
            best[j] = _select(m, v, b)


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _certify(W: np.ndarray, st: np.ndarray, yC: np.ndarray, slack: np.float32, code: np.ndarray) -> None:
    """code[j] = y * C + the approximate argmax where it is certainly the exact one, else -1 (recompute)."""
    for j in range(BLOCK):
        ok = W[0, j] - W[1, j] > st[j] * STEP_SAFETY + slack
        code[j] = yC[j] + np.int32(W[2, j]) if ok else np.int32(-1)


@numba.njit(cache=True, nogil=True, inline="always")
def _tile_counts(
    Tb: np.ndarray,
    Qk: np.ndarray,
    st: np.ndarray,
    Xm: np.ndarray,
    sc: np.float32,
    lo: int,
    nb: int,
    yb: np.ndarray,
    slack: np.float32,
    W: np.ndarray,
    code: np.ndarray,
    Hp: np.ndarray,
) -> int:
    """Count one block's rows of the blend Tb + sc * Xm into Hp [LANES, C * C]: from the candidate's tile Qk
    (steps `st`, already scaled by sc) where the tiles certify the argmax, else from the exact float32
    `x * sc + T` (kit.blend.kernels.confusion_added's sum). Returns how many rows needed the exact path."""
    _approx_top2(Tb, Qk, st, W)
    _certify(W, st, yb, slack, code)
    C = Tb.shape[0]
    lanes = Hp.shape[0]
    exact = 0
    for j in range(nb):
        cj = code[j]
        if cj < 0:
            exact += 1
            Xi = Xm[lo + j]
            best = Xi[0] * sc + Tb[0, j]
            a = 0
            for c in range(1, C):
                v = Xi[c] * sc + Tb[c, j]
                if v > best:
                    best = v
                    a = c
            cj = yb[j] + a
        Hp[j % lanes, cj] += 1
    return exact


@numba.njit(cache=True, nogil=True)
def search_blocks(
    T: np.ndarray,
    Q: np.ndarray,
    step: np.ndarray,
    X: np.ndarray,
    qk: np.ndarray,
    xm: np.ndarray,
    scale: np.ndarray,
    yC: np.ndarray,
    reset: bool,
    add: int,
    slack: np.float32,
    H: np.ndarray,
    b_lo: int,
    b_hi: int,
) -> int:
    """Counts H[p, lane, y * C + prediction] for the blends T + scale[p] * X[xm[p]] (the candidate's tiles are
    Q[:, qk[p]]) over blocks b_lo..b_hi-1, after T := 0 (reset) and T += X[add] (add >= 0). Greedy scores every candidate at
    scale 1; hill climbing scores every (candidate, weight) pair; subsets every next member of a head.
    yC: y * C per row (int32). H [P, LANES, C * C]: rows alternate between lanes so consecutive increments
    rarely hit the same counter; sum over lanes for the confusion matrices. The exact path computes
    `x * scale + T` in float32 as kit.blend.kernels.confusion_added does (x * 1 is x: greedy's sums).

    Returns how many (row, pair) pairs needed the exact float32 recomputation.
    """
    n_pairs = qk.shape[0]
    n = X.shape[1]
    W = np.empty((3, BLOCK), dtype=np.float32)
    code = np.empty(BLOCK, dtype=np.int32)
    scaled = np.empty(BLOCK, dtype=np.float32)
    exact = 0
    for b in range(b_lo, b_hi):
        lo = b * BLOCK
        nb = min(BLOCK, n - lo)
        Tb = T[b]
        if reset:
            Tb[:] = 0
        if add >= 0:
            _add_block(Tb, X[add], lo, nb)
        yb = yC[lo : lo + BLOCK]
        for p in range(n_pairs):
            k, sc = qk[p], scale[p]
            st = step[b, k]
            if sc != np.float32(1):  # the quantization error scales with the weight: so does the margin
                for j in range(BLOCK):
                    scaled[j] = st[j] * sc
                st = scaled
            exact += _tile_counts(Tb, Q[b, k], st, X[xm[p]], sc, lo, nb, yb, slack, W, code, H[p])
    return exact


@numba.njit(cache=True, nogil=True, parallel=True)
def search_threads(
    T: np.ndarray,
    Q: np.ndarray,
    step: np.ndarray,
    X: np.ndarray,
    qk: np.ndarray,
    xm: np.ndarray,
    scale: np.ndarray,
    yC: np.ndarray,
    reset: bool,
    add: int,
    slack: np.float32,
    H: np.ndarray,
    chunks: int,
) -> int:
    """search_blocks with the blocks split into `chunks` runs over threads, each counting into its own
    counters (integer counts: the sum equals the one-thread result exactly)."""
    nblocks = T.shape[0]
    per = (nblocks + chunks - 1) // chunks
    H_t = np.zeros((chunks, H.shape[0], H.shape[1], H.shape[2]), dtype=H.dtype)
    exact = np.zeros(chunks, dtype=np.int64)
    for t in numba.prange(chunks):
        b_lo, b_hi = min(nblocks, t * per), min(nblocks, (t + 1) * per)
        exact[t] = search_blocks(T, Q, step, X, qk, xm, scale, yC, reset, add, slack, H_t[t], b_lo, b_hi)
    for t in range(chunks):
        H += H_t[t]
    return int(exact.sum())


@numba.njit(cache=True, nogil=True)
def pair_blocks(
    Q: np.ndarray,
    step: np.ndarray,
    X: np.ndarray,
    xm: np.ndarray,
    yC: np.ndarray,
    slack: np.float32,
    H: np.ndarray,
    b_lo: int,
    b_hi: int,
) -> int:
    """Equal-weight subsets of one or two of the K quantized candidates (tiles Q[:, k] of X[xm[k]]), in one pass
    over blocks b_lo..b_hi-1: H[k] counts candidate k alone, then H[K + p] the p-th pair a < b in lexicographic
    order. Each block tiles candidate a's float32 rows once as the head of its pairs; every pair is then scored
    as search_blocks scores a candidate (`_tile_counts`), so exact rows are X[xm[b]] + X[xm[a]] in float32, the
    sum numpy takes. Returns how many (row, subset) pairs were recomputed."""
    K = Q.shape[1]
    C = Q.shape[2]
    n = X.shape[1]
    W = np.empty((3, BLOCK), dtype=np.float32)
    code = np.empty(BLOCK, dtype=np.int32)
    zero = np.zeros((C, BLOCK), dtype=np.float32)
    head = np.empty((C, BLOCK), dtype=np.float32)
    one = np.float32(1)
    exact = 0
    for b in range(b_lo, b_hi):
        lo = b * BLOCK
        nb = min(BLOCK, n - lo)
        yb = yC[lo : lo + BLOCK]
        p = K
        for a in range(K):
            exact += _tile_counts(zero, Q[b, a], step[b, a], X[xm[a]], one, lo, nb, yb, slack, W, code, H[a])
            head[:] = 0
            _add_block(head, X[xm[a]], lo, nb)  # 0 + x is x: candidate a's rows exactly
            for k in range(a + 1, K):
                exact += _tile_counts(
                    head, Q[b, k], step[b, k], X[xm[k]], one, lo, nb, yb, slack, W, code, H[p]
                )
                p += 1
    return exact


@numba.njit(cache=True, nogil=True, parallel=True)
def pair_threads(
    Q: np.ndarray,
    step: np.ndarray,
    X: np.ndarray,
    xm: np.ndarray,
    yC: np.ndarray,
    slack: np.float32,
    H: np.ndarray,
    chunks: int,
) -> int:
    """pair_blocks with the blocks split into `chunks` runs over threads (integer counts: exact sums)."""
    nblocks = Q.shape[0]
    per = (nblocks + chunks - 1) // chunks
    H_t = np.zeros((chunks, H.shape[0], H.shape[1], H.shape[2]), dtype=H.dtype)
    exact = np.zeros(chunks, dtype=np.int64)
    for t in numba.prange(chunks):
        b_lo, b_hi = min(nblocks, t * per), min(nblocks, (t + 1) * per)
        exact[t] = pair_blocks(Q, step, X, xm, yC, slack, H_t[t], b_lo, b_hi)
    for t in range(chunks):
        H += H_t[t]
    return int(exact.sum())


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
