"""A tiny long-tailed competition of real PNGs for the training tests (class = a coloured stripe pattern)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from conftest import write_csv

CLASSES = ["cat", "dog", "eel"]
COUNTS = (18, 10, 6)  # long-tailed


def make_competition(root: Path, size: int = 24, n_test: int = 8, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    rows, test_rows = [], []

    def img(c: int) -> np.ndarray:
        a = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
        a[:, :, c] = a[:, :, c] // 2 + 150  # class c: a bright channel c
        return a

    i = 0
    for c, n in enumerate(COUNTS):
        for _ in range(n):
            name = f"train/{i:03d}.png"
            (root / "train").mkdir(parents=True, exist_ok=True)
            Image.fromarray(img(c)).save(root / name)
            rows.append([f"{i:03d}", name, CLASSES[c]])
            i += 1
    for j in range(n_test):
        name = f"test/t{j:03d}.png"
        (root / "test").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img(j % 3)).save(root / name)
        test_rows.append([f"t{j:03d}", name])
    write_csv(root / "train.csv", ["id", "img_path", "label"], rows)
    write_csv(root / "test.csv", ["id", "img_path"], test_rows)
    return root


def write_config(path: Path, data_root: Path, members: dict[str, Any], k: int = 2) -> Path:
    cfg = {
        "competition": {
            "root": str(data_root),
            "train": "train.csv",
            "test": "test.csv",
            "id_column": "id",
            "image_column": "img_path",
            "label_column": "label",
            "metric": "weighted_f1",
        },
        "folds": {"k": k, "seed": 0},
        "workdir": str(path.parent / "work"),
        "members": members,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


SWIN_KW = {"window_size": 4, "embed_dim": 24, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]}


def member(model: str = "test_convnext", **kw: Any) -> dict[str, Any]:
    base = {"kind": "timm", "model": model, "pretrained": False, "img_size": 32, "epochs": 1, "batch_size": 8}
    if model.startswith("swin"):
        base["model_kwargs"] = dict(SWIN_KW)
    base.update(kw)
    return base


def known_member(config: Path, overrides: list[str] | None = None, name: str = "m") -> dict[str, str]:
    """Write member `name` through kit's artifact writer with known test logits: test row i (in the test
    table's order) has class i % C as its clear argmax (multi-label: that one label on). Returns each test
    id's expected class."""
    from kit.artifacts.member import write_member
    from kit.config.load import load_config
    from kit.workspace import open_workspace

    ws = open_workspace(load_config(config, overrides))
    assert ws.test is not None
    n_c = len(ws.classes)
    logits = np.full((len(ws.test), 1, n_c), -4.0, np.float32)
    for i in range(len(ws.test)):
        logits[i, 0, i % n_c] = 4.0
    write_member(
        ws.workdir,
        name,
        oof=np.zeros((len(ws.train), 1, n_c), np.float32),
        test=logits,
        views=["plain"],
        classes=ws.classes,
        fingerprints=ws.fingerprints(),
        config={"kind": "timm"},
        metrics={"metric": "accuracy", "pooled": {"accuracy": 0.5}},
        timings={},
    )
    return {t: ws.classes[i % n_c] for i, t in enumerate(ws.test.ids)}


def write_relative_config(
    base: Path,
    members: dict[str, Any],
    k: int = 2,
    workdir: str = "work",
    competition: dict[str, Any] | None = None,
) -> Path:
    """base/kit.yaml for the competition in base/data (with its sample_submission.csv), every path relative
    to base, so a copied folder is a working copy of the project; `competition` sets or adds keys there."""
    cfg = {
        "competition": {
            "root": "data",
            "train": "train.csv",
            "test": "test.csv",
            "sample_submission": "sample_submission.csv",
            "id_column": "id",
            "image_column": "img_path",
            "label_column": "label",
            "metric": "weighted_f1",
            **(competition or {}),
        },
        "folds": {"k": k, "seed": 0},
        "workdir": workdir,
        "members": members,
    }
    path = base / "kit.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), "utf-8")
    return path
