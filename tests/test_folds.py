"""Folds: deterministic, stratified, no group on both sides, tiny classes named, table with fingerprint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import invoke

from kit.config.load import load_config
from kit.cv.folds import FoldWarning, assign_folds, folds_table_path, read_folds
from kit.data.workspace import open_workspace
from kit.errors import KitError


def test_stratified_and_deterministic() -> None:
    y = np.repeat(np.arange(4), [40, 20, 10, 5])
    a = assign_folds(y, 5, seed=1)
    assert np.array_equal(a, assign_folds(y, 5, seed=1))
    assert not np.array_equal(a, assign_folds(y, 5, seed=2))
    for c in range(4):  # each class spread evenly over the folds
        counts = np.bincount(a[y == c], minlength=5)
        assert counts.max() - counts.min() <= 1


def test_groups_never_on_both_sides() -> None:
    rng = np.random.default_rng(0)
    groups = [f"g{i}" for i in rng.integers(0, 30, 300)]
    y = rng.integers(0, 3, 300)
    fold = assign_folds(y, 4, seed=0, groups=groups)
    for g in set(groups):
        assert len(set(fold[[i for i, x in enumerate(groups) if x == g]].tolist())) == 1
    assert set(fold.tolist()) == {0, 1, 2, 3}


def _sklearn_group_folds(y: np.ndarray, groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    ref = np.full(len(y), -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        split = StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, groups)
        for f, (_, valid) in enumerate(split):
            ref[valid] = f
    return ref


def test_group_folds_are_scikit_learns_stratified_group_kfold_fold_for_fold() -> None:
    """kit's own stratified group k-fold (kit.cv.group_kfold, numba) gives scikit-learn 1.8+'s folds exactly:
    same shuffle, same order, same floats in the greedy choice (near-ties included), any k and class count."""
    import sklearn

    if tuple(int(p) for p in sklearn.__version__.split(".")[:2]) < (1, 8):
        pytest.skip("scikit-learn before 1.8 shuffles groups without re-mapping them (PR #32540)")
    from kit.cv.group_kfold import stratified_group_folds

    rng = np.random.default_rng(0)
    cases = [
        (300, 1, 9, 3),
        (400, 12, 8, 1),
        (200, 3, 2, 5),
        (600, 140, 5, 2),
    ]  # one class; k >= 8; many classes
    cases += [
        (
            int(rng.integers(30, 900)),
            int(rng.integers(2, 60)),
            int(rng.integers(2, 11)),
            int(rng.integers(1, 6)),
        )
        for _ in range(24)
    ]
    for i, (n, C, k, gmax) in enumerate(cases):
        gid = np.repeat(np.arange(n), rng.integers(1, gmax + 1, n))[:n]
        p = rng.dirichlet(np.full(C, rng.uniform(0.2, 3.0)))
        y = rng.choice(C, n, p=p)[gid] if i % 2 else rng.choice(C, n, p=p)  # one label per group, or mixed
        y = y * 3 + 1 if i % 3 == 0 else y  # labels need not be 0..C-1
        if len(np.unique(gid)) < k or np.bincount(y).max() < k:
            continue
        got = stratified_group_folds(y, gid, k, seed=i)
        assert np.array_equal(got, _sklearn_group_folds(y, gid, k, seed=i)), (n, C, k, gmax)
        assert set(got.tolist()) == set(range(k))


def test_tiny_class_warning_names_it() -> None:
    y = np.array([0] * 20 + [1] * 20 + [2] * 3)
    with pytest.warns(FoldWarning, match=r"'rare' \(3\)"):
        assign_folds(y, 5, seed=0, classes=["a", "b", "rare"])


def test_too_few_groups_is_a_clear_error() -> None:
    with pytest.raises(KitError, match="2 distinct groups but folds.k = 5"):
        assign_folds(np.array([0, 1] * 10), 5, seed=0, groups=["a", "b"] * 10)


def test_workspace_writes_folds_table_with_fingerprint(demo_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "kit.yaml").write_text(
        f"competition:\n  root: {demo_dir}\n  train: train.csv\n  test: test.csv\n  id_column: id\n"
        "  image_column: img_path\n  label_column: label\n  group_column: writer\n"
    )
    with pytest.warns(FoldWarning, match="fewer images than folds.k"):
        ws = open_workspace(load_config(tmp_path / "kit.yaml", ["folds.k=10"]))
    ws = open_workspace(load_config(tmp_path / "kit.yaml"))
    assert ws.folds.grouped
    path = folds_table_path(ws.cfg)
    back = read_folds(path)
    assert back.ids == ws.train.ids and np.array_equal(back.fold, ws.folds.fold)
    assert path.with_suffix(".fingerprint").read_text().strip() == ws.folds.fingerprint == back.fingerprint
    writers = np.array(ws.train.groups)
    for w in np.unique(writers):
        assert len(np.unique(ws.folds.fold[writers == w])) == 1


def test_ignoring_a_group_column_warns_about_the_leak(demo_dir: Path, tmp_path: Path, runner) -> None:
    (tmp_path / "kit.yaml").write_text(
        f"competition:\n  root: {demo_dir}\n  train: train.csv\n  id_column: id\n"
        "  image_column: img_path\n  label_column: label\n  group_column: writer\nfolds:\n  use_groups: false\n"
    )
    r = invoke(runner, ["folds", "-c", str(tmp_path / "kit.yaml")])
    assert r.exit_code == 0, r.output
    assert "inflates CV" in r.output and "stratified" in r.output
