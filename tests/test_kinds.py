"""The member-kind registries (training: kit.train.kinds; prediction: kit.predict.kinds) are derived from the config
union: each kind there has one module in each that registers it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kit.errors import KitError


def test_every_config_kind_registers_one_kind_class() -> None:
    from kit.config.schema import MEMBER_KINDS
    from kit.train.kinds import KINDS, get_kind

    assert MEMBER_KINDS == ("timm", "clip_probe")  # the union's order: config errors list them so
    for kind in MEMBER_KINDS:
        cls = get_kind(kind)
        assert cls.__module__ == f"kit.train.kinds.{kind}"
        assert all(callable(getattr(cls, m)) for m in ("prepare", "fit_predict_fold", "describe"))
    assert set(KINDS) == set(MEMBER_KINDS)
    assert get_kind("timm").trains_images and not get_kind("clip_probe").trains_images


def test_an_unknown_kind_names_the_known_ones() -> None:
    from kit.train.kinds import get_kind

    with pytest.raises(
        KitError, match=r"no trainer for member kind 'sklearn'; known kinds: \['clip_probe', 'timm'\]"
    ):
        get_kind("sklearn")


def test_every_config_kind_has_one_predictor() -> None:
    """kit predict / kit export find each kind's fold models through one registry, kit.predict.kinds."""
    from kit.config.schema import MEMBER_KINDS
    from kit.predict.kinds import PREDICTORS, predictor_of

    for kind in MEMBER_KINDS:
        p = predictor_of(kind, "m")
        assert type(p).__module__ == f"kit.predict.kinds.{kind}"
    assert set(PREDICTORS) == set(MEMBER_KINDS)
    assert predictor_of("timm", "m").weights_file == "best.pt"
    assert predictor_of("clip_probe", "m").weights_file == "head.npz"


def test_kit_predict_names_a_member_of_an_unknown_kind_and_the_known_kinds(tmp_path: Path) -> None:
    from conftest import invoke
    from train_helpers import known_member, make_competition, member, write_config
    from typer.testing import CliRunner

    config = write_config(tmp_path / "kit.yaml", make_competition(tmp_path / "data"), {"m": member()})
    known_member(config)
    meta_path = tmp_path / "work" / "members" / "m" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["kind"] = "sklearn"
    meta_path.write_text(json.dumps(meta))
    r = invoke(CliRunner(), ["predict", "--member", "m", "--images", "data/test"], cwd=tmp_path)
    assert r.exit_code == 1
    assert "cannot predict with member 'm':" in r.output
    assert "member 'm' is of kind 'sklearn', which kit predict cannot run (timm, clip_probe)" in r.output
    assert "Traceback" not in r.output
