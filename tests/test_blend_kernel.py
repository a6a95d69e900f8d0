"""The fused numba kernels (kit.blend.kernels) against the numpy reference engine of kit.blend.scoring.

Argmax metrics must be identical (same float32 sums, ties to the lowest class as numpy's argmax); log loss
agrees to float64 rounding; every search picks the same weights with either engine.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from kit.blend.blenders import Greedy, HillClimb, Subsets, greedy_counts
from kit.blend.scoring import FastScorer
from kit.metrics.scores import ARGMAX_METRICS

METRICS = ["weighted_f1", "macro_f1", "accuracy", "log_loss"]


def _candidates(
    space: str, n: int = 4000, M: int = 6, C: int = 9, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """y [n] and candidates P [n, M, C] float32 with exact ties in the first rows and two never-true classes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C - 2, n)
    z = rng.normal(size=(n, M, C)) * np.linspace(0.6, 1.6, M)[None, :, None]
    z[np.arange(n), :, y] += 1.0
    P = np.exp(z - z.max(axis=2, keepdims=True))
    P /= P.sum(axis=2, keepdims=True)
    P[:400] = np.round(P[:400] * 4) / 4  # quarter steps: many exact ties, within and across candidates
    P[:400] /= P[:400].sum(axis=2, keepdims=True)
    P[:40] = 1.0 / C  # all classes tied
    if space == "logits":
        return y, np.log(np.clip(P, 1e-6, 1)).astype(np.float32)
    return y, P.astype(np.float32)


def _pair(metric: str, y: np.ndarray, C: int, space: str) -> tuple[FastScorer, FastScorer]:
    return FastScorer(metric, y, C, space, engine="numpy"), FastScorer(metric, y, C, space, engine="numba")


def _same(metric: str, a: float, b: float) -> None:
    if metric in ARGMAX_METRICS:
        assert a == b
    else:
        assert a == pytest.approx(b, rel=1e-12)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("space", ["probs", "logits"])
def test_kernel_scores_equal_numpy_reference(metric: str, space: str) -> None:
    y, P = _candidates(space)
    C = P.shape[2]
    ref, fast = _pair(metric, y, C, space)
    Xr, Xf = ref.layout(P), fast.layout(P)
    assert Xf.shape == (P.shape[1], len(y), C) and Xr.shape == (P.shape[1], C, len(y))
    for total, parts, m, scale in [(1.0, [0], 1, 1.0), (3.0, [0, 2], 3, 1.0), (2.5, [1, 4], 5, 0.25)]:
        Sr, Sf = sum(Xr[j] for j in parts), sum(Xf[j] for j in parts)
        _same(metric, ref.score(Sr, total), fast.score(Sf, total))
        _same(metric, ref.score_added(Sr, Xr[m], total, scale), fast.score_added(Sf, Xf[m], total, scale))
    if metric not in ARGMAX_METRICS:
        return
    # greedy's round evaluator: every candidate at once over quantized tiles, equal to one-at-a-time numpy
    S_r = Xr[0] + Xr[3]
    want = [ref.gain(ref.score_added(S_r, Xr[m], 3.0)) for m in range(P.shape[1])]
    search = fast.search(Xf, list(range(P.shape[1])))
    search.add(0)
    search.add(3)
    assert search.gains() == want
    # the data exercise both paths: rows certified from the tiles, and rows recomputed exactly (ties included)
    assert 40 * P.shape[1] <= search.exact < len(y) * P.shape[1] // 2


def _exact_confusions(S: np.ndarray, X: np.ndarray, idx: list[int], y: np.ndarray, C: int) -> np.ndarray:
    """Row-major S [n, C] + X[m] for m in idx: confusion matrices by numpy's argmax (ties to the lowest)."""
    return np.stack(
        [np.bincount(y * C + (S + X[m]).argmax(axis=1), minlength=C * C).reshape(C, C) for m in idx]
    )


