"""What `kit runs` shows: one row per trained member, read from its meta.json (no torch needed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.artifacts.fingerprints import Fingerprints
from kit.artifacts.member import Expected, config_changes, data_changes, list_members, read_meta
from kit.config.schema import KitConfig
from kit.errors import KitError

if TYPE_CHECKING:
    from kit.data.table import Table


@dataclass
class RunRow:
    name: str
    kind: str
    trained: bool
    pooled: dict[str, float] = field(default_factory=dict)
    per_view: dict[str, float] = field(default_factory=dict)
    epochs: list[int] = field(default_factory=list)
    train_s: float | None = None
    worst: list[tuple[str, float]] = field(default_factory=list)
    metric: str = ""
    interval: tuple[float, float, float] | None = None  # (score, low, high) of the competition metric
    stale: list[str] = field(default_factory=list)  # why `kit blend`/`kit submit` would refuse it
    per_label: dict[str, tuple[float, float | None]] = field(default_factory=dict)  # multilabel: F1, AUC
    tuned: str | None = (
        None  # `kit tune --apply` chose its values on (some of) its scored folds: what that costs
    )


def member_intervals(
    cfg: KitConfig, rows: list[RunRow], level: float = 0.95, train: Table | None = None
) -> None:
    """Each trained member's pooled OOF score (plain view) under the competition metric, with a group-bootstrap
    interval (groups from competition.group_column; rows when there is none). `train`: the train table when
    the caller has read it already. Skipped when the train table cannot be read or a member's rows do not
    match it (`kit blend`/`kit submit` name that problem)."""
    import numpy as np

    from kit.artifacts.member import OOF_FILE, member_dir
    from kit.blend.selection import score_interval
    from kit.data.table import load_train
    from kit.errors import KitError
    from kit.metrics.multilabel import sigmoid
    from kit.metrics.scores import softmax

    if train is None:
        try:
            train = load_train(cfg.competition)
        except (KitError, OSError):
            return
    if train.labels is None:
        return
    for r in rows:
        path = member_dir(cfg.workdir, r.name) / OOF_FILE
        if not r.trained or not path.exists():
            continue
        oof = np.load(path, mmap_mode="r")
        if oof.ndim != 3 or len(oof) != len(train.labels):
            continue
        plain = np.asarray(oof[:, 0, :], dtype=np.float64)
        probs = sigmoid(plain) if train.multilabel else softmax(plain)
        r.interval = score_interval(cfg.competition.scored_by, train.labels, probs, train.groups, level=level)


def run_rows(
    workdir: Path, configured: dict[str, Any] | None = None, expected: Expected | None = None
) -> list[RunRow]:
    """Trained members in `workdir` plus configured members without artifacts (trained=False); with
    `expected`, each row says how the member is stale (the checks of kit.artifacts.member.load_member)."""
    from kit.artifacts.tuned import applied_records, tuning_note

    tuned = applied_records(workdir)
    rows = []
    for name in list_members(workdir):
        meta = read_meta(workdir, name)
        stale = []
        if expected is not None:
            stale = data_changes(meta, expected) + config_changes(name, meta, expected)
        m = meta.get("metrics", {})
        run = meta.get("run", {})
        rows.append(
            RunRow(
                name=name,
                kind=str(meta.get("kind", meta.get("config", {}).get("member", {}).get("kind", "?"))),
                trained=True,
                pooled=dict(m.get("pooled", {})),
                per_view=dict(m.get("per_view", {})),
                epochs=[int(e) for e in run.get("epochs", [])],
                train_s=meta.get("timings", {}).get("train_s"),
                worst=[(str(c), float(f)) for c, f in m.get("worst_classes", [])],
                metric=str(m.get("metric", "")),
                stale=stale,
                per_label={
                    str(c): (float(f), (m.get("per_label_auc") or {}).get(c))
                    for c, f in (m.get("per_class_f1") or {}).items()
                }
                if m.get("task") == "multilabel"
                else {},
                tuned=tuning_note(name, tuned[name], meta.get("folds_fingerprint"))
                if name in tuned
                else None,
            )
        )
    trained = {r.name for r in rows}
    for name, member in (configured or {}).items():
        if name not in trained:
            rows.append(RunRow(name=name, kind=str(getattr(member, "kind", "?")), trained=False))
    return rows


def collect_runs(cfg: KitConfig) -> list[RunRow]:
    """What `kit runs` shows (kit.cli.render.print_runs renders it): every trained member with its pooled OOF
    scores and metric interval, stale reasons, then the configured members not trained yet."""
    rows = run_rows(cfg.workdir, cfg.members, _expected(cfg))
    if rows:
        member_intervals(cfg, rows)
    return rows


def _expected(cfg: KitConfig) -> Expected:
    """The current data's fingerprints when the data can be read, else the config alone."""
    from kit.workspace import open_workspace

    try:
        return open_workspace(cfg, write=False).expected()
    except KitError:
        members = {n: m.model_dump(mode="json") for n, m in cfg.members.items()}
        return Expected([], Fingerprints("", ""), member_configs=members, metric=cfg.competition.scored_by)
