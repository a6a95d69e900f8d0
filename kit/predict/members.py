"""A member's fold models over decoded images: the same prediction code `kit train` ran on the test set.

A `MemberPlan` says everything needed without a workspace: the kind, the preprocessing, the batch size of the
train-time test pass, and one weights file per fold. timm: each fold's network is built bare, loaded with its
best weights and run by kit.train.loop.predict under the requested views; clip_probe: the encoder embeds the
images (kit.train.embeddings.encode_images) and each fold's head maps the embeddings. Fold models load one at
a time; fold logits are averaged as the fold loop does (kit.train.fold_loop.assemble). On the CPU, with the
train-time batch size and views, the logits equal the member's test_logits.npy bit for bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import KitError
from kit.train.progress import NullReporter, Reporter

if TYPE_CHECKING:
    from kit.data.workspace import Workspace

KINDS = ("timm", "clip_probe")


@dataclass
class MemberPlan:
    name: str
    kind: str  # timm | clip_probe
    classes: list[str]
    views: list[str]  # the member's TTA views, in the order of its artifacts
    size: int  # images are decoded to size x size ...
    resample: str  # ... with this PIL filter (the model's interpolation)
    batch_size: int  # the train-time test pass's batch size (kept for bit-equal logits)
    folds: list[Path]  # one weights file per fold: best.pt / head.npz (workspace) or fold{f}.safetensors
    model: dict[str, Any] = field(default_factory=dict)  # timm: model, model_kwargs, mean, std; clip: source
    amp: bool = True
    channels_last: bool = True
    resize: str = "squash"  # stored as training stored them (kit.data.cache.Geometry) at cache_size ...
    cache_size: int | None = None  # ... then centre-cropped to size; None: decoded straight to size
    source: str = ""  # where the plan was read, for messages ("bundle B: members/NAME/member.json")
    fix: str = ""  # what to do when its files cannot be used

    @property
    def where(self) -> str:
        return self.source or f"member '{self.name}'"

    @property
    def remedy(self) -> str:
        return self.fix or f"run `kit train {self.name}` again"

    def to_json(self, base: Path) -> dict[str, Any]:
        d = asdict(self)
        d["folds"] = [p.relative_to(base).as_posix() for p in self.folds]
        del d["source"], d["fix"]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], base: Path) -> MemberPlan:
        d = dict(d)
        d["folds"] = [base / p for p in d["folds"]]
        model = dict(d.get("model") or {})
        if "encoder_dir" in model:
            model["model"] = "local-dir:" + str(base / model.pop("encoder_dir"))
        if model.get("model_dir") is not None:  # timm: the model's config.json inside the bundle
            model["model"] = "local-dir:" + str(base / model["model_dir"])
        model.pop("model_dir", None)
        d["model"] = model
        return cls(**d)


def load_fold(path: Path) -> dict[str, Any]:
    """A fold's weights: a timm state dict (tensors) or a head {weight, bias} (float32 numpy arrays).
    Every file kit export writes is safetensors: a file it cannot parse is a KitError, not a traceback."""
    if path.suffix == ".pt":
        from kit.train.checkpoint import load_checkpoint

        state: dict[str, Any] = load_checkpoint(path)["model"]
        return state
    if path.suffix == ".npz":
        with np.load(path) as z:
            return {k: z[k].astype(np.float32) for k in ("weight", "bias")}
    from safetensors.torch import load_file

    try:
        return dict(load_file(str(path)))
    except KitError:
        raise
    except Exception as e:  # safetensors raises its own error type for a damaged header or body
        raise KitError(f"{path}: not a readable safetensors file ({str(e)[:200]})") from None


def _fold_weights(plan: MemberPlan, f: int, path: Path) -> dict[str, Any]:
    try:
        return load_fold(path)
    except KitError as e:
        raise KitError(f"{plan.where}: folds.{f}: {e}; {plan.remedy}") from None


def run_member(
    plan: MemberPlan,
    images: np.ndarray,
    views: list[str],
    *,
    device: str = "auto",
    reporter: Reporter | None = None,
) -> np.ndarray:
    """float32 logits [n, len(views), C]: the mean over the member's fold models."""
    rep = reporter or NullReporter()
    if plan.kind == "timm":
        outs = _timm_folds(plan, images, views, device, rep)
    elif plan.kind == "clip_probe":
        outs = _clip_folds(plan, images, views, device, rep)
    else:
        raise KitError(
            f"member '{plan.name}': kit predict cannot run members of kind '{plan.kind}' ({KINDS})"
        )
    return np.mean(outs, axis=0).astype(np.float32)


