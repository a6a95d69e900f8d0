"""The blend search's scorer (kit.blend.scoring) against plain numpy and scikit-learn.

Argmax metrics are exact (the same float32 sums, ties to the lowest class as numpy's argmax), log loss agrees to
float64 rounding, and greedy's settled-row search gives the one-candidate-at-a-time search's gains."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss

from kit.blend import scoring
from kit.blend.blenders import Greedy, HillClimb, Subsets, greedy_counts
from kit.blend.scoring import FastScorer, PlainSearch, SettledSearch, settled_rows
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


def _sklearn(metric: str, y: np.ndarray, blend: np.ndarray, space: str) -> float:
    """scikit-learn's metric of a float32 blend sum [n, C] (a mean of log-probabilities in `logits`)."""
    C = blend.shape[1]
    if metric == "log_loss":
        z = blend.astype(np.float64)
        probs = np.exp(z - z.max(1, keepdims=True)) if space == "logits" else z
        return log_loss(y, probs / probs.sum(1, keepdims=True), labels=range(C))
    pred = blend.argmax(axis=1)
    if metric == "accuracy":
        return accuracy_score(y, pred)
    return f1_score(y, pred, average=metric.split("_")[0], labels=range(C))


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("space", ["probs", "logits"])
def test_scores_equal_scikit_learns_on_the_float32_blend(metric: str, space: str) -> None:
    y, P = _candidates(space)
    if (
        metric == "log_loss"
    ):  # the tied rows hold probabilities of exactly 0, which kit clips at float32's eps
        y, P = y[400:], P[400:]
    fs = FastScorer(metric, y, P.shape[2], space)
    X = fs.layout(P)
    assert X.shape == (P.shape[1], P.shape[2], len(y)) and X.dtype == np.float32
    for total, parts, m, scale in [(1.0, [0], 1, 1.0), (3.0, [0, 2], 3, 1.0), (2.25, [1, 4], 5, 0.25)]:
        S = sum(X[j] for j in parts)
        blend = (S + np.float32(scale) * X[m]).T
        want = _sklearn(metric, y, blend / np.float32(total) if space == "logits" else blend, space)
        got = fs.score_added(S, X[m], total, scale)
        if metric in ARGMAX_METRICS:
            assert got == pytest.approx(want, abs=1e-12)
        else:
            assert got == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("metric", ["weighted_f1", "macro_f1", "accuracy", "qwk"])
def test_the_settled_row_search_gives_the_plain_searchs_gains(metric: str) -> None:
    """Greedy's round evaluator rescores only rows a candidate can still flip: the same gains, round by round."""
    y, P = _candidates("probs", seed=2)
    fs = FastScorer(metric, y, P.shape[2], "probs")
    X = fs.layout(P)
    idx = list(range(P.shape[1]))
    fast, plain = fs.search(X, idx), PlainSearch(fs, X, idx)
    assert type(fast).__name__ == "SettledSearch"
    assert fast.gains() == plain.gains()
    for m in (0, 3, 3, 5, 1):
        fast.add(m)
        plain.add(m)
        assert fast.gains() == plain.gains()


