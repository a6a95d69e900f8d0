"""`kit export`: a folder that predicts with no workspace, no kit.yaml and no training data.

DIR/manifest.json                  sha256 and size of every other file; kit, torch, timm, open_clip versions
DIR/recipe.json                    the blend winner (or member) as data, and the submission settings
DIR/members/NAME/member.json       kind, classes, views, preprocessing (size, resample, mean, std), batch size
DIR/members/NAME/config.json       the member's resolved config
DIR/members/NAME/fold{f}.safetensors   fold weights (timm: the network; clip_probe: the head); fp16 with --half
DIR/members/NAME/encoder/          clip_probe: the open_clip encoder as a local-dir folder
DIR/wheels/                        --wheels: kit and its dependencies but torch/torchvision (kit/predict/wheels.py);
                                   listed in the manifest's "wheels", not checked when predicting
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts.atomic import atomic_dir
from kit.errors import KitError
from kit.predict.members import MemberPlan, load_fold

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
RECIPE = "recipe.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    from kit.artifacts.member import library_versions

    return library_versions()


def _write_encoder(plan: MemberPlan, out: Path, half: bool) -> None:
    """The clip encoder as a local-dir folder: copied when it is one, else saved from the loaded model."""
    from safetensors.torch import save_file

    from kit.train.clip_model import CONFIG_FILE, WEIGHTS_FILE, ClipSource, load_clip

    out.mkdir(parents=True)
    m = plan.model
    src = ClipSource(
        plan.name,
        m["model"],
        m.get("pretrained"),
        Path(m["cache_dir"]) if m.get("cache_dir") else None,
        m.get("img_size"),
    )
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
    save_file(
        {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in state.items()},
        str(out / WEIGHTS_FILE),
    )


def write_bundle(
    out: Path,
    recipe: dict[str, Any],
    plans: list[MemberPlan],
    competition: dict[str, Any],
    *,
    half: bool = False,
    configs: dict[str, Any] | None = None,
    wheels: Callable[[Path], Any] | None = None,
) -> int:
    """Write the bundle atomically (refusing an existing folder); returns its size in bytes. `wheels(folder)`
    (kit.predict.wheels.write_wheels) fills DIR/wheels; if it fails, nothing is written."""
    import torch
    from safetensors.torch import save_file

    if out.exists():
        raise KitError(f"--out {out} exists; kit export writes a new folder (remove it or choose another)")
    with atomic_dir(out) as tmp:
        for p in plans:
            d = tmp / "members" / p.name
            d.mkdir(parents=True)
            folds = []
            for f, path in enumerate(p.folds):
                state = load_fold(path)
                tensors = {
                    k: (v if isinstance(v, torch.Tensor) else torch.from_numpy(np.asarray(v)))
                    for k, v in state.items()
                }
                if half:
                    tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
                save_file({k: v.contiguous() for k, v in tensors.items()}, str(d / f"fold{f}.safetensors"))
                folds.append(d / f"fold{f}.safetensors")
            plan = MemberPlan(**{**p.__dict__, "folds": folds})
            info = plan.to_json(d)
            if p.kind == "clip_probe":
                _write_encoder(p, d / "encoder", half)
                info["model"] = {"encoder_dir": "encoder", "img_size": p.model.get("img_size")}
            (d / "member.json").write_text(json.dumps(info, indent=2) + "\n", "utf-8")
            (d / "config.json").write_text(
                json.dumps((configs or {}).get(p.name, {}), indent=2, default=str) + "\n"
            )
        (tmp / RECIPE).write_text(json.dumps({"recipe": recipe, "competition": competition}, indent=2) + "\n")
        files = sorted(q for q in tmp.rglob("*") if q.is_file())
        wheel_files = []
        if wheels is not None:
            wheels(tmp / "wheels")
            wheel_files = sorted((tmp / "wheels").iterdir())
        manifest = {
            "format": BUNDLE_FORMAT,
            "half": half,
            "versions": _versions(),
            "members": [p.name for p in plans],
            "files": {
                q.relative_to(tmp).as_posix(): {"sha256": _sha256(q), "size": q.stat().st_size} for q in files
            },
            "wheels": {
                f"wheels/{q.name}": {"sha256": _sha256(q), "size": q.stat().st_size} for q in wheel_files
            },
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    return sum(q.stat().st_size for q in out.rglob("*") if q.is_file())


def verify_bundle(d: Path) -> dict[str, Any]:
    """The manifest, after checking every listed file's size and sha256 (every mismatch named at once)."""
    path = d / MANIFEST
    if not path.is_file():
        raise KitError(f"{d}: no {MANIFEST}; not a bundle `kit export` wrote (or an incomplete copy of one)")
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise KitError(f"{path}: unreadable ({e}); export the bundle again") from None
    problems = []
    for rel, want in manifest.get("files", {}).items():
        f = d / rel
        if not f.is_file():
            problems.append(f"{rel}: missing")
        elif f.stat().st_size != want["size"]:
            problems.append(f"{rel}: {f.stat().st_size} bytes, the manifest says {want['size']}")
        elif _sha256(f) != want["sha256"]:
            problems.append(f"{rel}: its sha256 differs from the manifest's (the file changed or is corrupt)")
    if problems:
        raise KitError(
            f"bundle {d} does not match its manifest; copy it again or re-export it:", problems=problems
        )
    return manifest


def read_bundle(d: Path, *, verify: bool = True) -> tuple[dict[str, Any], list[MemberPlan], dict[str, Any]]:
    manifest = verify_bundle(d) if verify else json.loads((d / MANIFEST).read_text("utf-8"))
    data = json.loads((d / RECIPE).read_text("utf-8"))
    plans = []
    for name in manifest["members"]:
        md = d / "members" / name
        plans.append(MemberPlan.from_json(json.loads((md / "member.json").read_text("utf-8")), md))
    return data["recipe"], plans, data["competition"]
