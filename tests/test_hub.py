"""Hub access (kit.train.hub): both model loaders, timm and open_clip, probe the hub HF_ENDPOINT names."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from train_helpers import member

from kit.config.schema import TimmMember
from kit.errors import KitError


@pytest.fixture
def hub_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No user choice of HF_HUB_OFFLINE; it and huggingface_hub's constant are restored afterwards."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "")  # recorded, so what the code under test sets is undone
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    yield monkeypatch


def test_hf_endpoint_is_honoured_by_the_timm_and_the_clip_loader(hub_env: pytest.MonkeyPatch) -> None:
    from kit.train import clip_model, models
    from kit.train.clip_model import ClipSource

    tag = ClipSource(member="clip", model="ViT-B-32", pretrained="laion2b_s34b_b79k")
    with socket.socket() as server:  # a local "hub" that accepts connections
        server.bind(("127.0.0.1", 0))
        server.listen()
        hub_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert models.ensure_hub_mode() is False  # what resolve_model asks before a pretrained download
        assert clip_model.ensure_offline_mode(tag) is False  # what load_clip asks
        assert "HF_HUB_OFFLINE" not in os.environ
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hub_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert clip_model.ensure_offline_mode(tag) is True
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    hub_env.delenv("HF_HUB_OFFLINE")
    assert models.ensure_hub_mode() is True


def test_timm_pretrained_behind_an_unreachable_endpoint_fails_fast_offline(
    hub_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from kit.train.models import resolve_model

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hub_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    hub_env.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    m = TimmMember.model_validate(member("convnext_atto", pretrained=True))
    t0 = time.perf_counter()
    with pytest.raises(KitError) as e:
        resolve_model("cnx", m, 3)
    assert time.perf_counter() - t0 < 10
    assert "the hub is unreachable (offline mode)" in str(e.value)
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_a_local_folder_never_probes_and_a_user_choice_wins(hub_env: pytest.MonkeyPatch) -> None:
    from kit.train.clip_model import ClipSource, ensure_offline_mode
    from kit.train.hub import ensure_hub_mode

    hub_env.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: unreachable
    assert ensure_offline_mode(ClipSource(member="clip", model="local-dir:/x")) is False
    assert "HF_HUB_OFFLINE" not in os.environ
    for value, offline in [("0", False), ("off", False), ("1", True), ("yes", True)]:
        hub_env.setenv("HF_HUB_OFFLINE", value)
        assert ensure_hub_mode() is offline
