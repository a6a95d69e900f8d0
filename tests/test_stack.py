"""The stack blender: scikit-learn's LogisticRegression on the candidates, C chosen inside the fit rows.

Regression tests against scikit-learn fitted directly, and against the choices kit's own solver made before."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import bench_selection, multinomial_objective
from sklearn.linear_model import LogisticRegression

from kit.blend.blenders import Stack, make_blender
from kit.blend.nested import evaluate_blender
from kit.blend.postprocess import variants
from kit.config.ensemble import EnsembleSpec, PostprocessSpec


def _stack_problem(seed: int, n: int, M: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Member probabilities [n, M, K] as a stack sees them: correlated members, each row summing to one."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    shared = rng.normal(size=(n, K))
    logits = np.stack([2.0 * np.eye(K)[y] + shared + 0.7 * rng.normal(size=(n, K)) for _ in range(M)], axis=1)
    probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    return probs.astype(np.float32), y


@pytest.mark.parametrize("C", [0.01, 1.0, 30.0])
def test_a_fixed_C_stack_is_scikit_learns_model_on_the_stacked_probabilities(C: float) -> None:
    P, y = _stack_problem(0, 600, 4, 5)
    st = Stack(C=C).fit(P, y)
    X = P.reshape(len(P), -1)
    sk = LogisticRegression(C=C, max_iter=1000).fit(X, y)
    np.testing.assert_allclose(st.predict(P), sk.predict_proba(X), atol=1e-6)
    tight = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(X.astype(np.float64), y)
    gap = multinomial_objective(st.coef_, st.intercept_, X, y, C) - multinomial_objective(
        tight.coef_, tight.intercept_, X, y, C
    )
    assert -1e-7 <= gap <= 1e-4  # near the minimum of scikit-learn's objective
    assert st.weights_.shape == (4,) and st.weights_.sum() == pytest.approx(1.0)


def test_two_classes_give_scikit_learns_binary_model() -> None:
    P, y = _stack_problem(2, 500, 3, 2)
    st = Stack(C=1.0).fit(P, y)
    X = P.reshape(len(P), -1)
    assert st.coef_.shape == (1, X.shape[1])
    sk = LogisticRegression(C=1.0, max_iter=1000).fit(X, y)
    np.testing.assert_allclose(st.predict(P), sk.predict_proba(X), atol=1e-6)


def test_a_two_row_two_class_model_from_an_older_winner_json_still_predicts() -> None:
    """kit's own solver wrote two-class stacks as multinomial models (two rows): softmax over both."""
    P, _ = _stack_problem(3, 200, 2, 2)
    X = P.reshape(len(P), -1)
    rng = np.random.default_rng(0)
    coef, intercept = rng.normal(size=(2, X.shape[1])).astype(np.float32), np.array([0.1, -0.1], np.float32)
    params = {"C": 1.0, "features": "probs", "classes_seen": [0, 1], "coef": coef.tolist()}
    st = Stack.from_params(
        {**params, "intercept": intercept.tolist(), "dtype": "float32"}, "accuracy", "probs", 2
    )
    z = X @ coef.T + intercept
    want = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(st.predict(P), want / want.sum(1, keepdims=True), rtol=1e-5)


def test_classes_missing_from_the_fit_rows_get_probability_zero() -> None:
    P, y = _stack_problem(3, 400, 2, 5)
    y = np.where(y == 2, 4, y)  # labels 0, 1, 3, 4: class 2 absent
    st = Stack(C=1.0).fit(P, y)
    np.testing.assert_array_equal(st.classes_, [0, 1, 3, 4])
    p = st.predict(P)
    assert p.shape == (400, 5) and np.allclose(p.sum(axis=1), 1.0) and (p[:, 2] == 0).all()
    assert (p.argmax(axis=1) == y).mean() > 0.5
    one = Stack(C=1.0).fit(P, np.full(400, 3))  # one class: certain of it
    np.testing.assert_array_equal(one.predict(P[:5]), np.eye(5)[[3] * 5])


