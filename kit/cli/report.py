"""`kit report`: one self-contained HTML page of the workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kit.cli.common import ConfigOpt, SetOpt, console, kit_command, load


@kit_command
def report(
    config: ConfigOpt = Path("kit.yaml"),
    overrides: SetOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="where to write the page (default: workdir/report.html)"),
    ] = None,
    submissions: Annotated[
        Path, typer.Option("--submissions", help="where `kit submit` wrote the submissions")
    ] = Path("submissions"),
    open_: Annotated[
        bool, typer.Option("--open", help="open the page in the web browser (BROWSER names one)")
    ] = False,
) -> None:
    """Write one self-contained HTML page of what the models get wrong: scores, per-class F1, confusions,
    blends, calibration, the most confidently wrong images, label issues, near-duplicates, CV against LB.

    Example: `kit report --open`
    """
    from kit.report.build import build_report

    cfg = load(config, overrides)
    r = build_report(cfg, out, submissions)
    console.print(f"[green]wrote[/] {r.path} ({r.size / 1e6:.2f} MB, {r.seconds:.1f}s)", highlight=False)
    for s in r.missing():
        console.print(f"  [yellow]{s.id}[/]: ", end="", highlight=False)
        console.print(s.missing, highlight=False, markup=False)
    for f in r.files:
        console.print(f"[green]wrote[/] {f}", highlight=False)
    if open_:
        import webbrowser

        if not webbrowser.open(r.path.resolve().as_uri()):
            console.print(f"no web browser found; open {r.path} yourself (or set BROWSER)", highlight=False)
