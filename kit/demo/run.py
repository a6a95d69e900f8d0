"""`kit demo`'s folder and scores: build a self-contained demo folder, load its config, and score a submission
against the held-back answers (the `kit demo` command, kit.cli.demo, runs train, blend and submit between).

The demo folder (default data/demo) holds its own kit.yaml, ensembles/all.yaml, data/ (the competition),
work/ (its workdir) and submissions/: the demo never reads the kit.yaml of the folder it runs in and never
writes outside its own folder.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from kit.artifacts.atomic import atomic_write_json, atomic_write_text
from kit.artifacts.workdir import claim_workdir
from kit.config.load import load_config
from kit.config.schema import KitConfig
from kit.demo.digits import DEMO_MARKER, build_demo, check_demo_target, is_demo_folder, marker_record
from kit.errors import KitError
from kit.metrics import accuracy, macro_f1, weighted_f1
from kit.workspace import open_workspace

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


def demo_run_config(out: Path, overrides: list[str] | None = None) -> KitConfig:
    """The demo folder's config (kit.yaml plus the `--set` overrides for it), its workdir checked to lie inside
    `out`, and the tiny random-init CLIP its clip member loads written there (no download)."""
    cfg = load_config(out / "kit.yaml", overrides)
    home = out.resolve()
    if home not in cfg.workdir.parents:
        raise KitError(
            f"the demo's workdir {cfg.workdir} is outside its folder {home}; the demo writes only inside its "
            f"folder: keep `workdir: work` in {out / 'kit.yaml'} and drop --set workdir"
        )
    if any(m.kind == "clip_probe" for m in cfg.members.values()):
        from kit.demo.tiny_clip import write_tiny_clip

        claim_workdir(cfg.workdir)  # the tiny CLIP is the first thing the demo writes into its workdir
        write_tiny_clip(cfg.workdir / "clip-tiny")
    return cfg


def score_demo_submission(cfg: KitConfig, out: Path, submission: Path) -> dict[str, float]:
    """The demo submission's scores on the held-back test answers of the demo folder `out`."""
    classes = open_workspace(cfg, write=False).classes
    return score_against_answers(submission, out / DEMO_DATA / "answers" / "test_answers.csv", classes)
