"""`kit tune`: an optuna study over a member's `tune:` search space (docs/tune.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kit.cli.common import ConfigOpt, SetOpt, console, kit_command, load

if TYPE_CHECKING:
    from kit.tune.study import TuneResult


def _folds(text: str | None) -> list[int] | None:
    if text is None or not text.strip():
        return None
    from kit.errors import KitError

    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise KitError(
            f"--folds {text!r}: give fold numbers separated by commas, e.g. --folds 0 or 0,1"
        ) from None


@kit_command
def tune(
    member: Annotated[str, typer.Argument(help="the member of kit.yaml whose `tune:` space to search")],
    trials: Annotated[int, typer.Option("--trials", help="finished trials the study should hold")] = 20,
    folds: Annotated[
        str | None,
        typer.Option("--folds", help="folds a trial trains and is scored on, e.g. 0 or 0,1 (default: all)"),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="optuna RDB URL (default sqlite:///WORKDIR/tune/tune.db)"),
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", help="trials run at once by this process")] = 1,
    apply: Annotated[
        bool, typer.Option("--apply", help="write the best values as member MEMBER_tuned into kit.yaml")
    ] = False,
    as_name: Annotated[str | None, typer.Option("--as", help="--apply: the new member's name")] = None,
    config: ConfigOpt = Path("kit.yaml"),
    overrides: SetOpt = None,
) -> None:
    """Search a member's hyperparameters (optuna: TPE sampler, median pruning on the per-epoch fold metric).

    The study lives in --storage: run the same command again to resume, or on several machines at once.
    Plots go to workdir/tune/MEMBER/. Recommended: tune on one fold, train the result on all of them.

    Example: `kit tune convnext --trials 20 --folds 0`, then `kit tune convnext --folds 0 --apply` and
    `kit train convnext_tuned`
    """
    cfg = load(config, overrides)
    chosen = _folds(folds)
    if apply:
        from kit.tune.apply import apply_best
        from kit.tune.study import load_study

        ts = load_study(cfg, member, chosen, storage)
        done = apply_best(config, ts, as_name)
        console.print(
            f"[green]wrote[/] members.{done.name} into {done.path} (trial {done.trial}, "
            f"{cfg.competition.scored_by} {done.value:.4f}): {done.values}",
            highlight=False,
        )
        console.print(f"next: `kit train {done.name}`, then `kit runs`", highlight=False)
        return
    from kit.cli.progress import RichReporter
    from kit.tune.study import tune as run_tune

    rep = RichReporter(console) if jobs == 1 else _LinesOnly()
    print_tune(run_tune(cfg, member, trials, folds=chosen, storage=storage, jobs=jobs, reporter=rep))


class _LinesOnly:
    """--jobs > 1: trials run in threads, so summary lines only (no nested progress bars)."""

    def __init__(self) -> None:
        from kit.progress import NullReporter

        self._null = NullReporter()

    def task(self, description: str, total: int | None = None):  # type: ignore[no-untyped-def]
        return self._null.task(description, total)

    def line(self, text: str) -> None:
        console.print(text, highlight=False)


def print_tune(r: TuneResult) -> None:
    from rich.table import Table

    t = Table(title=f"study {r.study} ({r.storage}): {r.metric}, {r.direction}, folds {r.folds} of {r.k}")
    t.add_column("trial", justify="right")
    t.add_column("state")
    t.add_column(r.metric, justify="right")
    t.add_column("parameters", overflow="fold")
    t.add_column("seconds", justify="right")
    t.add_column("process", justify="right")
    for row in r.trials:
        mark = " ←" if r.best is not None and row.number == r.best.number else ""
        t.add_row(
            f"{row.number}{mark}",
            row.state.lower(),
            "-" if row.value is None else f"{row.value:.4f}",
            ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.params.items())
            + (f" ({row.note})" if row.note else ""),
            "-" if row.seconds is None else f"{row.seconds:.1f}",
            str(row.pid or "-"),
        )
    console.print(t)
    console.print(f"this process finished {r.ran} trial(s)", highlight=False)
    if r.best is not None:
        console.print(
            f"best: trial {r.best.number}, {r.metric} {r.best.value:.4f}: {r.best.params}", highlight=False
        )
    for p in r.plots:
        console.print(f"[green]wrote[/] {p}", highlight=False)
    for n in r.notes:
        console.print(f"[yellow]note:[/] {n}", highlight=False)
    folds = ",".join(map(str, r.folds))
    console.print(
        f"next: `kit tune {r.member} --folds {folds} --apply` writes members.{r.member}_tuned",
        highlight=False,
    )
