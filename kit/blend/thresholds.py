"""Per-label decision thresholds for multi-label label metrics: a post-processing step of the blend.

Fitted on the fit rows (nested CV judges it like logit_adjust): each label's threshold is chosen from a grid by
coordinate ascent on the competition's metric, the other labels' thresholds held (f1_macro and accuracy_cells
are separable per label, so one pass finds their optimum; f1_samples and f1_micro couple the labels through each
image's or the pooled counts). `transform` maps each label's probability piecewise linearly so its threshold
lands on 0.5 (the decision every multi-label metric, the bootstrap and `kit submit` take), keeping each
column's order; with `at_least_one` an image with no label at 0.5 or above gets its most probable label
(relative to its threshold) set to 0.5.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kit.metrics.multilabel import f1_of_counts

DEFAULT_GRID = tuple(float(t) for t in np.round(np.arange(0.05, 0.96, 0.05), 2))


def _predicted_from(col: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """For each row, how many grid values its probability reaches: the row is predicted at grid[g] for
    g < this count (the decision col >= g is monotone in g)."""
    return np.searchsorted(grid, col, side="right")


def _sum_by_grid(reach: np.ndarray, weights: np.ndarray | None, G: int) -> np.ndarray:
    """[G] the sum of `weights` over the rows predicted at each grid value (one bincount, a reverse cumsum)."""
    b = np.bincount(reach, weights=weights, minlength=G + 1)
    return np.cumsum(b[::-1])[::-1][1:]


def _by_grid(
    metric: str, col: np.ndarray, y: np.ndarray, grid: np.ndarray, rest: dict[str, Any]
) -> np.ndarray:
    """[G] the metric with this label's threshold at each grid value (the other labels' counts in `rest`).

    O(n) per label whatever the grid: each row either is predicted at a grid value or not, so the metric is a
    base value plus the sum of the predicted rows' changes."""
    G, n = len(grid), len(y)
    reach = _predicted_from(col, grid)
    yf = y.astype(np.float64)
    if metric == "f1_samples":  # per image: F1 without this label (v0) and with it predicted (v1)
        rt, rp, true = rest["row_tp"], rest["row_pred"], rest["row_true"]
        v0 = f1_of_counts(rt, rp, true)
        v1 = f1_of_counts(rt + yf, rp + 1.0, true)
        return (v0.sum() + _sum_by_grid(reach, v1 - v0, G)) / n
    tp_l = _sum_by_grid(reach, yf, G)
    pred_l = _sum_by_grid(reach, None, G)
    true_l = float(yf.sum())
    if metric == "f1_micro":
        return f1_of_counts(rest["tp"] + tp_l, rest["pred"] + pred_l, np.full(G, rest["true"]))
    if metric == "f1_macro":
        return f1_of_counts(tp_l, pred_l, np.full(G, true_l))
    if metric == "accuracy_cells":
        return (n - (pred_l + true_l - 2 * tp_l)) / n
    raise ValueError(f"thresholds suit label metrics, not {metric!r}")


class Thresholds:
    def __init__(
        self,
        metric: str = "f1_samples",
        grid: tuple[float, ...] = DEFAULT_GRID,
        passes: int = 2,
        at_least_one: bool = False,
    ) -> None:
        self.metric = metric
        self.grid = grid
        self.passes = passes
        self.at_least_one = at_least_one

    def fit(self, Q: np.ndarray, y: np.ndarray) -> Thresholds:
        Q = np.asarray(Q, dtype=np.float64)
        Y = np.asarray(y, dtype=bool)
        L = Q.shape[1]
        grid = np.asarray(sorted({*self.grid, 0.5}), dtype=np.float64)
        t = np.full(L, 0.5)
        pred = np.greater_equal(Q, t)
        hit = pred & Y
        row_tp, row_pred = hit.sum(axis=1).astype(np.float64), pred.sum(axis=1).astype(np.float64)
        row_true = Y.sum(axis=1).astype(np.float64)
        for _ in range(self.passes):
            changed = False
            for j in range(L):
                mine_tp, mine_pred = hit[:, j], pred[:, j]
                rest = {  # the counts of every label but j
                    "row_tp": row_tp - mine_tp,
                    "row_pred": row_pred - mine_pred,
                    "row_true": row_true,
                    "tp": float(row_tp.sum() - mine_tp.sum()),
                    "pred": float(row_pred.sum() - mine_pred.sum()),
                    "true": float(row_true.sum()),
                }
                values = _by_grid(self.metric, Q[:, j], Y[:, j], grid, rest)
                cur = values[int(np.searchsorted(grid, t[j]))]
                best = int(np.argmax(values))
                if values[best] > cur + 1e-12:  # ties keep the current threshold
                    t[j] = grid[best]
                    new_pred = Q[:, j] >= t[j]
                    new_hit = new_pred & Y[:, j]
                    row_tp += new_hit.astype(np.float64) - hit[:, j]
                    row_pred += new_pred.astype(np.float64) - pred[:, j]
                    pred[:, j], hit[:, j] = new_pred, new_hit
                    changed = True
            if not changed:
                break
        self.thresholds_ = t
        return self

    def transform(self, Q: np.ndarray) -> np.ndarray:
        Q = np.asarray(Q, dtype=np.float64)
        t = self.thresholds_
        below = 0.5 * Q / t
        above = 0.5 + 0.5 * (Q - t) / np.maximum(1 - t, 1e-12)
        out = np.where(np.greater_equal(Q, t), above, below)
        if self.at_least_one and len(out):
            empty = ~(out >= 0.5).any(axis=1)
            top = out.argmax(axis=1)
            out[empty, top[empty]] = 0.5
        return out

    def fitted_params(self) -> dict[str, Any]:
        return {"thresholds": [float(v) for v in self.thresholds_], "at_least_one": self.at_least_one}
