"""Fold assignment: stratified, group-aware when a group column is set, deterministic by seed.

`assign_folds` is pure; `folds_for` reads/writes the folds table (id, fold) with its fingerprint.
"""

from __future__ import annotations

import csv
import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit.artifacts.atomic import atomic_write_text
from kit.config.schema import KitConfig
from kit.data.table import Table, is_blank_group
from kit.errors import KitError


class FoldWarning(UserWarning):
    """A fold plan that works but deserves a look (tiny classes, groups ignored)."""


@dataclass(frozen=True)
class Folds:
    ids: list[str]
    fold: np.ndarray  # int64 [n], fold index each row is validated in
    k: int
    grouped: bool
    blank_groups: int = 0  # rows whose group cell was empty, each made its own group

    @property
    def fingerprint(self) -> str:
        return folds_fingerprint(self.ids, self.fold)

    def train_idx(self, f: int) -> np.ndarray:
        return np.flatnonzero(self.fold != f)

    def valid_idx(self, f: int) -> np.ndarray:
        return np.flatnonzero(self.fold == f)


def folds_fingerprint(ids: list[str], fold: np.ndarray) -> str:
    h = hashlib.sha256()
    for i, f in zip(ids, fold.tolist(), strict=True):
        h.update(f"{i}\x1f{f}\n".encode())
    return h.hexdigest()[:16]


def assign_folds(
    labels: np.ndarray, k: int, seed: int, groups: list[str] | None = None, classes: list[str] | None = None
) -> np.ndarray:
    """Fold index per row: scikit-learn's StratifiedGroupKFold with groups (no group on both sides), else its
    StratifiedKFold; both shuffled by `seed`."""

    labels = np.asarray(labels)
    n = len(labels)
    if labels.ndim == 2:  # multilabel: iterative stratification (kit.cv.multilabel)
        from kit.cv.multilabel import iterative_stratification

        check_fold_inputs(labels, k, groups)
        _warn_small([int(c) for c in labels.sum(axis=0)], k, classes, "labels")
        return iterative_stratification(labels, k, seed, groups)
    counts = np.bincount(labels, minlength=len(classes) if classes else 0)
    check_fold_inputs(labels, k, groups)
    _warn_small(counts.tolist(), k, classes, "classes")
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    fold = np.full(n, -1, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # sklearn's own 'least populated class' note
        if groups is not None:
            _check_group_shuffle()
            _, group_codes = np.unique(np.asarray(groups, dtype=object), return_inverse=True)
            sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            split = sgkf.split(np.zeros(n), labels, group_codes)
        else:
            split = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n), labels)
        for f, (_, valid) in enumerate(split):
            fold[valid] = f
    return fold


def _check_group_shuffle() -> None:
    """scikit-learn before 1.8 shuffled the groups' class counts without re-mapping the groups (its PR #32540):
    its "stratified" group folds were in effect random group folds."""
    import sklearn

    if tuple(int(p) for p in sklearn.__version__.split(".")[:2] if p.isdigit()) < (1, 8):
        raise KitError(
            f"scikit-learn {sklearn.__version__} assigns stratified group folds at random (fixed in 1.8); "
            "run `pip install 'scikit-learn>=1.8'` (kit requires it)"
        )


def _warn_small(counts: list[int], k: int, classes: list[str] | None, what: str) -> None:
    small = [(classes[c] if classes else str(c), int(m)) for c, m in enumerate(counts) if 0 < m < k]
    if small:
        names = ", ".join(f"'{c}' ({m})" for c, m in small)
        warnings.warn(
            f"{what} with fewer images than folds.k={k}: {names}; some folds will not validate them. "
            "kit scores the pooled out-of-fold predictions, so they still count.",
            FoldWarning,
            stacklevel=3,
        )


def check_fold_inputs(labels: np.ndarray, k: int, groups: list[str] | None) -> None:
    """The fold plans no splitter can make (too few images, groups or class members for folds.k)."""
    n = len(labels)
    if n < k:
        raise KitError(f"folds.k = {k} but there are only {n} train images; lower folds.k")
    if groups is not None:
        n_groups = len(set(groups))
        if n_groups < k:
            raise KitError(
                f"competition.group_column has {n_groups} distinct groups but folds.k = {k}; lower folds.k "
                f"to at most {n_groups}, or set folds.use_groups: false (only if groups do not leak)"
            )
    elif labels.ndim == 1 and np.bincount(labels).max() < k:
        raise KitError(
            f"every class has fewer than folds.k = {k} images; lower folds.k to {int(np.bincount(labels).max())}"
        )


def check_fold_plan(cfg: KitConfig, train: Table) -> None:
    """`make_folds`'s refusals without splitting (no scikit-learn import): for `kit validate`."""
    assert train.labels is not None
    groups, _ = _fold_groups(cfg, train)
    check_fold_inputs(train.labels, cfg.folds.k, groups)


def _fold_groups(cfg: KitConfig, train: Table) -> tuple[list[str] | None, int]:
    use_groups = cfg.folds.use_groups and cfg.competition.groups_source is not None
    return own_blank_groups(train.groups) if use_groups and train.groups else (None, 0)


def make_folds(cfg: KitConfig, train: Table) -> Folds:
    comp = cfg.competition
    use_groups = cfg.folds.use_groups and comp.groups_source is not None
    if comp.groups_source is not None and not cfg.folds.use_groups:
        warnings.warn(
            f"folds.use_groups is false although {comp.groups_source} is set: images of "
            "the same group can land in train and validation, which inflates CV",
            FoldWarning,
            stacklevel=2,
        )
    assert train.labels is not None
    groups, n_blank = _fold_groups(cfg, train)
    fold = assign_folds(train.labels, cfg.folds.k, cfg.folds.seed, groups, train.classes)
    return Folds(ids=train.ids, fold=fold, k=cfg.folds.k, grouped=use_groups, blank_groups=n_blank)


def own_blank_groups(groups: list[str]) -> tuple[list[str], int]:
    """Groups with every blank cell made a group of its own (not one big group of all blanks), and their count."""
    out = [f"\x00blank-row-{i}" if is_blank_group(g) else g for i, g in enumerate(groups)]
    return out, sum(1 for g in groups if is_blank_group(g))


def folds_table_path(cfg: KitConfig) -> Path:
    return cfg.workdir / "folds.csv"


def write_folds(folds: Folds, path: Path) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "fold"])
    w.writerows(zip(folds.ids, folds.fold.tolist(), strict=True))
    atomic_write_text(path, buf.getvalue())
    atomic_write_text(path.with_suffix(".fingerprint"), folds.fingerprint + "\n")
    return path


def read_folds(path: Path) -> Folds:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    ids = [r[0] for r in rows]
    fold = np.array([int(r[1]) for r in rows], dtype=np.int64)
    return Folds(ids=ids, fold=fold, k=int(fold.max()) + 1, grouped=False)
