"""The member artifact contract (docs/artifacts.md): what `kit train` leaves and `kit blend`/`kit submit` read.

workdir/members/NAME/
    oof_logits.npy   float32 [n_train, n_views, n_classes]  row i from the fold model that never saw image i
    test_logits.npy  float32 [n_test, n_views, n_classes]   mean over the fold models
    meta.json        views, classes, fingerprints, metrics, timings, versions, resolved config, identity
    config.yaml      the resolved member + competition config, for humans

A member's `identity` names one training of it (the run, each fold's done marker, the logits); blends and
pseudo-label sources record it. Assembling the same finished folds again gives the same identity, and
`write_member` leaves the folder untouched when nothing but the write time would change, so a `kit train` that
retrains nothing makes no blend stale.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from kit.artifacts.atomic import atomic_dir
from kit.artifacts.fingerprints import Fingerprints
from kit.artifacts.names import plain_name
from kit.errors import KitError

ARTIFACT_VERSION = 1
OOF_FILE = "oof_logits.npy"
TEST_FILE = "test_logits.npy"
META_FILE = "meta.json"


NOT_COMPARED = {"name", "num_workers"}  # member settings that cannot make an artifact stale
# meta.json keys that say when and how fast it was written, not what it holds: a rewrite of the same training
# may differ in them only
WRITE_TIME_KEYS = ("created", "timings", "versions")


class StaleWarning(UserWarning):
    """An artifact made with another config is used because of --allow-stale."""


@dataclass(frozen=True)
class Expected:
    """What the current config and data say the artifacts must match (None: not checked)."""

    classes: list[str]
    fingerprints: Fingerprints  # of the current data (None fields: not checked)
    member_configs: dict[str, dict[str, Any]] | None = None  # kit.yaml's members, as JSON
    metric: str | None = None
    allow_stale: bool = False  # config changes warn instead of refusing


@dataclass
class MemberArtifact:
    name: str
    oof: np.ndarray
    test: np.ndarray
    views: list[str]
    classes: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.meta["path"])


def members_dir(workdir: Path) -> Path:
    return workdir / "members"


def member_dir(workdir: Path, name: str) -> Path:
    """workdir/members/NAME; NAME must be a plain name, never a path."""
    return members_dir(workdir) / plain_name(name, "member")


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("kit", "torch", "torchvision", "timm", "open_clip_torch", "ttach", "numpy", "scikit-learn"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def _check_logits(name: str, which: str, arr: np.ndarray, views: list[str], n_classes: int) -> list[str]:
    problems = []
    if arr.ndim != 3:
        problems.append(f"{which} logits must be [n, n_views, n_classes], got shape {arr.shape}")
        return problems
    if arr.shape[1] != len(views):
        problems.append(f"{which} logits have {arr.shape[1]} views but views lists {len(views)}: {views}")
    if arr.shape[2] != n_classes:
        problems.append(f"{which} logits have {arr.shape[2]} classes, expected {n_classes}")
    bad = ~np.isfinite(arr).all(axis=(0, 2))
    for v in np.flatnonzero(bad):
        view = views[v] if v < len(views) else str(v)
        problems.append(f"{which} logits of view '{view}' contain NaN or inf")
    return problems


def write_member(
    workdir: Path,
    name: str,
    *,
    oof: np.ndarray,
    test: np.ndarray,
    views: list[str],
    classes: list[str],
    fingerprints: Fingerprints,
    config: dict[str, Any],
    metrics: dict[str, Any],
    timings: dict[str, float],
    extra: dict[str, Any] | None = None,
    made_by: dict[str, Any] | None = None,
    lock: Callable[[], AbstractContextManager[Any]] | None = None,
) -> Path:
    """Validate and write a member's artifacts atomically (a folder renamed into place).

    `made_by` says which training produced the logits (the fold loop passes its run hash and a digest of each
    fold's done marker); with it the member gets an `identity`, and a member folder that already holds the same
    training with the same contents (only WRITE_TIME_KEYS may differ) is kept as it is, unwritten. `lock` is
    taken around the write only (a kept member needs no lock, so a read-only workdir with nothing to do works)."""
    oof = np.ascontiguousarray(oof, dtype=np.float32)
    test = np.ascontiguousarray(test, dtype=np.float32)
    problems = _check_logits(name, "OOF", oof, views, len(classes))
    problems += _check_logits(name, "test", test, views, len(classes))
    if views and views[0] != "plain":
        problems.append(f"view 0 must be 'plain', got {views}")
    if problems:
        raise KitError(f"member '{name}': refusing to write broken artifacts:", problems=problems)
    identity = None if made_by is None else training_identity(made_by, oof, test)
    meta = {
        "artifact_version": ARTIFACT_VERSION,
        "name": name,
        "views": list(views),
        "classes": list(classes),
        "n_train": int(oof.shape[0]),
        "n_test": int(test.shape[0]),
        **fingerprints.to_json(),
        "metrics": metrics,
        "timings": timings,
        "versions": library_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config,
        **(extra or {}),
        **({"identity": identity} if identity is not None else {}),
    }
    final = member_dir(workdir, name)
    if identity is not None and _holds(final, meta):
        return final
    with (lock or nullcontext)(), atomic_dir(final, parent=members_dir(workdir)) as tmp:
        np.save(tmp / OOF_FILE, oof)
        np.save(tmp / TEST_FILE, test)
        (tmp / META_FILE).write_text(
            json.dumps(meta, indent=2, ensure_ascii=False, default=str) + "\n", "utf-8"
        )
        (tmp / "config.yaml").write_text(
            yaml.safe_dump(json.loads(json.dumps(config, default=str)), allow_unicode=True, sort_keys=False),
            "utf-8",
        )
    return final


def training_identity(made_by: dict[str, Any], oof: np.ndarray, test: np.ndarray) -> str:
    """A digest of what produced the member (`made_by`) and of the logits it holds."""
    h = hashlib.sha256(json.dumps(made_by, sort_keys=True, default=str).encode())
    for arr in (oof, test):
        h.update(repr((arr.dtype.str, arr.shape)).encode())
        h.update(np.ascontiguousarray(arr).data)
    return h.hexdigest()[:16]


def _comparable(meta: dict[str, Any]) -> Any:
    """meta.json as it reads back from disk, without the keys a rewrite of the same training changes."""
    plain = json.loads(json.dumps(meta, ensure_ascii=False, default=str))
    return {k: v for k, v in plain.items() if k not in (*WRITE_TIME_KEYS, "identity", "path")}


def _holds(folder: Path, meta: dict[str, Any]) -> bool:
    """Whether `folder` already holds this training with these contents (nothing to write).

    A member an older kit wrote has no identity; it is kept when everything else matches (its blends record
    the digest of its meta.json, which stays valid only if the file is left alone)."""
    if not all((folder / f).is_file() for f in (OOF_FILE, TEST_FILE, META_FILE, "config.yaml")):
        return False
    try:
        old = json.loads((folder / META_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(old, dict) or old.get("identity", meta["identity"]) != meta["identity"]:
        return False
    try:  # the logits files are still whole (their headers: shape and dtype)
        whole = all(
            np.load(folder / f, mmap_mode="r").shape == (meta[n], len(meta["views"]), len(meta["classes"]))
            for f, n in ((OOF_FILE, "n_train"), (TEST_FILE, "n_test"))
        )
    except (OSError, ValueError):
        return False
    return whole and _comparable(old) == _comparable(meta)


def member_stamp(workdir: Path, name: str) -> tuple[int, int] | None:
    """(inode, mtime) of the member's meta.json, None when there is none: a rewrite changes it."""
    try:
        st = (member_dir(workdir, name) / META_FILE).stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def list_members(workdir: Path) -> list[str]:
    root = members_dir(workdir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / META_FILE).exists() and not p.name.startswith("."))


