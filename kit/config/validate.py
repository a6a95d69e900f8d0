"""`kit validate`: check configs (kit.yaml, ensemble specs) without running anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.config.load import apply_overrides, read_yaml, resolve_paths, validate_data
from kit.config.schema import KitConfig
from kit.errors import KitError


@dataclass
class Checked:
    path: Path
    kind: str
    problems: list[str] = field(default_factory=list)  # invalid config: exit 1
    warnings: list[str] = field(default_factory=list)  # valid, but something it names is not there yet


def config_kind(path: Path, data: dict[str, Any]) -> str:
    if "competition" in data:
        return "kit.yaml"
    if "blenders" in data or path.parent.name == "ensembles":
        return "ensemble"
    return "unknown"


def check_paths(cfg: KitConfig) -> list[str]:
    """Files the config names that are not there (the config itself can still be valid)."""
    comp = cfg.competition
    if not comp.root.is_dir():
        return [f"competition.root: folder {comp.root} does not exist"]
    problems = []
    for key in ("train", "train_images", "test", "test_images", "sample_submission"):
        p = getattr(comp, key)
        if p is not None and not p.exists():
            problems.append(f"competition.{key}: {p} does not exist")
    return problems


def validate_file(path: Path, overrides: list[str] | None = None) -> Checked:
    try:
        data = read_yaml(path)
    except KitError as e:
        return Checked(path, "unreadable", [str(e)])
    kind = config_kind(path, data)
    try:
        if kind == "kit.yaml":
            cfg = validate_data(apply_overrides(data, overrides), KitConfig, str(path))
            return Checked(path, kind, warnings=check_paths(resolve_paths(cfg, path.parent.resolve())))
        if kind == "ensemble":
            from kit.blend.spec import EnsembleSpec

            validate_data(data, EnsembleSpec, str(path))
            return Checked(path, kind)
    except KitError as e:
        return Checked(path, kind, e.problems or [str(e)])
    return Checked(
        path, kind, ["neither a kit.yaml (no `competition:` key) nor an ensemble spec (no `blenders:` key)"]
    )


def validate_files(paths: list[Path], overrides: list[str] | None = None) -> list[Checked]:
    return [validate_file(p, overrides) for p in paths]
