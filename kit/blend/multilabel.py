"""Blending for multi-label competitions (competition.task: multilabel), beside the multiclass machinery.

Candidates are per-label probabilities (space `probs`: a blend is their weighted mean) or per-label logits
(space `logits`: a blend is the sigmoid of their weighted mean), [n, M, L]. `MultilabelScorer` gives the
blenders of kit.blend.blenders the interface of FastScorer (layout, zeros, score, score_added, search, gain), so
greedy, hill_climb, subsets and best_single run unchanged; `MultilabelStack` is the stack (one logistic
regression per label over the candidates' logits of that label). `bootstrap_scores` resamples the multi-label
metrics for the selection rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kit.blend.scoring import PlainSearch
from kit.metrics.multilabel import (
    EPS,
    LABEL_DECISION_METRICS,
    ROW_METRICS,
    column_aucs,
    f1_of_counts,
    log_sigmoid,
    row_values,
    sigmoid,
)
from kit.metrics.scores import greater_is_better, parse_metric

TEMPERATURES = tuple(float(t) for t in np.round(np.logspace(-1, 1, 41), 4))


# ---------------------------------------------------------------- spaces


class MultilabelProbs:
    name = "probs"
    logits = False
    multilabel = True
    cut = 0.5  # a blend sum s of total weight w predicts a label where s >= cut * w

    def encode(self, logits: np.ndarray) -> np.ndarray:
        return sigmoid(logits)

    def to_probs(self, P: np.ndarray) -> np.ndarray:
        return np.asarray(P)

    def blend(self, s: np.ndarray, total: float) -> np.ndarray:
        return np.asarray(s, dtype=np.float64) / total


class MultilabelLogits:
    name = "logits"
    logits = True
    multilabel = True
    cut = 0.0

    def encode(self, logits: np.ndarray) -> np.ndarray:
        return np.asarray(logits)

    def to_probs(self, P: np.ndarray) -> np.ndarray:
        return sigmoid(P)

    def blend(self, s: np.ndarray, total: float) -> np.ndarray:
        return sigmoid(np.asarray(s, dtype=np.float64) / total)


MultilabelSpace = MultilabelProbs | MultilabelLogits


def multilabel_space(name: str) -> MultilabelSpace:
    return MultilabelProbs() if name == "probs" else MultilabelLogits()


def fit_temperature(logits: np.ndarray, Y: np.ndarray) -> float:
    """The temperature on a log-spaced grid that minimises the OOF mean BCE (one scalar per candidate)."""
    Yf = np.asarray(Y, dtype=np.float64)
    losses = [
        -(Yf * log_sigmoid(logits / t) + (1 - Yf) * log_sigmoid(-logits / t)).mean() for t in TEMPERATURES
    ]
    return TEMPERATURES[int(np.argmin(losses))]


# ---------------------------------------------------------------- scoring


def decision_score(metric: str, Y: np.ndarray, pred: np.ndarray) -> float:
    """A label-decision metric (f1_samples, f1_micro, f1_macro, accuracy_cells) of 0/1 predictions [n, L]."""
    Yb = np.asarray(Y, dtype=bool)
    if metric == "accuracy_cells":
        return float(1.0 - np.count_nonzero(Yb ^ pred) / Yb.size)
    hit = Yb & pred
    axis = 1 if metric == "f1_samples" else 0
    tp = np.count_nonzero(hit, axis=axis).astype(np.float64)
    npred = np.count_nonzero(pred, axis=axis).astype(np.float64)
    true = np.count_nonzero(Yb, axis=axis).astype(np.float64)
    if metric == "f1_micro":
        return float(f1_of_counts(tp.sum(), npred.sum(), true.sum()))
    return float(f1_of_counts(tp, npred, true).mean())


class MultilabelScorer:
    """Scores blends (a weighted sum of candidates [n, L] in a multi-label space) against a label matrix Y.

    Label-decision metrics compare the sum with the space's cut (no sigmoid, no division); roc_auc ranks each
    column of the sum (the blend's order); log_loss takes the blend's probabilities."""

    argmax_metric = False

    def __init__(self, metric: str, Y: np.ndarray, space: MultilabelSpace | str = "probs") -> None:
        self.metric = metric
        self.name, _ = parse_metric(metric)
        self.space = multilabel_space(space) if isinstance(space, str) else space
        self.Y = np.ascontiguousarray(Y, dtype=bool)
        self.n = len(self.Y)
        self.sign = 1.0 if greater_is_better(metric) else -1.0
        self._buf = np.empty(self.Y.shape, dtype=np.float32)

    def layout(self, P: np.ndarray) -> np.ndarray:
        """Candidates [n, M, L] -> contiguous float32 [M, n, L]."""
        return np.ascontiguousarray(np.transpose(P, (1, 0, 2)), dtype=np.float32)

    def zeros(self) -> np.ndarray:
        return np.zeros(self.Y.shape, dtype=np.float32)

    def score(self, s: np.ndarray, total: float = 1.0) -> float:
        if self.name in LABEL_DECISION_METRICS:
            return decision_score(self.name, self.Y, s >= np.float32(self.space.cut * total))
        if self.name == "roc_auc":
            aucs = column_aucs(self.Y, s)
            return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")
        return float(row_values("log_loss", self.Y, self.space.blend(s, total)).mean())

    def score_added(self, s: np.ndarray, p: np.ndarray, total: float = 1.0, scale: float = 1.0) -> float:
        b = self._buf
        if scale == 1.0:
            np.add(s, p, out=b)
        else:
            np.multiply(p, np.float32(scale), out=b)
            b += s
        return self.score(b, total)

    def search(self, X: np.ndarray, idx: list[int]) -> PlainSearch:
        """Greedy's round evaluator (kit.blend.scoring.PlainSearch, which takes any scorer with this interface)."""
        return PlainSearch(self, X, idx)  # type: ignore[arg-type]

    def gain(self, value: float) -> float:
        return self.sign * value


# ---------------------------------------------------------------- stack


class MultilabelStack:
    """One L2 logistic regression per label over the candidates' logits of that label (scikit-learn).

    `C="auto"` picks one C of `C_grid` for all labels by the pooled inner-CV BCE over `fold` (the saved folds of
    the fit rows); `weights_` are the candidates' shares of |coefficients|."""

    def __init__(
        self,
        metric: str = "f1_samples",
        space: Any = "probs",
        C: float | str = "auto",
        features: str = "probs",
        max_iter: int = 1000,
        C_grid: tuple[float, ...] = (0.01, 0.1, 1.0),
    ) -> None:
        self.metric, self.space, self.C, self.features = metric, space, C, features
        self.max_iter, self.C_grid = max_iter, C_grid

    def _features(self, P: np.ndarray) -> np.ndarray:
        """[n, M, L] logits of the candidates' probabilities."""
        sp = multilabel_space(self.space) if isinstance(self.space, str) else self.space
        p = np.clip(sp.to_probs(np.asarray(P, dtype=np.float64)), EPS, 1 - EPS)
        return np.log(p) - np.log1p(-p)

    def _fit_label(self, x: np.ndarray, y: np.ndarray, C: float) -> Any:
        from sklearn.linear_model import LogisticRegression

        if y.min() == y.max():  # one class in the fit rows: its rate, clipped
            return float(np.clip(y.mean(), EPS, 1 - EPS))
        return LogisticRegression(C=C, max_iter=self.max_iter).fit(x, y)

    @staticmethod
    def _proba(model: Any, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), model) if isinstance(model, float) else model.predict_proba(x)[:, 1]

    def _fit_all(self, X: np.ndarray, Y: np.ndarray, C: float) -> list[Any]:
        return [self._fit_label(X[:, :, j], Y[:, j], C) for j in range(Y.shape[1])]

    def fit(self, P: np.ndarray, y: np.ndarray, fold: np.ndarray | None = None) -> Any:
        X, Y = self._features(P), np.asarray(y, dtype=np.int64)
        self.C_losses_: list[float] = []
        if self.C == "auto" and fold is not None and len(np.unique(fold)) >= 2:
            losses = []
            for C in self.C_grid:
                total = 0.0
                for f in np.unique(fold):
                    tr, va = fold != f, fold == f
                    models = self._fit_all(X[tr], Y[tr], C)
                    Q = np.stack([self._proba(m, X[va][:, :, j]) for j, m in enumerate(models)], axis=1)
                    total += row_values("log_loss", Y[va], Q).sum()
                losses.append(total / len(Y))
            self.C_losses_ = losses
            self.C_ = float(self.C_grid[int(np.argmin(losses))])
        else:
            self.C_ = 1.0 if self.C == "auto" else float(self.C)
        self.models_ = self._fit_all(X, Y, self.C_)
        share = np.zeros(P.shape[1])
        for m in self.models_:
            if not isinstance(m, float):
                share += np.abs(m.coef_[0])
        self.weights_ = share / share.sum() if share.sum() > 0 else np.full(P.shape[1], 1.0 / P.shape[1])
        return self

    def predict(self, P: np.ndarray) -> np.ndarray:
        X = self._features(P)
        return np.stack([self._proba(m, X[:, :, j]) for j, m in enumerate(self.models_)], axis=1)

    def fitted_params(self) -> dict[str, Any]:
        return {
            "C": self.C_,
            "C_grid": list(self.C_grid) if self.C == "auto" else None,
            "C_inner_log_loss": self.C_losses_ or None,
            "coef": [None if isinstance(m, float) else m.coef_[0].tolist() for m in self.models_],
            "intercept": [m if isinstance(m, float) else float(m.intercept_[0]) for m in self.models_],
        }


