"""TTA views built from ttach's transforms, run one by one so every view's logits are kept.

ttach's wrappers merge views and cannot return them separately; kit applies each view's transform itself.
The plain view is always first. Views are label-preserving only where orientation is not the label, so they
are configured per member.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# view name -> (ttach transform class name, constructor kwargs, the param that selects this view)
VIEW_SPECS: dict[str, tuple[str, dict, dict]] = {
    "plain": ("HorizontalFlip", {}, {"apply": False}),
    "hflip": ("HorizontalFlip", {}, {"apply": True}),
    "vflip": ("VerticalFlip", {}, {"apply": True}),
    "rot90": ("Rotate90", {"angles": [90]}, {"angle": 90}),
    "rot180": ("Rotate90", {"angles": [180]}, {"angle": 180}),
    "rot270": ("Rotate90", {"angles": [270]}, {"angle": 270}),
}


def view_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The image transform of one view, from ttach."""
    import ttach

    if name == "hvflip":
        h, v = view_fn("hflip"), view_fn("vflip")
        return lambda x: v(h(x))
    cls_name, kwargs, params = VIEW_SPECS[name]
    t = getattr(ttach, cls_name)(**kwargs)
    return lambda x: t.apply_aug_image(x, **params)


def predict_views(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, views: list[str]
) -> torch.Tensor:
    """Outputs [B, n_views, ...] of `forward` on each view of the batch `x` (NCHW)."""
    import torch

    fns = [view_fn(v) for v in views]
    return torch.stack([forward(f(x)) for f in fns], dim=1)
