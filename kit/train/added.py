"""Rows that join the training side of every fold and never a validation side: external data
(`competition.extra_train`, kit.data.extra) and pseudo-labelled test rows (`members.NAME.pseudo`,
kit.train.pseudo).

Why the OOF estimate stays honest: a fold's validation rows are `ws.folds.valid_idx(f)`, positions in the
train table only. Added rows live after the train rows in the training index space, so they can be drawn
into a fold's training batches but are never scored, never early-stop a fold and never get an OOF row.

Class frequencies: an added row counts toward its (top) class wherever kit counts classes for a fold (the
weighted sampler's (1 / count)^power and the class-weighted / prior-adjusted losses), so a rebalancer
balances what the model actually trains on. Loss weight: labelled and extra rows weigh 1, pseudo rows
`pseudo.weight`; a batch's loss is the weighted mean of its rows' losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.data.cache import Images
from kit.errors import KitError
from kit.train.data import StackedCache

if TYPE_CHECKING:
    from kit.config.schema import MemberConfig
    from kit.data.extra import ExtraSource
    from kit.train.pseudo import PseudoRows
    from kit.workspace import Workspace


@dataclass(frozen=True)
class AddedRows:
    """The extra sources (rows after duplicates were dropped) and the pseudo rows of one member."""

    extras: list[ExtraSource] = field(default_factory=list)
    pseudo: PseudoRows | None = None

    @property
    def used(self) -> bool:
        return bool(self.extras) or self.pseudo is not None

    @property
    def n_extra(self) -> int:
        return sum(len(e.table) for e in self.extras)

    @property
    def n_pseudo(self) -> int:
        return 0 if self.pseudo is None else len(self.pseudo.test_idx)

    def labels(self) -> np.ndarray:
        """Top class of every added row: extra rows first (source by source), then pseudo rows."""
        parts = [np.asarray(e.table.labels, dtype=np.int64) for e in self.extras]
        if self.pseudo is not None:
            parts.append(self.pseudo.labels)
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    @property
    def soft(self) -> bool:
        return self.pseudo is not None and self.pseudo.cfg.soft

    @property
    def weighted(self) -> bool:
        return self.pseudo is not None and self.pseudo.cfg.weight != 1.0

    def targets(self, n_classes: int) -> np.ndarray:
        """Soft targets [m, C]: one-hot for extra rows, the source's probabilities for soft pseudo rows."""
        out = np.eye(n_classes, dtype=np.float32)[self.labels()]
        if self.soft:
            assert self.pseudo is not None
            out[self.n_extra :] = self.pseudo.probs
        return out

    def weights(self) -> np.ndarray:
        w = np.ones(self.n_extra + self.n_pseudo, dtype=np.float32)
        if self.pseudo is not None:
            w[self.n_extra :] = self.pseudo.cfg.weight
        return w

    def identity(self) -> dict[str, Any] | None:
        """What these rows add to the run hash; None without extra data or pseudo-labels (the hash of such a
        run is what it was before either existed)."""
        if not self.used:
            return None
        return {
            "added": {
                "extra_train": [e.identity() for e in self.extras],
                "pseudo": None if self.pseudo is None else self.pseudo.identity(),
            }
        }

    def meta(self, classes: list[str]) -> dict[str, Any]:
        """meta.json keys: where each added row came from, per class."""
        out: dict[str, Any] = {}
        if self.extras:
            out["extra_train"] = [
                {
                    "path": str(e.cfg.train),
                    "fingerprint": e.fingerprint,
                    "rows": len(e.table),
                    "per_class": dict(zip(classes, e.counts(len(classes)).tolist(), strict=True)),
                    "dropped_test_duplicates": len(e.test_duplicates),
                    "dropped_train_duplicates": len(e.train_duplicates),
                }
                for e in self.extras
            ]
        if self.pseudo is not None:
            out["pseudo"] = self.pseudo.meta(classes)
        return out

    def lines(self, name: str, classes: list[str]) -> list[str]:
        """What `kit train` prints: rows per class that joined every fold's training side."""
        out = [f"{name}: {e.describe(classes)}; on the training side of every fold" for e in self.extras]
        if self.pseudo is not None:
            out.append(f"{name}: {self.pseudo.describe(classes)}")
        return out


