"""The member artifact contract: written atomically, loaded with checks that refuse mismatches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kit.artifacts.fingerprints import Fingerprints
from kit.artifacts.member import Expected, list_members, load_member, member_dir, write_member
from kit.errors import KitError

CLASSES = ["a", "b", "c"]


def write(workdir: Path, name: str = "m", **kw) -> Path:
    rng = np.random.default_rng(0)
    args = dict(
        oof=rng.normal(size=(10, 2, 3)),
        test=rng.normal(size=(4, 2, 3)),
        views=["plain", "hflip"],
        classes=CLASSES,
        fingerprints=Fingerprints(train_ids="t1", test_ids="s1", folds="f1", data="d1"),
        config={"kind": "timm", "model": "test_convnext", "path": Path("/x")},
        metrics={"pooled": {"weighted_f1": 0.5}},
        timings={"total_s": 1.0},
    )
    args.update(kw)
    return write_member(workdir, name, **args)


def expect(
    classes: list[str] = CLASSES, train_ids: str = "t1", folds: str = "f1", test_ids: str = "s1"
) -> Expected:
    return Expected(classes, Fingerprints(train_ids=train_ids, folds=folds, test_ids=test_ids))


EXPECT = expect()


def test_round_trip(tmp_path: Path) -> None:
    d = write(tmp_path)
    assert sorted(p.name for p in d.iterdir()) == [
        "config.yaml",
        "meta.json",
        "oof_logits.npy",
        "test_logits.npy",
    ]
    m = load_member(tmp_path, "m", EXPECT)
    assert m.oof.shape == (10, 2, 3) and m.oof.dtype == np.float32 and m.test.shape == (4, 2, 3)
    assert m.views == ["plain", "hflip"] and m.classes == CLASSES
    meta = json.loads((d / "meta.json").read_text())
    assert meta["versions"]["numpy"] == np.__version__ and "torch" in meta["versions"]
    assert meta["folds_fingerprint"] == "f1" and meta["data_fingerprint"] == "d1"
    assert list_members(tmp_path) == ["m"]


@pytest.mark.parametrize(
    ("expect", "message"),
    [
        (expect(classes=["a", "c", "b"]), "class order"),
        (expect(train_ids="t2"), "train ids differ"),
        (expect(folds="f2"), "folds differ from the current folds"),
        (expect(test_ids="s2"), "test ids differ"),
    ],
)
def test_loader_refuses_mismatches(tmp_path: Path, expect: Expected, message: str) -> None:
    write(tmp_path)
    with pytest.raises(KitError, match=message) as e:
        load_member(tmp_path, "m", expect)
    assert "run `kit train m` again" in str(e.value)


def test_missing_member_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(KitError, match=r"member 'swin' has no artifacts .*; run `kit train swin`"):
        load_member(tmp_path, "swin")


def test_nan_is_refused_naming_the_view_and_nothing_is_written(tmp_path: Path) -> None:
    oof = np.zeros((10, 2, 3))
    oof[3, 1, 0] = np.nan
    with pytest.raises(KitError, match="OOF logits of view 'hflip' contain NaN or inf"):
        write(tmp_path, oof=oof)
    assert not member_dir(tmp_path, "m").exists()
    assert not (tmp_path / "members").exists()  # checked before anything touches the disk


def test_rewrite_replaces_whole_folder_and_shape_errors(tmp_path: Path) -> None:
    write(tmp_path)
    write(tmp_path, views=["plain"], oof=np.zeros((10, 1, 3)), test=np.zeros((4, 1, 3)))
    assert load_member(tmp_path, "m").views == ["plain"]
    assert [p.name for p in (tmp_path / "members").iterdir()] == ["m"]  # no temp or old folders left
    with pytest.raises(KitError, match="2 views but views lists 1"):
        write(tmp_path, views=["plain"])
    with pytest.raises(KitError, match="4 classes, expected 3"):
        write(tmp_path, test=np.zeros((4, 2, 4)))
