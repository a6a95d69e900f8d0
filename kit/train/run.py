"""`kit train` as a library function: open the workspace once, train each named member over its folds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.config.schema import KitConfig
from kit.errors import KitError
from kit.train.added import check_added
from kit.train.fold_loop import train_member
from kit.train.preflight import preflight
from kit.train.progress import NullReporter, Reporter


def train_members(
    cfg: KitConfig, names: list[str] | None = None, reporter: Reporter | None = None
) -> list[Path]:
    """Train the named members (all when `names` is empty) over every fold; returns their artifact folders.

    Each member goes through the fold loop (kit.train.fold_loop) with its kind (kit.train.kinds); a member
    another `kit train` process still holds folds of is left to that process, which writes it when done.
    """
    from kit.data.workspace import open_workspace

    chosen = select_members(cfg.members, names)
    ws = open_workspace(cfg)
    check_added(ws, chosen)  # extra data and pseudo-label sources, before anything trains
    preflight(ws, {n: cfg.members[n] for n in chosen})  # caches fit on disk, a batch in memory
    rep = reporter or NullReporter()
    out = []
    for name in chosen:
        member = cfg.members[name]
        path = train_member(ws, name, member, rep)
        if path is not None:
            out.append(path)
    return out


def select_members(members: dict[str, Any], names: list[str] | None) -> list[str]:
    if not members:
        raise KitError(
            "kit.yaml has no members; add one under `members:` (see `kit init` output for an example)"
        )
    if not names:
        return list(members)
    unknown = [n for n in names if n not in members]
    if unknown:
        import difflib

        hints = [
            f"'{n}'"
            + (f" (did you mean '{m[0]}'?)" if (m := difflib.get_close_matches(n, members, 1)) else "")
            for n in unknown
        ]
        raise KitError(f"unknown member(s) {', '.join(hints)}; kit.yaml defines {list(members)}")
    return names


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
