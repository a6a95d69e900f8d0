"""Selection under uncertainty: the blend table's rows compared on the same held-out rows, resampled by group.

Every row of a blend table has pooled nested predictions on the same train rows. The rows' scores are noisy
estimates: taking the maximum of many of them picks noise (the winner's curse). Here rows are compared with a
paired group bootstrap: each resample draws the groups (a patient, a writer; each row its own group when the
competition has none) with replacement, and every row is scored on the same resampled rows, so the differences
between rows are measured with their uncertainty. Rules then prefer simpler rows unless a more complex one is
reliably better (bench/README.md has the benchmark that chose the rule kit ships).

Everything here is pure array code: predictions in, indices and numbers out.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from kit.metrics.ranking import qwk_from_confusions, weighted_auc
from kit.metrics.scores import (
    ARGMAX_METRICS,
    METRICS,
    ROW_MEAN_METRICS,
    greater_is_better,
    parse_metric,
    row_values,
    score,
    score_from_counts,
)

# rows x classes up to which the bootstrap counts its label predictions as corrections to their consensus
CONSENSUS_CELLS = 1 << 24
KIND_COMPLEXITY = {"best_single": 0, "uniform": 1, "greedy": 2, "hill_climb": 2, "subsets": 3, "stack": 4}


def complexity(kind: str, postprocess: Sequence[str]) -> int:
    """best_single < uniform < weighted blends (greedy, hill_climb) < subsets < stack; +1 per post-processing step."""
    return KIND_COMPLEXITY[kind] + len(postprocess)


def group_codes(groups: Sequence[str] | None, n: int) -> np.ndarray:
    """Row -> group index. No groups: every row is its own group. Blank group values are each their own group."""
    if groups is None:
        return np.arange(n, dtype=np.int64)
    keys = [g if str(g).strip() else f"\x00row{i}" for i, g in enumerate(groups)]
    _, codes = np.unique(np.asarray(keys, dtype=object), return_inverse=True)
    return codes.astype(np.int64)


@dataclass(frozen=True)
class Resampler:
    """A group bootstrap: each resample draws G of the G groups with replacement (multinomial counts).

    The [B, G] counts are generated in chunks from (seed, chunk), so memory stays bounded on large tables and
    every caller sees the same resamples: comparisons between rows are paired. When all B resamples take at
    most `keep_bytes`, the chunks are drawn once and kept (a table's rows are scored on them many times).
    """

    codes: np.ndarray  # [n] group index per row, 0..G-1
    resamples: int
    seed: int
    chunk_bytes: int = 32 << 20
    keep_bytes: int = 64 << 20
    _kept: dict[bool, list[np.ndarray]] = field(
        default_factory=dict, compare=False, repr=False
    )  # transposed? -> the chunks, once drawn

    @property
    def n_groups(self) -> int:
        return int(self.codes.max()) + 1 if len(self.codes) else 0

    @classmethod
    def make(cls, codes: np.ndarray, resamples: int, seed: int) -> Resampler:
        _, dense = np.unique(np.asarray(codes), return_inverse=True)
        return cls(codes=dense.astype(np.int64).ravel(), resamples=resamples, seed=seed)

    def subset(self, rows: np.ndarray, seed: int) -> Resampler:
        """A fresh group bootstrap over `rows` only (their groups re-indexed and redrawn)."""
        return Resampler.make(self.codes[rows], self.resamples, seed)

    def chunks(self) -> Iterator[np.ndarray]:
        """[b, G] float64 draw counts, chunk by chunk, B rows in all (read-only)."""
        return self._chunks(transposed=False)

    def drawn(self) -> Iterator[np.ndarray]:
        """The same chunks transposed: [G, b], C-contiguous (the right-hand side of sparse products)."""
        return self._chunks(transposed=True)

    def _chunks(self, transposed: bool) -> Iterator[np.ndarray]:
        if transposed in self._kept:
            yield from self._kept[transposed]
            return
        keep = self.resamples * self.n_groups * 8 <= self.keep_bytes
        made = []
        for counts in self._kept.get(False) or self._draw():
            out = np.ascontiguousarray(counts.T) if transposed else counts
            out.flags.writeable = False
            if keep:
                made.append(out)
            yield out
        if keep:  # only once every chunk was drawn
            self._kept[transposed] = made

    def _draw(self) -> Iterator[np.ndarray]:
        G = self.n_groups
        step = max(1, min(self.resamples, self.chunk_bytes // (8 * max(G, 1))))
        for i, start in enumerate(range(0, self.resamples, step)):
            b = min(step, self.resamples - start)
            draws = np.random.default_rng([self.seed, i]).integers(0, G, size=(b, G))
            draws += np.arange(b)[:, None] * G
            yield np.bincount(draws.ravel(), minlength=b * G).reshape(b, G).astype(np.float64)


def _group_class_matrix(codes: np.ndarray, classes: np.ndarray, weights: np.ndarray | None, G: int, C: int):
    from scipy.sparse import csr_matrix

    w = np.ones(len(codes)) if weights is None else weights.astype(np.float64)
    return csr_matrix((w, (codes, classes)), shape=(G, C))


class BootstrapScorer:
    """Scores of many prediction arrays on the same group-bootstrap resamples of (y, groups).

    Argmax metrics need only three per-class counts per resample (true, predicted, correct): sparse
    group-by-class matrices multiplied by the [G, b] draw counts (`_label_scores`), and `scores` remembers the
    class predictions it has scored (the selection rules' picks often coincide). Log loss resamples per-row
    losses. Other metrics fall back to scoring each resample's rows.
    """

    def __init__(self, metric: str, y: np.ndarray, n_classes: int, rs: Resampler) -> None:
        self.metric, self.y, self.C, self.rs = metric, np.asarray(y, dtype=np.int64), n_classes, rs
        self.by_label = self.metric in ARGMAX_METRICS and self.y.ndim == 1
        self._scored: dict[bytes, np.ndarray] = {}  # digest of class predictions -> their [B] scores

    def decisions(self, Q: np.ndarray) -> np.ndarray:
        """What the metric reads of probabilities Q [n, C]: for argmax metrics the predicted class per row (so
        callers that score many subsets of the same rows take the argmax once), else Q itself."""
        return np.asarray(Q).argmax(axis=1) if self.by_label and np.ndim(Q) == 2 else Q

    def point(self, Q: np.ndarray) -> float:
        """The metric of probabilities Q [n, C], or of `decisions(Q)`."""
        if self.by_label and np.ndim(Q) == 1:
            return METRICS[self.metric](self.y, Q, self.C)
        return score(self.metric, self.y, Q, logits=False)

    def scores(self, Q: np.ndarray) -> np.ndarray:
        """[B] the metric of probabilities Q [n, C] on each resample (read-only)."""
        if not self.by_label:
            return self.scores_many([Q])[0]
        pred = np.ascontiguousarray(self.decisions(Q), dtype=np.int64)
        key = hashlib.blake2b(pred.tobytes(), digest_size=16).digest()
        if key not in self._scored:
            self._scored[key] = self._label_scores([pred])[0]
            self._scored[key].flags.writeable = False
        return self._scored[key]

    def scores_many(self, preds: Sequence[np.ndarray]) -> np.ndarray:
        """[R, B] the metric of each prediction array (probabilities, or `decisions`) on each resample (the same
        resamples for all)."""
        rs, y, G, C = self.rs, self.y, self.rs.n_groups, self.C
        if y.ndim == 2:  # a multi-label matrix
            from kit.blend.multilabel import bootstrap_scores

            return bootstrap_scores(self.metric, y, rs, preds)
        if self.by_label:
            return self._label_scores([self.decisions(Q) for Q in preds])
        name, _ = parse_metric(self.metric)
        if name in ROW_MEAN_METRICS:  # log loss, MAP@k, top-k: per-row values summed by group
            sums = [
                np.bincount(rs.codes, weights=row_values(self.metric, y, Q, logits=False), minlength=G)
                for Q in preds
            ]
            sizes = np.bincount(rs.codes, minlength=G).astype(np.float64)
            parts = [np.stack([(c @ g) / (c @ sizes) for g in sums]) for c in rs.chunks()]
            return np.concatenate(parts, axis=1)
        if name == "qwk":  # the confusion matrix of each resample: counts of (group, true * C + predicted)
            cells = [
                _group_class_matrix(rs.codes, y * C + np.asarray(Q).argmax(axis=1), None, G, C * C)
                for Q in preds
            ]
            parts = [
                np.stack([qwk_from_confusions((counts @ m).reshape(-1, C, C)) for m in cells])
                for counts in rs.chunks()
            ]
            return np.concatenate(parts, axis=1)
        if name == "roc_auc":
            return np.stack([self._auc(np.asarray(Q)) for Q in preds])
        return np.stack([self._generic(Q) for Q in preds])

    def _label_scores(self, preds: list[np.ndarray]) -> np.ndarray:
        """[R, B] an argmax metric of class predictions [n] each, from per-class counts per resample.

        The table's rows predict the same class for most rows, so the counts are those of a consensus (each
        row's most common prediction) plus, per prediction, sparse [R * C, G] corrections on the rows where it
        differs: one product per count costs O(B * rows that differ) instead of O(B * R * n). The counts are
        integers (exact in float64): the same scores as counting each prediction alone."""
        rs, y, G, C, R = self.rs, self.y, self.rs.n_groups, self.C, len(preds)
        pred = np.stack(preds)  # [R, n]
        n = len(y)
        if R > 2 and n * C <= CONSENSUS_CELLS:
            votes = np.bincount((np.arange(n) * C + pred).ravel(), minlength=n * C).reshape(n, C)
            base = votes.argmax(axis=1)
        else:
            base = pred[0]
        r, i = np.nonzero(pred != base)  # the (prediction, row) pairs that differ from the consensus
        g, p, q, t = rs.codes[i], pred[r, i], base[i], y[i]
        # predictions: +1 at the prediction's class, -1 at the consensus's; hits: +-1 at the true class
        change = _group_class_matrix(
            np.concatenate([g, g]),
            np.concatenate([r * C + p, r * C + q]),
            np.concatenate([np.ones(len(i)), -np.ones(len(i))]),
            G,
            R * C,
        ).T.tocsr()
        gained = (p == t).astype(np.float64) - (q == t)
        hit_change = _group_class_matrix(g, r * C + t, gained, G, R * C).T.tocsr()
        labels = _group_class_matrix(rs.codes, y, None, G, C).T.tocsr()
        base_made = _group_class_matrix(rs.codes, base, None, G, C).T.tocsr()
        base_hits = _group_class_matrix(rs.codes, y, (base == y).astype(np.float64), G, C).T.tocsr()
        parts = []
        for drawn in rs.drawn():
            # [C, b] blocks, read through their transposes [b, C]: every count sums its classes in one order
            support = (labels @ drawn).T
            made = (change @ drawn).reshape(R, C, -1) + (base_made @ drawn)
            tp = (hit_change @ drawn).reshape(R, C, -1) + (base_hits @ drawn)
            parts.append(
                np.stack([score_from_counts(self.metric, tp[k].T, made[k].T, support) for k in range(R)])
            )
        return np.concatenate(parts, axis=1)

    def _auc(self, Q: np.ndarray) -> np.ndarray:
        """[B] ROC AUC (binary: class 1's column; else one-vs-rest, macro over the classes a resample has) with
        the resample's draw counts as row weights: one sort per class for all resamples."""
        columns = [1] if self.C == 2 else list(range(self.C))
        out = []
        for counts in self.rs.chunks():
            rows = max(1, (64 << 20) // (8 * max(len(self.y), 1)))  # row weights [b, n] in 64 MB pieces
            for start in range(0, len(counts), rows):
                w = counts[start : start + rows][:, self.rs.codes]
                aucs = np.stack([weighted_auc(self.y == c, Q[:, c], w) for c in columns])
                with warnings.catch_warnings():  # a resample without some class: that class has no AUC
                    warnings.simplefilter("ignore", RuntimeWarning)
                    out.append(np.nanmean(aucs, axis=0) if len(columns) > 1 else aucs[0])
        return np.concatenate(out)

    def _generic(self, Q: np.ndarray) -> np.ndarray:
        rows = np.arange(len(self.y))
        out = []
        for counts in self.rs.chunks():
            per_row = counts[:, self.rs.codes].astype(np.int64)
            for b in range(len(counts)):
                idx = np.repeat(rows, per_row[b])
                out.append(score(self.metric, self.y[idx], np.asarray(Q)[idx], logits=False))
        return np.asarray(out)


@dataclass
class Comparison:
    """The table's rows on one set of rows: point scores, bootstrap scores, and their paired comparisons."""

    metric: str
    point: np.ndarray  # [R]
    boot: np.ndarray  # [R, B]
    complexity: np.ndarray  # [R]
    baseline: int  # the best_single row

    @property
    def sign(self) -> float:
        return 1.0 if greater_is_better(self.metric) else -1.0

    def gain(self) -> tuple[np.ndarray, np.ndarray]:
        """Point and bootstrap scores with the sign that makes larger better."""
        return self.sign * self.point, self.sign * self.boot

    def p_beats(self, j: int) -> np.ndarray:
        """[R] share of resamples in which each row scores strictly better than row j."""
        _, b = self.gain()
        return np.asarray((b > b[j]).mean(axis=1))

    def interval(self, level: float = 0.95) -> np.ndarray:
        """[R, 2] percentile interval of each row's score."""
        a = (1 - level) / 2
        return np.quantile(self.boot, [a, 1 - a], axis=1).T


def compare(
    bs: BootstrapScorer, preds: Sequence[np.ndarray], complexities: Sequence[int], baseline: int
) -> Comparison:
    decided = [bs.decisions(Q) for Q in preds]
    return Comparison(
        metric=bs.metric,
        point=np.array([bs.point(Q) for Q in decided]),
        boot=bs.scores_many(decided),
        complexity=np.asarray(complexities),
        baseline=baseline,
    )


def _best(point: np.ndarray, among: np.ndarray) -> int:
    """The row with the best (signed) point score among `among`; ties go to the earliest row."""
    idx = np.flatnonzero(among)
    return int(idx[np.argmax(point[idx])])


def _simplest(point: np.ndarray, complexity: np.ndarray, among: np.ndarray) -> int:
    """The simplest row among `among`; ties on complexity go to the best point score, then the earliest row."""
    idx = np.flatnonzero(among)
    c = complexity[idx]
    keep = idx[c == c.min()]
    return int(keep[np.argmax(point[keep])])


def rule_max_nested(cmp: Comparison, confidence: float) -> int:
    """Today's rule before selection under uncertainty: the best point estimate."""
    g, _ = cmp.gain()
    return _best(g, np.ones(len(g), dtype=bool))


def within_one_se(cmp: Comparison) -> list[int]:
    """The rows whose nested score is within one paired standard error of the best row's (the best included)."""
    g, b = cmp.gain()
    top = _best(g, np.ones(len(g), dtype=bool))
    se = (b[top] - b).std(axis=1)
    return [int(i) for i in np.flatnonzero(g[top] - g <= se)]


def rule_one_se(cmp: Comparison, confidence: float) -> int:
    """The simplest row within one (paired) standard error of the best row."""
    g, _ = cmp.gain()
    near = np.zeros(len(g), dtype=bool)
    near[within_one_se(cmp)] = True
    return _simplest(g, cmp.complexity, near)


def rule_beat_single(cmp: Comparison, confidence: float) -> int:
    """The best row among those that beat best_single in at least `confidence` of the resamples
    (best_single itself when none does)."""
    g, _ = cmp.gain()
    ok = cmp.p_beats(cmp.baseline) >= confidence
    ok[cmp.baseline] = True
    return _best(g, ok)


def rule_stepwise(cmp: Comparison, confidence: float) -> int:
    """Start from best_single; walk the rows from simple to complex and move to a row only when it beats the
    current pick in at least `confidence` of the resamples."""
    g, b = cmp.gain()
    pick = cmp.baseline
    for r in sorted(range(len(g)), key=lambda i: (cmp.complexity[i], i)):
        if r != pick and g[r] > g[pick] and (b[r] > b[pick]).mean() >= confidence:
            pick = r
    return pick


RULE_FUNCS: dict[str, Callable[[Comparison, float], int]] = {
    "max_nested": rule_max_nested,
    "one_se": rule_one_se,
    "beat_single": rule_beat_single,
    "stepwise": rule_stepwise,
}


def select(cmp: Comparison, rule: str, confidence: float) -> list[int]:
    """The rows the rule picks: one row, or for `average_1se` every row within one paired standard error of the
    best (their predictions are averaged: near-equal rows differ mostly by noise, and their mean is steadier
    than any one of them)."""
    if rule == "average_1se":
        return within_one_se(cmp)
    return [RULE_FUNCS[rule](cmp, confidence)]


def average(preds: Sequence[np.ndarray], rows: Sequence[int]) -> np.ndarray:
    """The mean of the picked rows' predictions (one row: its predictions as they are)."""
    if len(rows) == 1:
        return np.asarray(preds[rows[0]])
    return np.mean([np.asarray(preds[r], dtype=np.float64) for r in rows], axis=0)


@dataclass
class SelectionAware:
    """The whole procedure (rows judged, then one picked by the rule) estimated by running the selection inside
    each outer fold: fold f's rows get the nested predictions of the row the rule picks on the other folds."""

    oof: np.ndarray  # [n, C] pooled predictions of the per-fold picks
    picks: dict[int, list[int]]  # fold -> the rows picked there
    score: float
    interval: tuple[float, float]


def fold_comparisons(
    metric: str,
    y: np.ndarray,
    preds: Sequence[np.ndarray],
    complexities: Sequence[int],
    baseline: int,
    fold: np.ndarray,
    rs: Resampler,
    seed: int,
) -> dict[int, Comparison]:
    """For each outer fold f: the rows compared on the other folds' rows only (a fresh group bootstrap of them)."""
    C = preds[0].shape[1]
    decided = [BootstrapScorer(metric, y, C, rs).decisions(Q) for Q in preds]  # the argmax once, not per fold
    out = {}
    for f in np.unique(fold):
        keep = np.flatnonzero(fold != f)
        bs = BootstrapScorer(metric, y[keep], C, rs.subset(keep, seed + 1 + int(f)))
        out[int(f)] = compare(bs, [np.asarray(Q)[keep] for Q in decided], complexities, baseline)
    return out


def selection_aware(
    bs: BootstrapScorer,
    preds: Sequence[np.ndarray],
    fold: np.ndarray,
    per_fold: dict[int, Comparison],
    rule: str,
    confidence: float,
    level: float = 0.95,
) -> SelectionAware:
    """Apply `rule` inside each outer fold (`fold_comparisons`) and score the pooled picks on all rows."""
    out = np.zeros(np.shape(preds[0]), dtype=np.float64)
    picks = {}
    for f, cmp in per_fold.items():
        rows = select(cmp, rule, confidence)
        picks[f] = rows
        held = fold == f
        out[held] = average([np.asarray(preds[r])[held] for r in rows], range(len(rows)))
    lo, hi = np.quantile(bs.scores(out), [(1 - level) / 2, (1 + level) / 2])
    return SelectionAware(oof=out, picks=picks, score=bs.point(out), interval=(float(lo), float(hi)))


def score_interval(
    metric: str,
    y: np.ndarray,
    probs: np.ndarray,
    groups: Sequence[str] | None,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(score, low, high): one prediction array's score with its group-bootstrap percentile interval."""
    rs = Resampler.make(group_codes(groups, len(y)), resamples, seed)
    bs = BootstrapScorer(metric, y, probs.shape[1], rs)
    lo, hi = np.quantile(bs.scores(probs), [(1 - level) / 2, (1 + level) / 2])
    return bs.point(probs), float(lo), float(hi)
