"""timm backbones: name checks, weights (hub or local file), image size checks, data config.

`resolve_model(name, member, n_classes)` turns a validated member config into a `ModelSpec`: the arguments
for `timm.create_model` plus the preprocessing (mean, std, interpolation) from the model's own pretrained
config. Every failure a user can fix becomes a KitError naming the kit.yaml key. Hub access and the offline
switch: kit.train.hub.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.config.schema import TimmMember
from kit.errors import KitError
from kit.train.hub import cache_resample, ensure_hub_mode, user_offline_choice

if TYPE_CHECKING:
    from torch import nn

    from kit.config.attributes import AttributeCodes
    from kit.train.heads import HeadSpec

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def check_model_name(key: str, model: str) -> None:
    import difflib

    import timm

    if model.startswith(("hf-hub:", "hf_hub:", "local-dir:")) or timm.is_model(model):
        return
    base = model.split(".")[0]
    close = difflib.get_close_matches(base, timm.list_models(), n=5, cutoff=0.6)
    if not close:
        close = timm.list_models(f"*{base[:6]}*")[:5]
    hint = f"close matches: {', '.join(close)}" if close else "see `timm.list_models('convnext*')`"
    raise KitError(f"{key}: unknown timm model '{model}'; {hint}")


@dataclass
class ModelSpec:
    """Everything needed to build the member's network the same way in every fold."""

    model: str
    n_classes: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)  # pretrained / pretrained_cfg_overlay
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bicubic"
    crop_pct: float = 1.0  # eval centre crop / stored image (members.NAME.crop_pct, else the model's)
    cache_size: int = 0  # images are stored at this size (members.NAME.cache_size, else img_size / crop_pct)
    # the model's own eval crop mode (timm: center | squash | border = kit's resize shorter_side | squash |
    # pad); recorded beside members.NAME.resize, which decides
    crop_mode: str = "center"
    head: HeadSpec | None = None  # kit's own classifier (kit.train.heads); None: timm's linear one

    def create(self, *, with_weights: bool = True) -> nn.Module:
        """The network: with its starting weights for training, or bare (to load a kit checkpoint into)."""
        import timm

        extra = self.weights if with_weights else {}
        model = timm.create_model(self.model, num_classes=self.n_classes, **self.kwargs, **extra)
        if self.head is not None:
            from kit.train.heads import install_head

            install_head(model, self.head, self.n_classes)
        return model


def _fixed_input_size(model: str) -> bool:
    try:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(model)
    except Exception:  # names timm resolves at create time (hf-hub:, local-dir:)
        return False
    return bool(cfg is not None and getattr(cfg, "fixed_input_size", False))


def resolve_model(
    name: str, member: TimmMember, n_classes: int, attributes: AttributeCodes | None = None
) -> ModelSpec:
    """Check name, weights and image size by building the model once; read its preprocessing config.
    `head` and `attributes` (competition.attributes' codes) replace timm's classifier (kit.train.heads)."""
    import torch
    from timm.data import resolve_model_data_config

    from kit.train.heads import HeadSpec

    key = f"members.{name}"
    weights: dict[str, Any] = {}
    if member.weights is not None:
        path = Path(member.weights)
        if not path.is_file():
            raise KitError(
                f"{key}.weights: file {path} not found; point it at a .pth/.bin/.safetensors file "
                "(or use pretrained: true with a network)"
            )
        if path.suffix.lower() not in WEIGHT_SUFFIXES:
            raise KitError(f"{key}.weights: {path.name} is not one of {', '.join(WEIGHT_SUFFIXES)}")
        # num_classes=-1 in the overlay drops the file's classifier even when its class count matches
        weights = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path), "num_classes": -1}}
    elif member.pretrained:
        ensure_hub_mode()
        weights = {"pretrained": True}

    check_model_name(f"{key}.model", member.model)
    kwargs = dict(member.model_kwargs)
    if member.drop_path is not None:
        kwargs.setdefault("drop_path_rate", member.drop_path)
    if "img_size" not in kwargs and _fixed_input_size(member.model):
        kwargs["img_size"] = member.img_size
    spec = ModelSpec(member.model, n_classes, kwargs, weights, head=HeadSpec.of(member.head, attributes))

    torch.manual_seed(0)  # the same init as _check_file_matched's bare model
    try:
        model = spec.create()
    except KitError as e:  # the head cannot replace this model's classifier
        raise KitError(f"{key}.head: '{member.model}': {e}") from None
    except TypeError as e:
        raise KitError(
            f"{key}.model_kwargs: timm model '{member.model}' rejects them ({e}); remove or rename the key"
        ) from None
    except (AssertionError, ValueError, RuntimeError, KeyError) as e:
        if member.weights is not None:
            raise KitError(_weights_message(key, member, e)) from None
        raise KitError(
            f"{key}: timm could not build '{member.model}' with img_size {member.img_size} and "
            f"model_kwargs {member.model_kwargs} ({e}); pick a size the backbone takes "
            f"({key}.img_size) or set a fitting window in {key}.model_kwargs"
        ) from None
    except OSError as e:  # hub or file not reachable (LocalEntryNotFoundError is an OSError)
        raise KitError(_weights_message(key, member, e)) from None
    if member.weights is not None:
        _check_file_matched(key, spec, model)

    model.eval()
    size = member.img_size
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, 3, size, size))
    except Exception as e:  # shape errors surface as AssertionError, RuntimeError, ValueError
        raise KitError(
            f"{key}.img_size: '{member.model}' cannot take {size}x{size} images ({str(e).splitlines()[0]}); "
            f"choose another {key}.img_size or pass a fitting size in {key}.model_kwargs "
            "(Swin, ViT: window_size, patch_size)"
        ) from None
    if tuple(out.shape) != (2, n_classes):
        raise KitError(f"{key}: '{member.model}' returns shape {tuple(out.shape)}, not [batch, {n_classes}]")
    cfg = resolve_model_data_config(model)
    spec.mean, spec.std = tuple(cfg["mean"]), tuple(cfg["std"])
    spec.interpolation = cache_resample(cfg.get("interpolation", "bicubic"))
    spec.crop_pct = float(member.crop_pct if member.crop_pct is not None else cfg.get("crop_pct", 1.0))
    spec.crop_mode = str(cfg.get("crop_mode", "center"))
    spec.cache_size = member.cache_size or math.ceil(round(size / spec.crop_pct, 6))
    if spec.cache_size < size:  # a model whose crop_pct is above 1
        raise KitError(
            f"{key}.cache_size: images would be stored at {spec.cache_size} px, below img_size {size} "
            f"('{member.model}' has crop_pct {spec.crop_pct}); set {key}.cache_size >= {size} or "
            f"{key}.crop_pct <= 1"
        )
    return spec