def test_row_blocks_give_the_plain_searchs_gains(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 512 rows (the tied rows in the first, a last short block), some settled and some open: the
    same gains as one candidate at a time over all rows."""
    monkeypatch.setattr(scoring, "ROW_BLOCK", 512)
    y, P = _candidates("probs", n=4100, M=7, seed=3)
    fs = FastScorer("weighted_f1", y, P.shape[2], "probs")
    X = fs.layout(P)
    idx = [0, 2, 3, 4, 6]
    fast, plain = SettledSearch(fs, X, idx), PlainSearch(fs, X, idx)
    shares = []
    for m in (6, 6, 4, 6, 2, 6, 6):
        fast.add(m)
        plain.add(m)
        assert fast.gains() == plain.gains()
        settled = settled_rows(plain.S, fast.widest)
        shares.append([settled[lo : lo + 512].mean() for lo in range(0, len(y), 512)])
    # both kinds of block were scored: all rows rescored, and settled rows counted once
    assert min(map(min, shares)) <= scoring.SETTLED_MIN_SHARE < max(map(max, shares))


def test_ties_go_to_the_lowest_class() -> None:
    y = np.array([0, 1, 2, 2])
    S = np.array([[1, 1, 0], [0, 2, 2], [3, 3, 3], [0, 0, 1]], dtype=np.float32).T.copy()
    P = np.array([[0, 0, 0], [0, 0, 0], [0, 0, 0], [1, 0, 0]], dtype=np.float32).T.copy()  # last row: 0 = 2
    fs = FastScorer("accuracy", y, 3)
    assert fs.score_added(S, P) == 0.5  # rows 0 and 1 right, rows 2 and 3 predict class 0
    assert fs.score(S) == 0.75  # S alone: 0, 1, 0, 2


def test_greedy_matches_a_search_scored_by_scikit_learn() -> None:
    """Greedy picks what f1_score per candidate picks, with the same gains."""
    rng = np.random.default_rng(7)
    n, M, C = 3000, 5, 6
    y = rng.integers(0, C, n)
    z = rng.normal(size=(n, M, C))
    z[np.arange(n), :, y] += 3.0
    P = (np.exp(z) / np.exp(z).sum(axis=2, keepdims=True)).astype(np.float32)
    fs = FastScorer("weighted_f1", y, C)
    counts, _, history = greedy_counts(fs.layout(P), fs, rounds=10)
    S = np.zeros((n, C), dtype=np.float32)
    ref_hist = []
    for _ in range(10):
        gains = [f1_score(y, (S + P[:, m]).argmax(1), average="weighted") for m in range(M)]
        j = int(np.argmax(gains))
        S += P[:, j]
        ref_hist.append(gains[j])
    np.testing.assert_allclose(history, ref_hist, rtol=1e-12)
    assert counts.sum() == int(np.argmax(ref_hist)) + 1


@pytest.mark.parametrize("metric", ["weighted_f1", "log_loss"])
def test_searches_keep_the_weights_they_chose_before_numba_went(metric: str) -> None:
    """Weights the searches chose with kit's numba engine (commit 0c4aa70) on this data, recorded."""
    y, P = _candidates("probs", n=2500, M=5, seed=5)
    blenders = {
        "greedy": Greedy(metric, "probs", rounds=12, bags=3),
        "hill_climb": HillClimb(metric, "probs", max_steps=6),
        "subsets2": Subsets(metric, "probs", max_size=2),
        "subsets3": Subsets(metric, "probs", max_size=3),
        "subsets_greedy": Subsets(metric, "probs", max_size=2, weights="greedy", rounds=4),
    }
    got = {k: b.fit(P, y).weights_.round(6).tolist() for k, b in blenders.items()}
    assert got == RECORDED[metric]
    assert all(sum(w) == pytest.approx(1.0, abs=1e-5) for w in got.values())  # rounded to 6 places


RECORDED: dict[str, dict[str, list[float]]] = {
    "weighted_f1": {
        "greedy": [0.285714, 0.266667, 0.0, 0.212121, 0.235498],
        "hill_climb": [0.508725, 0.218025, 0.12825, 0.095, 0.05],
        "subsets2": [0.5, 0.5, 0.0, 0.0, 0.0],
        "subsets3": [0.333333, 0.333333, 0.333333, 0.0, 0.0],
        "subsets_greedy": [0.666667, 0.333333, 0.0, 0.0, 0.0],
    },
    "log_loss": {
        "greedy": [0.305556, 0.277778, 0.0, 0.2, 0.216667],
        "hill_climb": [0.590146, 0.278991, 0.085738, 0.045125, 0.0],
        "subsets2": [0.5, 0.5, 0.0, 0.0, 0.0],
        "subsets3": [0.333333, 0.333333, 0.333333, 0.0, 0.0],
        "subsets_greedy": [0.666667, 0.333333, 0.0, 0.0, 0.0],
    },
}


@pytest.mark.parametrize("C", [2, 7, 300])
def test_the_argmax_is_numpys_with_ties_and_nan_rows(C: int) -> None:
    from kit.blend.scoring import Labels, NumpyEngine

    rng = np.random.default_rng(C)
    n = 500
    S = np.round(rng.random((C, n)) * 3).astype(np.float32)  # few values: many ties
    S[:, 0] = np.nan  # no maximum: class 0
    y = rng.integers(0, C, n)
    labels = Labels(y, C)
    engine = NumpyEngine(labels)
    got = engine.argmax(S)
    np.testing.assert_array_equal(got[1:], S[:, 1:].argmax(axis=0))
    assert got[0] == 0
    # the confusion matrix straight from the ranks (greedy's search), over all rows and over some
    want = np.zeros((C, C), dtype=np.intp)
    np.add.at(want, (y, got), 1)
    np.testing.assert_array_equal(labels.confusion_of_ranks(engine.ranks(S)), want)
    some = np.arange(0, n, 3)
    part = np.zeros((C, C), dtype=np.intp)
    np.add.at(part, (y[some], got[some]), 1)
    np.testing.assert_array_equal(Labels(y[some], C).confusion_of_ranks(engine.ranks(S[:, some])), part)
