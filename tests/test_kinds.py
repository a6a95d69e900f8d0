"""The member-kind registry is derived from the config union: each kind there has one module that registers it."""

from __future__ import annotations

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
