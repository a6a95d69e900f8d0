"""`kit init`, `kit validate`, `kit folds`: a competition folder's config, its checks and its folds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kit.cli.common import ConfigOpt, SetOpt, console, err_console, kit_command, load
from kit.errors import KitError, first_shown


@kit_command
def init(
    data_dir: Annotated[Path, typer.Argument(help="the competition's data folder")],
    out: Annotated[Path, typer.Option("--out", "-o", help="where to write the config")] = Path("kit.yaml"),
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
    no_duplicates: Annotated[
        bool, typer.Option("--no-duplicates", help="skip hashing the train images for near-duplicates")
    ] = False,
) -> None:
    """Inspect a competition folder and write a commented kit.yaml.

    Without a group column, the train images are hashed (pHash) and clusters of near-duplicates (resized,
    recompressed, brightened copies) are written beside the config (kit.groups.csv for kit.yaml) and set as
    competition.groups_file, so each cluster stays in one fold; --no-duplicates skips it.

    Example: `kit init data/dacon-wallpaper --out kit.yaml`
    """
    from kit.data.layout import write_kit_yaml

    g = write_kit_yaml(
        data_dir,
        out,
        force=force,
        duplicates=not no_duplicates,
        report=lambda line: console.print(line, highlight=False, markup=False),
    )
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


@kit_command
def folds(config: ConfigOpt = Path("kit.yaml"), overrides: SetOpt = None) -> None:
    """Assign folds (stratified, group-aware) and write workdir/folds.csv; shows per-fold class counts.

    Example: `kit folds -c kit.yaml --set folds.k=3`
    """
    import numpy as np
    from rich.table import Table

    from kit.cv.folds import folds_table_path
    from kit.workspace import open_workspace

    cfg = load(config, overrides)
    ws = open_workspace(cfg, need_test=bool(cfg.competition.extra_train))  # test: duplicates of extra data
    y = ws.train.labels
    t = Table(
        title=f"{ws.folds.k} folds ({'grouped by ' + str(ws.cfg.competition.groups_source) if ws.folds.grouped else 'stratified'})"
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
