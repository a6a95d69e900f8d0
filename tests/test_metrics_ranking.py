"""Rank and ordinal metrics against scikit-learn and a reference MAP@k, ties and edge cases included."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score, top_k_accuracy_score

from kit.metrics.ranking import binary_auc, map_at_k, qwk, roc_auc, top_k, top_k_accuracy


def _apk(actual: int, predicted: list[int], k: int) -> float:
    """The reference average precision at k (Kaggle's ml_metrics apk) with one true label."""
    score, hits = 0.0, 0.0
    for i, p in enumerate(predicted[:k]):
        if p == actual and p not in predicted[:i]:
            hits += 1.0
            score += hits / (i + 1.0)
    return score


@pytest.mark.parametrize("ties", [False, True])
def test_binary_auc_equals_sklearn(ties: bool) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    s = rng.normal(0, 1, 2000) + 0.8 * y
    if ties:
        s = np.round(s, 1)  # many tied scores: half credit each
    assert binary_auc(y == 1, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    logits = np.stack([np.zeros_like(s), s], axis=1)  # softmax's class-1 probability ranks as s
    assert roc_auc(y, logits) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_multiclass_auc_equals_sklearn_ovr_macro() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 1500)
    z = rng.normal(0, 1, (1500, 5)) + np.eye(5)[y]
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    ref = roc_auc_score(y, p, multi_class="ovr", average="macro")
    assert roc_auc(y, p, logits=False) == pytest.approx(ref, abs=1e-12)
    assert roc_auc(y, z) == pytest.approx(ref, abs=1e-12)


def test_auc_is_nan_when_one_class_is_missing() -> None:
    assert np.isnan(binary_auc(np.ones(5, bool), np.arange(5.0)))
    assert binary_auc(np.array([0, 0, 1, 1], bool), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0


@pytest.mark.parametrize("C", [2, 5])
def test_qwk_equals_sklearn(C: int) -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, C, 800)
    pred = np.clip(y + rng.integers(-2, 3, 800), 0, C - 1)
    ref = cohen_kappa_score(y, pred, weights="quadratic")
    assert qwk(y, pred, C) == pytest.approx(ref, abs=1e-12)
    scores = np.eye(C)[pred] + 0.01 * rng.random((800, C))
    assert qwk(y, scores) == pytest.approx(ref, abs=1e-12)
    assert qwk(y, y, C) == pytest.approx(1.0)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_k_accuracy_equals_sklearn_with_ties(k: int) -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 8, 1000)
    s = np.round(rng.random((1000, 8)) + 0.3 * np.eye(8)[y], 1)  # coarse: many ties inside the top k
    ref = top_k_accuracy_score(y, s, k=k, labels=np.arange(8))
    assert top_k_accuracy(y, s, k) == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("k", [1, 5])
