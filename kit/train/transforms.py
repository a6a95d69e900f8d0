"""Per-image training augmentation from the libraries that do it: timm's transforms (random resized crop,
auto-augment policies, random erasing), torchvision's colour jitter and blur, and an optional declared
albumentations pipeline.

The training Dataset calls a TrainTransform on each stored image (uint8 [h, w, 3], any aspect ratio) inside
DataLoader workers. Stages, in timm's order (timm.data.transforms_factory.transforms_imagenet_train):

    random resized crop to `size` (the model's interpolation), opt-in flips and 90-degree turns   (PIL)
    the declared albumentations pipeline, on the crop                                             (numpy)
    auto-augment policy, colour jitter, Gaussian blur                                             (PIL)
    to tensor, normalise with the model's mean/std, random erasing                                (tensor)

These libraries draw from python's `random`, numpy's and torch's global generators (albumentations from its
own): each call seeds all of them from `seed` and restores the global states afterwards, so an image's
augmentation depends on its seed alone, whichever process or worker runs it, and training's own random
numbers are left as they were.
"""

from __future__ import annotations

import difflib
import math
import os
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.config.schema import AugmentConfig
from kit.errors import KitError

if TYPE_CHECKING:
    import torch
    from PIL import Image


class RandomRot90:
    """A turn by 0, 90, 180 or 270 degrees, each equally likely (python's `random`, as timm's crop)."""

    def __call__(self, img: Image.Image) -> Image.Image:
        from PIL import Image

        k = random.randrange(4)
        turns = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)
        t = turns[k]
        return img if t is None else img.transpose(t)


