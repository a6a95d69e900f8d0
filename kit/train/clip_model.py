"""open_clip models as clip_probe members name them: a pretrained tag of an architecture, or an exported
`local-dir:` folder, checked without importing open_clip where possible and loaded offline-safe (kit.train.hub)
with the weights' own preprocessing (mean, std, interpolation, resize mode).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.errors import KitError
from kit.train.hub import ensure_hub_mode

if TYPE_CHECKING:
    import torch

LOCAL_DIR = "local-dir:"
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"


@dataclass(frozen=True)
class ClipSource:
    """Where one member's open_clip model comes from; `member` names it in error messages."""

    member: str
    model: str
    pretrained: str | None = None
    cache_dir: Path | None = None
    img_size: int | None = None

    @property
    def local_dir(self) -> Path | None:
        return Path(self.model[len(LOCAL_DIR) :]) if self.model.startswith(LOCAL_DIR) else None


def ensure_offline_mode(src: ClipSource) -> bool:
    """The hub's offline switch before open_clip is imported; a local folder or an untrained model downloads
    nothing, so it never probes. Returns whether offline."""
    return ensure_hub_mode(downloads=src.local_dir is None and src.pretrained is not None)


def check_local_dir(src: ClipSource) -> None:
    """A local-dir: model needs its folder with open_clip_config.json (checked without importing open_clip)."""
    key = f"members.{src.member}"
    d = src.local_dir
    if d is None:
        return
    if not d.is_dir():
        raise KitError(
            f"{key}.model: folder {d} not found; relative local-dir: paths are read from the kit.yaml's "
            f"folder. Point it at a folder holding {CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    if not (d / CONFIG_FILE).is_file():
        raise KitError(
            f"{key}.model: {d} has no {CONFIG_FILE}; write it with "
            "open_clip.push_to_hf_hub.save_config_for_hf(model, path, model_cfg) next to the weights "
            "(it keeps the model's mean/std and resize mode)"
        )
    if src.pretrained is not None:
        raise KitError(f"{key}.pretrained: remove it; a local-dir: model loads the weights in its folder")


def _check_source(src: ClipSource) -> None:
    """Fast, specific errors before open_clip is asked to build anything."""
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    if src.local_dir is not None:
        check_local_dir(src)
        return
    key = f"members.{src.member}"
    name = src.model.replace("/", "-")
    if name not in open_clip.list_models():
        import difflib

        close = difflib.get_close_matches(name, open_clip.list_models(), n=3)
        raise KitError(
            f"{key}.model: '{src.model}' is not an open_clip architecture"
            + (f"; did you mean {close}?" if close else "; see open_clip.list_models()")
        )
    if src.pretrained is None:
        return
    if Path(src.pretrained).suffix in (".pt", ".pth", ".bin", ".safetensors") or os.sep in src.pretrained:
        raise KitError(
            f"{key}.pretrained: '{src.pretrained}' looks like a file; open_clip would load it with OpenAI "
            f"mean/std whatever the weights were trained with. Put it in a folder with {CONFIG_FILE} and use "
            "model: local-dir:FOLDER (see docs/clip_probe.md)"
        )
    tag_cfg = get_pretrained_cfg(name, src.pretrained)
    if not tag_cfg:
        raise KitError(
            f"{key}.pretrained: '{src.pretrained}' is not a pretrained tag of {src.model}; "
            f"choose from {open_clip.list_pretrained_tags_by_model(name)}"
        )
    model_cfg = open_clip.get_model_config(name) or {}
    if tag_cfg.get("quick_gelu", False) and not model_cfg.get("quick_gelu", False):
        raise KitError(
            f"{key}.model: the '{src.pretrained}' weights were trained with QuickGELU; "
            f"use model: {name}-quickgelu"
        )


def load_clip(src: ClipSource, device: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """(model in eval mode, its preprocess config) with the weights' own mean/std/interpolation."""
    offline = ensure_offline_mode(src)
    import open_clip

    _check_source(src)
    kwargs: dict[str, Any] = {"device": device}
    if src.img_size is not None:
        kwargs["force_image_size"] = src.img_size
    if src.cache_dir is not None:
        kwargs["cache_dir"] = str(src.cache_dir)
    try:
        model = open_clip.create_model(src.model, pretrained=src.pretrained, **kwargs)
    except (RuntimeError, FileNotFoundError, ValueError, OSError) as e:
        key = f"members.{src.member}"
        where = f"{key}.pretrained ({src.model} / {src.pretrained})" if src.pretrained else f"{key}.model"
        fix = (
            f"download once with network into cache_dir ({src.cache_dir or 'the default hub cache'}), or "
            f"export the model to a folder and use model: local-dir:FOLDER"
            if src.pretrained
            else "check the folder's weights match its config"
        )
        mode = " (HF_HUB_OFFLINE=1: the hub is not reachable)" if offline else ""
        raise KitError(f"{where}: could not load the weights{mode}: {str(e)[:300]}; {fix}") from None
    model.eval()
    pp = dict(open_clip.get_model_preprocess_cfg(model))
    return model, pp


def tokenizer_for(src: ClipSource) -> Any:
    import open_clip

    return open_clip.get_tokenizer(src.model)
