"""`kit demo`: build a self-contained demo folder, then run the whole loop inside it: folds, train every
member, blend (ensembles/all.yaml), submit, and score the submission against the held-back answers.

The demo folder (default data/demo) holds its own kit.yaml, ensembles/all.yaml, data/ (the competition),
work/ (its workdir) and submissions/: the demo never reads the kit.yaml of the folder it runs in and never
writes outside its own folder.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from kit.artifacts.atomic import atomic_write_json, atomic_write_text
from kit.artifacts.workdir import claim_workdir
from kit.config.load import load_config
from kit.data.workspace import open_workspace
from kit.demo.digits import DEMO_MARKER, build_demo, check_demo_target, is_demo_folder, marker_record
from kit.errors import KitError
from kit.metrics import accuracy, macro_f1, weighted_f1

DEMO_ENSEMBLE = Path("ensembles") / "all.yaml"
DEMO_DATA = "data"
SUBMISSIONS = "submissions"


def read_labels(path: Path, id_col: str, label_col: str) -> dict[str, str]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return {row[id_col]: row[label_col] for row in csv.DictReader(f)}


def score_against_answers(submission: Path, answers: Path, classes: list[str]) -> dict[str, float]:
    """Weighted/macro F1 and accuracy of a label submission against the held-back answers."""
    truth = read_labels(answers, "id", "label")
    pred = read_labels(submission, "id", "label")
    missing = sorted(set(truth) - set(pred))
    if missing:
        raise KitError(f"{submission}: ids {missing[:5]} of the answers are missing from the submission")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[truth[i]] for i in truth])
    p = np.array([index[pred[i]] for i in truth])
    n = len(classes)
    return {"weighted_f1": weighted_f1(y, p, n), "macro_f1": macro_f1(y, p, n), "accuracy": accuracy(y, p, n)}


def demo_config_text() -> str:
    """The demo's kit.yaml (kit/templates/demo_kit.yaml; the repository's kit.yaml has the same settings)."""
    return (Path(__file__).resolve().parents[1] / "templates" / "demo_kit.yaml").read_text("utf-8")


def prepare_demo_folder(out: Path, *, force: bool = False) -> Path:
    """Make `out` a self-contained demo folder and return its kit.yaml.

    out/.kit-demo.json (marker), out/kit.yaml, out/ensembles/all.yaml, out/data/ (the competition); training
    later fills out/work/ and out/submissions/. A non-empty folder without the marker is refused, `force`
    included; `force` on a demo folder rewrites only what kit wrote there (kit.yaml, the spec, data/).
    """
    from kit.data.layout import default_ensemble_text

    check_demo_target(out)
    check_demo_target(out / DEMO_DATA)
    out.mkdir(parents=True, exist_ok=True)
    if not is_demo_folder(out):
        atomic_write_json(out / DEMO_MARKER, marker_record("a kit demo folder"))
    config = out / "kit.yaml"
    if force or not config.exists():
        atomic_write_text(config, demo_config_text())
    ensemble = out / DEMO_ENSEMBLE
    if force or not ensemble.exists():
        atomic_write_text(ensemble, default_ensemble_text())
    build_demo(out / DEMO_DATA, force=force)
    return config


def run_demo(
    out: Path,
    *,
    data_only: bool,
    force: bool,
    console: Console,
    overrides: list[str] | None = None,
) -> dict[str, object]:
    """Build the demo folder `out` and run the whole loop inside it; nothing is written outside `out`."""
    t0 = time.perf_counter()
    config = prepare_demo_folder(out, force=force)
    console.print(
        f"[green]demo folder[/] {out}: kit.yaml, {DEMO_ENSEMBLE}, {DEMO_DATA}/ (the competition)",
        highlight=False,
    )
    if data_only:
        console.print(
            f"next: `cd {out}`, then `kit train`, or run the whole loop with `kit demo --out {out}`"
        )
        return {}
    ensemble = out / DEMO_ENSEMBLE
    from kit.blend.run import split_overrides

    cfg = load_config(config, split_overrides(overrides)[1])  # `--set spec.KEY=...` goes to the blend
    home = out.resolve()
    if home not in cfg.workdir.parents:
        raise KitError(
            f"the demo's workdir {cfg.workdir} is outside its folder {home}; the demo writes only inside its "
            f"folder: keep `workdir: work` in {config} and drop --set workdir"
        )

    from kit.blend.run import run_blend
    from kit.cli.progress import RichReporter
    from kit.cli.render import print_blend, print_runs
    from kit.demo.tiny_clip import write_tiny_clip
    from kit.submit.make import make_submission
    from kit.train.run import train
    from kit.train.runs import collect_runs

    if any(m.kind == "clip_probe" for m in cfg.members.values()):
        claim_workdir(cfg.workdir)  # the tiny CLIP is the first thing the demo writes into its workdir
        write_tiny_clip(
            cfg.workdir / "clip-tiny"
        )  # random-init CLIP for the demo's clip member (no download)
    console.rule("train")
    train(cfg, None, RichReporter(console))
    print_runs(collect_runs(cfg), cfg.workdir, cfg.competition.scored_by, console)
    console.rule("blend")
    result = run_blend(cfg, ensemble, overrides=split_overrides(overrides)[0])
    print_blend(result, console)
    console.rule("submit")
    sub = make_submission(cfg, ensemble=ensemble, folder=out / SUBMISSIONS)
    classes = open_workspace(cfg, write=False).classes
    answers = out / DEMO_DATA / "answers" / "test_answers.csv"
    test_scores = score_against_answers(sub.path, answers, classes)
    console.print(f"[green]wrote[/] {sub.path}", highlight=False)
    console.rule("scores")
    metric = cfg.competition.scored_by
    console.print(
        f"blend '{ensemble.stem}': {sub.source.score_kind} {metric} {sub.source.cv_score:.4f}; on the held-back test "
        f"answers: weighted F1 {test_scores['weighted_f1']:.4f}, macro F1 {test_scores['macro_f1']:.4f}, "
        f"accuracy {test_scores['accuracy']:.4f}  ({time.perf_counter() - t0:.0f} s in all)",
        highlight=False,
    )
    console.print(f"next: `cd {out}`, then `kit runs`, `kit blend ensembles/all.yaml`, `kit submissions`")
    return {"submission": sub.path, "nested": sub.source.cv_score, "test": test_scores}
