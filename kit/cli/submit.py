"""`kit submit`, `kit check-submission`, `kit submissions`: leaderboard CSVs shaped like sample_submission.csv."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kit.cli.app import AllowStaleOpt, ConfigOpt, SetOpt, app, console, err_console, kit_command, load
from kit.errors import KitError


@app.command()
@kit_command
def submit(
    ensemble: Annotated[
        Path | None,
        typer.Argument(help="ensemble spec whose `kit blend` result to submit, e.g. ensembles/all.yaml"),
    ] = None,
    member: Annotated[
        str | None, typer.Option("--member", "-m", help="submit one trained member instead")
    ] = None,
    config: ConfigOpt = Path("kit.yaml"),
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="file to write (default submissions/NAME-TIME.csv)")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="replace an existing submission that `kit submit` wrote")
    ] = False,
    overrides: SetOpt = None,
    allow_stale: AllowStaleOpt = False,
) -> None:
    """Write the submission CSV in the exact shape of the sample submission, validated, with a sidecar.

    `--out` never writes over the competition's files, the workdir, or a file kit did not write.

    Example: `kit submit ensembles/all.yaml` or `kit submit --member convnext --out sub.csv`
    """
    from kit.submit.make import make_submission

    if ensemble is not None and member is not None:
        raise KitError("give an ensemble spec or --member NAME, not both")
    res = make_submission(
        load(config, overrides),
        ensemble,
        member=member,
        out=out,
        force=force,
        allow_stale=allow_stale,
    )
    src = res.source
    score = f"{src.cv_score:.4f}" if src.cv_score is not None else "n/a"
    console.print(f"[green]wrote[/] {res.path} ({res.n_rows} rows, {res.layout.kind})", highlight=False)
    if res.layout.note:
        console.print(f"  {res.layout.note}", highlight=False)
    console.print(f"  {src.kind} '{src.name}': {src.metric} {score} ({src.score_kind})", highlight=False)
    for w in res.warnings:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False)


@app.command("check-submission")
@kit_command
def check_submission(
    file: Annotated[Path, typer.Argument(help="the CSV to check")],
    config: ConfigOpt = Path("kit.yaml"),
    overrides: SetOpt = None,
) -> None:
    """Validate a CSV against the config's sample submission: header, every id once, values allowed.

    Example: `kit check-submission submissions/all-20250101-120000.csv -c kit.yaml`
    """
    from kit.submit.make import check_submission_file

    rep, layout, sample = check_submission_file(load(config, overrides), file)
    console.print(f"[green]✓[/] {file}: {rep.n_rows} rows, {layout.describe(sample.header)}", highlight=False)
    for w in rep.warnings:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False)


@app.command()
@kit_command
def submissions(
    folder: Annotated[Path, typer.Option("--dir", help="where `kit submit` wrote them")] = Path(
        "submissions"
    ),
) -> None:
    """List written submissions with their CV scores, best first: pick your final two by CV.

    Example: `kit submissions --dir submissions`
    """
    from rich.table import Table

    from kit.submit.write import list_submissions

    records = list_submissions(folder)
    if not records:
        raise KitError(f"no submissions in {folder}; write one with `kit submit ensembles/NAME.yaml`")
    t = Table(title=f"submissions in {folder}")
    t.add_column("file", no_wrap=True)
    t.add_column("source")
    t.add_column("CV", justify="right")
    t.add_column("metric")
    t.add_column("kind")
    t.add_column("created")
    for r in records:
        cv = f"{r.score:.4f}" if r.score is not None else "-"
        t.add_row(
            r.path.name,
            r.source,
            cv,
            f"{r.metric or ''} ({r.score_kind or '?'})",
            r.kind or "",
            (r.created or "")[:16].replace("T", " "),
        )
    console.print(t)
