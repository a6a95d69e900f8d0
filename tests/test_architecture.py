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


def _layer_of(module: str, layers: list[str]) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "kit" and parts[1] in layers else None


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def _kit_imports() -> list[tuple[str, str, list[str], str]]:
    """(importing module, imported module, names taken from it, file:line) for every kit import, module level,
    lazy (inside functions) and TYPE_CHECKING alike."""
    out = []
    for path in sorted((REPO / "kit").rglob("*.py")):
        where = path.relative_to(REPO)
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kit"):
                names = [a.name for a in node.names]
                out.append((_module_name(path), node.module, names, f"{where}:{node.lineno}"))
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("kit"):
                        out.append((_module_name(path), a.name, [], f"{where}:{node.lineno}"))
    return out


def test_every_package_is_in_the_diagram() -> None:
    packages = {p.name for p in (REPO / "kit").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in (REPO / "kit").glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert packages | modules == set(_layers())


def test_packages_import_only_the_layers_below_them() -> None:
    """No upward import anywhere, lazy ones included: the diagram is the whole dependency story."""
    layers = _layers()
    upward = []
    for src, dst, _, where in _kit_imports():
        a, b = _layer_of(src, layers), _layer_of(dst, layers)
        if a is not None and b is not None and layers.index(b) < layers.index(a):
            upward.append(f"{where}: kit.{a} -> {dst}")
    assert not upward, upward


def test_member_kinds_do_not_import_the_fold_loop_or_the_drivers() -> None:
    """kit.train.kinds.* sit below the modules that run them: the fold loop, DDP, workers, Ray (every kit.train
    module that imports kit.train.kinds) give a kind what it needs, never the other way round."""
    imports = _kit_imports()
    drivers = {
        src
        for src, dst, _, _ in imports
        if dst.startswith("kit.train.kinds") and src.startswith("kit.train.") and ".kinds" not in src
    }
    assert {"kit.train.fold_loop", "kit.train.ddp"} <= drivers
    wrong = [
        f"{where}: {src} -> {dst}"
        for src, dst, _, where in imports
        if src.startswith("kit.train.kinds")
        and (dst in drivers or dst in ("kit.train.fold_loop", "kit.train.ddp"))
    ]
    assert not wrong, wrong


def test_cli_registers_its_commands_in_one_place() -> None:
    """kit.cli.app imports the command modules; no command module (nor kit.cli.common) imports kit.cli.app."""
    back = [
        f"{where}: {src}" for src, dst, _, where in _kit_imports() if dst == "kit.cli.app" and src != "kit"
    ]
    assert back == ["kit/__main__.py:4: kit.__main__"], back
    common = [
        dst for src, dst, _, _ in _kit_imports() if src == "kit.cli.common" and dst.startswith("kit.cli")
    ]
    assert common == []


def _private_uses_through_modules(path: Path) -> list[str]:
    """`m._y` where m is a kit module this file imported (`import kit.x as m`, `from kit import x`)."""
    tree = ast.parse(path.read_text("utf-8"))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name.startswith("kit")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kit"):
            base = REPO.joinpath(*node.module.split("."))
            modules |= {
                a.asname or a.name
                for a in node.names
                if (base / f"{a.name}.py").exists() or (base / a.name / "__init__.py").exists()
            }
    return [
        f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and ast.unparse(node.value) in modules
    ]


def test_no_module_imports_a_private_name_of_another() -> None:
    """`from kit.x import _y` (or `x._y` on an imported module) across modules means _y is part of kit.x's
    interface: it must be public."""
    private = [
        f"{where}: from {dst} import {name}"
        for src, dst, names, where in _kit_imports()
        for name in names
        if name.startswith("_") and dst != src
    ]
    for path in sorted((REPO / "kit").rglob("*.py")):
        private += _private_uses_through_modules(path)
    assert not private, private


def test_every_test_docs_reliability_names_exists() -> None:
    """docs/reliability.md names the test behind each guarantee: each must be a test function in tests/."""
    text = (REPO / "docs" / "reliability.md").read_text("utf-8")
    named = set(re.findall(r"`(test_\w+)", text))
    defined = set()
    for path in (REPO / "tests").glob("test_*.py"):
        defined |= set(re.findall(r"^def (test_\w+)", path.read_text("utf-8"), flags=re.M))
    assert named and not named - defined, sorted(named - defined)
