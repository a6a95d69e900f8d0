"""`kit train` and `kit runs`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kit.cli.app import ConfigOpt, SetOpt, app, console, kit_command, load


@app.command()
@kit_command
def train(
    members: Annotated[
        list[str] | None,
        typer.Argument(help="members of kit.yaml to train (default: all)", show_default=False),
    ] = None,
    config: ConfigOpt = Path("kit.yaml"),
    overrides: SetOpt = None,
) -> None:
    """Train members over every fold; leaves OOF and test logits (every TTA view) in workdir/members/NAME.

    Interrupted? Run the same command again: finished folds are kept and the interrupted fold resumes from
    its last epoch. A changed member config starts a new run.

    Example: `kit train convnext swin --set members.convnext.epochs=3`
    """
    from kit.cli.progress import RichReporter
    from kit.train.run import train

    result = train(load(config, overrides), members, RichReporter(console))
    for path in result.members.values():
        console.print(f"[green]wrote[/] {path}", highlight=False)
    console.print("next: `kit runs` to compare members, then `kit blend ensembles/NAME.yaml`")


@app.command()
@kit_command
def runs(config: ConfigOpt = Path("kit.yaml"), overrides: SetOpt = None) -> None:
    """Table of trained members: pooled OOF scores, per-view scores, epochs, time and the worst classes.

    Example: `kit runs -c kit.yaml`
    """
    from kit.cli.render import print_runs
    from kit.train.runs import collect_runs

    cfg = load(config, overrides)
    print_runs(collect_runs(cfg), cfg.workdir, cfg.competition.scored_by, console)
