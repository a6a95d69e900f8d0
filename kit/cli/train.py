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
    folds: Annotated[
        str | None,
        typer.Option(
            "--folds",
            help="train only these folds, e.g. `--folds 0,2` (a SLURM array: `--folds $SLURM_ARRAY_TASK_ID`); "
            "whoever finishes the last missing fold writes the member",
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs", help="train (member, fold) tasks in N CPU worker processes, cores/N threads each"
        ),
    ] = None,
    devices: Annotated[
        str | None,
        typer.Option("--devices", help="one worker per CUDA device, e.g. `--devices 0,1,2,3`"),
    ] = None,
    assemble: Annotated[
        bool,
        typer.Option("--assemble", help="write the members from their finished folds (names missing ones)"),
    ] = False,
    import_fold: Annotated[
        list[Path] | None,
        typer.Option(
            "--import-fold",
            help="add a fold folder trained elsewhere (workdir/runs/NAME/HASH/fold{f}; repeatable)",
        ),
    ] = None,
) -> None:
    """Train members over every fold; leaves OOF and test logits (every TTA view) in workdir/members/NAME.

    Interrupted? Run the same command again: finished folds are kept and the interrupted fold resumes from
    its last epoch. A changed member config starts a new run. Scale out (docs/scale.md): `--folds` per
    process or notebook, `--jobs N` / `--devices 0,1` for workers on this machine.

    Example: `kit train convnext swin --set members.convnext.epochs=3`, `kit train convnext --folds 1`
    """
    from kit.cli.progress import RichReporter
    from kit.train.run import parse_index_list, train

    result = train(
        load(config, overrides),
        members,
        RichReporter(console),
        folds=parse_index_list("--folds", folds),
        jobs=jobs,
        devices=parse_index_list("--devices", devices),
        assemble_only=assemble,
        import_folds=import_fold,
    )
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
