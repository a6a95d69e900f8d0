"""`kit blend`: search member subsets, views and weights over cached OOF logits; judge them by nested CV."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kit.cli.common import AllowStaleOpt, ConfigOpt, SetOpt, console, kit_command, load


@kit_command
def blend(
    spec: Annotated[Path, typer.Argument(help="ensemble spec, e.g. ensembles/all.yaml")],
    config: ConfigOpt = Path("kit.yaml"),
    overrides: SetOpt = None,
    allow_stale: AllowStaleOpt = False,
) -> None:
    """Blend trained members as an ensemble spec says; writes workdir/blends/NAME/ (NAME = the spec's stem).

    `--set key=value` overrides kit.yaml; `--set spec.key=value` overrides the ensemble spec.

    Example: `kit blend ensembles/swin_effnet.yaml -c kit.yaml --set spec.metric=macro_f1`
    """
    from kit.artifacts.names import plain_name
    from kit.blend.run import run_blend, split_overrides
    from kit.cli.render import print_blend

    plain_name(
        spec.stem, "blend"
    )  # the spec's stem names workdir/blends/NAME: `..yaml` must not mean blends/
    spec_o, cfg_o = split_overrides(overrides)
    result = run_blend(load(config, cfg_o), spec, overrides=spec_o, allow_stale=allow_stale)
    print_blend(result, console)
