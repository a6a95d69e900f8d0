"""kit.blend.logreg: the stack's multinomial logistic regression against scikit-learn's on the same objective."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import bench_selection, multinomial_gradient
from sklearn.linear_model import LogisticRegression

from kit.blend import logreg


def _stack_features(seed: int, n: int, M: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Member probabilities as a stack sees them: correlated members, each member's row summing to one."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    shared = rng.normal(size=(n, K))
    logits = np.stack([2.0 * np.eye(K)[y] + shared + 0.7 * rng.normal(size=(n, K)) for _ in range(M)], axis=1)
    probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    return probs.reshape(n, -1).astype(np.float32), y


@pytest.mark.parametrize("C", [0.01, 1.0, 30.0])
def test_the_minimum_is_scikit_learns_on_stack_features(C: float) -> None:
    X, y = _stack_features(0, 600, 4, 5)
    model = logreg.fit(X, y, C, tol=1e-6, max_iter=200)
    assert np.abs(multinomial_gradient(model, X, y, C)).max() <= 1e-6
    # a tolerance under float32's floor stops when the gradient stops shrinking, not at max_iter
    floor = logreg.fit(X, y, C, tol=1e-12, max_iter=200)
    assert floor.n_iter < 30 and np.abs(multinomial_gradient(floor, X, y, C)).max() <= 1e-6
    sk = LogisticRegression(C=C, solver="lbfgs", tol=1e-10, max_iter=10000).fit(X.astype(np.float64), y)
    np.testing.assert_allclose(model.predict_proba(X), sk.predict_proba(X), atol=2e-4)
    scale = np.abs(sk.coef_).max()
    np.testing.assert_allclose(model.coef, sk.coef_, atol=5e-3 * scale)


def test_stops_at_the_tolerance_from_a_warm_start_or_from_zero() -> None:
    X, y = _stack_features(1, 800, 3, 6)
    path = None
    for C in (0.01, 0.1, 1.0):
        path = logreg.fit(X, y, C, tol=3e-3, start=path)
        assert np.abs(multinomial_gradient(path, X, y, C)).max() <= 3e-3
    refined = logreg.fit(X, y, 1.0, tol=1e-5, start=path, feat=logreg.gram(X))
    cold = logreg.fit(X, y, 1.0, tol=1e-5)
    for m in (refined, cold):
        assert np.abs(multinomial_gradient(m, X, y, 1.0)).max() <= 1e-5
    assert 0 < refined.n_iter < cold.n_iter  # the warm start saves Newton steps
    np.testing.assert_allclose(refined.predict_proba(X), cold.predict_proba(X), atol=1e-3)


def test_two_classes_are_scikit_learns_binary_model_at_twice_the_C() -> None:
    X, y = _stack_features(2, 500, 3, 2)
    model = logreg.fit(X, y, 0.5, tol=1e-8, max_iter=200)
    assert model.coef.shape == (2, X.shape[1])
    sk = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000).fit(X.astype(np.float64), y)
    np.testing.assert_allclose(model.predict_proba(X), sk.predict_proba(X), atol=2e-4)
    # a binary model as scikit-learn wrote it for two-class stacks (winner.json before kit's solver)
    old = logreg.Multinomial(sk.coef_.astype(np.float32), sk.intercept_.astype(np.float32), sk.classes_)
    np.testing.assert_allclose(old.predict_proba(X), sk.predict_proba(X), atol=1e-5)


def test_classes_missing_from_the_fit_rows_get_no_coefficients() -> None:
    X, y = _stack_features(3, 400, 2, 5)
    y = np.where(y == 2, 4, y)  # labels 0, 1, 3, 4: class 2 absent
    model = logreg.fit(X, y, 1.0)
    np.testing.assert_array_equal(model.classes, [0, 1, 3, 4])
    p = model.predict_proba(X)
    assert p.shape == (400, 4) and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert (model.classes[p.argmax(axis=1)] == y).mean() > 0.5
    one = logreg.fit(X, np.full(400, 3), 1.0)  # one class: certain of it
    np.testing.assert_array_equal(one.predict_proba(X[:5]), np.ones((5, 1)))


def test_a_path_is_the_chained_fits_bit_for_bit() -> None:
    """fit_path carries the rows' scores and gradient from one C to the next: the same models as fitting each
    C from the previous model."""
    X, y = _stack_features(4, 700, 3, 7)
    feat = logreg.gram(X)
    path = logreg.fit_path(X, y, [0.01, 0.1, 1.0], tol=3e-3, feat=feat)
    chained, start = [], None
    for C in (0.01, 0.1, 1.0):
        start = logreg.fit(X, y, C, tol=3e-3, start=start, feat=feat)
        chained.append(start)
    for a, b in zip(path, chained, strict=True):
        np.testing.assert_array_equal(a.coef, b.coef)
        np.testing.assert_array_equal(a.intercept, b.intercept)
        assert a.n_iter == b.n_iter > 0


def _objective(model: logreg.Multinomial, X: np.ndarray, y: np.ndarray, C: float) -> float:
    n = len(y)
    z = X.astype(np.float64) @ model.coef.T.astype(np.float64) + model.intercept
    z -= z.max(axis=1, keepdims=True)
    nll = np.log(np.exp(z).sum(axis=1)) - z[np.arange(n), np.searchsorted(model.classes, y)]
    return float(nll.mean() + (model.coef.astype(np.float64) ** 2).sum() / (2 * C * n))


def test_path_fits_stop_near_each_minimum_by_the_predicted_decrease() -> None:
    """The stack's inner CV ranks C values by fits stopped on the Newton step's predicted decrease. A gradient
    tolerance does not measure that distance: on many rows the penalty's curvature 1 / (C n) is small, and a
    warm start from the previous C already passes max |gradient| <= 3e-3 far above the next C's minimum."""
    X, y = _stack_features(5, 4000, 6, 12)
    Cs = [0.1, 1.0, 10.0]
    tight = [logreg.fit(X, y, C, tol=1e-6, max_iter=300) for C in Cs]
    best = [_objective(m, X, y, C) for m, C in zip(tight, Cs, strict=True)]
    by_decrease = logreg.fit_path(X, y, Cs, tol=1e-4, decrease=1e-4)
    gaps = [_objective(m, X, y, C) - b for m, C, b in zip(by_decrease, Cs, best, strict=True)]
    assert max(gaps) <= 2e-4 and all(m.n_iter >= 1 for m in by_decrease)
    # `estimate` skips the last step's CG when the preconditioner says the step would gain at most `decrease`
    estimated = logreg.fit_path(X, y, Cs, tol=None, decrease=1e-4, estimate=True)
    gaps = [_objective(m, X, y, C) - b for m, C, b in zip(estimated, Cs, best, strict=True)]
    assert max(gaps) <= 2e-4
    assert sum(m.n_iter for m in estimated) < sum(m.n_iter for m in by_decrease)
    by_gradient = logreg.fit_path(X, y, Cs, tol=3e-3)
    assert by_gradient[-1].n_iter == 0  # the warm start passes the gradient test as it is
    assert _objective(by_gradient[-1], X, y, Cs[-1]) - best[-1] > 1e-2


