"""docs/architecture.md's layering claim, checked against every kit import (module level and lazy)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"


def _layers() -> list[str]:
    """The packages in the doc's first diagram, top to bottom."""
    block = DOC.read_text("utf-8").split("```")[1]
    return [m.group(1) for m in re.finditer(r"^kit\.(\w+)", block, flags=re.M)]


def _documented_upward() -> set[tuple[str, str]]:
    block = DOC.read_text("utf-8").split("```")[3]
    return {(a, b) for a, b in re.findall(r"^kit\.(\w+)\s+->\s+kit\.(\w+)", block, flags=re.M)}


def _layer_of(module: str, layers: list[str]) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "kit" and parts[1] in layers else None


def _imports() -> list[tuple[str, str, str]]:
    """(importing layer, imported layer, file:line) for every kit import that crosses layers."""
    layers = _layers()
    out = []
    for path in sorted((REPO / "kit").rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        src = _layer_of(".".join(rel.parts), layers)
        if src is None:
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                dst = _layer_of(name, layers)
                if dst is not None and dst != src:
                    out.append((src, dst, f"{path.relative_to(REPO)}:{node.lineno}"))
    return out


def test_every_package_is_in_the_diagram() -> None:
    packages = {p.name for p in (REPO / "kit").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in (REPO / "kit").glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert packages | modules == set(_layers())


def test_packages_import_only_below_them_except_the_documented_upward_imports() -> None:
    layers = _layers()
    upward = {}
    for src, dst, where in _imports():
        if layers.index(dst) < layers.index(src):
            upward.setdefault((src, dst), []).append(where)
    documented = _documented_upward()
    undocumented = {k: v for k, v in upward.items() if k not in documented}
    assert not undocumented, f"upward imports docs/architecture.md does not list: {undocumented}"
    assert set(upward) == documented, (
        f"docs/architecture.md lists upward imports that are gone: {documented - set(upward)}"
    )


def test_every_test_docs_reliability_names_exists() -> None:
    """docs/reliability.md names the test behind each guarantee: each must be a test function in tests/."""
    text = (REPO / "docs" / "reliability.md").read_text("utf-8")
    named = set(re.findall(r"`(test_\w+)", text))
    defined = set()
    for path in (REPO / "tests").glob("test_*.py"):
        defined |= set(re.findall(r"^def (test_\w+)", path.read_text("utf-8"), flags=re.M))
    assert named and not named - defined, sorted(named - defined)