def test_tile_search_threads_and_rounds_equal_exact_argmax() -> None:
    from kit.blend import kernels

    y, P = _candidates("logits", n=3001)  # not a multiple of the block: a padded last block
    C = P.shape[2]
    fast = FastScorer("weighted_f1", y, C, engine="numba")
    X = fast.layout(P)
    idx = [1, 2, 4, 5]
    search = fast.search(X, idx)
    S = np.zeros_like(X[0])
    for pick in (2, 5, 5, 1):  # rounds: the pending add is folded into the next pass
        search.add(pick)
        S += X[pick]
        want = _exact_confusions(S, X, idx, fast.y, C)
        for chunks in (None, 1, 3):
            T = search.T.copy()
            H = np.zeros((len(idx), kernels.LANES, C * C), dtype=np.int64)
            ones = np.ones(len(idx), dtype=np.float32)
            qk = np.arange(len(idx))
            args = (
                T,
                search.Q,
                search.step,
                X,
                qk,
                search.idx,
                ones,
                search.yC,
                False,
                search.pending,
                np.float32(1e-4),
                H,
            )
            if chunks is None:
                kernels.search_blocks(*args, 0, T.shape[0])
            else:
                kernels.search_threads(*args, chunks)
            np.testing.assert_array_equal(H.sum(axis=1).reshape(len(idx), C, C), want)
        gains = search.gains()
        assert gains == [fast.gain(fast.from_confusion(cm)) for cm in want]


def test_tile_search_scores_weighted_moves_from_any_sum_exactly() -> None:
    """Hill climbing's and subsets' evaluator: S + r * X[m] for many (m, r) pairs in one pass, from a sum the
    search is given, equal to numpy's float32 argmax of each blend (ties included), threaded or not."""
    from kit.blend import kernels

    y, P = _candidates("probs", n=3001)
    C = P.shape[2]
    fast = FastScorer("weighted_f1", y, C, engine="numba")
    X = fast.layout(P)
    search = fast.search(X, list(range(P.shape[1])))
    S = X[1] * np.float32(0.7)
    S += np.float32(0.3) * X[4]
    pairs = [(m, r) for m in (0, 2, 3, 5) for r in (0.05 / 0.95, 1 / 3, 1.0, 1e-3)]
    want = np.stack(
        [np.bincount(fast.y * C + (X[m] * np.float32(r) + S).argmax(1), minlength=C * C) for m, r in pairs]
    ).reshape(len(pairs), C, C)
    search.set_sum(S, 1.0)
    assert search.gains_of(pairs) == [fast.gain(fast.from_confusion(cm)) for cm in want]
    assert 0 < search.exact < len(y) * len(pairs) // 2  # both paths: certified tiles and exact rows
    qk, xm = np.array([m for m, _ in pairs]), np.array([m for m, _ in pairs])
    scale = np.array([r for _, r in pairs], dtype=np.float32)
    H = np.zeros((len(pairs), kernels.LANES, C * C), dtype=np.int64)
    kernels.search_threads(
        search.T, search.Q, search.step, X, qk, xm, scale, search.yC, False, -1, np.float32(1e-4), H, 3
    )
    np.testing.assert_array_equal(H.sum(axis=1).reshape(len(pairs), C, C), want)
    search.reset()  # zeros, folded into the next pass: the single candidates
    assert search.gains_of([(m, 1.0) for m in range(6)]) == [fast.gain(fast.score(X[m])) for m in range(6)]
    search.reset(2)  # a subset's head
    assert search.gains_of([(m, 1.0) for m in (3, 4, 5)]) == [
        fast.gain(fast.score(X[2] + X[m])) for m in (3, 4, 5)
    ]


