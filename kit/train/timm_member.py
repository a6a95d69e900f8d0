"""Members of kind `timm`: any timm backbone fine-tuned end to end over the folds.

Resolve the model (name, weights, image size, preprocessing), decode the images once into the cache at the
member's size with the model's interpolation, then run the shared fold loop (kit.train.folds_runner).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kit.config.schema import TimmMember
from kit.data.cache import build_image_cache
from kit.train.folds_runner import run_folds
from kit.train.models import resolve_model
from kit.train.progress import Reporter
from kit.train.registry import register_trainer

if TYPE_CHECKING:
    from kit.data.workspace import Workspace


@register_trainer("timm")
def train_timm(ws: Workspace, name: str, member: TimmMember, reporter: Reporter) -> Path | None:
    """Train member `name` over every fold and write its artifacts; returns workdir/members/NAME (None while
    another process still trains some folds)."""
    spec = resolve_model(name, member, len(ws.classes))
    size, resample = member.img_size, spec.interpolation
    train_cache = build_image_cache(
        ws.train,
        size,
        ws.cache_dir,
        split="train",
        fingerprint=ws.train_images_fingerprint,
        resample=resample,
    )
    test_cache = None
    if ws.test is not None:
        test_cache = build_image_cache(
            ws.test,
            size,
            ws.cache_dir,
            split="test",
            fingerprint=ws.test_images_fingerprint,
            resample=resample,
        )
    return run_folds(ws, name, member, spec, train_cache, test_cache, reporter)
