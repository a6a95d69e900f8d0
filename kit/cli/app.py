"""The `kit` command line. Thin commands: parse typed options, call one library function, print with rich.

The command modules (kit/cli/*.py) define plain functions over kit.cli.common; this module registers them, in
the order `kit --help` lists them, and imports them by name, so a missing module fails loudly. Heavy libraries
(torch, timm, open_clip) are imported inside the commands that need them, so `kit --help` and `kit validate`
start instantly. `KitError` is caught by kit.cli.common.kit_command and, while Typer parses, by `main`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from kit.cli.blend import blend
from kit.cli.common import err_console
from kit.cli.demo import demo
from kit.cli.predict import export, predict
from kit.cli.report import report
from kit.cli.submit import check_submission, submissions, submit
from kit.cli.train import runs, train
from kit.cli.tune import tune
from kit.cli.workspace import folds, init, validate
from kit.errors import KitError

app = typer.Typer(
    name="kit",
    help="From a folder of images to a leaderboard-ready CSV: `kit init DATA_DIR`, `kit train`, "
    "`kit blend ensembles/NAME.yaml`, `kit submit`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

# in `kit --help`'s order; each name comes from its function (check_submission: check-submission)
COMMANDS: list[Callable[..., None]] = [
    init, validate, folds, demo, train, runs, blend, submit, check_submission, submissions, report, predict,
    export, tune,
]  # fmt: skip
for command in COMMANDS:
    app.command()(command)


def main() -> None:
    try:
        app()
    except KitError as e:  # raised while Typer parses (callbacks)
        err_console.print(f"error: {e}", highlight=False, markup=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