def test_map_at_k_equals_the_reference_apk(k: int) -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 12, 600)
    s = np.round(rng.random((600, 12)) + 0.2 * np.eye(12)[y], 1)
    lists = top_k(s, k)
    ref = np.mean([_apk(int(t), [int(c) for c in row], k) for t, row in zip(y, lists, strict=True)])
    assert map_at_k(y, s, k) == pytest.approx(ref, abs=1e-12)
    # hand-made rows: true class first, third, absent
    hand = np.array([[0.9, 0.1, 0.0], [0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    assert map_at_k(np.array([0, 0, 2]), hand, 2) == pytest.approx((1.0 + 0.0 + 0.0) / 3)
    assert map_at_k(np.array([0, 0, 1]), hand, 3) == pytest.approx((1.0 + 1 / 3 + 1 / 2) / 3)


def _close_pairs(key: np.ndarray, pos: np.ndarray, eps: float) -> float:
    """The share of (positive, negative) pairs whose keys are within eps of each other."""
    neg = np.sort(key[~pos])
    near = np.searchsorted(neg, key[pos] + eps, "right") - np.searchsorted(neg, key[pos] - eps, "left")
    return float(near.sum()) / (pos.sum() * (~pos).sum())


@pytest.mark.parametrize("space", ["probs", "logits"])
@pytest.mark.parametrize(
    "metric,C", [("roc_auc", 2), ("roc_auc", 4), ("qwk", 5), ("map_at_k@3", 6), ("top_k_accuracy@2", 6)]
)
def test_fast_scorer_scores_rank_and_ordinal_metrics_as_kit_metrics(metric: str, C: int, space: str) -> None:
    """The blend search's scorer equals kit.metrics.score on the blended probabilities."""
    from kit.blend.blenders import combine
    from kit.blend.scoring import FastScorer
    from kit.blend.space import as_space
    from kit.metrics.scores import score

    rng = np.random.default_rng(8)
    n, M = 900, 3
    y = rng.integers(0, C, n)
    z = rng.normal(0, 1, (n, M, C)) + 1.0 * np.eye(C)[y][:, None, :]
    P = (np.exp(z) / np.exp(z).sum(-1, keepdims=True)).astype(np.float32)
    X = np.asarray(as_space(space).encode(np.log(P)), dtype=np.float32)  # candidates in the blending space
    fs = FastScorer(metric, y, C, space)
    Xl = fs.layout(X)
    S = fs.zeros()
    S += Xl[0]
    got = fs.score_added(S, Xl[2], total=3.0, scale=2.0)
    # the blend the search scores: its float32 sum X0 + 2 X2 (kit's combine sums in float64: the same blend to
    # float32 rounding, whose near-ties could rank either way), as probabilities
    s32 = X[:, 0] + np.float32(2.0) * X[:, 2]
    blend = as_space(space).blend(s32.astype(np.float64), 3.0)
    np.testing.assert_allclose(blend, combine(X, np.array([1 / 3, 0.0, 2 / 3]), space), rtol=1e-5, atol=1e-7)
    tol = 1e-9
    if metric == "roc_auc":
        # AUC keys are float32 in the scorer (binary: the summed class-1 column or z1 - z0): a (positive,
        # negative) pair of rows closer than float32 resolution (under 4e-7 in probability here) can tie or
        # swap there and not here, and moves the class's AUC by at most 1 / (positives x negatives)
        cols = [1] if C == 2 else list(range(C))
        tol += float(np.mean([_close_pairs(blend[:, c], y == c, 1e-6) for c in cols]))
    assert got == pytest.approx(score(metric, y, blend, logits=False), abs=tol)


def test_ordinal_thresholds_tune_cut_points_for_qwk() -> None:
    """Probabilities shrunk toward the middle grade: argmax under-calls the extremes; tuned cuts fix it."""
    from kit.blend.postprocess import OrdinalThresholds, variants
    from kit.config.ensemble import PostprocessSpec

    rng = np.random.default_rng(6)
    C, n = 5, 3000
    y = rng.choice(C, n, p=[0.4, 0.25, 0.15, 0.12, 0.08])
    z = -0.5 * (np.arange(C)[None, :] - (y[:, None] + rng.normal(0, 0.8, (n, 1)))) ** 2
    z += 1.5 * np.log([0.1, 0.2, 0.4, 0.2, 0.1])[None, :]  # a prior pulling toward grade 2
    Q = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    fit, val = slice(0, 2000), slice(2000, n)
    ot = OrdinalThresholds(candidates=40, passes=3).fit(Q[fit], y[fit])
    assert np.all(np.diff(ot.cuts_) > 0) and len(ot.cuts_) == C - 1
    grades = ot.grades(Q[fit])
    assert ot.kappa_ == pytest.approx(cohen_kappa_score(y[fit], grades, weights="quadratic"), abs=1e-12)
    plain = cohen_kappa_score(y[val], Q[val].argmax(1), weights="quadratic")
    tuned = cohen_kappa_score(y[val], ot.grades(Q[val]), weights="quadratic")
    assert tuned > plain + 0.01  # held-out rows: the cuts generalise
    assert np.array_equal(ot.transform(Q[val]).argmax(1), ot.grades(Q[val]))
    pp = PostprocessSpec.model_validate(
        {"logit_adjust": {"enabled": True}, "ordinal_thresholds": {"enabled": True}}
    )
    assert variants(pp, "qwk") == [(), ("logit_adjust",), ("ordinal_thresholds",)]
    assert variants(pp, "weighted_f1") == [(), ("logit_adjust",)]
    assert variants(pp, "roc_auc") == [()]


@pytest.mark.parametrize(
    "metric,C", [("qwk", 5), ("map_at_k@3", 6), ("top_k_accuracy@2", 6), ("roc_auc", 2), ("roc_auc", 4)]
)
def test_group_bootstrap_of_new_metrics_equals_scoring_each_resample(metric: str, C: int) -> None:
    from kit.blend.selection import BootstrapScorer, Resampler

    rng = np.random.default_rng(9)
    n = 300
    y = rng.integers(0, C, n)
    z = rng.normal(0, 1, (n, C)) + np.eye(C)[y]
    Q = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    codes = np.arange(n) // 3  # groups of three rows
    bs = BootstrapScorer(metric, y, C, Resampler.make(codes, 40, seed=1))
    fast = bs.scores_many([Q])[0]
    slow = bs._generic(Q)  # every resample's rows scored by kit.metrics.score
    np.testing.assert_allclose(fast, slow, atol=1e-12)
    assert fast.std() > 0