def test_subset_pairs_in_one_pass_equal_exact_sums() -> None:
    """Uniform subsets of one or two candidates from their tiles alone (kit.blend.kernels.pair_blocks): every
    single and every pair a < b equal numpy's float32 argmax of X[a] + X[b], ties included, threaded or not."""
    from itertools import combinations

    from kit.blend import kernels

    y, P = _candidates("probs", n=3001)
    C, M = P.shape[2], P.shape[1]
    fast = FastScorer("weighted_f1", y, C, engine="numba")
    X = fast.layout(P, copy=False)
    subsets = [(m,) for m in range(M)] + list(combinations(range(M), 2))
    sums = [X[s[0]] if len(s) == 1 else X[s[0]] + X[s[1]] for s in subsets]
    want = np.stack([np.bincount(fast.y * C + S.argmax(1), minlength=C * C) for S in sums])
    search = fast.search(X, list(range(M)))
    assert search.subset_gains() == [fast.gain(fast.from_confusion(cm.reshape(C, C))) for cm in want]
    assert 0 < search.exact < len(y) * len(subsets) // 2  # both paths: certified tiles and exact rows
    H = np.zeros((len(subsets), kernels.LANES, C * C), dtype=np.int64)
    kernels.pair_threads(search.Q, search.step, X, search.idx, search.yC, np.float32(1e-4), H, 3)
    np.testing.assert_array_equal(H.sum(axis=1), want)


@pytest.mark.parametrize("scale", [1e-30, 1.0, 1e4])
def test_tile_search_is_exact_at_any_scale_and_near_ties(scale: float) -> None:
    rng = np.random.default_rng(11)
    n, M, C = 1500, 4, 5
    y = rng.integers(0, C, n)
    X = (rng.normal(size=(M, n, C)) * scale).astype(np.float32)
    X[:, :300, 1] = np.nextafter(X[:, :300, 0], np.float32(np.inf))  # classes 0 and 1 one ulp apart
    X[:, 300:400] = X[:, 300:400, :1]  # every class equal
    X[2, 400:500] = np.round(X[2, 400:500] / scale * 2) * np.float32(
        scale / 2
    )  # coarse grid: exact ties in sums
    fast = FastScorer("macro_f1", y, C, engine="numba")
    search = fast.search(X, list(range(M)))
    S = np.zeros((n, C), dtype=np.float32)
    for pick in (2, 0, 2, 3, 1, 2):
        want = _exact_confusions(S, X, list(range(M)), fast.y, C)
        assert search.gains() == [fast.gain(fast.from_confusion(cm)) for cm in want]
        search.add(pick)
        S += X[pick]
    assert search.exact >= 400 * M  # the tied rows went to the exact recomputation


def test_tile_search_stays_exact_where_float32_rounding_decides() -> None:
    """A large running sum plus a candidate with a tiny spread: the float32 sums round at ulp(1e4) ~ 1e-3, far
    above the candidate's quantization step, so the quantized leader can lead by more than a step while the
    exact sums tie. The rounding slack must send those rows to the exact path."""
    rng = np.random.default_rng(0)
    n = 4000
    big = np.float32(1e4)
    A = np.stack([np.full(n, big), big + rng.integers(-3, 4, n) * np.spacing(big)], axis=1)
    B = rng.random((n, 2)) * 3e-3
    X = np.stack([A, B]).astype(np.float32)
    y = rng.integers(0, 2, n)
    fast = FastScorer("accuracy", y, 2, engine="numba")
    search = fast.search(X, [0, 1])
    search.add(0)
    want = _exact_confusions(X[0], X, [0, 1], fast.y, 2)
    assert search.gains() == [fast.gain(fast.from_confusion(cm)) for cm in want]


