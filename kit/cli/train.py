"""`kit train` and `kit runs`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kit.cli.common import ConfigOpt, SetOpt, console, kit_command, load


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
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="run the folds as tasks on a Ray cluster: `auto` or its address HOST:PORT (needs kit[ray])",
            show_default=False,
        ),
    ] = None,
    ddp: Annotated[
        int | None,
        typer.Option(
            "--ddp",
            help="train each fold with DistributedDataParallel over N processes on this machine (torchrun)",
            show_default=False,
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            help="torch threads per process (default: the cores other processes leave free, re-checked while "
            "training; OMP_NUM_THREADS also pins it)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train members over every fold; leaves OOF and test logits (every TTA view) in workdir/members/NAME.

    Interrupted? Run the same command again: finished folds are kept and the interrupted fold resumes from
    its last epoch. A changed member config starts a new run. Scale out (docs/scale.md): `--folds` per
    process or notebook, `--jobs N` / `--devices 0,1` for workers on this machine, `--ray auto` for folds on
    a Ray cluster, `--ddp 4` for each fold on 4 devices.

    Example: `kit train convnext swin --set members.convnext.epochs=3`, `kit train convnext --folds 1`
    """
    from kit.train.threads import threads_setting

    with threads_setting(threads):
        _train(members, config, overrides, folds, jobs, devices, assemble, import_fold, ray, ddp)


def _train(
    members: list[str] | None,
    config: Path,
    overrides: list[str] | None,
    folds: str | None,
    jobs: int | None,
    devices: str | None,
    assemble: bool,
    import_fold: list[Path] | None,
    ray: str | None,
    ddp: int | None,
) -> None:
    from kit.cli.progress import RichReporter
    from kit.train.run import parse_index_list, train

    if ddp is not None:
        if jobs is not None or devices is not None or assemble or import_fold:
            from kit.errors import KitError

            raise KitError(
                "--ddp trains each fold on N devices itself: drop --jobs, --devices, --assemble, --import-fold"
            )
        _launch_ddp(ddp, ray, members or [], config, overrides or [], folds)
        return
    result = train(
        load(config, overrides),
        members,
        RichReporter(console),
        folds=parse_index_list("--folds", folds),
        jobs=jobs,
        devices=parse_index_list("--devices", devices),
        assemble_only=assemble,
        import_folds=import_fold,
        ray=ray,
    )
    if _rank() > 0:
        return  # a DDP rank other than 0: rank 0 reports
    for name, path in result.members.items():
        if name in result.kept:
            console.print(f"[green]kept[/] {path} (nothing retrained)", highlight=False)
        else:
            console.print(f"[green]wrote[/] {path}", highlight=False)
    console.print("next: `kit runs` to compare members, then `kit blend ensembles/NAME.yaml`")


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", 0))


def _launch_ddp(
    n: int, ray: str | None, members: list[str], config: Path, overrides: list[str], folds: str | None
) -> None:
    """`kit train --ddp N`: check the members, then the same command as N torchrun ranks."""
    from kit.errors import KitError
    from kit.train import ddp as ddp_mod
    from kit.train.run import ddp_with_ray_message, select_members

    if ray is not None:
        raise KitError(ddp_with_ray_message())
    if n < 1:
        raise KitError(f"--ddp {n}: give the number of processes, one per device (e.g. --ddp 2)")
    cfg = load(config, overrides)
    ddp_mod.check_members(cfg, select_members(cfg.members, members), n)
    args = [*members, "--config", str(config.resolve()), *[a for o in overrides for a in ("--set", o)]]
    if folds is not None:
        args += ["--folds", folds]
    ddp_mod.launch(n, args)
    for name in select_members(cfg.members, members):
        if (path := cfg.workdir / "members" / name).is_dir():
            console.print(f"[green]wrote[/] {path}", highlight=False)


@kit_command
def runs(config: ConfigOpt = Path("kit.yaml"), overrides: SetOpt = None) -> None:
    """Table of trained members: pooled OOF scores, per-view scores, epochs, time and the worst classes.

    Example: `kit runs -c kit.yaml`
    """
    from kit.cli.render import print_runs
    from kit.runs import collect_runs

    cfg = load(config, overrides)
    print_runs(collect_runs(cfg), cfg.workdir, cfg.competition.scored_by, console)
