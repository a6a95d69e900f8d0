"""Multi-label metrics equal scikit-learn's multilabel versions; iterative stratification balances every label."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from kit.cv.multilabel import iterative_stratification, label_counts_per_fold
from kit.metrics import score
from kit.metrics.multilabel import sigmoid


def _data(seed: int, n: int = 400, L: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    prev = np.geomspace(0.6, 0.03, L)
    Y = (rng.random((n, L)) < prev).astype(np.uint8)
    Y[: L // 2, :] = 0  # a few images without any label (F1 0/0 rows)
    logits = rng.normal(size=(n, L)) + 2.0 * (Y - 0.5) * rng.random((n, 1)) - 1.0
    return Y, logits


@pytest.mark.parametrize("seed", range(4))
def test_multilabel_metrics_equal_sklearn(seed: int) -> None:
    Y, logits = _data(seed)
    P = sigmoid(logits)
    pred = (P >= 0.5).astype(int)
    for avg in ("samples", "micro", "macro"):
        want = skm.f1_score(Y, pred, average=avg, zero_division=0)
        assert score(f"f1_{avg}", Y, logits) == pytest.approx(want, abs=1e-12)
        assert score(f"f1_{avg}", Y, P, logits=False) == pytest.approx(want, abs=1e-12)
    assert score("accuracy_cells", Y, logits) == pytest.approx((pred == Y).mean(), abs=1e-12)
    assert score("roc_auc", Y, P, logits=False) == pytest.approx(
        skm.roc_auc_score(Y, P, average="macro"), abs=1e-12
    )
    want_bce = np.mean([skm.log_loss(Y[:, j], P[:, j], labels=[0, 1]) for j in range(Y.shape[1])])
    assert score("log_loss", Y, logits) == pytest.approx(want_bce, rel=1e-6)
    assert score("log_loss", Y, P, logits=False) == pytest.approx(want_bce, rel=1e-6)


def test_roc_auc_skips_a_column_with_one_class() -> None:
    Y, logits = _data(0)
    Y[:, 0] = 0
    want = skm.roc_auc_score(Y[:, 1:], logits[:, 1:], average="macro")
    assert score("roc_auc", Y, logits) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("grouped", [False, True])
def test_iterative_stratification_balances_each_label(grouped: bool) -> None:
    rng = np.random.default_rng(3)
    n, L, k = 600, 6, 5
    Y = (rng.random((n, L)) < np.geomspace(0.5, 0.02, L)).astype(np.uint8)
    groups = [f"g{i // 3}" for i in range(n)] if grouped else None
    fold = iterative_stratification(Y, k, seed=0, groups=groups)
    assert fold.shape == (n,) and set(fold.tolist()) == set(range(k))
    counts = label_counts_per_fold(Y, fold, k)
    # every label spread over the folds within a few images of its even share (groups of 3 move 3 at once)
    slack = 3 if grouped else 1
    assert (np.abs(counts - Y.sum(0) / k) <= slack + 1).all(), counts
    sizes = np.bincount(fold, minlength=k)
    assert sizes.max() - sizes.min() <= 3 * slack + 3
    if grouped:
        g = np.asarray(groups)
        for name in np.unique(g):
            assert len(set(fold[g == name].tolist())) == 1
    assert np.array_equal(fold, iterative_stratification(Y, k, seed=0, groups=groups))
    assert not np.array_equal(fold, iterative_stratification(Y, k, seed=1, groups=groups))
