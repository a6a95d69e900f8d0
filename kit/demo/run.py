"""`kit demo`: build the digits competition, then run the whole loop on it: folds, train every member,
blend (ensembles/all.yaml), submit, and score the submission against the held-back answers."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from kit.config.load import load_config
from kit.data.workspace import open_workspace
from kit.demo.digits import build_demo
from kit.errors import KitError
from kit.metrics import accuracy, macro_f1, weighted_f1

DEMO_ENSEMBLE = Path("ensembles") / "all.yaml"


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


def run_demo(
    out: Path,
    config: Path,
    *,
    data_only: bool,
    force: bool,
    console: Console,
    overrides: list[str] | None = None,
) -> dict[str, object]:
    t0 = time.perf_counter()
    build_demo(out, force=force)
    console.print(f"[green]demo competition[/] in {out}")
    if data_only:
        return {}
    if not config.exists():
        raise KitError(f"{config} not found; run `kit demo` from the repository root, or pass -c kit.yaml")
    ensemble = config.parent / DEMO_ENSEMBLE
    if not ensemble.exists():
        raise KitError(f"{ensemble} not found; run `kit demo` from the repository root")
    overrides = [f"competition.root={out.resolve()}", *(overrides or [])]
    cfg = load_config(config, overrides)

    from kit.blend.report import print_summary
    from kit.blend.run import run_blend
    from kit.submit.make import make_submission
    from kit.train.embeddings import write_tiny_clip
    from kit.train.progress import RichReporter
    from kit.train.run import train_members
    from kit.train.runs import print_runs

    write_tiny_clip(cfg.workdir / "clip-tiny")  # random-init CLIP for the demo's clip member (no download)
    console.rule("train")
    train_members(cfg, None, RichReporter(console))
    print_runs(cfg, console)
    console.rule("blend")
    result = run_blend(ensemble, config, overrides)
    print_summary(result, console)
    console.rule("submit")
    sub = make_submission(cfg, ensemble=ensemble)
    classes = open_workspace(cfg, write=False).classes
    test_scores = score_against_answers(sub.path, out / "answers" / "test_answers.csv", classes)
    console.print(f"[green]wrote[/] {sub.path}", highlight=False)
    console.rule("scores")
    metric = cfg.competition.metric
    console.print(
        f"blend '{ensemble.stem}': nested-CV {metric} {sub.source.cv_score:.4f}; on the held-back test "
        f"answers: weighted F1 {test_scores['weighted_f1']:.4f}, macro F1 {test_scores['macro_f1']:.4f}, "
        f"accuracy {test_scores['accuracy']:.4f}  ({time.perf_counter() - t0:.0f} s in all)",
        highlight=False,
    )
    return {"submission": sub.path, "nested": sub.source.cv_score, "test": test_scores}
