"""kit: from a folder of images to a leaderboard-ready CSV.

The Python API is what the CLI commands call, each over a loaded config and returning a typed result:

    import kit

    cfg = kit.load_config("kit.yaml")                 # KitConfig (`--set` overrides as a list)
    trained = kit.train(cfg)                          # TrainResult: member -> artifact folder
    blended = kit.blend(cfg, "ensembles/all.yaml")    # BlendResult: winner, nested score, weights...
    sub = kit.submit(cfg, "ensembles/all.yaml")       # SubmitResult: the CSV's path, its source and CV score

Importing kit is instant: torch, numpy and the rest load on the first call.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kit.blend.run import BlendResult
    from kit.blend.spec import EnsembleSpec
    from kit.config.schema import KitConfig
    from kit.submit.make import SubmitResult
    from kit.train.progress import Reporter
    from kit.train.run import TrainResult

__version__ = "0.1.0"
__all__ = ["blend", "load_config", "submit", "train"]

# kit.train, kit.blend and kit.submit are also packages, and Python sets `kit.NAME` to a subpackage when it is
# first imported. Importing the (light) packages here, before the functions below are defined, keeps
# `kit.train` & co. the functions for good; `import kit.train.run` still finds the package in sys.modules.
for _package in ("kit.train", "kit.blend", "kit.submit"):
    importlib.import_module(_package)


def load_config(path: str | Path = "kit.yaml", overrides: list[str] | None = None) -> KitConfig:
    """kit.yaml (with `key.path=value` overrides, the CLI's `--set`) as a validated config, paths resolved."""
    from kit.config.load import load_config as load

    return load(Path(path), overrides)


def train(cfg: KitConfig, members: list[str] | None = None, reporter: Reporter | None = None) -> TrainResult:
    """`kit train`: train the named members (default all) over every fold (kit.train.run.train)."""
    from kit.train.run import train as run

    return run(cfg, members, reporter)


def blend(
    cfg: KitConfig,
    spec: str | Path | EnsembleSpec,
    *,
    name: str | None = None,
    overrides: list[str] | None = None,
    allow_stale: bool = False,
) -> BlendResult:
    """`kit blend`: run an ensemble spec (a file, or an EnsembleSpec with `name`) over the trained members
    (kit.blend.run.run_blend)."""
    from kit.blend.run import run_blend

    return run_blend(cfg, spec, name=name, overrides=overrides, allow_stale=allow_stale)


def submit(
    cfg: KitConfig,
    ensemble: str | Path | None = None,
    *,
    member: str | None = None,
    out: Path | None = None,
    force: bool = False,
    allow_stale: bool = False,
) -> SubmitResult:
    """`kit submit`: a blend's (`ensemble`) or a member's test predictions as the sample submission's CSV
    (kit.submit.make.make_submission)."""
    from kit.submit.make import make_submission

    return make_submission(cfg, ensemble, member=member, out=out, force=force, allow_stale=allow_stale)
