"""The fused numba kernels (kit.blend.kernels) against the numpy reference engine of kit.blend.scoring.

Argmax metrics must be identical (same float32 sums, ties to the lowest class as numpy's argmax); log loss
agrees to float64 rounding; every search picks the same weights with either engine.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from kit.blend.blenders import Greedy, HillClimb, Subsets, greedy_counts
from kit.blend.scoring import ARGMAX_METRICS, FastScorer

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
    # all candidates in one pass, with and without the row pruning, equal one-at-a-time numpy scoring
    S_r, S_f = Xr[0] + Xr[3], Xf[0] + Xf[3]
    want = [ref.gain(ref.score_added(S_r, Xr[m], 3.0)) for m in range(P.shape[1])]
    swing = fast.candidate_swings(Xf, list(range(P.shape[1])))
    for sw in (None, swing):
        got = fast.gains_added(S_f, Xf, list(range(P.shape[1])), 3.0, sw)
        for a, b in zip(want, got, strict=True):
            _same(metric, a, b)
    # the data exercise both shortcuts: settled rows, and single candidates skipped in unsettled rows
    top2 = np.sort(S_f, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    row_settled = margin > swing.max(axis=0)
    skipped = (margin[None, :] > swing) & ~row_settled[None, :]
    assert row_settled.sum() >= 5 and skipped.sum() > 100


def test_threaded_kernel_equals_one_thread() -> None:
    from kit.blend import kernels

    y, P = _candidates("probs", n=3001)
    fast = FastScorer("weighted_f1", y, P.shape[2], engine="numba")
    X = fast.layout(P)
    S = X[0] + X[2]
    idx = np.arange(P.shape[1], dtype=np.int64)
    sw = fast.candidate_swings(X, list(idx))
    for prune in (False, True):
        out = []
        for chunks in (None, 1, 4):
            cms = np.zeros((len(idx), P.shape[2], P.shape[2]), dtype=np.int64)
            if chunks is None:
                kernels.confusion_all(S, X, idx, fast.y, sw, prune, cms)
            else:
                kernels.confusion_all_threads(S, X, idx, fast.y, sw, prune, cms, chunks)
            out.append(cms)
        assert (out[0] == out[1]).all() and (out[0] == out[2]).all()
        assert (out[0].sum(axis=(1, 2)) == len(y)).all()


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
        lambda e: Subsets(metric, "probs", max_size=2, weights="greedy", rounds=4, engine=e),
    ):
        w_ref = make("numpy").fit(P, y).weights_
        w_fast = make("numba").fit(P, y).weights_
        np.testing.assert_array_equal(w_ref, w_fast)
        assert w_fast.sum() == pytest.approx(1.0)


def test_pruned_fused_greedy_matches_sklearn_scored_search() -> None:
    """Strong members (most rows settled): the pruned one-pass search picks what f1_score per candidate picks."""
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
