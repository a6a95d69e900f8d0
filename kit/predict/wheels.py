"""`kit export --wheels`: kit and its dependencies as wheels, for `pip install --no-index` in offline notebooks.

DIR/wheels holds kit's own wheel (built from the source tree kit is imported from) and one wheel per package kit
needs, pinned to the version installed here, except torch and torchvision (and what only they need: CUDA
libraries, triton): a notebook image ships its own CUDA build of those, and kit accepts any torch >= 2.4.
The notebook installs with `pip install --no-index --find-links DIR/wheels kit`; packages it already has at a
fitting version (numpy, pillow...) are kept.

The closure is read from the installed packages' metadata, so the wheels are the versions kit was trained and
tested with, for this machine's Python and platform (export on a machine like the notebook's: Kaggle runs
Linux x86_64 with its own Python; compiled packages it already has are kept, not reinstalled).
"""

from __future__ import annotations

import importlib.metadata as md
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from kit.errors import KitError

EXCLUDED = ("torch", "torchvision", "triton")  # and nvidia-* (torch's CUDA libraries)
SOURCE_FILES = ("pyproject.toml", "README.md")


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def excluded(name: str) -> bool:
    n = canonical(name)
    return n in EXCLUDED or n.startswith("nvidia-")


def kit_source() -> Path:
    """The source tree kit is imported from (a checkout or an editable install): kit's wheel is built from it."""
    import kit

    root = Path(kit.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise KitError(
            f"--wheels builds kit's wheel from its source tree, but kit is imported from {root}, which has no "
            "pyproject.toml; run kit export from a checkout (`pip install -e .`)"
        )
    return root


def kit_requirements(source: Path) -> list[str]:
    """kit's runtime requirements from its pyproject.toml (extras left out)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the installed metadata says the same
        return [r for r in md.requires("kit") or [] if "extra ==" not in r]
    data = tomllib.loads((source / "pyproject.toml").read_text("utf-8"))
    return list(data["project"]["dependencies"])


def pinned_closure(requirements: Iterable[str]) -> list[str]:
    """`name==version` of every installed package the requirements reach (extras and markers followed),
    torch and torchvision (and what is reached only through them) left out; sorted by name."""
    from packaging.requirements import Requirement

    seen: dict[str, str] = {}
    extras: dict[str, set[str]] = {}
    todo: list[tuple[str, frozenset[str]]] = [(r, frozenset()) for r in requirements]
    while todo:
        text, parent_extras = todo.pop()  # a requirement, and the extras its package was asked with
        req = Requirement(text)
        if req.marker is not None and not any(
            req.marker.evaluate({"extra": e}) for e in parent_extras | {""}
        ):
            continue
        name = canonical(req.name)
        if excluded(name) or (name in seen and req.extras <= extras[name]):
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            raise KitError(
                f"--wheels: '{req.name}' (needed by kit) is not installed here; install kit's dependencies "
                "first (`pip install -e .`)"
            ) from None
        seen[name] = dist.version
        extras[name] = extras.get(name, set()) | set(req.extras)
        todo += [(r, frozenset(extras[name])) for r in dist.requires or []]
    return [f"{n}=={v}" for n, v in sorted(seen.items())]


def pip_commands(dest: Path, source: Path, pins: list[str]) -> list[list[str]]:
    """The pip command lines: kit's wheel from `source`, then a wheel for each pin (downloaded, or built from
    an sdist where PyPI has no wheel). Both with --no-deps: the pins are the closure already, so pip never
    pulls in torch. kit's wheel builds with the setuptools installed here when there is one (no index needed)."""
    import importlib.util

    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dest)]
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    cmds = [[*pip, *isolation, str(source)]]
    if pins:
        cmds.append([*pip, *pins])
    return cmds


@dataclass(frozen=True)
class Wheels:
    folder: Path
    files: list[str]
    size: int


Run = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True)


def write_wheels(
    dest: Path,
    *,
    deps: bool = True,
    run: Run = _run,
) -> Wheels:
    """kit's wheel (and, with `deps`, the pinned dependency wheels) into `dest`. kit's source is copied to a
    temporary folder first (kit.predict.scratch: removed by the next run if this one is killed), so building
    leaves nothing in the source tree. A failing pip is a KitError with its
    last lines."""
    source = kit_source()
    pins = pinned_closure(kit_requirements(source)) if deps else []
    dest.mkdir(parents=True, exist_ok=True)
    from kit.predict.scratch import scratch_dir

    with scratch_dir("kit-wheel", "a copy of kit's source", "kit export") as tmp:
        src = tmp / "kit-src"
        src.mkdir()
        for name in SOURCE_FILES:
            if (source / name).is_file():
                shutil.copy2(source / name, src / name)
        shutil.copytree(source / "kit", src / "kit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for cmd in pip_commands(dest, src, pins):
            res = run(cmd)
            if res.returncode != 0:
                tail = (res.stderr or res.stdout or "").strip().splitlines()[-8:]
                raise KitError(
                    f"--wheels: `{' '.join(cmd[1:8])} ...` failed (exit {res.returncode}); nothing was written. pip said:",
                    problems=tail,
                )
    files = sorted(p.name for p in dest.iterdir() if p.is_file())
    if not any(f.startswith("kit-") and f.endswith(".whl") for f in files):
        raise KitError(f"--wheels: pip reported success but no kit wheel is in {dest}")
    return Wheels(dest, files, sum((dest / f).stat().st_size for f in files))