def _timm_folds(
    plan: MemberPlan, images: np.ndarray, views: list[str], device: str, rep: Reporter
) -> list[np.ndarray]:
    import torch

    from kit.data.cache import ArrayImages
    from kit.train.data import Preprocess
    from kit.train.device import select_device
    from kit.train.heads import HeadSpec
    from kit.train.loop import predict
    from kit.train.models import ModelSpec

    m = plan.model
    spec = ModelSpec(
        m["model"],
        len(plan.classes),
        dict(m.get("model_kwargs") or {}),
        head=HeadSpec.from_json(m.get("head")),  # the member's own classifier (kit.train.heads), if any
    )
    setup = select_device(plan.name, device, amp=plan.amp, channels_last=plan.channels_last)
    augment = Preprocess(tuple(m["mean"]), tuple(m["std"]), plan.size)
    outs = []
    for f, path in enumerate(plan.folds):
        try:
            model = spec.create(with_weights=False)
        except (
            Exception
        ) as e:  # timm: unknown names, rejected or ill-typed keywords (TypeError, ValueError...)
            first = (str(e).splitlines() or [""])[0][:200]
            raise KitError(
                f"{plan.where}: model.model {m['model']!r} with model_kwargs {str(spec.kwargs)[:200]}: timm "
                f"cannot build it ({type(e).__name__}: {first}); {plan.remedy}"
            ) from None
        state = _fold_weights(plan, f, path)
        try:
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        except RuntimeError as e:
            raise KitError(
                f"{plan.where}: fold {f}: {path} does not fit '{m['model']}' ({str(e).splitlines()[0][:300]}); "
                f"{plan.remedy}"
            ) from None
        model.to(setup.device)
        if setup.channels_last:
            model.to(memory_format=torch.channels_last)
        outs.append(
            predict(
                model.eval(),
                ArrayImages(images),
                np.arange(len(images)),
                views,
                augment,
                setup,
                plan.batch_size,
                rep,
                f"{plan.name} fold {f} x{len(views)} views",
            )
        )
        del model, state
    return outs


def _clip_folds(
    plan: MemberPlan, images: np.ndarray, views: list[str], device: str, rep: Reporter
) -> list[np.ndarray]:
    from kit.train.clip_model import ClipSource, load_clip
    from kit.train.device import select_device
    from kit.train.embeddings import encode_images
    from kit.train.linear_head import LinearHead

    m = plan.model
    cache_dir = m.get("cache_dir")
    src = ClipSource(
        member=plan.name,
        model=m["model"],
        pretrained=m.get("pretrained"),
        cache_dir=Path(cache_dir) if cache_dir else None,
        img_size=m.get("img_size"),
    )
    dev = select_device(plan.name, device, amp=False).device.type
    try:
        model, pp = load_clip(src, dev)
    except Exception as e:  # a bundle's encoder config can hold anything open_clip trips on
        if not plan.source:
            raise
        raise KitError(
            f"{plan.where}: model.encoder_dir: open_clip cannot load it ({str(e)[:300]}); {plan.remedy}"
        ) from None
    with rep.task(f"{plan.name} embed x{len(views)} views", total=len(images)) as task:
        emb = encode_images(model, images, pp, views, plan.batch_size, dev, task.advance)
    del model
    outs = []
    C, D = len(plan.classes), emb.shape[-1]
    for f, path in enumerate(plan.folds):
        w = _fold_weights(plan, f, path)
        shapes = {k: tuple(np.shape(w[k])) if k in w else None for k in ("weight", "bias")}
        if shapes != {"weight": (C, D), "bias": (C,)} or set(w) != {"weight", "bias"}:
            raise KitError(
                f"{plan.where}: fold {f}: {path} holds {sorted(w)[:5]} of shapes {shapes}, not a linear head "
                f"weight [{C}, {D}] and bias [{C}] for {C} classes over {D}-d embeddings; {plan.remedy}"
            )
        head = LinearHead(np.asarray(w["weight"], np.float32), np.asarray(w["bias"], np.float32))
        outs.append(head.logits(emb).astype(np.float32))
    return outs


