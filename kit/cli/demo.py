"""`kit demo`: build the digits competition in its own folder, then run the whole loop there (folds, train
every member, blend ensembles/all.yaml, submit, report) and score the submission against the held-back answers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from kit.cli.common import SetOpt, console, kit_command


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
    from kit.demo.run import (
        DEMO_DATA,
        DEMO_ENSEMBLE,
        SUBMISSIONS,
        demo_run_config,
        prepare_demo_folder,
        score_demo_submission,
    )

    t0 = time.perf_counter()
    prepare_demo_folder(out, force=force)
    console.print(
        f"[green]demo folder[/] {out}: kit.yaml, {DEMO_ENSEMBLE}, {DEMO_DATA}/ (the competition)",
        highlight=False,
    )
    if data_only:
        console.print(
            f"next: `cd {out}`, then `kit train`, or run the whole loop with `kit demo --out {out}`"
        )
        return
    from kit.blend.run import run_blend, split_overrides
    from kit.cli.progress import RichReporter
    from kit.cli.render import print_blend, print_runs
    from kit.report.build import build_report
    from kit.runs import collect_runs
    from kit.submit.make import make_submission
    from kit.train.run import train

    spec_overrides, cfg_overrides = split_overrides(overrides)  # `--set spec.KEY=...` goes to the blend
    cfg = demo_run_config(out, cfg_overrides)
    ensemble = out / DEMO_ENSEMBLE
    console.rule("train")
    train(cfg, None, RichReporter(console))
    print_runs(collect_runs(cfg), cfg.workdir, cfg.competition.scored_by, console)
    console.rule("blend")
    print_blend(run_blend(cfg, ensemble, overrides=spec_overrides), console)
    console.rule("submit")
    sub = make_submission(cfg, ensemble=ensemble, folder=out / SUBMISSIONS)
    test_scores = score_demo_submission(cfg, out, sub.path)
    console.print(f"[green]wrote[/] {sub.path}", highlight=False)
    console.rule("scores")
    metric = cfg.competition.scored_by
    console.print(
        f"blend '{ensemble.stem}': {sub.source.score_kind} {metric} {sub.source.cv_score:.4f}; on the held-back test "
        f"answers: weighted F1 {test_scores['weighted_f1']:.4f}, macro F1 {test_scores['macro_f1']:.4f}, "
        f"accuracy {test_scores['accuracy']:.4f}  ({time.perf_counter() - t0:.0f} s in all)",
        highlight=False,
    )
    report = build_report(cfg, submissions=out / SUBMISSIONS)
    console.print(f"[green]wrote[/] {report.path}: what the models get wrong, on one page", highlight=False)
    console.print(
        f"next: `cd {out}`, then `kit report --open`, `kit runs`, `kit blend ensembles/all.yaml`, `kit submissions`"
    )
