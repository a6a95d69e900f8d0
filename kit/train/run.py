"""`kit train` as a library function: open the workspace once, train each named member with its kind's trainer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kit.config.schema import KitConfig
from kit.train.preflight import preflight
from kit.train.progress import NullReporter, Reporter
from kit.train.registry import get_trainer, select_members


def train_members(
    cfg: KitConfig, names: list[str] | None = None, reporter: Reporter | None = None
) -> list[Path]:
    """Train the named members (all when `names` is empty) over every fold; returns their artifact folders.

    Every trainer has the signature `(ws, name, member, reporter) -> Path | None` (kit.train.registry); None
    means another `kit train` process still holds some of the member's folds and writes it when done.
    """
    from kit.data.workspace import open_workspace

    chosen = select_members(cfg.members, names)
    ws = open_workspace(cfg)
    preflight(ws, {n: cfg.members[n] for n in chosen})  # caches fit on disk, a batch in memory
    rep = reporter or NullReporter()
    out = []
    for name in chosen:
        member = cfg.members[name]
        path = get_trainer(member.kind)(ws, name, member, rep)
        if path is not None:
            out.append(path)
    return out


@dataclass(frozen=True)
class TrainResult:
    """The members one `kit train` wrote, by name -> artifact folder (workdir/members/NAME); `pending` are the
    members whose folds another `kit train` process still holds (it writes them when done)."""

    members: dict[str, Path] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)


def train(cfg: KitConfig, members: list[str] | None = None, reporter: Reporter | None = None) -> TrainResult:
    """What `kit train` runs: train the named members (all when `members` is empty) over every fold."""
    chosen = select_members(cfg.members, members)
    paths = train_members(cfg, chosen, reporter)
    written = {p.name: p for p in paths}
    return TrainResult(members=written, pending=[n for n in chosen if n not in written])