# ---------------------------------------------------------------- bootstrap


def bootstrap_scores(metric: str, Y: np.ndarray, rs: Any, preds: Sequence[np.ndarray]) -> np.ndarray:
    """[R, B] the multi-label metric of each prediction array (probabilities [n, L]) on each group resample."""
    name, _ = parse_metric(metric)
    codes, G = rs.codes, rs.n_groups
    Yb = np.asarray(Y, dtype=bool)
    sizes = np.bincount(codes, minlength=G).astype(np.float64)
    if name in ROW_METRICS:  # per-image values summed by group
        sums = [np.bincount(codes, weights=row_values(name, Yb, np.asarray(Q)), minlength=G) for Q in preds]
        return np.concatenate([np.stack([(c @ g) / (c @ sizes) for g in sums]) for c in rs.chunks()], axis=1)
    if name in ("f1_micro", "f1_macro"):  # per-label counts summed by group: [G, L] each

        def by_group(a: np.ndarray) -> np.ndarray:
            out = np.zeros((G, a.shape[1]))
            np.add.at(out, codes, a)
            return out

        true = by_group(Yb.astype(np.float64))
        mats = []
        for Q in preds:
            pred = np.asarray(Q) >= 0.5
            mats.append((by_group((pred & Yb).astype(np.float64)), by_group(pred.astype(np.float64))))
        parts = []
        for c in rs.chunks():
            t = c @ true
            rows = []
            for tp_g, pr_g in mats:
                tp, pr = c @ tp_g, c @ pr_g
                if name == "f1_micro":
                    rows.append(f1_of_counts(tp.sum(1), pr.sum(1), t.sum(1)))
                else:
                    rows.append(f1_of_counts(tp, pr, t).mean(axis=1))
            parts.append(np.stack(rows))
        return np.concatenate(parts, axis=1)
    if name == "roc_auc":
        import warnings

        from kit.metrics.ranking import weighted_auc

        out = []
        for Q in preds:
            per = []
            for c in rs.chunks():
                w = c[:, codes]
                aucs = np.stack([weighted_auc(Yb[:, j], np.asarray(Q)[:, j], w) for j in range(Yb.shape[1])])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    per.append(np.nanmean(aucs, axis=0))
            out.append(np.concatenate(per))
        return np.stack(out)
    raise ValueError(f"{metric!r} is not a multi-label metric")
