"""kit: from a folder of images to a leaderboard-ready CSV.

The Python API is what the CLI commands call, each over a loaded config and returning a typed result:

    import kit

    cfg = kit.load_config("kit.yaml")                         # KitConfig (`--set` overrides as a list)
    trained = kit.train_members(cfg)                          # TrainResult: member -> artifact folder
    blended = kit.blend_members(cfg, "ensembles/all.yaml")    # BlendResult: winner, nested score, weights...
    sub = kit.make_submission(cfg, "ensembles/all.yaml")      # SubmitResult: the CSV's path, source, CV score
    p = kit.Predictor.from_workspace(cfg, ensemble="ensembles/all.yaml")  # or Predictor.load("bundle/")
    probs = p.predict_proba(["new/001.jpg"])                  # [n, C] in p.classes order (kit predict, export)

Importing kit is instant: each name imports its module (torch, numpy and the rest) on first access and is
the function or class itself, so its signature, docstring and help() are the real ones.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> (module, attribute)
_API = {
    "load_config": ("kit.config.load", "load_config"),
    "train_members": ("kit.train.run", "train"),
    "blend_members": ("kit.blend.run", "run_blend"),
    "make_submission": ("kit.submit.make", "make_submission"),
    "Predictor": ("kit.predict.predictor", "Predictor"),
}
__all__ = ["Predictor", "blend_members", "load_config", "make_submission", "train_members"]

if TYPE_CHECKING:  # the same objects, for type checkers and editors
    from kit.blend.run import run_blend as blend_members
    from kit.config.load import load_config
    from kit.predict.predictor import Predictor
    from kit.submit.make import make_submission
    from kit.train.run import train as train_members


def __getattr__(name: str) -> Any:
    """The API's names, imported on first access (PEP 562) and kept as module attributes from then on."""
    if name not in _API:
        raise AttributeError(f"module 'kit' has no attribute {name!r}")
    module, attr = _API[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
