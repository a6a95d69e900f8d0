"""`kind: timm` on new images: each fold's network built bare, loaded with its best weights (fold{f}/best.pt) and
run by kit.train.loop.predict under the requested views, as `kit train` ran the test set.

In a bundle a fold's weights are fold{f}.safetensors; a model named `hf-hub:ID` or `local-dir:DIR` is built from
its config.json, which the bundle holds (members/NAME/timm/config.json, read as `local-dir:`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from kit.errors import KitError
from kit.predict.bundle_schema import TimmModel
from kit.predict.kinds import ModelFolder, register_predictor
from kit.predict.members import MemberPlan, fold_weights

if TYPE_CHECKING:
    from pydantic import BaseModel

    from kit.predict.bundle_schema import MemberFile
    from kit.progress import Reporter
    from kit.workspace import Workspace

SOURCES = ("hf-hub:", "hf_hub:", "local-dir:")  # timm model names that read a config.json
CONFIG_DIR = "timm"  # members/NAME/timm/config.json: such a model's config, inside the bundle


@register_predictor("timm")
class TimmPredictor:
    weights_file: ClassVar[str] = "best.pt"
    bundle_model: ClassVar[type[BaseModel]] = TimmModel

    def read_weights(self, path: Path) -> dict[str, Any]:
        from kit.train.checkpoint import load_checkpoint

        state: dict[str, Any] = load_checkpoint(path)["model"]
        return state

    def workspace_plan(
        self, ws: Workspace, name: str, meta: dict[str, Any], member: dict[str, Any], folds: list[Path]
    ) -> MemberPlan:
        pre = meta.get("preprocess") or {}
        return MemberPlan(
            name,
            "timm",
            list(meta["classes"]),
            list(meta["views"]),
            size=int(member["img_size"]),
            resample=str(pre["interpolation"]),
            batch_size=int(member["batch_size"]) * 2,
            folds=folds,
            model={
                "model": member["model"],
                "model_kwargs": pre.get("model_kwargs") or {},
                "mean": pre["mean"],
                "std": pre["std"],
                **({"head": meta["head"]} if meta.get("head") is not None else {}),
            },
            amp=bool(member.get("amp", True)),
            channels_last=bool(member.get("channels_last", True)),
            resize=str(pre.get("resize", "squash")),  # runs from before the pipeline: squash at img_size
            cache_size=pre.get("cache_size"),
        )

    def fold_logits(
        self, plan: MemberPlan, images: np.ndarray, views: list[str], device: str, reporter: Reporter
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
            state = fold_weights(plan, f, path)
            try:
                model.load_state_dict(
                    {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
                )
            except RuntimeError as e:
                raise KitError(
                    f"{plan.where}: fold {f}: {path} does not fit '{m['model']}' "
                    f"({str(e).splitlines()[0][:300]}); {plan.remedy}"
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
                    reporter,
                    f"{plan.name} fold {f} x{len(views)} views",
                )
            )
            del model, state
        return outs

    def export(self, plan: MemberPlan, folder: Path, half: bool) -> dict[str, Any]:
        if not str(plan.model["model"]).startswith(SOURCES):
            return dict(plan.model)
        return {**plan.model, **_write_config(plan, folder / CONFIG_DIR), "model_dir": CONFIG_DIR}

    def check_member_file(self, m: MemberFile) -> None:
        head = m.model.get("head")
        attrs = head.get("attributes") if isinstance(head, dict) else None
        codes = attrs.get("codes") if isinstance(attrs, dict) else None
        if isinstance(codes, list) and len(codes) != len(m.classes):
            raise ValueError(f"model.head.attributes.codes: {len(codes)} classes, not {len(m.classes)}")

    def bundle_folders(self, model: TimmModel) -> list[ModelFolder]:
        return (
            []
            if model.model_dir is None
            else [ModelFolder("model.model_dir", model.model_dir, "config.json")]
        )

    def from_bundle(self, model: dict[str, Any], base: Path) -> dict[str, Any]:
        model = dict(model)
        if model.get("model_dir") is not None:  # the model's config.json inside the bundle
            model["model"] = "local-dir:" + str(base / model["model_dir"])
        model.pop("model_dir", None)
        return model


def _write_config(plan: MemberPlan, out: Path) -> dict[str, str]:
    """A timm model named `hf-hub:ID` or `local-dir:DIR` is built from its config.json: copied into the bundle
    (timm reads it as `local-dir:` there), so predicting reads nothing outside it. Returns {"model": its
    architecture} for member.json."""
    name = str(plan.model["model"])
    source, _, ident = name.partition(":")
    try:
        if source == "local-dir":
            path = Path(ident) / "config.json"
        else:
            from huggingface_hub import hf_hub_download

            repo, _, revision = ident.partition("@")  # timm's hf-hub:ID@REVISION
            path = Path(hf_hub_download(repo, "config.json", revision=revision or None))
        cfg = json.loads(path.read_text("utf-8"))
    except Exception as e:  # a missing folder or file, the hub unreachable and not cached, bad JSON
        raise KitError(
            f"member '{plan.name}': its model {name!r} is built from a config.json that kit export could not "
            f"read ({str(e)[:200]}); make it readable here (for hf-hub: run once with the network) and export again"
        ) from None
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", "utf-8")
    return {"model": str(cfg.get("architecture") or name.rsplit("/", 1)[-1])}
