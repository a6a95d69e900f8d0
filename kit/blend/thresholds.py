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


def _by_grid(
    metric: str, col: np.ndarray, y: np.ndarray, grid: np.ndarray, rest: dict[str, Any]
) -> np.ndarray:
    """[G] the metric with this label's threshold at each grid value (the other labels' counts in `rest`)."""
    pred = col[:, None] >= grid[None, :]  # [n, G]
    hit = pred & y[:, None]
    if metric == "f1_samples":
        tp = rest["row_tp"][:, None] + hit
        npred = rest["row_pred"][:, None] + pred
        return f1_of_counts(tp, npred, np.broadcast_to(rest["row_true"][:, None], tp.shape)).mean(axis=0)
    tp_l = hit.sum(axis=0).astype(np.float64)
    pred_l = pred.sum(axis=0).astype(np.float64)
    true_l = float(y.sum())
    if metric == "f1_micro":
        return f1_of_counts(rest["tp"] + tp_l, rest["pred"] + pred_l, np.full(len(grid), rest["true"]))
    if metric == "f1_macro":
        return f1_of_counts(tp_l, pred_l, np.full(len(grid), true_l))
    if metric == "accuracy_cells":
        return (len(y) - (pred_l + true_l - 2 * tp_l)) / len(y)
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
        for _ in range(self.passes):
            changed = False
            for j in range(L):
                others = np.delete(np.arange(L), j)
                p_o, y_o = pred[:, others], Y[:, others]
                hit_o = p_o & y_o
                rest = {
                    "row_tp": hit_o.sum(axis=1).astype(np.float64),
                    "row_pred": p_o.sum(axis=1).astype(np.float64),
                    "row_true": Y.sum(axis=1).astype(np.float64),
                    "tp": float(hit_o.sum()),
                    "pred": float(p_o.sum()),
                    "true": float(Y.sum()),
                }
                values = _by_grid(self.metric, Q[:, j], Y[:, j], grid, rest)
                cur = values[int(np.searchsorted(grid, t[j]))]
                best = int(np.argmax(values))
                if values[best] > cur + 1e-12:  # ties keep the current threshold
                    t[j] = grid[best]
                    pred[:, j] = Q[:, j] >= t[j]
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
