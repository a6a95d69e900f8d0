"""Before training: will the image caches fit on disk and a batch in memory, and is img_size sensible?

`img_size: 2048` on 32 px images used to start quietly, grow a cache of gigabytes and end under the OOM killer
with no message. `estimate` is pure arithmetic over sizes; `assess` turns an estimate and the free resources
into refusals (it cannot fit) and warnings (it fits but looks wrong); `findings` gathers the numbers for the
members about to train before any image is decoded: `preflight` (kit train) raises or warns with them, and
`kit validate` reports the same problems and warnings (kit.validate.check_training).

The batch figure is rough on purpose: a backbone keeps activations for the backward pass worth a multiple of
its input. Refusals use a low multiple (LEAN_FACTOR: even a small network needs that much), warnings a typical
one (TYPICAL_FACTOR, near convnext_tiny/resnet50 in fp32), so a refusal is never a guess in the user's disfavour.
"""

from __future__ import annotations

import resource
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kit.config.schema import MemberConfig
    from kit.data.table import Table
    from kit.workspace import Workspace

from kit.errors import KitError
from kit.train.kinds import get_kind

GB = 1024**3
LEAN_FACTOR = 32  # training memory per byte of float32 input, at least (refuse above free memory)
TYPICAL_FACTOR = 256  # and typically (warn above free memory)
UPSCALE_WARN = 4.0  # warn when img_size is more than this many times the images' own largest side
DISK_WARN = 0.5  # warn when the new caches take more than this share of the free disk
SAMPLED_IMAGES = 32  # image headers read to learn the images' own size


class PreflightWarning(UserWarning):
    """Training can start, but the numbers look wrong (a huge upscale, most of the disk, tight memory)."""


@dataclass(frozen=True)
class Estimate:
    """What one member needs: bytes of new image caches (train + test) and of one training batch."""

    member: str
    img_size: int
    n_images: int  # images in the caches still to be built
    cache_bytes: int
    batch: int  # images per training batch (batch_size, at most the rows of a fold's train split)
    batch_lean_bytes: int
    batch_typical_bytes: int


@dataclass(frozen=True)
class Resources:
    free_disk: int  # bytes free where the caches go
    disk_path: Path
    free_memory: dict[str, int]  # member -> bytes free where it trains (RAM, or its GPU's memory)
    device: dict[str, str]  # member -> "cpu" | "cuda"


def estimate(
    member: str,
    img_size: int,
    n_new_images: int,
    batch_size: int,
    n_train_rows: int,
    *,
    trains: bool = True,
    stored_side: int | None = None,
    aspect: float = 1.0,
) -> Estimate:
    """Pure: the uint8 store (N images of S x S*aspect x 3, S the stored side: cache_size, at least img_size)
    and one float32 batch [B, 3, img_size, img_size] times the activation factors."""
    batch = min(batch_size, max(1, n_train_rows)) if trains else 0
    batch_input = batch * 3 * img_size * img_size * 4
    side = stored_side or img_size
    return Estimate(
        member=member,
        img_size=img_size,
        n_images=n_new_images,
        cache_bytes=int(n_new_images * side * side * 3 * aspect),
        batch=batch,
        batch_lean_bytes=batch_input * LEAN_FACTOR,
        batch_typical_bytes=batch_input * TYPICAL_FACTOR,
    )


def _gb(n: float) -> str:
    if n >= GB / 10:
        return f"{n / GB:.1f} GB"
    return f"{n / 1024**2:.0f} MB" if n >= 1024**2 else f"{n / 1024:.0f} KB"  # never "needs 0 MB"


