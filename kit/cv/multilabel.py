"""Multi-label fold assignment: iterative stratification (Sechidis, Tsoumakas, Vlahavas 2011), group-aware.

The unit of assignment is a group (a patient, a plant; each row its own group when there are none): its label
counts are the sum of its rows' 0/1 labels, its size the number of rows. Labels are handled rarest first: every
unit still unassigned that carries the label goes to the fold that most lacks that label (ties: the fold that
most lacks rows, then a seeded random fold), and the fold's wants for every label of the unit drop. Units without
any label fill the folds that most lack rows. PyPI's `iterative-stratification` implements the same algorithm
without groups (and installs a top-level `tests` package), so kit keeps this small version of its own.
"""

from __future__ import annotations

import numpy as np


def iterative_stratification(Y: np.ndarray, k: int, seed: int, groups: list[str] | None = None) -> np.ndarray:
    """Fold index per row (int64 [n]) for the 0/1 label matrix Y [n, L]; rows of one group share a fold."""
    Y = np.asarray(Y, dtype=np.int64)
    n = len(Y)
    if groups is None:
        codes = np.arange(n)
    else:
        _, codes = np.unique(np.asarray(groups, dtype=object), return_inverse=True)
        codes = np.asarray(codes, dtype=np.int64).ravel()
    G = int(codes.max()) + 1 if n else 0
    counts = np.zeros((G, Y.shape[1]), dtype=np.int64)
    np.add.at(counts, codes, Y)
    sizes = np.bincount(codes, minlength=G).astype(np.float64)
    rng = np.random.default_rng(seed)
    # a seeded random order of the units, so ties between equal units break differently per seed
    order = rng.permutation(G)
    want_rows = np.full(k, sizes.sum() / k)
    want = np.tile(counts.sum(axis=0).astype(np.float64) / k, (k, 1))  # [k, L]
    unit_fold = np.full(G, -1, dtype=np.int64)
    remaining = counts[order].copy()  # label counts of the units not assigned yet, in `order`
    left = remaining.sum(axis=0)
    while True:
        active = np.flatnonzero(left > 0)
        if not len(active):
            break
        lab = int(active[np.argmin(left[active])])
        for pos in np.flatnonzero(remaining[:, lab] > 0):
            u = order[pos]
            best = want[:, lab]
            cand = np.flatnonzero(best == best.max())
            if len(cand) > 1:
                rows = want_rows[cand]
                cand = cand[rows == rows.max()]
            f = int(cand[0] if len(cand) == 1 else rng.choice(cand))
            unit_fold[u] = f
            want[f] -= counts[u]
            want_rows[f] -= sizes[u]
            left -= remaining[pos]
            remaining[pos] = 0
    for u in order[unit_fold[order] < 0]:  # units without any label
        cand = np.flatnonzero(want_rows == want_rows.max())
        f = int(cand[0] if len(cand) == 1 else rng.choice(cand))
        unit_fold[u] = f
        want_rows[f] -= sizes[u]
    return unit_fold[codes]


def label_counts_per_fold(Y: np.ndarray, fold: np.ndarray, k: int) -> np.ndarray:
    """[k, L] how many rows of each fold carry each label."""
    out = np.zeros((k, Y.shape[1]), dtype=np.int64)
    np.add.at(out, np.asarray(fold, dtype=np.int64), np.asarray(Y, dtype=np.int64))
    return out
