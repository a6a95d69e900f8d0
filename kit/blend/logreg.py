"""Multinomial logistic regression with an L2 penalty: the stack's solver (numpy, and numba for the row-wise
softmax in kit.blend.logreg_kernels).

The objective is scikit-learn's `LogisticRegression`'s: the mean multinomial log loss plus `||coef||^2 / (2 C n)`,
the intercept unpenalised. It is minimised by a truncated Newton method as scikit-learn's newton-cg (its inner CG
tolerance, its gradient rule `max |gradient| <= tol` when `tol` is given), with these changes:

- The CG is preconditioned by a Kronecker factorisation of the Hessian: (X1'X1 / n) (x) (the rows' mean softmax
  covariance), plus the penalty, inverted through the two factors' eigendecompositions (X1 = [X, 1]). A stack's
  features are its members' probabilities: strongly correlated, and each member's sum to one (collinear with
  the intercept). Plain CG spends most of its iterations on exactly those directions; X1'X1 holds them.
- `decrease`: a stopping rule on the Newton step's predicted decrease of the objective, which measures how far
  a fit is from its minimum where the gradient does not (see `fit`); `estimate` judges it by the
  preconditioner's estimate of the objective left to gain, before a step's CG and inside it (see `fit_path`).
- float32 matrix products, one loss evaluation per Newton step (Armijo backtracking, which a Newton step passes
  at once nearly always) on scores X1 s that the CG sums from its Hessian products (no product of its own),
  starts from the log class frequencies or `tied_start`.

On three of bench_selection's stacks, a regularisation path to the same gradient tolerance took 1.4-3.9x less
time than scikit-learn's newton-cg. Every number of classes is fitted as a multinomial model (scikit-learn fits a binary model for two
classes: the same model at twice the C). Classes absent from the fit rows get no coefficients (`classes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kit.metrics.scores import softmax

F32, F64 = np.float32, np.float64
MAX_INNER = 200  # CG iterations per Newton step (scikit-learn's newton-cg)
ARMIJO = 1e-4
ENOUGH = 0.5  # `estimate`: a step's CG stops at this share of `decrease` left to gain (see fit_path)


def _forcing(mag: float) -> float:
    """The inner CG's relative tolerance at a gradient of L1 norm `mag`: scikit-learn's min(0.5, sqrt(mag)),
    floored at 0.01: below that float32 residuals stop shrinking, and on a 5,000-row stack CG ran to MAX_INNER
    iterations (1.3 s for what takes 0.2 s)."""
    return float(min(0.5, max(0.01, np.sqrt(mag))))


STALL = 5  # Newton steps without a smaller gradient while the objective no longer falls (by more than FLOOR,
# relative): a tolerance under float32's floor for this problem (the smallest gradient's iterate is returned)
FLOOR = 1e-6


@dataclass
class Multinomial:
    """A fitted model: coef [K, d], intercept [K] (float32) over `classes` (the labels seen in the fit rows)."""

    coef: np.ndarray
    intercept: np.ndarray
    classes: np.ndarray
    n_iter: int = 0

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """[n, K] probabilities of `classes`. A one-row coef over two classes is a binary model (expit), as
        scikit-learn wrote them for two-class stacks."""
        z = np.asarray(X, dtype=self.coef.dtype) @ self.coef.T + self.intercept
        if len(self.classes) == 2 and len(self.coef) == 1:
            p = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.stack([1.0 - p, p], axis=1)
        return softmax(z, axis=1)


def with_ones(X: np.ndarray) -> np.ndarray:
    """[X, 1] in float32: the intercept is the coefficients' last row. `fit_path`, `fit` and `gram` take it in
    place of X (`ones=True`), so a caller fitting many row subsets of one X copies each subset once."""
    X1 = np.empty((X.shape[0], X.shape[1] + 1), dtype=F32)
    X1[:, :-1] = X
    X1[:, -1] = 1.0
    return X1


def gram(X: np.ndarray, *, ones: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The eigendecomposition of X1'X1 / n (X1 = [X, 1]; X itself when `ones`): the preconditioner's feature
    factor. A function of the fit rows only, so it can be computed once for every C fitted on them."""
    return _gram_of(X if ones else with_ones(X))