def assess(estimates: list[Estimate], res: Resources, image_side: int | None) -> tuple[list[str], list[str]]:
    """Pure: (problems that refuse the run, warnings), each with the numbers and the fix."""
    problems: list[str] = []
    warns: list[str] = []
    cache = sum(e.cache_bytes for e in estimates)
    if cache > res.free_disk:
        parts = ", ".join(
            f"{e.member}: {e.n_images} images at {e.img_size} px" for e in estimates if e.cache_bytes
        )
        problems.append(
            f"the image caches need {_gb(cache)} ({parts}; 3 bytes per stored pixel) but {res.disk_path} has "
            f"{_gb(res.free_disk)} free; lower members.NAME.img_size or free disk space"
        )
    elif cache > DISK_WARN * res.free_disk:
        warns.append(
            f"the image caches will take {_gb(cache)} of the {_gb(res.free_disk)} free at {res.disk_path}"
        )
    for e in estimates:
        free = res.free_memory.get(e.member)
        where = "GPU memory" if res.device.get(e.member) == "cuda" else "memory"
        if not e.batch or free is None:
            pass
        elif e.batch_lean_bytes > free:
            fits = max(0, e.batch * free // e.batch_lean_bytes)
            fix = (
                f"members.{e.member}.batch_size={fits}" if fits else f"a smaller members.{e.member}.img_size"
            )
            problems.append(
                f"members.{e.member}: one training batch of {e.batch} images at {e.img_size} px needs at least "
                f"{_gb(e.batch_lean_bytes)} (roughly; {_gb(e.batch_typical_bytes)} for a typical backbone) but "
                f"{_gb(free)} of {where} is free; use {fix} (e.g. --set), or lower img_size"
            )
        elif e.batch_typical_bytes > free:
            warns.append(
                f"members.{e.member}: a batch of {e.batch} images at {e.img_size} px may need about "
                f"{_gb(e.batch_typical_bytes)}, more than the {_gb(free)} of free {where}; if training "
                f"runs out of memory, lower members.{e.member}.batch_size"
            )
        if image_side and e.img_size > UPSCALE_WARN * image_side:
            warns.append(
                f"members.{e.member}.img_size is {e.img_size} but the images are at most {image_side} px "
                f"({e.img_size / image_side:.0f}x upscaled); the cache takes {_gb(e.cache_bytes)} and training "
                f"is slower for no new detail; set img_size near {max(image_side, 32)} (or the backbone's own "
                "size, e.g. 224) unless the upscale is intended"
            )
    return problems, warns


# ---------------------------------------------------------------- measuring the machine


def free_memory() -> int:
    """Bytes this process can still get: MemAvailable, capped by a cgroup limit and the address-space limit."""
    avail = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:  # containers: the OOM killer acts on the cgroup's limit, not the machine's memory
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            avail.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)  # `ulimit -v`: allocations past it fail
    if soft != resource.RLIM_INFINITY:
        try:
            vm = next(
                int(line.split()[1]) * 1024
                for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmSize:")
            )
        except (OSError, StopIteration):
            vm = 0
        avail.append(max(0, soft - vm))
    return min(avail) if avail else 1 << 62


def gpu_driver_loaded() -> bool:
    """Whether an NVIDIA or AMD (ROCm) GPU driver is loaded, without importing torch: torch.cuda can find a
    device only then, so `device: auto` trains on the CPU otherwise."""
    return any(Path(p).exists() for p in ("/proc/driver/nvidia/gpus", "/dev/nvidia0", "/dev/kfd"))


def device_memory(device: str) -> tuple[str, int]:
    """("cpu", free RAM) or ("cuda", free memory of the current GPU) for a member's `device` setting."""
    if device == "cpu" or (device == "auto" and not gpu_driver_loaded()):
        return "cpu", free_memory()
    import torch

    if torch.cuda.is_available():
        return "cuda", int(torch.cuda.mem_get_info()[0])
    return "cpu", free_memory()


def free_disk(path: Path) -> tuple[int, Path]:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free, p


