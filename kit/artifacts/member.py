"""The member artifact contract (docs/artifacts.md): what `kit train` leaves and `kit blend`/`kit submit` read.

workdir/members/NAME/
    oof_logits.npy   float32 [n_train, n_views, n_classes]  row i from the fold model that never saw image i
    test_logits.npy  float32 [n_test, n_views, n_classes]   mean over the fold models
    meta.json        views, classes, fingerprints, metrics, timings, versions, resolved config
    config.yaml      the resolved member + competition config, for humans
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from kit.artifacts.atomic import atomic_dir
from kit.artifacts.names import plain_name
from kit.errors import KitError

ARTIFACT_VERSION = 1
OOF_FILE = "oof_logits.npy"
TEST_FILE = "test_logits.npy"
META_FILE = "meta.json"


@dataclass(frozen=True)
class Expected:
    """What the current config says the artifacts must match."""

    classes: list[str]
    train_ids_fingerprint: str
    folds_fingerprint: str
    test_ids_fingerprint: str | None = None


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
    train_ids_fingerprint: str,
    test_ids_fingerprint: str,
    folds_fingerprint: str,
    data_fingerprint: str,
    config: dict[str, Any],
    metrics: dict[str, Any],
    timings: dict[str, float],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Validate and write a member's artifacts atomically (a folder renamed into place)."""
    oof = np.ascontiguousarray(oof, dtype=np.float32)
    test = np.ascontiguousarray(test, dtype=np.float32)
    problems = _check_logits(name, "OOF", oof, views, len(classes))
    problems += _check_logits(name, "test", test, views, len(classes))
    if views and views[0] != "plain":
        problems.append(f"view 0 must be 'plain', got {views}")
    if problems:
        raise KitError(f"member '{name}': refusing to write broken artifacts:", problems=problems)
    meta = {
        "artifact_version": ARTIFACT_VERSION,
        "name": name,
        "views": list(views),
        "classes": list(classes),
        "n_train": int(oof.shape[0]),
        "n_test": int(test.shape[0]),
        "train_ids_fingerprint": train_ids_fingerprint,
        "test_ids_fingerprint": test_ids_fingerprint,
        "folds_fingerprint": folds_fingerprint,
        "data_fingerprint": data_fingerprint,
        "metrics": metrics,
        "timings": timings,
        "versions": library_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config,
        **(extra or {}),
    }
    final = member_dir(workdir, name)
    with atomic_dir(final, parent=members_dir(workdir)) as tmp:
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
        if meta["train_ids_fingerprint"] != expected.train_ids_fingerprint:
            problems.append("its train ids differ from the current train table")
        if meta["folds_fingerprint"] != expected.folds_fingerprint:
            problems.append(
                "its folds differ from the current folds (blending OOF from different splits leaks)"
            )
        if (
            expected.test_ids_fingerprint is not None
            and meta["test_ids_fingerprint"] != expected.test_ids_fingerprint
        ):
            problems.append("its test ids differ from the current test table")
    if problems:
        raise KitError(f"member '{name}' ({d}) cannot be used; {fix}:", problems=problems)
    return MemberArtifact(name=name, oof=oof, test=test, views=views, classes=classes, meta=meta)
