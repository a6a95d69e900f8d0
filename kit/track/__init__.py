"""Experiment tracking: one small `Tracker` interface, one class per backend, files on disk only.

`tracking: {kind: none | tensorboard | mlflow | wandb, dir: ..., project: ...}` in kit.yaml picks the backend
(docs/tracking.md). `open_tracker` is called at the top of `kit train`, `kit blend` and `kit submit` (so a
missing package is an error before any work) and closed at the end. What is logged:

    train    per fold and epoch: MEMBER/foldF/{loss, METRIC, lr, images_per_s} (step = epoch), through the
             epoch hook of kit.progress (`TrackingReporter`); per member: MEMBER/oof/* and MEMBER/f1/*
    blend    the selection table (one row per blender) and blend/NAME/{nested, selection_aware, insample}
    submit   submission/cv_score and the submitted file's name

The backends' packages are optional (`pip install 'kit[track]'`) and imported only when chosen.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kit.errors import KitError
from kit.progress import ForwardingReporter

if TYPE_CHECKING:
    from kit.config.schema import KitConfig
    from kit.progress import EpochEvent, Reporter

EXTRA = "kit[track]"
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}  # kind -> module it needs


class Tracker(Protocol):
    """Where kit's numbers go. `step` is the epoch for per-epoch values and None for one-off summaries."""

    def scalars(self, values: dict[str, float], step: int | None = None) -> None: ...

    def table(self, name: str, rows: list[dict[str, Any]]) -> None: ...

    def text(self, name: str, value: str) -> None: ...

    def close(self) -> None: ...


class NullTracker:
    """tracking.kind: none."""

    def scalars(self, values: dict[str, float], step: int | None = None) -> None:
        pass

    def table(self, name: str, rows: list[dict[str, Any]]) -> None:
        pass

    def text(self, name: str, value: str) -> None:
        pass

    def close(self) -> None:
        pass


def safe_key(key: str) -> str:
    """A metric key every backend accepts (MLflow allows letters, digits, _ - . space : /)."""
    return re.sub(r"[^\w\-. :/]", "_", key)


def check_tracking(cfg: KitConfig) -> None:
    """The chosen backend's package is importable, else a KitError naming the extra to install."""
    kind = cfg.tracking.kind
    module = PACKAGES.get(kind)
    if module is not None and importlib.util.find_spec(module) is None:
        raise KitError(
            f"tracking.kind: {kind} needs the `{module}` package, which is not installed; install the extra "
            f"with `pip install '{EXTRA}'` (or `pip install {module}`), or set tracking.kind: none"
        )


def tracking_dir(cfg: KitConfig) -> Path:
    return cfg.tracking.dir or cfg.workdir / "tracking" / cfg.tracking.kind


def open_tracker(cfg: KitConfig, run_name: str) -> Tracker:
    """The tracker kit.yaml's `tracking:` asks for, writing under `tracking_dir(cfg)`."""
    kind = cfg.tracking.kind
    if kind == "none":
        return NullTracker()
    check_tracking(cfg)
    folder = tracking_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "tensorboard":
        from kit.track.tensorboard import TensorBoardTracker

        return TensorBoardTracker(folder, run_name)
    if kind == "mlflow":
        from kit.track.mlflow import MlflowTracker

        return MlflowTracker(folder, cfg.tracking.project, run_name)
    from kit.track.wandb import WandbTracker

    return WandbTracker(folder, cfg.tracking.project, run_name)


@contextmanager
def tracking(cfg: KitConfig, run_name: str) -> Iterator[Tracker]:
    """open_tracker(...), closed at the end (also when the command fails)."""
    tracker = open_tracker(cfg, run_name)
    try:
        yield tracker
    finally:
        tracker.close()


class TrackingReporter(ForwardingReporter):
    """A Reporter that passes tasks, lines and epochs on to `inner` and logs every finished epoch to `tracker`."""

    def __init__(self, inner: Reporter, tracker: Tracker) -> None:
        super().__init__(inner)
        self.tracker = tracker

    def epoch(self, event: EpochEvent) -> None:
        p = f"{event.member}/fold{event.fold}"
        self.tracker.scalars(
            {
                f"{p}/loss": event.loss,
                f"{p}/{event.metric}": event.score,
                f"{p}/lr": event.lr,
                f"{p}/images_per_s": event.images_per_s,
            },
            step=event.epoch,
        )
        super().epoch(event)  # a reporter below that also wants epochs (kit tune's)


def log_member(tracker: Tracker, name: str, metrics: dict[str, Any]) -> None:
    """A trained member's pooled OOF scores and per-class F1 (meta.json's `metrics`)."""
    values = {f"{name}/oof/{k}": float(v) for k, v in (metrics.get("pooled") or {}).items()}
    values |= {f"{name}/f1/{c}": float(v) for c, v in (metrics.get("per_class_f1") or {}).items()}
    tracker.scalars(values)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(empty)"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
