"""The `kit` command line. Thin commands: parse typed options, call one library function, print with rich.

Heavy libraries (torch, timm, open_clip) are imported inside the commands that need them, so `kit --help`
and `kit validate` start instantly. `KitError` is caught here and only here.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from kit.errors import KitError, clip, describe_os_error, first_shown

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

app = typer.Typer(
    name="kit",
    help="From a folder of images to a leaderboard-ready CSV: `kit init DATA_DIR`, `kit train`, "
    "`kit blend ensembles/NAME.yaml`, `kit submit`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="workspace config", show_default=True)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="override a config key, e.g. `--set members.convnext.epochs=1` (repeatable)"),
]

AllowStaleOpt = Annotated[
    bool,
    typer.Option(
        "--allow-stale",
        help="use members (or a blend) made with another kit.yaml config; changed keys are printed as warnings",
    ),
]


def _show_warning(
    message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    err_console.print("[yellow]warning:[/] ", end="")
    err_console.print(clip(str(message)), highlight=False, markup=False)


def kit_command(fn: F) -> F:
    """Turn KitError into a clean message and exit code 1; print warnings without source lines."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        warnings.showwarning = _show_warning
        try:
            return fn(*args, **kwargs)
        except KitError as e:
            err_console.print("[bold red]error:[/] ", end="")
            err_console.print(str(e), highlight=False, markup=False)
            raise typer.Exit(1) from None
        except OSError as e:  # full or read-only disks, permissions, long names: the path and the fix
            err_console.print("[bold red]error:[/] ", end="")
            err_console.print(describe_os_error(e), highlight=False, markup=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print(
                "\n[yellow]interrupted[/]: finished folds and epoch checkpoints are kept; "
                "run the same command again to resume"
            )
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def load(config: Path, overrides: list[str] | None) -> Any:
    from kit.config.load import load_config

    return load_config(config, overrides)


@app.command()
@kit_command
def init(
    data_dir: Annotated[Path, typer.Argument(help="the competition's data folder")],
    out: Annotated[Path, typer.Option("--out", "-o", help="where to write the config")] = Path("kit.yaml"),
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Inspect a competition folder and write a commented kit.yaml.

    Example: `kit init data/dacon-wallpaper --out kit.yaml`
    """
    from kit.data.layout import write_kit_yaml

    g = write_kit_yaml(data_dir, out, force=force)
    console.print(f"[green]wrote[/] {out}")
    for n in g.notes:  # notes quote file and class names, which may hold [brackets]: never markup
        console.print("  [cyan]found[/] ", end="")
        console.print(n, highlight=False, markup=False)
    for m in g.missing:
        console.print("  [yellow]not found[/] ", end="")
        console.print(m, highlight=False, markup=False)
    for w in g.wrote:
        console.print(f"[green]wrote[/] {w} (blend every trained member, the winner picked by nested CV)")
    cfg = "" if out == Path("kit.yaml") else f" -c {out}"
    console.print(
        f"next: check {out}, then `kit validate{cfg}`, `kit train{cfg}`, `kit blend ensembles/all.yaml{cfg}`, "
        f"`kit submit ensembles/all.yaml{cfg}`",
        highlight=False,
    )


@app.command()
@kit_command
def validate(
    files: Annotated[
        list[Path] | None, typer.Argument(help="configs to check (default: kit.yaml and ensembles/*.yaml)")
    ] = None,
    overrides: SetOpt = None,
) -> None:
    """Check kit.yaml and ensemble specs without running anything; lists every problem at once.

    Example: `kit validate kit.yaml ensembles/all.yaml`
    """
    from kit.validate import validate_files

    targets = files or [
        p for p in [Path("kit.yaml"), *sorted(Path("ensembles").glob("*.yaml"))] if p.exists()
    ]
    if not targets:
        raise KitError("nothing to validate: no kit.yaml here and no ensembles/*.yaml; pass a file")
    failed = 0
    for r in validate_files(targets, overrides):
        if r.problems:
            failed += 1
            err_console.print(f"[red]✗[/] {r.path} ({r.kind}): {len(r.problems)} problem(s)", highlight=False)
            items, rest = first_shown(r.problems)
            for p in items:
                err_console.print(f"    {p}", highlight=False, markup=False)
            if rest:
                err_console.print(f"    ... and {rest} more", highlight=False)
        else:
            console.print(f"[green]✓[/] {r.path} ({r.kind})", highlight=False)
        for note in r.notes:
            console.print(f"    {note}", highlight=False, markup=False)
        for w in first_shown(r.warnings)[0]:
            console.print("    [yellow]warning:[/] ", end="")
            console.print(w, highlight=False, markup=False)
    if failed:
        raise typer.Exit(1)


@app.command()
@kit_command
def folds(config: ConfigOpt = Path("kit.yaml"), overrides: SetOpt = None) -> None:
    """Assign folds (stratified, group-aware) and write workdir/folds.csv; shows per-fold class counts.

    Example: `kit folds -c kit.yaml --set folds.k=3`
    """
    import numpy as np
    from rich.table import Table

    from kit.cv.folds import folds_table_path
    from kit.data.workspace import open_workspace

    cfg = load(config, overrides)
    ws = open_workspace(cfg, need_test=bool(cfg.competition.extra_train))  # test: duplicates of extra data
    y = ws.train.labels
    t = Table(
        title=f"{ws.folds.k} folds ({'grouped by ' + str(ws.cfg.competition.group_column) if ws.folds.grouped else 'stratified'})"
    )
    t.add_column("label" if ws.train.multilabel else "class")
    for f in range(ws.folds.k):
        t.add_column(f"fold {f}", justify="right")
    t.add_column("total", justify="right")
    if ws.train.multilabel:  # images carrying each label, per fold
        from kit.cv.multilabel import label_counts_per_fold

        per_fold = label_counts_per_fold(y, ws.folds.fold, ws.folds.k)  # type: ignore[arg-type]
        for c, name in enumerate(ws.classes):
            t.add_row(name, *map(str, per_fold[:, c].tolist()), str(int(per_fold[:, c].sum())))
        sizes = np.bincount(ws.folds.fold, minlength=ws.folds.k)
        t.add_row("(images)", *map(str, sizes.tolist()), str(int(sizes.sum())))
    for c, name in enumerate([] if ws.train.multilabel else ws.classes):
        counts = [int(((ws.folds.fold == f) & (y == c)).sum()) for f in range(ws.folds.k)]  # type: ignore[operator]
        t.add_row(name, *map(str, counts), str(sum(counts)))
    console.print(t)
    if ws.folds.blank_groups:
        console.print(
            f"{ws.folds.blank_groups} row(s) have a blank '{ws.cfg.competition.group_column}': each is its own "
            "group (competition.blank_groups: own; set it to error to refuse them)",
            highlight=False,
        )
    if ws.extra:
        from kit.cli.render import extra_table

        console.print(extra_table(ws.extra, ws.classes))
    console.print(f"wrote {folds_table_path(ws.cfg)} (fingerprint {ws.folds.fingerprint})")


@app.command()
@kit_command
def demo(
    out: Annotated[
        Path, typer.Option(help="the demo folder (its own kit.yaml, data/, work/, submissions/)")
    ] = Path("data/demo"),
    data_only: Annotated[bool, typer.Option("--data-only", help="build the demo folder and stop")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="rebuild the data, kit.yaml and spec of a folder `kit demo` built")
    ] = False,
    overrides: SetOpt = None,
) -> None:
    """Build the long-tailed digits competition in its own demo folder and run the whole loop there.

    The demo never reads or writes the kit.yaml, workdir or submissions of the folder you run it in, and
    refuses a non-empty --out that `kit demo` did not build (--force included).

    Example: `kit demo` (everything lands in data/demo: data/, work/, submissions/)
    """
    from kit.demo.run import run_demo

    run_demo(out, data_only=data_only, force=force, console=console, overrides=overrides)


# Command groups live in their own modules and register on `app` by decoration when imported: imported by
# name, so a missing module fails loudly. They import torch & co. inside their commands, never at the top.
# isort: off
import kit.cli.train  # noqa: E402  (train, runs: listed first in --help)
import kit.cli.blend  # noqa: E402
import kit.cli.submit  # noqa: E402
import kit.cli.predict  # noqa: E402
import kit.cli.tune  # noqa: E402, F401
# isort: on


def main() -> None:
    try:
        app()
    except KitError as e:  # raised while Typer parses (callbacks)
        err_console.print(f"error: {e}", highlight=False, markup=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