def test_quantized_tiles_are_within_half_a_step() -> None:
    from kit.blend import kernels

    rng = np.random.default_rng(2)
    n, C = 700, 7
    X = rng.normal(size=(3, n, C)).astype(np.float32)
    X[0, :50] = 0.25  # all classes equal: step is the floor value and every q is 0
    X[1, :50] *= np.float32(1e-36)  # ranges below the float32 normal range
    X[2] *= np.float32(1e4)  # large magnitudes (log-probabilities of confident members)
    Q, step, big = kernels.quantize(X, np.arange(3, dtype=np.int64), 2)
    nb = -(-n // kernels.BLOCK)
    assert Q.shape == (nb, 3, C, kernels.BLOCK) and step.shape == (nb, 3, kernels.BLOCK)
    q = Q.transpose(1, 0, 3, 2).reshape(3, nb * kernels.BLOCK, C)[:, :n].astype(np.float64)
    st = step.transpose(1, 0, 2).reshape(3, -1)[:, :n, None].astype(np.float64)
    lo = X.min(axis=2, keepdims=True).astype(np.float64)
    err = np.abs(X - lo - q * st)
    assert q.max() <= kernels.LEVELS and (q[0, :50] == 0).all()
    assert (err <= st * (0.5 + 1e-4)).all()
    np.testing.assert_allclose(big, np.abs(X).max(axis=(1, 2)))


def test_kernel_ties_go_to_the_lowest_class() -> None:
    y = np.array([0, 1, 2, 2])
    S = np.array([[1, 1, 0], [0, 2, 2], [3, 3, 3], [0, 0, 1]], dtype=np.float32)
    P = np.array([[0, 0, 0], [0, 0, 0], [0, 0, 0], [1, 0, 0]], dtype=np.float32)  # last row ties 0 and 2
    fast = FastScorer("accuracy", y, 3, engine="numba")
    assert (S + P).argmax(axis=1).tolist() == [0, 1, 0, 0]
    assert fast.score_added(S, P) == 0.5  # rows 0 and 1 right, rows 2 and 3 predict class 0
    assert fast.score(S) == 0.75  # S alone: 0, 1, 0, 2


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("space", ["probs", "logits"])
def test_greedy_picks_the_same_with_both_engines(metric: str, space: str) -> None:
    y, P = _candidates(space, seed=3)
    C = P.shape[2]
    ref, fast = _pair(metric, y, C, space)
    a = greedy_counts(ref.layout(P), ref, rounds=15, init=1)
    b = greedy_counts(fast.layout(P), fast, rounds=15, init=1)
    assert a[0].tolist() == b[0].tolist()
    assert np.allclose(a[2], b[2], rtol=1e-12)
    if metric in ARGMAX_METRICS:
        assert a[2] == b[2]


@pytest.mark.parametrize("metric", ["weighted_f1", "log_loss"])
def test_blenders_choose_the_same_weights_with_both_engines(metric: str) -> None:
    y, P = _candidates("probs", n=2500, M=5, seed=5)
    for make in (
        lambda e: Greedy(metric, "probs", rounds=12, bags=3, engine=e),
        lambda e: HillClimb(metric, "probs", max_steps=6, engine=e),
        lambda e: Subsets(metric, "probs", max_size=2, engine=e),
        lambda e: Subsets(metric, "probs", max_size=3, engine=e),
        lambda e: Subsets(metric, "probs", max_size=2, weights="greedy", rounds=4, engine=e),
    ):
        w_ref = make("numpy").fit(P, y).weights_
        w_fast = make("numba").fit(P, y).weights_
        np.testing.assert_array_equal(w_ref, w_fast)
        assert w_fast.sum() == pytest.approx(1.0)


def test_tile_greedy_matches_sklearn_scored_search() -> None:
    """The quantized one-pass search picks what f1_score per candidate picks, with the same gains."""
    rng = np.random.default_rng(7)
    n, M, C = 3000, 5, 6
    y = rng.integers(0, C, n)
    z = rng.normal(size=(n, M, C))
    z[np.arange(n), :, y] += 3.0
    P = (np.exp(z) / np.exp(z).sum(axis=2, keepdims=True)).astype(np.float32)
    fast = FastScorer("weighted_f1", y, C, engine="numba")
    counts, _, history = greedy_counts(fast.layout(P), fast, rounds=10)
    S = np.zeros((n, C), dtype=np.float32)
    ref_hist = []
    for _ in range(10):
        gains = [f1_score(y, (S + P[:, m]).argmax(1), average="weighted") for m in range(M)]
        j = int(np.argmax(gains))
        S += P[:, j]
        ref_hist.append(gains[j])
    np.testing.assert_allclose(history, ref_hist, rtol=1e-12)
    assert counts.sum() == int(np.argmax(ref_hist)) + 1


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="engine must be one of"):
        FastScorer("accuracy", np.zeros(3, dtype=int), 2, engine="cuda")


def test_numba_is_imported_only_when_a_search_runs() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from kit.cli.app import app\n"
        "import kit.blend.blenders\n"
        "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
        "print('numba' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
