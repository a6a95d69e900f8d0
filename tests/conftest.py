"""Shared fixtures: real image files and competition folders built in tmp_path; nothing touches the network."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub

import numpy as np
import pytest
from typer.testing import CliRunner


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (20, 16), mode: str = "RGB") -> Path:
    """A real image file (format from the suffix) with seeded random pixels."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]], bom: bool = False) -> Path:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real embedded demo competition (long-tailed digits PNGs), built once per test session."""
    from kit.demo.digits import build_demo

    return build_demo(tmp_path_factory.mktemp("demo") / "data")


# `kit init`'s convnext member made tiny (2 folds, 1 epoch, 32 px): what CLI tests pass as --set overrides
TINY_INIT_MEMBER = [
    "folds.k=2",
    "members.convnext.model=test_convnext",
    "members.convnext.pretrained=false",
    "members.convnext.img_size=32",
    "members.convnext.epochs=1",
]


def bench_selection():
    """bench/bench_selection.py as a module (its simulated competitions: tests use the same process)."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "bench" / "bench_selection.py"
    spec = importlib.util.spec_from_file_location("bench_selection", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_selection"] = mod
    spec.loader.exec_module(mod)
    return mod


def multinomial_gradient(model, X: np.ndarray, y: np.ndarray, C: float) -> np.ndarray:
    """scikit-learn's LogisticRegression objective's gradient (mean log loss + ||coef||^2 / (2 C n)) at a
    kit.blend.logreg.Multinomial, in float64, written out here to check kit's solver against."""
    n = len(y)
    z = X.astype(np.float64) @ model.coef.T.astype(np.float64) + model.intercept
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(n), np.searchsorted(model.classes, y)] -= 1.0
    return np.concatenate([(X.T @ p / n + model.coef.T / (C * n)).ravel(), p.mean(axis=0)])


def multinomial_objective(
    coef: np.ndarray, intercept: np.ndarray, X: np.ndarray, y: np.ndarray, C: float
) -> float:
    """scikit-learn's LogisticRegression objective (mean log loss + ||coef||^2 / (2 C n)) in float64 at
    coefficients [K, d] and intercepts [K] over the classes 0..K-1, written out here to check kit's solver."""
    z = X.astype(np.float64) @ np.asarray(coef, np.float64).T + np.asarray(intercept, np.float64)
    top = z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    loss = float((log_norm - z[np.arange(len(y)), y]).mean())
    return loss + float((np.asarray(coef, np.float64) ** 2).sum()) / (2 * C * len(y))


def set_args(overrides: list[str]) -> list[str]:
    """['a=1', 'b=2'] -> ['--set', 'a=1', '--set', 'b=2']"""
    return [a for s in overrides for a in ("--set", s)]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, args: list[str], cwd: Path | None = None):
    """Run the real `kit` Typer app (the console script's target) with args; returns the Result."""
    from kit.cli.app import app

    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return runner.invoke(app, args, catch_exceptions=False)
    finally:
        os.chdir(old)