# ---------------------------------------------------------------- plans from a workspace


def rebuild_hint(ws: Workspace, name: str, fold_dir: Path) -> str:
    return f"rebuild it with `rm -r {fold_dir}` then `kit train {name}` (and `kit blend` again for blends using it)"


def workspace_plan(ws: Workspace, name: str, meta: dict[str, Any]) -> tuple[MemberPlan | None, list[str]]:
    """The plan of a trained member from its meta.json and run folder, or the problems that prevent it."""
    import json

    from kit.train.embeddings import image_size_of
    from kit.train.hub import cache_resample
    from kit.train.kinds.clip_probe import HEAD_FILE, clip_source

    kind = meta.get("kind")
    if kind not in KINDS:
        return None, [
            f"member '{name}' is of kind '{kind}', which kit predict cannot run ({', '.join(KINDS)})"
        ]
    run = meta.get("run") or {}
    root = ws.workdir / "runs" / name / str(run.get("hash"))
    fix = f"run `kit train {name}` again"
    if not (root / "run.json").is_file():
        return None, [f"member '{name}': its run folder {root} is gone, so its fold models are too; {fix}"]
    mcfg = dict((meta.get("config") or {}).get("member") or {})
    ran = json.loads((root / "run.json").read_text("utf-8")).get("config")
    if ran != {k: v for k, v in mcfg.items() if k != "name"}:
        return None, [
            f"member '{name}': its artifacts no longer match their run {root} (another config); {fix}"
        ]
    weights = "best.pt" if kind == "timm" else HEAD_FILE
    folds = [root / f"fold{f}" / weights for f in range(ws.folds.k)]
    problems = [
        f"member '{name}' fold {f}: {p} is missing; {rebuild_hint(ws, name, p.parent)}"
        for f, p in enumerate(folds)
        if not p.is_file()
    ]
    if problems:
        return None, problems
    pre = meta.get("preprocess") or {}
    classes, views = list(meta["classes"]), list(meta["views"])
    if kind == "timm":
        plan = MemberPlan(
            name,
            kind,
            classes,
            views,
            size=int(mcfg["img_size"]),
            resample=str(pre["interpolation"]),
            batch_size=int(mcfg["batch_size"]) * 2,
            folds=folds,
            model={
                "model": mcfg["model"],
                "model_kwargs": pre.get("model_kwargs") or {},
                "mean": pre["mean"],
                "std": pre["std"],
                **({"head": meta["head"]} if meta.get("head") is not None else {}),
            },
            amp=bool(mcfg.get("amp", True)),
            channels_last=bool(mcfg.get("channels_last", True)),
            resize=str(pre.get("resize", "squash")),  # runs from before the pipeline: squash at img_size
            cache_size=pre.get("cache_size"),
        )
    else:
        src = clip_source(name, ws.cfg.members[name])  # type: ignore[arg-type]
        plan = MemberPlan(
            name,
            kind,
            classes,
            views,
            size=image_size_of(pre),
            resample=cache_resample(pre.get("interpolation", "bicubic")),
            batch_size=min(int(mcfg["batch_size"]), 256),
            folds=folds,
            model={
                "model": src.model,
                "pretrained": src.pretrained,
                "cache_dir": str(src.cache_dir) if src.cache_dir else None,
                "img_size": src.img_size,
            },
            amp=False,
            channels_last=False,
        )
    return plan, []
