"""Multi-label blend search and threshold fitting against the multiclass search, at the same N.

N = 200,000 OOF rows, M = 10 candidates (synthetic):
- multiclass: C = 26 classes (long-tailed), greedy selection (25 rounds) under weighted F1 with kit's FastScorer
  (the baseline);
- multi-label: L = 26 labels (long-tailed prevalences), greedy selection (25 rounds) under f1_samples with
  kit.blend.multilabel's scorer, then per-label thresholds (kit.blend.thresholds) fitted on the
  blend's probabilities.
Goal: multi-label search + thresholds within 3x of the multiclass search. Prints the load average beside the
times (the machine may be shared). Run: `.venv/bin/python bench/bench_multilabel.py [N]`
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from kit.blend.blenders import greedy_counts
from kit.blend.multilabel import MultilabelScorer, multilabel_space
from kit.blend.scoring import FastScorer
from kit.blend.thresholds import Thresholds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_blend import loadavg, make_data

L, M, ROUNDS = 26, 10, 25


def multiclass_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels [n] and candidates' probabilities [n, M, L]: bench_blend's long-tailed weak members."""
    y, Pt = make_data(seed, 1.5, L, n, M)  # class-major [M, L, n]
    return y, np.ascontiguousarray(np.transpose(Pt, (2, 0, 1)))


def multilabel_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Label matrix [n, L] and candidates' per-label probabilities [n, M, L]."""
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, L)) < np.geomspace(0.4, 0.01, L)).astype(np.uint8)
    P = np.empty((n, M, L), dtype=np.float32)
    for m in range(M):
        z = rng.normal(-1.5, 1.0 + 0.15 * m, size=(n, L)) + 2.0 * Y
        P[:, m] = 1 / (1 + np.exp(-z))
    return Y, P


def timed(fn):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(n: int = 200_000) -> None:
    y, P = multiclass_data(n)
    Y, Q = multilabel_data(n)
    # lazy imports and first calls on a small slice, outside the timings
    mc_small = FastScorer("weighted_f1", y[:2000], L, "probs")
    greedy_counts(mc_small.layout(P[:2000]), mc_small, 2)
    ml_small = MultilabelScorer("f1_samples", Y[:2000], multilabel_space("probs"))
    greedy_counts(ml_small.layout(Q[:2000]), ml_small, 2)

    mc = FastScorer("weighted_f1", y, L, "probs")
    Xmc = mc.layout(P)
    _, t_mc = timed(lambda: greedy_counts(Xmc, mc, ROUNDS))
    ml = MultilabelScorer("f1_samples", Y, multilabel_space("probs"))
    Xml = ml.layout(Q)
    (counts_ml, _, _), t_ml = timed(lambda: greedy_counts(Xml, ml, ROUNDS))
    blend = np.einsum("nmc,m->nc", Q.astype(np.float64), counts_ml / counts_ml.sum())
    th, t_th = timed(lambda: Thresholds("f1_samples").fit(blend, Y))
    print(f"N={n}, L=C={L}, M={M}, greedy {ROUNDS} rounds; load average {loadavg()}")
    print(f"  multiclass  greedy (weighted_f1)                   {t_mc:8.2f} s")
    print(f"  multi-label greedy (f1_samples)                    {t_ml:8.2f} s")
    print(f"  multi-label per-label thresholds (2 passes)        {t_th:8.2f} s")
    print(
        f"  ratio (multi-label search + thresholds) / multiclass search: {(t_ml + t_th) / t_mc:.2f}x (goal <= 3x)"
    )
    print(f"  thresholds: {np.round(th.thresholds_[:6], 2).tolist()} ...; load average now {loadavg()}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
