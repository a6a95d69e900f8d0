"""kit: from a folder of images to a leaderboard-ready CSV.

The Python API is what the CLI commands call, each over a loaded config and returning a typed result:

    import kit

    cfg = kit.load_config("kit.yaml")                 # KitConfig (`--set` overrides as a list)
    trained = kit.train(cfg)                          # TrainResult: member -> artifact folder
    blended = kit.blend(cfg, "ensembles/all.yaml")    # BlendResult: winner, nested score, weights...
    sub = kit.submit(cfg, "ensembles/all.yaml")       # SubmitResult: the CSV's path, its source and CV score
    p = kit.Predictor.from_workspace(cfg, ensemble="ensembles/all.yaml")  # or Predictor.load("bundle/")
    probs = p.predict_proba(["new/001.jpg"])          # [n, C] in p.classes order (kit predict, kit export)

Importing kit is instant: torch, numpy and the rest load on the first call.
"""

from __future__ import annotations

import importlib
import inspect
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Predictor", "blend", "load_config", "submit", "train"]


class _Lazy:
    """One function of the API, imported on its first call; its signature and docstring are the target's."""

    def __init__(self, module: str, name: str) -> None:
        self._module, self._name = module, name

    def _target(self) -> Callable[..., Any]:
        fn: Callable[..., Any] = getattr(importlib.import_module(self._module), self._name)
        return fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._target()(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self._target())

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self._target().__doc__

    def __repr__(self) -> str:
        return f"<kit API function {self._module}.{self._name}>"


# kit.train, kit.blend and kit.submit are packages and API functions at once: each package module is made
# callable (its class becomes _ApiPackage), so `kit.blend(cfg, spec)` calls kit.blend.run.run_blend while
# `import kit.blend.kernels` and `from kit.blend import rank_kernels` keep working as for any package.
_PACKAGE_API = {
    "kit.train": ("kit.train.run", "train"),
    "kit.blend": ("kit.blend.run", "run_blend"),
    "kit.submit": ("kit.submit.make", "make_submission"),
}


class _ApiPackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        module, name = _PACKAGE_API[self.__name__]
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        module, name = _PACKAGE_API[self.__name__]
        return inspect.signature(getattr(importlib.import_module(module), name))


for _package in _PACKAGE_API:
    importlib.import_module(_package).__class__ = _ApiPackage

if TYPE_CHECKING:  # the real functions, for type checkers and editors
    from kit.blend.run import run_blend as blend
    from kit.config.load import load_config
    from kit.predict.predictor import Predictor
    from kit.submit.make import make_submission as submit
    from kit.train.run import train
else:
    from kit import blend, submit, train  # the callable packages

    load_config = _Lazy("kit.config.load", "load_config")


def __getattr__(name: str) -> Any:
    """`kit.Predictor`, a class, imported on first access (numpy and the rest load with it)."""
    if name == "Predictor":
        return importlib.import_module("kit.predict.predictor").Predictor
    raise AttributeError(f"module 'kit' has no attribute {name!r}")