def added_rows(ws: Workspace, name: str, member: MemberConfig) -> AddedRows:
    """The extra data of the competition and the member's pseudo rows (checked sources; KitError names the key)."""
    from kit.train.pseudo import pseudo_rows

    pseudo = pseudo_rows(ws, name, member.pseudo) if member.pseudo is not None else None
    return AddedRows(extras=ws.extra, pseudo=pseudo)


def check_added(ws: Workspace, names: list[str]) -> None:
    """Before any training: every extra source readable and mapped, every pseudo source there and made for
    this workspace; all problems at once, each naming its key. A source member trained earlier in this same
    call (`kit train src pl`) is checked when the member that uses it is prepared, after it was written."""
    from kit.train.pseudo import load_source

    problems = []
    try:
        ws.extra  # noqa: B018  (loads, maps and de-duplicates; cached on the workspace)
    except KitError as e:
        problems += e.problems or [str(e)]
    for i, n in enumerate(names):
        p = ws.cfg.members[n].pseudo
        if p is None or p.source.removeprefix("member:") in names[:i]:
            continue
        try:
            load_source(ws, n, p)
        except KitError as e:
            problems.append(str(e))
    if problems:
        raise KitError("cannot train: extra data or pseudo-label sources are not usable:", problems=problems)


@dataclass(frozen=True)
class FitRows:
    """A member's training index space: the train rows (0..n_train-1), then every added row.

    `cache` yields the image of any position, `labels` the top class, `targets` what the loss takes (the
    labels, or soft targets [N, C] when pseudo rows are soft), `weights` the loss weight of each row (None:
    all 1). `added_idx` are the added rows' positions: every fold trains on them, none validates on them."""

    cache: Images  # the train store (no added rows) or a StackedCache of it and the added rows' stores
    labels: np.ndarray
    targets: np.ndarray
    weights: np.ndarray | None
    added_idx: np.ndarray


def fit_rows(
    train_cache: Images,
    train_labels: np.ndarray,
    added: AddedRows,
    extra_caches: Sequence[Images],
    test_cache: Images | None,
    n_classes: int,
) -> FitRows:
    """The training index space of a member: the train cache, each extra source's cache, then the test
    cache (pseudo rows are positions in it; the other test rows are never drawn)."""
    n_train = len(train_labels)
    if not added.used:
        return FitRows(train_cache, train_labels, train_labels, None, np.zeros(0, np.int64))
    parts: list[Images] = [train_cache, *extra_caches]
    offset = n_train + sum(len(c) for c in extra_caches)
    idx = [np.arange(n_train, offset, dtype=np.int64)]
    labels = [np.asarray(train_labels, np.int64), added.labels()[: added.n_extra]]
    if added.pseudo is not None and test_cache is not None:
        parts.append(test_cache)
        idx.append(offset + added.pseudo.test_idx)
        test_labels = np.zeros(len(test_cache), np.int64)  # rows never drawn keep class 0
        test_labels[added.pseudo.test_idx] = added.pseudo.labels
        labels.append(test_labels)
    all_labels = np.concatenate(labels)
    added_idx = np.concatenate(idx)
    targets: np.ndarray = all_labels
    if added.soft:
        targets = np.eye(n_classes, dtype=np.float32)[all_labels]
        targets[added_idx] = added.targets(n_classes)
    weights = None
    if added.weighted:
        weights = np.ones(len(all_labels), np.float32)
        weights[added_idx] = added.weights()
    return FitRows(StackedCache(parts), all_labels, targets, weights, added_idx)