def test_the_tied_start_is_the_best_equal_weight_stack_and_paths_from_it_reach_the_same_minimum() -> None:
    X, y = _stack_features(6, 1500, 4, 6)
    start = logreg.tied_start(X, y, 0.1, blocks=4)
    beta = start.coef[0, 0]  # class 0's weight on member 0's class-0 column
    assert beta > 0 and np.count_nonzero(start.coef) == 4 * 6  # one weight on each member's own class column
    # beta minimises the objective along the tied direction: a little either way is worse
    for eps in (-0.05, 0.05):
        moved = logreg.Multinomial(start.coef * (1 + eps), start.intercept, start.classes)
        assert _objective(moved, X, y, 0.1) > _objective(start, X, y, 0.1)
    prior = logreg.Multinomial(np.zeros_like(start.coef), start.intercept, start.classes)
    assert _objective(start, X, y, 0.1) < _objective(prior, X, y, 0.1) - 0.1
    a = logreg.fit_path(X, y, [0.1, 1.0], tol=None, decrease=1e-6, start=start)
    b = logreg.fit_path(X, y, [0.1, 1.0], tol=None, decrease=1e-6)
    for m, n in zip(a, b, strict=True):
        np.testing.assert_allclose(m.predict_proba(X), n.predict_proba(X), atol=1e-4)
    assert a[0].n_iter < b[0].n_iter


def test_confident_members_at_weak_penalty_fit_to_the_minimum_from_any_start() -> None:
    """bench_selection's competition 493 (3 confident members, 28 classes, 7,306 fit rows) at C = 1.0: an
    undamped one-dimensional Newton search oscillated there (beta -22.7 instead of 2.65, objective 37.0 against a
    minimum of 1.35), and the fit from that start stopped after 5 steps whose gradient did not shrink while the
    objective fell. The tied start is now a damped search, and a fit stalls only once its objective stops
    falling."""
    sim = bench_selection().simulate(493)
    idx = np.flatnonzero(sim.fold >= 2)
    M = sim.P.shape[1]
    X, y = sim.P[idx].reshape(len(idx), -1), sim.y[idx]
    start = logreg.tied_start(X, y, 1.0, blocks=M)
    beta = start.coef[start.coef != 0]
    assert np.all(beta == beta[0]) and 0 < beta[0] < 10
    for eps in (-0.05, 0.05):  # the minimum along the tied direction
        moved = logreg.Multinomial(start.coef * (1 + eps), start.intercept, start.classes)
        assert _objective(moved, X, y, 1.0) > _objective(start, X, y, 1.0)
    best = logreg.fit(X, y, 1.0, tol=None, decrease=1e-8, max_iter=200)
    far = logreg.Multinomial(-20 * start.coef / beta[0], start.intercept, start.classes)
    assert _objective(far, X, y, 1.0) > _objective(best, X, y, 1.0) + 10
    for s in (start, far):
        fitted = logreg.fit(X, y, 1.0, tol=None, decrease=1e-4, max_iter=200, start=s)
        assert _objective(fitted, X, y, 1.0) - _objective(best, X, y, 1.0) < 1e-4
