"""`kit submit`, `kit check-submission`, `kit submissions`: leaderboard CSVs shaped like sample_submission.csv."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from kit.cli.common import AllowStaleOpt, ConfigOpt, SetOpt, console, err_console, kit_command, load
from kit.errors import KitError

if TYPE_CHECKING:
    from kit.submit.source import Source


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
    console.print(f"[green]wrote[/] {res.path} ({res.n_rows} rows, {res.layout.kind})", highlight=False)
    if res.layout.note:
        console.print(f"  {res.layout.note}", highlight=False)
    console.print(f"  {score_line(res.source)}", highlight=False, markup=False)
    for w in res.warnings:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False)


def score_line(src: Source) -> str:
    """The CV a submission is picked by, labelled by what it estimates (kit.submit.write's score kinds)."""
    from kit.submit.write import SELECTION_AWARE, WINNER_NESTED

    score = f"{src.cv_score:.4f}" if src.cv_score is not None else "n/a"
    ci = f" [{src.cv_interval[0]:.4f}, {src.cv_interval[1]:.4f}]" if src.cv_interval else ""
    line = f"{src.kind} '{src.name}': {src.metric} {score}{ci} ({src.score_kind}"
    nested = src.details.get("nested_score")
    if src.score_kind == SELECTION_AWARE:
        line += ": the blender choice repeated inside each outer fold)"
        if isinstance(nested, (int, float)):
            line += f"; the winner's own nested CV {nested:.4f} is optimistic (the winner was picked by it)"
    elif src.score_kind == WINNER_NESTED:
        line += "; this blend predates the selection-aware estimate: run `kit blend` again for it)"
    else:
        line += ")"
    return line


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


@kit_command
def submissions(
    folder: Annotated[Path, typer.Option("--dir", help="where `kit submit` wrote them")] = Path(
        "submissions"
    ),
    lb: Annotated[
        tuple[str, str] | None,
        typer.Option(
            "--lb",
            metavar="FILE SCORE",
            help="record the public leaderboard SCORE of FILE (a CSV `kit submit` wrote, or its name in --dir); "
            "a later --lb replaces it, the sidecar keeps every one with its time",
        ),
    ] = None,
    note: Annotated[
        str | None, typer.Option("--note", help="with --lb: a note kept beside the score, e.g. 'public 30%'")
    ] = None,
) -> None:
    """List written submissions with their CV and public leaderboard (LB) scores, best CV first: pick your final
    two by CV.

    A blend's CV is its selection-aware estimate (the blender choice repeated inside each outer fold), a
    member's its pooled OOF score; blend sidecars from a kit that recorded only the winner's own (optimistic)
    nested score come after them, labelled so. A warning names every pair where the leaderboard prefers one
    submission while CV prefers the other beyond its interval (docs/submit.md, "CV against the leaderboard").

    Example: `kit submissions --dir submissions`, or record a score:
    `kit submissions --lb all-20260101-120000.csv 0.8123 --note "public 30%"`
    """
    from kit.cli.render import print_submissions
    from kit.submit.leaderboard import (
        ADVICE,
        lb_contradictions,
        parse_lb_score,
        record_lb,
        resolve_submission,
    )
    from kit.submit.write import list_submissions

    if note is not None and lb is None:
        raise KitError("--note goes with --lb FILE SCORE: `kit submissions --lb FILE SCORE --note TEXT`")
    if lb is not None:
        path = resolve_submission(Path(lb[0]), folder)
        done = record_lb(path, parse_lb_score(lb[1]), note=note)
        r = done.record
        line = f"recorded LB {r.lb:.4f} for {path}"
        if done.replaced is not None:
            line += (
                f" (replaces {done.replaced.score:.4f} recorded {done.replaced.recorded}; "
                f"{len(r.lb_history)} scores kept in {path.name}.json)"
            )
        console.print(line, highlight=False, markup=False)
        folder = path.parent
    records = list_submissions(folder)
    if not records:
        raise KitError(f"no submissions in {folder}; write one with `kit submit ensembles/NAME.yaml`")
    print_submissions(records, folder, console)
    found = lb_contradictions(records)
    for c in found:
        err_console.print(f"[yellow]warning:[/] {escape(c.message())}", highlight=False)
    if found:
        err_console.print(f"  {ADVICE}", highlight=False, markup=False)
