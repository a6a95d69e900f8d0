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
