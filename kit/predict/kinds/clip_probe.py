"""`kind: clip_probe` on new images: the open_clip encoder embeds them once under every view
(kit.train.embeddings.encode_images) and each fold's linear head (fold{f}/head.npz) maps the embeddings, as
`kit train` did for the test set.

In a bundle a fold's head is fold{f}.safetensors and the encoder is a `local-dir:` folder
(members/NAME/encoder/), copied from the member's own folder or saved from the loaded model.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from kit.errors import KitError
from kit.predict.bundle import save_tensors
from kit.predict.bundle_schema import ClipModel
from kit.predict.kinds import ModelFolder, register_predictor
from kit.predict.members import MemberPlan, fold_weights
from kit.train.clip_model import CONFIG_FILE, WEIGHTS_FILE
from kit.train.kinds.clip_probe import HEAD_FILE

if TYPE_CHECKING:
    from pydantic import BaseModel

    from kit.predict.bundle_schema import MemberFile
    from kit.progress import Reporter
    from kit.train.clip_model import ClipSource
    from kit.workspace import Workspace

ENCODER_DIR = "encoder"  # members/NAME/encoder/: the open_clip encoder as a local-dir folder


def clip_source_of(plan: MemberPlan) -> ClipSource:
    from kit.train.clip_model import ClipSource

    m = plan.model
    return ClipSource(
        member=plan.name,
        model=m["model"],
        pretrained=m.get("pretrained"),
        cache_dir=Path(m["cache_dir"]) if m.get("cache_dir") else None,
        img_size=m.get("img_size"),
    )


@register_predictor("clip_probe")
class ClipProbePredictor:
    weights_file: ClassVar[str] = HEAD_FILE
    bundle_model: ClassVar[type[BaseModel]] = ClipModel

    def read_weights(self, path: Path) -> dict[str, Any]:
        with np.load(path) as z:
            return {k: z[k].astype(np.float32) for k in ("weight", "bias")}

    def workspace_plan(
        self, ws: Workspace, name: str, meta: dict[str, Any], member: dict[str, Any], folds: list[Path]
    ) -> MemberPlan:
        from kit.train.embeddings import image_size_of
        from kit.train.hub import cache_resample
        from kit.train.kinds.clip_probe import clip_source

        pre = meta.get("preprocess") or {}
        src = clip_source(name, ws.cfg.members[name])  # type: ignore[arg-type]
        return MemberPlan(
            name,
            "clip_probe",
            list(meta["classes"]),
            list(meta["views"]),
            size=image_size_of(pre),
            resample=cache_resample(pre.get("interpolation", "bicubic")),
            batch_size=min(int(member["batch_size"]), 256),
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

    def fold_logits(
        self, plan: MemberPlan, images: np.ndarray, views: list[str], device: str, reporter: Reporter
    ) -> list[np.ndarray]:
        from kit.train.clip_model import load_clip
        from kit.train.device import select_device
        from kit.train.embeddings import encode_images
        from kit.train.linear_head import LinearHead

        dev = select_device(plan.name, device, amp=False).device.type
        try:
            model, pp = load_clip(clip_source_of(plan), dev)
        except Exception as e:  # a bundle's encoder config can hold anything open_clip trips on
            if not plan.source:
                raise
            raise KitError(
                f"{plan.where}: model.encoder_dir: open_clip cannot load it ({str(e)[:300]}); {plan.remedy}"
            ) from None
        with reporter.task(f"{plan.name} embed x{len(views)} views", total=len(images)) as task:
            emb = encode_images(model, images, pp, views, plan.batch_size, dev, task.advance)
        del model
        outs = []
        C, D = len(plan.classes), emb.shape[-1]
        for f, path in enumerate(plan.folds):
            w = fold_weights(plan, f, path)
            shapes = {k: tuple(np.shape(w[k])) if k in w else None for k in ("weight", "bias")}
            if shapes != {"weight": (C, D), "bias": (C,)} or set(w) != {"weight", "bias"}:
                raise KitError(
                    f"{plan.where}: fold {f}: {path} holds {sorted(w)[:5]} of shapes {shapes}, not a linear head "
                    f"weight [{C}, {D}] and bias [{C}] for {C} classes over {D}-d embeddings; {plan.remedy}"
                )
            head = LinearHead(np.asarray(w["weight"], np.float32), np.asarray(w["bias"], np.float32))
            outs.append(head.logits(emb).astype(np.float32))
        return outs

    def export(self, plan: MemberPlan, folder: Path, half: bool) -> dict[str, Any]:
        """The encoder as a local-dir folder: copied when it is one, else saved from the loaded model."""
        from kit.train.clip_model import load_clip

        out = folder / ENCODER_DIR
        out.mkdir(parents=True)
        src = clip_source_of(plan)
        if src.local_dir is not None:
            shutil.copy2(src.local_dir / CONFIG_FILE, out / CONFIG_FILE)
            from safetensors.torch import load_file

            state = dict(load_file(str(src.local_dir / WEIGHTS_FILE)))
        else:
            import open_clip
            from open_clip.push_to_hf_hub import save_config_for_hf

            model, _ = load_clip(src, "cpu")
            save_config_for_hf(model, out / CONFIG_FILE, open_clip.get_model_config(src.model))
            state = model.state_dict()
        save_tensors(
            {k: v.half() if half and v.is_floating_point() else v for k, v in state.items()},
            out / WEIGHTS_FILE,
        )
        return {"encoder_dir": ENCODER_DIR, "img_size": plan.model.get("img_size")}

    def check_member_file(self, m: MemberFile) -> None:
        return None

    def bundle_folders(self, model: ClipModel) -> list[ModelFolder]:
        return [ModelFolder("model.encoder_dir", model.encoder_dir, CONFIG_FILE, (WEIGHTS_FILE,))]

    def from_bundle(self, model: dict[str, Any], base: Path) -> dict[str, Any]:
        model = dict(model)
        model["model"] = "local-dir:" + str(base / model.pop("encoder_dir"))
        return model
