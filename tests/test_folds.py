"""Folds: deterministic, stratified, no group on both sides, tiny classes named, table with fingerprint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import invoke

from kit.config.load import load_config
from kit.cv.folds import FoldWarning, assign_folds, folds_table_path, read_folds
from kit.errors import KitError
from kit.workspace import open_workspace


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


def _imbalance(fold: np.ndarray, y: np.ndarray, k: int) -> float:
    """The mean over classes of the std over folds of the class's share in each fold."""
    shares = [np.bincount(fold[y == c], minlength=k) / np.sum(y == c) for c in np.unique(y)]
    return float(np.mean([np.std(s) for s in shares]))


def test_group_folds_are_stratified_not_random_group_folds() -> None:
    """Groups of one label each (a person's images): each class spreads over the folds far more evenly than
    random group folds, which scikit-learn before 1.8 gave in effect (it shuffled the groups' class counts
    without the groups, PR #32540; kit requires 1.8)."""
    rng = np.random.default_rng(0)
    n_groups, k = 300, 5
    gid = np.repeat(np.arange(n_groups), rng.integers(1, 6, n_groups))
    y = rng.choice(6, n_groups, p=[0.4, 0.25, 0.15, 0.1, 0.06, 0.04])[gid]
    groups = [f"p{g}" for g in gid]
    fold = assign_folds(y, k, seed=0, groups=groups)
    assert all(len(set(fold[gid == g].tolist())) == 1 for g in range(n_groups))
    kit = _imbalance(fold, y, k)
    random = [_imbalance(rng.permutation(np.arange(n_groups) % k)[gid], y, k) for _ in range(20)]
    assert kit < 0.5 * min(random), (kit, min(random))


def test_an_old_scikit_learn_is_refused_for_group_folds(monkeypatch: pytest.MonkeyPatch) -> None:
    import sklearn

    monkeypatch.setattr(sklearn, "__version__", "1.7.2")
    with pytest.raises(KitError, match=r"scikit-learn 1.7.2 .*pip install 'scikit-learn>=1.8'"):
        assign_folds(np.array([0, 1] * 10), 2, seed=0, groups=[f"g{i % 6}" for i in range(20)])
    assert len(assign_folds(np.array([0, 1] * 10), 2, seed=0)) == 20  # no groups: StratifiedKFold


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