def posterize(img: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """timm's posterize op, also at 0 bits: rand-...-inc1 at high magnitude asks for 0, which Pillow 13
    refuses (older Pillow gave a black image, as this does)."""
    from PIL import Image, ImageOps

    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def _with_safe_posterize(policy: Any) -> Any:
    """`policy` (timm's RandAugment, AugMixAugment or AutoAugment) with its posterize ops made total."""
    from timm.data import auto_augment

    ops = [*getattr(policy, "ops", []), *(op for sub in getattr(policy, "policy", []) for op in sub)]
    for op in ops:
        if op.aug_fn is auto_augment.posterize:
            op.aug_fn = posterize
    return policy


def _seeds(seed: int) -> tuple[int, list[int]]:
    """`seed` (up to 64 bits) for python and torch, and as the uint32 words numpy's legacy seeding takes."""
    s = int(seed) & (2**64 - 1)
    return s, [s & 0xFFFFFFFF, s >> 32]


def albumentations_pipeline(steps: list[dict[str, Any]], key: str, size: int | None = None) -> Any:
    """An albumentations Compose from declared steps [{name: ..., **kwargs}]; a KitError naming `key` when the
    package is missing, listing every step whose name is unknown or whose arguments do not fit, or when the
    steps change the size of a `size` x `size` crop."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # else its import asks PyPI for a newer version
    try:
        import albumentations as A
    except ImportError:
        raise KitError(
            f"{key} declares an albumentations pipeline but albumentations is not installed; run "
            "`pip install 'kit[albumentations]'` (or `pip install albumentations`), or remove the key"
        ) from None
    known = sorted(
        n for n in dir(A) if isinstance(c := getattr(A, n), type) and issubclass(c, A.BasicTransform)
    )
    built, problems = [], []
    for i, step in enumerate(steps):
        name, kwargs = step["name"], {k: v for k, v in step.items() if k != "name"}
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"one of {', '.join(known[:10])}, ..."
            problems.append(f"{key}[{i}].name: {name!r} is not an albumentations transform; {hint}")
            continue
        try:
            built.append(getattr(A, name)(**kwargs))
        except Exception as e:  # albumentations checks its arguments (pydantic): pass its words on
            problems.append(f"{key}[{i}] ({name}): arguments {kwargs} do not fit: {' '.join(str(e).split())}")
    if problems:
        raise KitError(f"{key}: the declared pipeline cannot be built:", problems=problems)
    pipeline = A.Compose(built, seed=0)
    if size is not None:  # a probe: steps that resize or crop would break the batch's shape
        shape = pipeline(image=np.zeros((size, size, 3), np.uint8))["image"].shape
        if shape != (size, size, 3):
            raise KitError(
                f"{key}: the steps turn the {size} x {size} crop into {' x '.join(map(str, shape))}; they run "
                "after kit's random resized crop to img_size: leave out steps that resize or crop (set "
                "augment.scale / augment.ratio instead)"
            )
    return pipeline


@dataclass
class TrainTransform:
    """Stored image -> normalised float32 [3, size, size] tensor, randomly augmented from `seed` alone.

    Picklable for DataLoader workers: the built stages are dropped when pickled and rebuilt on first use."""

    cfg: AugmentConfig
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    key: str = "augment"  # the config key errors name, e.g. members.NAME.augment
    _stages: tuple[Any, Any, Any, Any] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._stages = self._build()  # builds now: a bad declaration fails before anything is decoded

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_stages": None}

    def _build(self) -> tuple[Any, Any, Any, Any]:
        from timm.data.random_erasing import RandomErasing
        from timm.data.transforms import (
            RandomResizedCropAndInterpolation,
            str_to_interp_mode,
            str_to_pil_interp,
        )
        from torchvision import transforms as T

        cfg, size = self.cfg, self.size
        primary: list[Any] = [
            RandomResizedCropAndInterpolation(
                size, scale=cfg.crop_scale, ratio=cfg.crop_ratio, interpolation=self.interpolation
            )
        ]
        if cfg.hflip:
            primary.append(T.RandomHorizontalFlip(0.5))
        if cfg.vflip:
            primary.append(T.RandomVerticalFlip(0.5))
        if cfg.rot90:
            primary.append(RandomRot90())
        albu = (
            albumentations_pipeline(cfg.albumentations, f"{self.key}.albumentations", size)
            if cfg.albumentations
            else None
        )
        secondary: list[Any] = []
        if cfg.auto_augment:
            secondary.append(self._auto_augment(cfg.auto_augment, str_to_pil_interp, str_to_interp_mode))
        if any(cfg.jitter):
            secondary.append(T.ColorJitter(*cfg.jitter))
        if cfg.blur_prob > 0:
            lo, hi = cfg.blur_sigma
            kernel = min(2 * math.ceil(3 * hi) + 1, size - 1 + size % 2)  # odd, at most the image
            secondary.append(T.RandomApply([T.GaussianBlur(kernel, sigma=(lo, hi))], p=cfg.blur_prob))
        final: list[Any] = [T.ToTensor(), T.Normalize(self.mean, self.std)]
        if cfg.re_prob > 0:
            final.append(RandomErasing(cfg.re_prob, mode=cfg.re_mode, max_count=cfg.re_count, device="cpu"))
        return T.Compose(primary), albu, T.Compose(secondary), T.Compose(final)

    def _auto_augment(self, text: str, pil_interp: Any, interp_mode: Any) -> Any:
        """timm's policy for `text`, with the hyper-parameters timm's own train transform gives it."""
        from timm.data.auto_augment import (
            augment_and_mix_transform,
            auto_augment_transform,
            rand_augment_transform,
        )

        fill = tuple(min(255, round(255 * x)) for x in self.mean)
        interp = self.interpolation if self.interpolation != "random" else "bilinear"
        if text == "trivial":
            from torchvision.transforms import TrivialAugmentWide

            return TrivialAugmentWide(interpolation=interp_mode(interp), fill=list(fill))
        hparams: dict[str, Any] = {
            "translate_const": int(self.size * 0.45),
            "img_mean": fill,
            "interpolation": pil_interp(interp),
        }
        if text.startswith("rand"):
            return _with_safe_posterize(rand_augment_transform(text, hparams))
        if text.startswith("augmix"):
            return _with_safe_posterize(augment_and_mix_transform(text, {**hparams, "translate_pct": 0.3}))
        return _with_safe_posterize(auto_augment_transform(text, hparams))

    def __call__(self, img: np.ndarray, seed: int) -> torch.Tensor:
        import torch
        from PIL import Image

        if self._stages is None:
            self._stages = self._build()
        primary, albu, secondary, final = self._stages
        s, words = _seeds(seed)
        py_state, np_state = random.getstate(), np.random.get_state()
        torch_state = torch.default_generator.get_state()  # the CPU generator only: CUDA's is left alone
        try:
            random.seed(s)
            np.random.seed(words)
            torch.default_generator.manual_seed(s)
            x = primary(Image.fromarray(np.ascontiguousarray(img)))
            if albu is not None:
                albu.set_random_state(np.random.default_rng(words), random.Random(s))
                x = Image.fromarray(albu(image=np.asarray(x))["image"])
            out: torch.Tensor = final(secondary(x))
            return out
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            torch.default_generator.set_state(torch_state)


def build_train_transform(
    cfg: AugmentConfig,
    size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    interpolation: str,
    key: str = "augment",
) -> TrainTransform:
    """The training transform of a member (`key` is its config path, e.g. members.NAME.augment, for errors)."""
    return TrainTransform(cfg, size, tuple(mean), tuple(std), interpolation, key)