def images_aspect(paths: list[Path], k: int = SAMPLED_IMAGES, cap: float = 2.0) -> float:
    """The mean longer-to-shorter side ratio (capped at `cap`, as `resize: shorter_side` stores them) of up to k
    images spread over the table (headers only): how much larger than S x S such a store is per image."""
    from PIL import Image

    step = max(1, len(paths) // k)
    ratios = []
    for p in paths[::step][:k]:
        try:
            with Image.open(p) as im:
                w, h = im.size
        except OSError:
            continue
        if min(w, h) > 0:
            ratios.append(min(cap, max(w, h) / min(w, h)))
    return sum(ratios) / len(ratios) if ratios else 1.0


def images_side(paths: list[Path], k: int = SAMPLED_IMAGES) -> int | None:
    """The largest side among up to k images spread over the table (headers only, no pixels decoded)."""
    from PIL import Image

    if not paths:
        return None
    step = max(1, len(paths) // k)
    sides = []
    for p in paths[::step][:k]:
        try:
            with Image.open(p) as im:
                sides.append(max(im.size))
        except OSError:
            continue  # the cache build names unreadable files
    return max(sides) if sides else None


@dataclass(frozen=True)
class Inputs:
    """What the preflight reads: the tables, where the caches go, the largest fold's train rows, and the images'
    fingerprint per split (what the caches key on; asked only when a cache of that split and size exists).
    `kit train` takes them from its workspace, `kit validate` without opening one (nothing written)."""

    train: Table
    test: Table | None
    cache_dir: Path
    n_train_rows: int
    images_fingerprint: Callable[[str], str]
    fewest_train_rows: int | None = None  # the smallest fold's train rows (gradient accumulation's check)

    @classmethod
    def of(cls, ws: Workspace) -> Inputs:
        return cls(
            train=ws.train,
            test=ws.test,
            cache_dir=ws.cache_dir,
            n_train_rows=max(len(ws.folds.train_idx(f)) for f in range(ws.folds.k)),
            images_fingerprint=lambda split: (
                ws.train_images_fingerprint if split == "train" else ws.test_images_fingerprint
            ),
            fewest_train_rows=min(len(ws.folds.train_idx(f)) for f in range(ws.folds.k)),
        )


def _cached(inp: Inputs, split: str, m: MemberConfig) -> bool:
    """Whether the split's image store for member `m` exists (kit.data.cache.store_paths: keyed on the images'
    bytes and the geometry). Without members.NAME.cache_size the size follows the model's crop_pct, unknown
    before timm loads it: any store of the member's resize at img_size or above counts."""
    from kit.data.cache import stored_sizes

    folder = inp.cache_dir / "images"
    resize, want = getattr(m, "resize", "squash"), getattr(m, "cache_size", None)  # clip_probe: squash

    def fits(fingerprint: str) -> bool:
        sizes = stored_sizes(folder, split, fingerprint, resize)
        return any(s == want if want is not None else s >= (m.img_size or 0) for s in sizes)

    if not fits("*"):
        return False  # no store of this geometry at all: no need to fingerprint the images
    return fits(inp.images_fingerprint(split))


def augment_problems(members: dict[str, MemberConfig]) -> list[str]:
    """Declared albumentations pipelines that cannot be built (package missing, unknown transform, bad
    arguments): found here, not in a DataLoader worker mid-epoch."""
    problems: list[str] = []
    for name, m in members.items():
        if (aug := getattr(m, "augment", None)) is not None and aug.albumentations:
            from kit.train.transforms import albumentations_pipeline

            try:
                albumentations_pipeline(
                    aug.albumentations, f"members.{name}.augment.albumentations", m.img_size
                )
            except KitError as e:
                problems += e.problems or [str(e)]
    return problems


def accumulation_problems(members: dict[str, MemberConfig], fewest_rows: int | None) -> list[str]:
    """Gradient accumulation steps once per batch_size x accumulate rows (the epoch's leftover rows are
    dropped, as a short last batch is): a fold with fewer training rows than that never fills one step."""
    problems = []
    for name, m in members.items():
        n = getattr(m, "accumulate", 1)
        if n > 1 and fewest_rows is not None and m.batch_size * n > fewest_rows:
            most = fewest_rows // m.batch_size
            fix = f"accumulate: {most}" if most >= 2 else f"batch_size: {fewest_rows // n} or less"
            problems.append(
                f"members.{name}.accumulate: {n} x batch_size {m.batch_size} = {m.batch_size * n} rows per "
                f"optimizer step, but the smallest fold trains on {fewest_rows} rows, not one step's worth; "
                f"use {fix} (or drop accumulate)"
            )
    return problems


def attribute_findings(
    attributes: dict[str, dict[str, str]] | None, classes: list[str], members: dict[str, MemberConfig]
) -> tuple[list[str], list[str]]:
    """(problems, warnings) of competition.attributes once the classes are known: every class has an entry
    and no entry names an unknown class; clip_probe members ignore the attributes (one head over the classes)."""
    from kit.config.attributes import coverage_problems

    if attributes is None:
        return [], []
    warns = [
        f"members.{name}: a clip_probe member trains one head over the classes; competition.attributes "
        "shape timm members only and are ignored here"
        for name, m in members.items()
        if m.kind == "clip_probe"
    ]
    return coverage_problems(attributes, classes), warns


def preflight(ws: Workspace, members: dict[str, MemberConfig]) -> None:
    """Refuse (KitError) or warn (PreflightWarning) before the members train; see the module docstring."""
    problems, warns = attribute_findings(ws.cfg.competition.attributes, ws.classes, members)
    if problems:
        raise KitError("not starting: competition.attributes does not fit the classes:", problems=problems)
    for w in warns:
        warnings.warn(w, PreflightWarning, stacklevel=2)
    if problems := augment_problems(members):
        raise KitError("not starting: a declared augmentation cannot be built:", problems=problems)
    inp = Inputs.of(ws)
    if problems := accumulation_problems(members, inp.fewest_train_rows):
        raise KitError(
            "not starting: gradient accumulation cannot fill one optimizer step:", problems=problems
        )
    problems, warns = findings(inp, members)
    for w in warns:
        warnings.warn(w, PreflightWarning, stacklevel=2)
    if problems:
        raise KitError("not starting: this run cannot fit on this machine:", problems=problems)


def findings(inp: Inputs, members: dict[str, MemberConfig]) -> tuple[list[str], list[str]]:
    """(problems, warnings) of `preflight`, for `kit train` and `kit validate` alike. Reads the headers of a
    sample of images and the free disk and memory; decodes no image and writes nothing."""
    problems = augment_problems(members) + accumulation_problems(members, inp.fewest_train_rows)
    estimates, sizes_seen = [], set()
    aspect: float | None = None  # the images' mean aspect, read once when a member keeps it
    for name, m in members.items():
        if m.img_size is None:  # clip_probe at the model's own size: small, known only once it loads
            continue
        n_new = 0
        # members at one geometry share the stores
        key = (getattr(m, "resize", "squash"), getattr(m, "cache_size", None), m.img_size)
        if key not in sizes_seen:
            sizes_seen.add(key)
            n_new += 0 if _cached(inp, "train", m) else len(inp.train)
            if inp.test is not None and not _cached(inp, "test", m):
                n_new += len(inp.test)
        trains = get_kind(m.kind).trains_images  # clip_probe trains a head on embeddings
        shorter = getattr(m, "resize", "squash") == "shorter_side"
        if shorter and aspect is None:
            aspect = images_aspect(inp.train.paths)
        estimates.append(
            estimate(
                name,
                m.img_size,
                n_new,
                m.batch_size,
                inp.n_train_rows,
                trains=trains,
                # without cache_size the model's crop_pct (unknown before timm loads) makes it a bit larger
                stored_side=getattr(m, "cache_size", None),
                aspect=aspect if shorter and aspect is not None else 1.0,
            )
        )
    if not estimates:
        return problems, []
    disk, where = free_disk(inp.cache_dir)
    on = {e.member: device_memory(members[e.member].device) for e in estimates if e.batch}
    res = Resources(
        free_disk=disk,
        disk_path=where,
        free_memory={n: free for n, (_, free) in on.items()},
        device={n: dev for n, (dev, _) in on.items()},
    )
    refused, warned = assess(estimates, res, images_side(inp.train.paths))
    return problems + refused, warned