def test_the_inner_cv_chooses_the_C_a_direct_scikit_learn_cv_on_the_fit_rows_chooses() -> None:
    """C = the grid value with the best pooled held-out log loss over the fit rows' own folds, each fit
    warm-started along the grid: the same choice as cold, tight fits of scikit-learn per fold and C."""
    P, y = _stack_problem(5, 900, 3, 6)
    fold = np.arange(len(y)) % 4
    grid = (0.003, 0.03, 0.3, 3.0)
    st = Stack(C="auto", C_grid=grid).fit(P, y, fold=fold)
    X = P.reshape(len(P), -1)
    losses = []
    for C in grid:
        total = 0.0
        for f in range(4):
            tr, va = fold != f, fold == f
            sk = LogisticRegression(C=C, tol=1e-8, max_iter=5000).fit(X[tr], y[tr])
            total -= np.log(sk.predict_proba(X[va])[np.arange(va.sum()), y[va]]).sum()
        losses.append(total / len(y))
    assert grid[int(np.argmin(losses))] == st.C_
    np.testing.assert_allclose(st.C_losses_, losses, rtol=1e-3)
    assert st.fitted_params()["C_choice"].startswith("inner CV")


def test_a_fitted_stack_round_trips_through_json_bit_for_bit() -> None:
    P, y = _stack_problem(6, 300, 3, 4)
    st = Stack(C="auto", C_grid=(0.1, 1.0), features="log_probs").fit(P, y, fold=np.arange(300) % 3)
    params = json.loads(json.dumps(st.fitted_params()))
    again = Stack.from_params(params, "weighted_f1", "probs", 4)
    np.testing.assert_array_equal(again.predict(P), st.predict(P))
    assert again.C_ == st.C_ and again.features == "log_probs"


def test_the_nested_cv_refits_the_stack_in_each_outer_fold() -> None:
    """evaluate_blender's pooled held-out predictions are each outer fold's own stack (C chosen inside it)."""
    P, y = _stack_problem(7, 400, 3, 4)
    fold = np.arange(len(y)) % 4
    spec = EnsembleSpec.model_validate(
        {"members": "all", "blenders": [{"kind": "stack", "C_grid": [0.01, 0.1, 1.0]}]}
    )
    pp = PostprocessSpec()
    (row,) = evaluate_blender(spec.blenders[0], variants(pp), pp, P, y, fold, "weighted_f1", "probs")
    pooled = np.zeros((len(y), 4))
    for f in range(4):
        tr, va = fold != f, fold == f
        b = make_blender(spec.blenders[0], "weighted_f1", "probs").fit(P[tr], y[tr], fold=fold[tr])
        pooled[va] = b.predict(P[va])
    np.testing.assert_array_equal(row.nested_oof, pooled)
    np.testing.assert_array_equal(
        row.blender.predict(P), Stack(C_grid=(0.01, 0.1, 1.0)).fit(P, y, fold).predict(P)
    )


def test_confident_members_at_weak_penalty_fit_to_the_minimum() -> None:
    """bench_selection's competition 493 (3 confident members, 28 classes, 7,306 fit rows) at C = 1.0, where
    kit's own solver once stopped far from the minimum: the stack's objective is the minimum's."""
    sim = bench_selection().simulate(493)
    idx = np.flatnonzero(sim.fold >= 2)
    P, y = sim.P[idx].astype(np.float32), sim.y[idx]
    st = Stack(C=1.0).fit(P, y)
    X = P.reshape(len(P), -1)
    tight = LogisticRegression(C=1.0, tol=1e-8, max_iter=5000).fit(X.astype(np.float64), y)
    cols = np.searchsorted(tight.classes_, st.classes_)
    assert len(cols) == len(tight.classes_)
    gap = multinomial_objective(st.coef_, st.intercept_, X, np.searchsorted(st.classes_, y), 1.0) - (
        multinomial_objective(tight.coef_, tight.intercept_, X, np.searchsorted(tight.classes_, y), 1.0)
    )
    assert gap < 1e-3


def test_stacks_of_one_nested_cv_fit_each_inner_row_set_once() -> None:
    """Outer folds 0 and 1 both fit an inner split on the rows outside folds 0 and 1: with a shared `paths`
    dict that path is fitted once, and the stacks are the ones fitted alone."""
    P, y = _stack_problem(8, 500, 3, 4)
    fold = np.arange(len(y)) % 5
    paths: dict = {}
    for f in (0, 1):
        tr = fold != f
        shared = Stack(C_grid=(0.1, 1.0), paths=paths).fit(P[tr], y[tr], fold[tr])
        alone = Stack(C_grid=(0.1, 1.0)).fit(P[tr], y[tr], fold[tr])
        np.testing.assert_array_equal(shared.predict(P), alone.predict(P))
    assert len(paths) == 4 + 4 - 1
