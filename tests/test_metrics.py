"""Vectorised metrics equal scikit-learn's, absent classes included; OOF is scored pooled."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from kit.metrics import accuracy, confusion_matrix, log_loss, macro_f1, score, softmax, weighted_f1


@pytest.mark.parametrize("seed", range(5))
def test_equal_to_sklearn_on_long_tailed_predictions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = 12
    y = rng.choice(
        c, size=500, p=np.r_[np.geomspace(1, 0.02, c - 2), 0, 0] / np.geomspace(1, 0.02, c - 2).sum()
    )
    logits = rng.normal(size=(500, c)) + 2.5 * np.eye(c)[y] * rng.random((500, 1))
    pred = logits.argmax(1)
    assert weighted_f1(y, logits) == pytest.approx(skm.f1_score(y, pred, average="weighted"), abs=1e-12)
    assert macro_f1(y, logits) == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-12)
    assert accuracy(y, logits) == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert log_loss(y, logits) == pytest.approx(skm.log_loss(y, softmax(logits), labels=range(c)), rel=1e-9)
    probs = softmax(logits)
    assert log_loss(y, probs, logits=False) == pytest.approx(
        skm.log_loss(y, probs, labels=range(c)), rel=1e-9
    )
    assert np.array_equal(confusion_matrix(y, pred, c), skm.confusion_matrix(y, pred, labels=range(c)))


def test_class_predictions_and_degenerate_cases() -> None:
    y = np.array([0, 0, 1, 2])
    pred = np.array([0, 0, 0, 0])
    assert weighted_f1(y, pred, 3) == pytest.approx(
        skm.f1_score(y, pred, average="weighted", zero_division=0)
    )
    assert macro_f1(y, pred, 3) == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert score("accuracy", y, np.eye(3)[y]) == 1.0


def test_pooled_oof_differs_from_mean_of_fold_scores() -> None:
    """A rare class absent from a fold: the pooled score is what the leaderboard sees."""
    y = np.array([0, 0, 1, 1, 0, 0, 0, 2])
    pred = np.array([0, 0, 1, 0, 0, 0, 0, 2])
    fold = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    pooled = weighted_f1(y, pred, 3)
    per_fold = np.mean([weighted_f1(y[fold == f], pred[fold == f], 3) for f in (0, 1)])
    assert pooled == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    assert pooled != pytest.approx(per_fold)


def test_argmax_metrics_from_counts_batched_equal_each_table_and_sklearn() -> None:
    """score_from_counts is the one implementation (kit.metrics, the blend search, the bootstrap): batched
    per-class counts give each table's own score bit for bit (the blend searches score candidates batched and
    compare them with single scores), and one table's counts give scikit-learn's."""
    from kit.metrics.scores import ARGMAX_METRICS, counts_from_confusion, score_from_counts

    rng = np.random.default_rng(4)
    c, tables = 40, []
    for _ in range(30):
        y = rng.choice(
            c, size=300, p=np.r_[np.geomspace(1, 0.05, c - 1), 0] / np.geomspace(1, 0.05, c - 1).sum()
        )
        pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, c - 2, 300))  # some classes never predicted
        tables.append((y, pred))
    counts = [counts_from_confusion(confusion_matrix(y, p, c)) for y, p in tables]
    tp, predicted, support = (np.stack([k[i] for k in counts]).astype(np.float64) for i in range(3))
    sk = {
        "weighted_f1": lambda y, p: skm.f1_score(y, p, average="weighted"),
        "macro_f1": lambda y, p: skm.f1_score(y, p, average="macro"),
        "accuracy": skm.accuracy_score,
    }
    for metric in ARGMAX_METRICS:
        batched = score_from_counts(metric, tp, predicted, support)
        single = [float(score_from_counts(metric, *k)) for k in counts]
        assert batched.shape == (30,)
        np.testing.assert_array_equal(batched, single)
        np.testing.assert_allclose(single, [sk[metric](y, p) for y, p in tables], rtol=1e-12)
    y0, p0 = tables[0]
    assert weighted_f1(y0, p0, c) == float(score_from_counts("weighted_f1", *counts[0]))
    assert macro_f1(y0, p0, c) == float(score_from_counts("macro_f1", *counts[0]))