def _weights_message(key: str, member: TimmMember, err: BaseException | str) -> str:
    first = err if isinstance(err, str) else str(err).splitlines()[0] if str(err) else type(err).__name__
    if member.weights is not None:
        return (
            f"{key}.weights: could not load {member.weights} into '{member.model}' ({first}); "
            "the file must hold weights of this architecture"
        )
    where = "the hub is unreachable (offline mode)" if user_offline_choice() else "the download failed"
    return (
        f"{key}.pretrained: no weights for '{member.model}' in the local hub cache and {where} ({first}). "
        "Either run once with a network so timm caches them, or download the model's .safetensors file "
        f"(https://huggingface.co/timm) and set {key}.weights: PATH, or set {key}.pretrained: false"
    )


def pretrained_problem(name: str, member: TimmMember) -> str | None:
    """What `resolve_model` would say about `pretrained: true` when the hub is out of reach and the weights
    are in no local cache (the message `kit train` gives), or None. For `kit validate`: nothing is built, and
    timm (with torch) is imported only when some hub cache exists to be searched."""
    if not member.pretrained or member.weights is not None or member.model.startswith("local-dir:"):
        return None
    if not ensure_hub_mode():  # the hub is reachable: timm downloads what is missing
        return None
    if _cached_weights(member.model):
        return None
    return _weights_message(f"members.{name}", member, f"no cached weights for '{member.model}'")


def _torch_hub_checkpoints() -> Path:
    """torch.hub.get_dir()/checkpoints without importing torch: where timm's URL weights are cached."""
    import os

    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch"
    )
    return Path(home) / "hub" / "checkpoints"


def _cached_weights(model: str) -> bool:
    """Whether pretrained weights of `model` lie in the Hugging Face hub cache or torch's hub cache, as timm
    looks them up (its pretrained config: hf_hub_id, else url). True where that cannot be told."""
    from huggingface_hub import constants, try_to_load_from_cache

    hub_cache = Path(constants.HF_HUB_CACHE)
    repos = [p.name for p in hub_cache.iterdir()] if hub_cache.is_dir() else []
    checkpoints = _torch_hub_checkpoints()
    urls = [p.name for p in checkpoints.iterdir()] if checkpoints.is_dir() else []
    if not any(r.startswith("models--") for r in repos) and not urls:
        return False  # both caches are empty: nothing to load, whatever the model's config says
    given: str | None = None  # the weights file the pretrained config names, if any
    if model.startswith(("hf-hub:", "hf_hub:")):
        repo = model.split(":", 1)[1].split("@")[0]
    else:
        from timm.models import get_pretrained_cfg

        try:
            cfg = get_pretrained_cfg(model)
        except Exception:  # a name timm does not know: `kit train` names it (check_model_name)
            return True
        if cfg is None:
            return True
        if not cfg.hf_hub_id:
            return bool(cfg.url) and Path(str(cfg.url)).name in urls
        repo, given = cfg.hf_hub_id.split("@")[0], cfg.hf_hub_filename
    names = [given] if given else ["model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"]
    return any(isinstance(try_to_load_from_cache(repo, f), str) for f in names)


def _check_file_matched(key: str, spec: ModelSpec, loaded: nn.Module) -> None:
    """timm loads overlay files non-strictly; a file of another architecture would load nothing at all."""
    import torch

    torch.manual_seed(0)
    bare = spec.create(with_weights=False).state_dict()
    got = loaded.state_dict()
    head = {f"{n}." for n, _ in _head_modules(loaded)}
    body = [k for k in got if not any(k.startswith(h) for h in head) and got[k].is_floating_point()]
    changed = sum(1 for k in body if k in bare and not torch.equal(bare[k], got[k]))
    if body and changed == 0:
        raise KitError(
            f"{key}.weights: nothing in {spec.weights['pretrained_cfg_overlay']['file']} matches "
            f"'{spec.model}' (no tensor name and shape fit); use a file saved from this architecture"
        )


def _head_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    return [(n, m) for n, m in model.named_modules() if head is not None and m is head]


def head_parameter_names(model: nn.Module) -> set[str]:
    """Names of the classifier's parameters (what `freeze_epochs` trains alone)."""
    names: set[str] = set()
    for prefix, m in _head_modules(model):
        names |= {f"{prefix}.{n}" for n, _ in m.named_parameters()}
    return names
