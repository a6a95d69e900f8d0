"""The demo's CLIP: a one-layer open_clip model with random weights, saved as a `local-dir:` folder.

It builds in ~50 ms and embeds 500 32-px images in ~0.1 s on CPU (vocab_size 49408 fits the bundled tokenizer,
which works offline), so `kit demo` and the tests run a clip_probe member without a download.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kit.artifacts.atomic import atomic_dir
from kit.train.clip_model import CONFIG_FILE, WEIGHTS_FILE

TINY_CLIP_CFG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 4},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def write_tiny_clip(out: Path, *, seed: int = 0, preprocess: dict[str, Any] | None = None) -> Path:
    """A random-init one-layer CLIP saved as an open_clip local-dir folder (config + safetensors).

    Load it with model: local-dir:OUT. `preprocess` overrides mean/std/interpolation/resize_mode. Returns `out`;
    an existing folder is kept.
    """
    if (out / CONFIG_FILE).is_file() and (out / WEIGHTS_FILE).is_file():
        return out
    import open_clip
    import torch
    from open_clip.model import get_model_preprocess_cfg, set_model_preprocess_cfg
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = open_clip.CLIP(**json.loads(json.dumps(TINY_CLIP_CFG)))
    pp = {
        "size": TINY_CLIP_CFG["vision_cfg"]["image_size"],
        "mode": "RGB",
        "mean": open_clip.OPENAI_DATASET_MEAN,
        "std": open_clip.OPENAI_DATASET_STD,
        "interpolation": "bicubic",
        "resize_mode": "shortest",
        "fill_color": 0,
    }
    pp.update(preprocess or {})
    set_model_preprocess_cfg(model, pp)
    assert get_model_preprocess_cfg(model)["mean"] == pp["mean"]
    with atomic_dir(out) as tmp:
        save_config_for_hf(model, tmp / CONFIG_FILE, TINY_CLIP_CFG)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / WEIGHTS_FILE))
    return out
