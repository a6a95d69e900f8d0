"""`kit validate`: check configs (kit.yaml, ensemble specs) without running anything."""

from __future__ import annotations

from pathlib import Path

from kit.config.load import apply_overrides, read_yaml, resolve_paths, validate_data
from kit.config.schema import KitConfig
from kit.errors import KitError


def config_kind(path: Path, data: dict) -> str:
    if "competition" in data:
        return "kit.yaml"
    if "blenders" in data or path.parent.name == "ensembles":
        return "ensemble"
    return "unknown"


def check_paths(cfg: KitConfig) -> list[str]:
    """Files the config names that are not there (validation cannot know otherwise)."""
    comp = cfg.competition
    problems = []
    if not comp.root.is_dir():
        problems.append(f"competition.root: folder {comp.root} does not exist")
        return problems
    for key in ("train", "train_images", "test", "test_images", "sample_submission"):
        p = getattr(comp, key)
        if p is not None and not p.exists():
            problems.append(f"competition.{key}: {p} does not exist")
    return problems


def validate_file(path: Path, overrides: list[str] | None = None) -> tuple[str, list[str]]:
    try:
        data = read_yaml(path)
    except KitError as e:
        return "unreadable", [str(e)]
    kind = config_kind(path, data)
    try:
        if kind == "kit.yaml":
            cfg = validate_data(apply_overrides(data, overrides), KitConfig, str(path))
            return kind, check_paths(resolve_paths(cfg, path.parent.resolve()))
        if kind == "ensemble":
            from kit.blend.spec import EnsembleSpec

            validate_data(data, EnsembleSpec, str(path))
            return kind, []
    except KitError as e:
        return kind, e.problems or [str(e)]
    return kind, ["neither a kit.yaml (no `competition:` key) nor an ensemble spec (no `blenders:` key)"]


def validate_files(
    paths: list[Path], overrides: list[str] | None = None
) -> list[tuple[Path, str, list[str]]]:
    return [(p, *validate_file(p, overrides)) for p in paths]
