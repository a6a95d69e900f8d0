"""Pseudo-labels (`members.NAME.pseudo`): test rows a member or blend is confident about, as training rows.

The source's test probabilities come from its artifacts, checked against this workspace like `kit submit`
checks them (classes, train/test ids and content, folds; kit.artifacts.member.load_member,
kit.artifacts.blend.load_blend): a source made under other folds, data or classes is refused with the reason.
Selected rows join the training side of every fold and never a validation side (kit.train.added), so every
OOF row is still a labelled train image predicted by a model that never saw it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from kit.artifacts.member import artifact_id, list_members, load_member, member_dir
from kit.config.schema import PseudoConfig
from kit.errors import KitError
from kit.metrics.scores import mean_view_probs

if TYPE_CHECKING:
    from kit.workspace import Workspace


@dataclass(frozen=True)
class PseudoSource:
    kind: Literal["member", "blend"]
    name: str
    probs: np.ndarray  # [n_test, C] test probabilities, rows sum to 1
    fingerprints: dict[str, Any]  # what the source was made from (recorded in the member's meta.json)


def _key(member: str) -> str:
    return f"members.{member}.pseudo.source"


def _which(ws: Workspace, member: str, source: str) -> tuple[Literal["member", "blend"], str]:
    from kit.artifacts.blend import blend_dir, list_blends  # the blend artifact contract: files only

    kind, _, name = source.partition(":") if ":" in source else ("", "", source)
    if kind not in ("", "member", "blend"):
        raise KitError(
            f"{_key(member)}: '{source}' names neither a member nor a blend; write NAME, member:NAME or blend:NAME"
        )
    is_member = (member_dir(ws.workdir, name) / "meta.json").exists() if kind != "blend" else False
    is_blend = (blend_dir(ws.workdir, name) / "winner.json").exists() if kind != "member" else False
    if name == member and (kind == "member" or (not kind and not is_blend)):
        raise KitError(
            f"{_key(member)}: '{source}' is this member itself (circular); name another member or a blend"
        )
    if is_member and is_blend:
        raise KitError(
            f"{_key(member)}: '{name}' is both a member and a blend in {ws.workdir}; write member:{name} or "
            f"blend:{name}"
        )
    if not is_member and not is_blend:
        what = {"member": "member", "blend": "blend"}.get(kind, "member or blend")
        fix = (
            f"run `kit train {name}`"
            if kind == "member" or name in ws.cfg.members
            else f"run `kit train {name}` or `kit blend ensembles/{name}.yaml`"
        )
        raise KitError(
            f"{_key(member)}: no {what} named '{name}' in {ws.workdir} (members: {list_members(ws.workdir)}, "
            f"blends: {list_blends(ws.workdir)}); {fix} first"
        )
    return ("member" if is_member else "blend"), name


def load_source(ws: Workspace, member: str, cfg: PseudoConfig) -> PseudoSource:
    """The checked test probabilities of `cfg.source`; KitError naming members.MEMBER.pseudo.source."""
    if ws.test is None:
        raise KitError(f"{_key(member)}: pseudo-labels come from test rows, but competition.test is not set")
    kind, name = _which(ws, member, cfg.source)
    expected = ws.expected()
    try:
        if kind == "member":
            art = load_member(ws.workdir, name, expected)
            probs = mean_view_probs(art.test)  # as `kit submit --member` takes them
            meta = art.meta
            made_from = artifact_id(ws.workdir, name)
        else:
            from kit.artifacts.blend import load_blend

            blend = load_blend(ws.workdir, name, expected)
            probs = np.asarray(blend.test_probs, dtype=np.float64)
            meta = blend.winner.to_json()
            made_from = hashlib.sha256(probs.tobytes()).hexdigest()[:16]
    except KitError as e:
        raise KitError(f"{_key(member)}: {e}") from None
    if probs.shape != (len(ws.test), len(ws.classes)):
        raise KitError(
            f"{_key(member)}: {kind} '{name}' has test probabilities of shape {probs.shape}, expected "
            f"[{len(ws.test)}, {len(ws.classes)}]; rebuild it with the current kit.yaml"
        )
    keys = ("classes", "folds_fingerprint", "data_fingerprint", "test_fingerprint", "test_ids_fingerprint")
    fingerprints = {k: meta.get(k) for k in keys} | {"artifact": made_from}
    probs = probs / probs.sum(axis=1, keepdims=True)
    return PseudoSource(kind, name, probs, fingerprints)


@dataclass(frozen=True)
class PseudoRows:
    """The selected test rows: their index in the test table, top class, probabilities and loss weight."""

    source: PseudoSource
    cfg: PseudoConfig
    test_idx: np.ndarray  # [m] int64, ascending
    labels: np.ndarray  # [m] int64: the top class
    probs: np.ndarray  # [m, C] float32: the source's probabilities (soft targets)

    def counts(self, n_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=n_classes)

    def identity(self) -> dict[str, Any]:
        """What the run hash takes: the source, the rows and their targets."""
        h = hashlib.sha256(self.test_idx.tobytes())
        h.update((self.probs if self.cfg.soft else self.labels).tobytes())
        return {
            "source": f"{self.source.kind}:{self.source.name}",
            "artifact": self.source.fingerprints.get("artifact"),
            "rows": h.hexdigest()[:16],
            "soft": self.cfg.soft,
            "weight": self.cfg.weight,
        }

    def meta(self, classes: list[str]) -> dict[str, Any]:
        """meta.json's `pseudo`: the source and its fingerprints, the settings and the rows per class."""
        return {
            "source": {"kind": self.source.kind, "name": self.source.name, **self.source.fingerprints},
            **self.cfg.model_dump(mode="json", exclude={"source"}),
            "rows": len(self.test_idx),
            "per_class": dict(zip(classes, self.counts(len(classes)).tolist(), strict=True)),
        }

    def describe(self, classes: list[str]) -> str:
        counts = self.counts(len(classes)).tolist()
        per = ", ".join(f"{c} {n}" for c, n in zip(classes, counts, strict=True))
        return (
            f"pseudo-labels from {self.source.kind} '{self.source.name}': {len(self.test_idx)} test row(s) reach "
            f"{self.cfg.min_confidence} ({per}), {'soft' if self.cfg.soft else 'hard'} targets, weight "
            f"{self.cfg.weight}; on the training side of every fold, never validated"
        )


def select_rows(source: PseudoSource, cfg: PseudoConfig) -> PseudoRows:
    """Test rows whose top probability reaches cfg.min_confidence; at most cfg.max_per_class per class (the
    most confident, ties by row order)."""
    conf = source.probs.max(axis=1)
    top = source.probs.argmax(axis=1)
    chosen = np.flatnonzero(conf >= cfg.min_confidence)
    if cfg.max_per_class is not None:
        kept = []
        for c in np.unique(top[chosen]):
            rows = chosen[top[chosen] == c]
            order = np.argsort(-conf[rows], kind="stable")
            kept.append(rows[order[: cfg.max_per_class]])
        chosen = np.sort(np.concatenate(kept)) if kept else chosen
    idx = chosen.astype(np.int64)
    return PseudoRows(source, cfg, idx, top[idx].astype(np.int64), source.probs[idx].astype(np.float32))


def pseudo_rows(ws: Workspace, member: str, cfg: PseudoConfig) -> PseudoRows:
    return select_rows(load_source(ws, member, cfg), cfg)
