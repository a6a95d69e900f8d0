"""The embedded demo competition: scikit-learn's handwritten digits (real scans, no download) made long-tailed.

Written in the Dacon layout: train.csv (id,img_path,label,writer), test.csv (id,img_path),
sample_submission.csv (id,label), train/ and test/ PNG folders. Labels are words; class counts fall
geometrically (imbalance ratio about 20). `writer` is a synthetic group column (blocks of 30 consecutive scans)
that exercises group-aware folds; the test split holds out whole writers. The test answers are written to
`answers/test_answers.csv`, outside the tables kit reads, to score a submission at the end.

Every folder `kit demo` builds holds a marker file (`.kit-demo.json`); kit writes into, or replaces, a non-empty
folder only when it holds that marker, so a user's folder is never overwritten (`--force` included).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from kit.artifacts.atomic import atomic_dir, atomic_write_json
from kit.errors import KitError

CLASS_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
IMAGE_PX = 32
IMBALANCE = 20.0
TEST_FRACTION = 0.25
WRITER_BLOCK = 30
DEMO_MARKER = ".kit-demo.json"


def marker_record(what: str) -> dict[str, object]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        kit_version = version("kit")
    except PackageNotFoundError:
        kit_version = "unknown"
    return {
        "written_by": "kit demo",
        "what": what,
        "kit_version": kit_version,
        "note": "kit replaces or writes into this folder only because this marker is here; delete the "
        "folder when you are done with the demo",
    }


def is_demo_folder(path: Path) -> bool:
    return (path / DEMO_MARKER).is_file()


def check_demo_target(path: Path, option: str = "--out") -> None:
    """Refuse `path` unless it is new, an empty folder, or a folder `kit demo` built (it holds the marker)."""
    if path.exists() and not path.is_dir():
        raise KitError(
            f"{option} {path} is a file; choose a new folder for the demo, e.g. {option} data/demo"
        )
    if not path.is_dir() or is_demo_folder(path) or not any(path.iterdir()):
        return
    old = (
        " (it looks like a demo from an older kit: delete it yourself to rebuild it there)"
        if (path / "answers" / "test_answers.csv").is_file()
        else ""
    )
    raise KitError(
        f"{option} {path} is not empty and was not built by `kit demo` (no {DEMO_MARKER} in it){old}; kit never "
        f"writes into or deletes a folder it did not build, --force included. Choose a new or empty folder, "
        f"e.g. {option} data/demo"
    )


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    img = Image.fromarray(pixels, mode="L").resize((IMAGE_PX, IMAGE_PX), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def long_tail_indices(y: np.ndarray, seed: int = 0, imbalance: float = IMBALANCE) -> np.ndarray:
    """Keep a geometric share per class: class 0 keeps all, class 9 keeps 1/imbalance."""
    rng = np.random.default_rng(seed)
    keep = []
    n_classes = int(y.max()) + 1
    for c in range(n_classes):
        idx = np.flatnonzero(y == c)
        share = imbalance ** (-c / (n_classes - 1))
        n = max(4, round(len(idx) * share))
        keep.append(np.sort(rng.choice(idx, size=n, replace=False)))
    return np.sort(np.concatenate(keep))


def competition_section(root: Path) -> dict[str, object]:
    """The kit.yaml `competition:` section for a demo built at `root` (as the repository's kit.yaml has it)."""
    return {
        "name": "digits-demo",
        "root": str(root),
        "train": "train.csv",
        "test": "test.csv",
        "sample_submission": "sample_submission.csv",
        "id_column": "id",
        "image_column": "img_path",
        "label_column": "label",
        "group_column": "writer",
        "classes": list(CLASS_WORDS),
        "metric": "weighted_f1",
    }


def build_demo(out: Path, *, seed: int = 0, force: bool = False) -> Path:
    """Write the demo competition to `out` (atomically, with the demo marker). Returns `out`; a complete
    existing one is kept unless `force`. Refuses a non-empty `out` that `kit demo` did not build."""
    check_demo_target(out)
    complete = (out / "train.csv").exists() and (out / "answers" / "test_answers.csv").exists()
    if complete and not force:
        return out
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    y_all = digits.target.astype(np.int64)
    writer_all = np.arange(len(y_all)) // WRITER_BLOCK
    keep = long_tail_indices(y_all, seed)
    rng = np.random.default_rng(seed + 1)
    # hold out whole writers for the test split, as a real competition would
    writers = np.unique(writer_all[keep])
    test_writers = set(
        rng.choice(writers, size=max(1, round(len(writers) * TEST_FRACTION)), replace=False).tolist()
    )
    is_test = np.array([writer_all[i] in test_writers for i in keep])
    train_idx, test_idx = keep[~is_test], keep[is_test]

    with atomic_dir(out) as tmp:
        atomic_write_json(tmp / DEMO_MARKER, marker_record("the demo competition's data"))
        (tmp / "train").mkdir()
        (tmp / "test").mkdir()
        (tmp / "answers").mkdir()
        train_rows = []
        for n, i in enumerate(train_idx):
            name = f"TRAIN_{n:04d}.png"
            (tmp / "train" / name).write_bytes(_png(images[i]))
            train_rows.append(
                [f"TRAIN_{n:04d}", f"./train/{name}", CLASS_WORDS[y_all[i]], f"w{writer_all[i]:03d}"]
            )
        test_rows, answer_rows, sample_rows = [], [], []
        for n, i in enumerate(test_idx):
            tid = f"TEST_{n:03d}"
            (tmp / "test" / f"{tid}.png").write_bytes(_png(images[i]))
            test_rows.append([tid, f"./test/{tid}.png"])
            answer_rows.append([tid, CLASS_WORDS[y_all[i]]])
            sample_rows.append([tid, CLASS_WORDS[0]])
        _write_csv(tmp / "train.csv", ["id", "img_path", "label", "writer"], train_rows)
        _write_csv(tmp / "test.csv", ["id", "img_path"], test_rows)
        _write_csv(tmp / "sample_submission.csv", ["id", "label"], sample_rows)
        _write_csv(tmp / "answers" / "test_answers.csv", ["id", "label"], answer_rows)
    return out