def _gram_of(X1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vals, vecs = np.linalg.eigh((X1.T @ X1).astype(F64) / len(X1))
    return np.clip(vals, 0.0, None).astype(F32), vecs.astype(F32)


def _loss(Z: np.ndarray, yk: np.ndarray) -> tuple[float, np.ndarray]:
    """The mean log loss at raw scores Z = X1 W [n, K] (float64 sum), and the softmax probabilities."""
    from kit.blend.logreg_kernels import softmax_loss

    P = np.empty_like(Z)
    return softmax_loss(Z, yk, P) / len(Z), P


def _objective(nll: float, W: np.ndarray, lam: float) -> float:
    return nll + 0.5 * lam * _dot(W[:-1], W[:-1])


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a.ravel().astype(F64), b.ravel().astype(F64)))


def _newton_direction(
    X1: np.ndarray,
    P: np.ndarray,
    lam: float,
    g: np.ndarray,
    term: float,
    feat: tuple[np.ndarray, np.ndarray],
    done_below: float | None = None,
    enough: float | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, float]:
    """Preconditioned CG on H s = -g ([d + 1, K], the intercept last), stopped as scikit-learn's `_cg`
    (sum |residual| <= term) or once half of r' M^-1 r (M the preconditioner) is at most `enough`. Returns the
    step s, its scores X1 s [n, K] (summed from the Hessian products' X1 p, so the line search needs no product
    of its own), and g' M^-1 g: the preconditioner's estimate of twice the step's predicted decrease. No step
    (None, None) when that estimate's half is at most `done_below`."""
    from kit.blend.logreg_kernels import softmax_hessian_rows

    n = len(P)
    cov = np.diag(P.sum(axis=0, dtype=F64)) - (P.T @ P).astype(F64)
    cvals, cvecs = np.linalg.eigh(cov / n)
    cvecs = cvecs.astype(F32)
    fvals, fvecs = feat
    den = np.outer(fvals, np.clip(cvals, 0.0, None)).astype(F32) + F32(lam)

    def precondition(r: np.ndarray) -> np.ndarray:
        z = fvecs @ ((fvecs.T @ r @ cvecs) / den) @ cvecs.T
        # the same constant on every class's intercept changes nothing (a null direction of H, not of the
        # factorisation): steps along it would only grow the raw scores and cost float32 precision
        z[-1] -= z[-1].mean()
        return z

    J = np.empty((n, g.shape[1]), dtype=F32)

    def hessp(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """H v, and X1 v."""
        Zv = X1 @ v
        softmax_hessian_rows(P, Zv, J)
        h = X1.T @ J
        h /= n
        h[:-1] += F32(lam) * v[:-1]
        return h, Zv

    s = np.zeros_like(g)
    Zs = np.zeros((n, g.shape[1]), dtype=F32)
    r = -g
    z = precondition(r)
    p = z
    rz = rz0 = _dot(r, z)
    if done_below is not None and rz0 / 2 <= done_below:
        return None, None, rz0
    for _ in range(MAX_INNER):
        if float(np.abs(r).sum(dtype=F64)) <= term:
            break
        h, Zp = hessp(p)
        curv = _dot(p, h)
        if curv <= 0:
            break
        alpha = F32(rz / curv)
        s = s + alpha * p
        Zs += alpha * Zp
        r = r - alpha * h
        z = precondition(r)
        rz, rz_old = _dot(r, z), rz
        if enough is not None and rz / 2 <= enough:
            break
        p = z + F32(rz / rz_old) * p
    return s, Zs, rz0


def tied_start(X: np.ndarray, y: np.ndarray, C: float, blocks: int) -> Multinomial:
    """A start for stacks, whose X is `blocks` blocks (members) of one column per class label 0..K-1: the model
    whose score for class k is beta times the sum of every block's column k, plus the log class frequencies,
    with beta minimising the objective at C by a one-dimensional Newton search on [n, K] arrays. The stack that
    trusts every member alike; a path starts from it a few Newton steps closer than from the frequencies."""
    classes, yk = np.unique(y, return_inverse=True)
    n, d = X.shape
    K = d // blocks
    S = np.zeros((n, K), F64)
    for m in range(blocks):  # block by block: X may be a column view (of `with_ones`), which reshape copies
        S += X[:, m * K : (m + 1) * K]
    S = S[:, classes]
    prior = np.log(np.bincount(yk) / n)
    prior -= prior.mean()
    lam, rows = blocks * len(classes) / (C * n), np.arange(n)  # the penalty's curvature in beta
    Sy = S[rows, yk]

    def at(beta: float) -> tuple[float, np.ndarray]:
        """The objective in beta (up to a constant) and the softmax probabilities."""
        Z = beta * S + prior
        top = Z.max(axis=1, keepdims=True)
        P = np.exp(Z - top)
        total = P.sum(axis=1, keepdims=True)
        P /= total
        loss = float((np.log(total[:, 0]) + top[:, 0] - beta * Sy).mean())
        return loss + 0.5 * lam * beta**2, P

    beta = 0.0
    f, P = at(beta)
    for _ in range(20):
        mean = (P * S).sum(axis=1)
        grad = float((mean - Sy).mean()) + lam * beta
        curv = float(((P * S * S).sum(axis=1) - mean**2).mean()) + lam
        step = -grad / curv
        for _ in range(30):  # backtracking: a full Newton step can overshoot on weak penalties (large C)
            fn, Pn = at(beta + step)
            if fn <= f + ARMIJO * step * grad:
                break
            step /= 2
        beta, f, P = beta + step, fn, Pn
        if abs(step) < 1e-4:
            break
    coef = np.zeros((len(classes), d), F32)
    for m in range(blocks):
        coef[np.arange(len(classes)), m * K + classes] = beta
    return Multinomial(coef, prior.astype(F32), classes)


def fit(
    X: np.ndarray,
    y: np.ndarray,
    C: float,
    *,
    tol: float | None = 1e-4,
    max_iter: int = 100,
    start: Multinomial | None = None,
    feat: tuple[np.ndarray, np.ndarray] | None = None,
    decrease: float | None = None,
    estimate: bool = False,
    ones: bool = False,
) -> Multinomial:
    """The model minimising the objective on (X [n, d], y [n] labels) at C, from `start` (a model over the same
    classes) or from the class frequencies, to max |gradient| <= tol (no gradient rule when tol is None) or
    `max_iter` Newton steps.

    `decrease`: also stop after a Newton step whose predicted decrease of the objective (half its directional
    derivative) is at most this. The gradient is a poor measure of how far a fit is from its minimum on many
    rows: the penalty's curvature is 1 / (C n), so on 7,000-12,000 rows a max |gradient| under 3e-3 left a
    stack's objective 0.13-0.28 above its minimum, enough to tie C values a decade apart. The predicted decrease
    measures that distance in log-loss units whatever the scale. `feat`: `gram(X)`, when the caller keeps it
    for several fits on the same rows. `estimate`: see `fit_path`. `ones`: X is `with_ones(X)`."""
    return fit_path(
        X,
        y,
        [C],
        tol=tol,
        max_iter=max_iter,
        start=start,
        feat=feat,
        decrease=decrease,
        estimate=estimate,
        ones=ones,
    )[0]


def fit_path(
    X: np.ndarray,
    y: np.ndarray,
    Cs: list[float],
    *,
    tol: float | None = 1e-4,
    max_iter: int = 100,
    start: Multinomial | None = None,
    feat: tuple[np.ndarray, np.ndarray] | None = None,
    decrease: float | None = None,
    starts: list[Multinomial | None] | None = None,
    estimate: bool = False,
    ones: bool = False,
) -> list[Multinomial]:
    """`fit` at each C of `Cs` in turn, each from the previous one's model (the first from `start`, else from
    the log class frequencies): the same models as chained `fit` calls, sharing [X, 1] and the preconditioner's
    factor. `starts[i]`, where given (a model over the same classes), is the start at Cs[i] instead.

    `estimate`: judge `decrease` by the preconditioner's estimate of the objective left to gain, half of r' M^-1 r
    (M the preconditioner, r the gradient of the step's quadratic model), scaled up by the previous step's ratio
    of the predicted decrease to that estimate where the ratio was above 1:
    - no CG (the fit is done) when the estimate at the gradient is at most `decrease` (never at a C's first
      step): the last CG would only confirm it. On three of bench_selection's stacks each fit ended 4e-5 or less
      above its minimum with `decrease` 1e-4, a step per C sooner.
    - the CG stops once the estimate at its residual is at most ENOUGH x `decrease`: the step then lands about
      that close to the minimum, which the next step's estimate confirms without a CG. Refining a path's model
      to `decrease` 1e-6 took 6-11 Hessian products instead of 13-29 (three stacks; it ended 1e-7 to 5e-7
      above the minimum).
    `ones`: X is `with_ones(X)`."""
    classes, yk = np.unique(y, return_inverse=True)
    X1 = X if ones else with_ones(X)
    n, d = X1.shape[0], X1.shape[1] - 1
    K = len(classes)
    if K == 1:
        return [Multinomial(np.zeros((1, d), F32), np.zeros(1, F32), classes) for _ in Cs]
    W = np.zeros((d + 1, K), F32)  # coefficients, the intercept last

    def fits(model: Multinomial | None) -> bool:
        return model is not None and np.array_equal(model.classes, classes) and model.coef.shape == (K, d)

    if fits(start):
        W[:-1], W[-1] = start.coef.T, start.intercept  # type: ignore[union-attr]
    else:  # the intercept-only model's optimum: the log class frequencies (a Newton step or two fewer)
        prior = np.log(np.bincount(yk, minlength=K) / n)
        W[-1] = prior - prior.mean()
    feat = _gram_of(X1) if feat is None else feat
    rows = np.arange(n)

    def data_gradient(P: np.ndarray) -> np.ndarray:
        """X1'(P - Y) / n: the loss part of the gradient, which does not depend on C."""
        G = P.copy()
        G[rows, yk] -= 1.0
        g = X1.T @ G
        g /= n
        return g

    models = []
    for i, C in enumerate(Cs):
        given = starts[i] if starts is not None else None
        if fits(given):
            W = np.empty_like(W)
            W[:-1], W[-1] = given.coef.T, given.intercept  # type: ignore[union-attr]
        Z = X1 @ W  # the raw scores, recomputed at each C: the same models as chained `fit` calls
        nll, P = _loss(Z, yk)
        gdata = data_gradient(P)
        lam = 1.0 / (C * n)
        f = _objective(nll, W, lam)
        steps, stalled, best = 0, 0, (np.inf, W)  # best: the smallest gradient's iterate
        falling = True  # the last step lowered the objective by more than float32's noise
        ratio = 0.0  # the last step's predicted decrease over the preconditioner's estimate of it (0: none)
        while steps < max_iter:
            g = gdata.copy()
            g[:-1] += F32(lam) * W[:-1]
            absg = np.abs(g)
            gmax = float(absg.max())
            if gmax < best[0]:
                best, stalled = (gmax, W), 0
            else:  # far from the minimum the gradient can grow while the objective falls: not a stall
                stalled = 0 if falling else stalled + 1
            if tol is not None and gmax <= tol:
                break
            if stalled >= STALL:  # under float32's floor: back to the smallest gradient's iterate
                W = best[1]
                break
            mag = float(absg.sum(dtype=F64))
            # `estimate` (see above): no CG when the preconditioner's estimate says the fit is within `decrease`;
            # the CG stops once its step would leave the fit within ENOUGH x `decrease`
            left = decrease / max(ratio, 1.0) if estimate and decrease is not None else None
            done_below = left if ratio else None
            enough = None if left is None else ENOUGH * left
            s, Zs, gmg = _newton_direction(X1, P, lam, g, _forcing(mag) * mag, feat, done_below, enough)
            if s is None or Zs is None:
                break
            slope = _dot(g, s)
            if not slope < 0:
                break
            ratio = -slope / gmg if gmg > 0 else 0.0
            last = decrease is not None and -slope / 2 <= decrease  # the step's predicted decrease
            step = 1.0
            for _ in range(30):
                Wn = W + F32(step) * s
                Zn = Z + F32(step) * Zs  # = X1 Wn up to float32 rounding
                nlln, Pn = _loss(Zn, yk)
                fn = _objective(nlln, Wn, lam)
                if fn <= f + ARMIJO * step * slope:
                    break
                step /= 2
            else:  # no decrease along a descent direction: at the float32 floor
                break
            falling = f - fn > FLOOR * (1.0 + abs(f))
            W, f, P, Z = Wn, fn, Pn, Zn
            gdata = data_gradient(P)
            steps += 1
            if last:
                break
        models.append(Multinomial(np.ascontiguousarray(W[:-1].T), W[-1].copy(), classes, steps))
    return models
