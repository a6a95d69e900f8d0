"""What every command module shares: the consoles, the common options, `load` and the `kit_command` decorator
(the one place KitError becomes a clean message). kit.cli.app registers the commands; nothing here knows them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from kit.errors import KitError, clip, describe_os_error

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

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
