"""`kit demo`: build the digits competition, then run the loop (folds -> train -> blend -> submit) on it."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from kit.config.load import load_config
from kit.data.workspace import open_workspace
from kit.demo.digits import build_demo
from kit.errors import KitError


def run_demo(out: Path, config: Path, *, data_only: bool, force: bool, console: Console) -> None:
    build_demo(out, force=force)
    console.print(f"[green]demo competition[/] in {out}")
    if data_only:
        return
    if not config.exists():
        raise KitError(f"{config} not found; run `kit demo` from the repository root, or pass -c kit.yaml")
    cfg = load_config(config)
    ws = open_workspace(cfg)
    counts = {c: int((ws.train.labels == i).sum()) for i, c in enumerate(ws.classes)}  # type: ignore[union-attr]
    console.print(f"train: {len(ws.train)} images, test: {len(ws.test or [])}; class counts {counts}")
    console.print(f"folds: k={ws.folds.k}, grouped={ws.folds.grouped}, fingerprint {ws.folds.fingerprint}")