def read_meta(workdir: Path, name: str) -> dict[str, Any]:
    path = member_dir(workdir, name) / META_FILE
    if not path.exists():
        raise KitError(f"member '{name}' has no artifacts in {path.parent}; run `kit train {name}`")
    try:
        meta = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as e:
        raise KitError(f"{path}: unreadable ({e}); run `kit train {name}` again") from None
    meta["path"] = str(path.parent)
    return meta


def artifact_id(workdir: Path, name: str) -> str:
    """Identifies one training of a member; blends and pseudo-label sources record it per member.

    meta.json's `identity` (kept when the same training is assembled again), or for a member an older kit
    wrote, a digest of its meta.json; "" when there is none."""
    path = member_dir(workdir, name) / META_FILE
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    try:
        identity = json.loads(data).get("identity")
    except (ValueError, AttributeError):
        identity = None
    return identity if isinstance(identity, str) and identity else hashlib.sha256(data).hexdigest()[:16]


def _show(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, default=str)


def _diff(old: Any, new: Any, key: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        # keys only one side has are settings added to or removed from kit's schema since: not compared
        for k in [k for k in old if k in new and k not in NOT_COMPARED]:
            out += _diff(old[k], new[k], f"{key}.{k}")
        return out
    return [] if old == new else [f"{key}: {_show(old)} -> {_show(new)}"]


def config_changes(name: str, meta: dict[str, Any], expected: Expected) -> list[str]:
    """Keys of kit.yaml that changed since the artifact was made, as 'key: old -> new'."""
    saved: dict[str, Any] = meta["config"] if isinstance(meta.get("config"), dict) else {}
    changes: list[str] = []
    old_member, current = saved.get("member"), (expected.member_configs or {}).get(name)
    if isinstance(old_member, dict) and current is not None:
        changes += _diff(old_member, current, f"members.{name}")
    comp: dict[str, Any] = saved["competition"] if isinstance(saved.get("competition"), dict) else {}
    old_metric = comp.get("metric")
    if old_metric is not None and comp.get("metric_k") is not None:
        old_metric = f"{old_metric}@{comp['metric_k']}"  # as Competition.scored_by names it
    if expected.metric is not None and old_metric is not None and old_metric != expected.metric:
        changes.append(
            f"competition.metric: {_show(old_metric)} -> {_show(expected.metric)} (it picked the best epochs)"
        )
    return changes


def data_changes(meta: dict[str, Any], expected: Expected, what: str = "it") -> list[str]:
    """How the train or test content differ from what the artifact (its meta.json or winner.json) was made from."""
    return Fingerprints.from_json(meta).content_changes(expected.fingerprints, what)


def stale_use(kind: str, name: str, changes: list[str], expected: Expected) -> list[str]:
    """Config changes: problems that refuse the artifact, or (with --allow-stale) a warning and no problem."""
    if not changes:
        return []
    if expected.allow_stale:
        warnings.warn(
            f"{kind} '{name}' was made with another config ({'; '.join(changes)}); used as it is because of "
            "--allow-stale",
            StaleWarning,
            stacklevel=3,
        )
        return []
    return [f"its config changed since it was made: {c}" for c in changes]


def load_member(
    workdir: Path, name: str, expected: Expected | None = None, *, mmap: bool = False
) -> MemberArtifact:
    """Load and check one member's artifacts; refuse them when they do not fit the current config."""
    meta = read_meta(workdir, name)
    d = member_dir(workdir, name)
    mode: Literal["r"] | None = "r" if mmap else None
    try:
        oof = np.load(d / OOF_FILE, mmap_mode=mode)
        test = np.load(d / TEST_FILE, mmap_mode=mode)
    except (OSError, ValueError) as e:
        raise KitError(
            f"member '{name}': logits in {d} are unreadable ({e}); run `kit train {name}`"
        ) from None
    views, classes = list(meta["views"]), list(meta["classes"])
    problems = _check_logits(name, "OOF", np.asarray(oof), views, len(classes))
    problems += _check_logits(name, "test", np.asarray(test), views, len(classes))
    fix = f"run `kit train {name}` again with the current kit.yaml"
    if expected is not None:
        if classes != list(expected.classes):
            problems.append(
                f"class order {classes[:5]}... differs from the config's {list(expected.classes)[:5]}..."
            )
        problems += Fingerprints.from_json(meta).problems(expected.fingerprints)
        changed = stale_use("member", name, config_changes(name, meta, expected), expected)
        if changed and not problems:
            fix = f"run `kit train {name}` again, or pass --allow-stale to use it as it is"
        problems += changed
    if problems:
        raise KitError(f"member '{name}' ({d}) cannot be used; {fix}:", problems=problems)
    return MemberArtifact(name=name, oof=oof, test=test, views=views, classes=classes, meta=meta)
