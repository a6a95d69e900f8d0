"""`kit init`: discover a competition's layout from its folder and render a commented kit.yaml from it.

`detect_layout` only reads file names and CSV headers/rows; `render_kit_yaml` is pure text.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kit.data.table import IMAGE_EXTS, is_image, read_csv

ID_NAMES = ("id", "image_id", "img_id", "imageid", "image", "file", "filename", "file_name", "fname", "name")
LABEL_NAMES = (
    "label",
    "labels",
    "class",
    "target",
    "category",
    "species",
    "diagnosis",
    "y",
    "class_name",
    "breed",
    "landmark_id",
    "disease",
    "type",
    "artist",
)
GROUP_HINTS = (
    "group",
    "patient",
    "subject",
    "person",
    "writer",
    "user",
    "individual",
    "session",
    "site",
    "video",
    "source",
    "case",
    "study",
    "owner",
    "author",
    "camera",
    "location",
    "family",
    "uploader",
)


@dataclass
class Guess:
    root: Path
    train: str | None = None
    train_images: str | None = None
    test: str | None = None
    test_images: str | None = None
    sample_submission: str | None = None
    id_column: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    group_column: str | None = None
    n_train: int | None = None
    n_classes: int | None = None
    notes: list[str] = field(default_factory=list)  # what was guessed, and how
    wrote: list[Path] = field(default_factory=list)  # files written besides the config
    missing: list[str] = field(default_factory=list)  # what could not be guessed


def _rel(p: Path, root: Path) -> str:
    return p.relative_to(root).as_posix()


def _csvs(root: Path) -> list[Path]:
    found = [p for p in root.glob("*.csv")] + [p for p in root.glob("*/*.csv")]
    return sorted(found, key=lambda p: (len(p.parts), p.name))


def _pick(paths: list[Path], *words: str, avoid: tuple[str, ...] = ()) -> Path | None:
    for p in paths:
        n = p.stem.lower()
        if any(w in n for w in words) and not any(a in n for a in avoid):
            return p
    return None


def _image_folders(root: Path) -> dict[Path, int]:
    """Folders (up to two levels down) holding image files directly, with counts."""
    out: dict[Path, int] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        if depth > 3:
            dirnames[:] = []
            continue
        n = sum(1 for f in filenames if Path(f).suffix.lower() in IMAGE_EXTS)
        if n:
            out[Path(dirpath)] = n
    return out


def _class_folder_root(folder: Path) -> bool:
    subs = [d for d in folder.iterdir() if d.is_dir()] if folder.is_dir() else []
    with_images = [d for d in subs if any(is_image(p) for p in d.iterdir() if p.is_file())]
    return len(with_images) >= 2


def _looks_like_images(values: list[str]) -> bool:
    vals = [v for v in values[:50] if v]
    return bool(vals) and all(Path(v).suffix.lower() in IMAGE_EXTS for v in vals)


def _by_name(header: list[str], names: tuple[str, ...]) -> str | None:
    lower = {h.lower(): h for h in header}
    for n in names:
        if n in lower:
            return lower[n]
    return None


def _find_image_folder(root: Path, keys: list[str], folders: dict[Path, int], prefer: str) -> Path | None:
    """The folder where the first table keys resolve, by file name or by stem."""
    probe = [k.strip().removeprefix("./") for k in keys[:20] if k.strip()]
    ranked = sorted(folders, key=lambda d: (prefer not in d.name.lower(), len(d.parts)))
    for d in [root, *ranked]:
        names = None
        hits = 0
        for k in probe:
            if (d / k).is_file():
                hits += 1
                continue
            if names is None:
                names = {n for f in os.listdir(d) for n in (f, Path(f).stem)}
            if k in names or Path(k).name in names:
                hits += 1
        if probe and hits >= max(1, len(probe) * 0.8):
            return d
    return None


def detect_layout(root: Path) -> Guess:
    root = root.resolve()
    g = Guess(root=root)
    csvs = _csvs(root)
    folders = _image_folders(root)
    sample = _pick(csvs, "sample", "submission")
    train_csv = _pick(csvs, "train", avoid=("sample", "submission"))
    test_csv = _pick(csvs, "test", avoid=("sample", "submission"))
    if sample:
        g.sample_submission = _rel(sample, root)
        g.notes.append(f"sample submission: {g.sample_submission}")
    else:
        g.missing.append(
            "no sample_submission CSV found; `kit submit` needs one (competition.sample_submission)"
        )

    class_root = next(
        (
            d
            for d in [root / "train", root / "training", root / "Train", root]
            if d.is_dir() and d.name.lower() in ("train", "training") and _class_folder_root(d)
        ),
        None,
    )
    if train_csv is not None:
        header, rows = read_csv(train_csv)
        g.train = _rel(train_csv, root)
        g.n_train = len(rows)
        cols = {h: [r.get(h, "") for r in rows] for h in header}
        g.image_column = next((h for h in header if _looks_like_images(cols[h])), None)
        unique = [h for h in header if len(set(cols[h])) == len(rows)]
        g.id_column = _by_name([h for h in header if h in unique], ID_NAMES) or (
            unique[0] if unique and unique[0] != g.image_column else None
        )
        g.label_column = _by_name([h for h in header if h not in (g.id_column, g.image_column)], LABEL_NAMES)
        if g.label_column is None:
            rest = [
                h
                for h in header
                if h not in (g.id_column, g.image_column) and 1 < len(set(cols[h])) <= max(2, len(rows) // 2)
            ]
            g.label_column = rest[-1] if rest else None
            if g.label_column:
                g.notes.append(f"label column guessed by its values: '{g.label_column}' (check it)")
        if g.label_column:
            g.n_classes = len(set(cols[g.label_column]))
        for h in header:
            if h in (g.id_column, g.image_column, g.label_column):
                continue
            n_uniq = len(set(cols[h]))
            if any(w in h.lower() for w in GROUP_HINTS) and 1 < n_uniq < len(rows):
                g.group_column = h
                break
        keys = cols[g.image_column] if g.image_column else (cols[g.id_column] if g.id_column else [])
        img_dir = _find_image_folder(root, keys, folders, "train")
        if img_dir is not None and img_dir != root:
            g.train_images = _rel(img_dir, root)
        elif img_dir is None:
            g.missing.append(
                "could not find the folder holding the train images; set competition.train_images"
            )
        g.notes.append(
            f"train table: {g.train} ({g.n_train} rows): id column '{g.id_column}', image column "
            f"'{g.image_column}', label column '{g.label_column}' ({g.n_classes} classes)"
        )
        if g.id_column is None and g.image_column is None:
            g.missing.append("no id or image-path column found in the train table; set competition.id_column")
        if g.label_column is None:
            g.missing.append("no label column found in the train table; set competition.label_column")
    elif class_root is not None:
        g.train = _rel(class_root, root)
        classes = sorted(d.name for d in class_root.iterdir() if d.is_dir())
        g.n_classes = len(classes)
        g.n_train = sum(1 for p in class_root.rglob("*") if p.is_file() and is_image(p))
        g.notes.append(
            f"class-folder layout: {g.train}/<class>/* ({g.n_classes} classes, {g.n_train} images)"
        )
    else:
        g.missing.append("no train table (train*.csv) and no train/<class>/ folders; set competition.train")

    if test_csv is not None:
        header, rows = read_csv(test_csv)
        g.test = _rel(test_csv, root)
        img_col = (
            g.image_column
            if g.image_column in header
            else next((h for h in header if _looks_like_images([r.get(h, "") for r in rows])), None)
        )
        id_col = g.id_column if g.id_column in header else (header[0] if header else None)
        keys = [r.get(img_col or id_col or "", "") for r in rows]
        img_dir = _find_image_folder(root, keys, folders, "test")
        if img_dir is not None and img_dir != root:
            g.test_images = _rel(img_dir, root)
        if g.image_column and img_col != g.image_column:
            g.missing.append(
                f"the test table has no '{g.image_column}' column; check competition.image_column"
            )
        g.notes.append(f"test table: {g.test} ({len(rows)} rows)")
    else:
        test_dir = next((d for d in folders if re.search(r"test", d.name, re.I)), None)
        if test_dir is not None:
            g.test = _rel(test_dir, root)
            g.notes.append(f"test images folder: {g.test} ({folders[test_dir]} images)")
        else:
            g.missing.append("no test table or test image folder found; set competition.test")
    if g.group_column:
        g.notes.append(f"group column: '{g.group_column}' (folds keep each group on one side)")
    elif g.train and train_csv is not None:
        g.notes.append(
            "no group column found; if one subject/patient has several images, set "
            "competition.group_column or CV will leak"
        )
    return g


def _q(v: object) -> str:
    return yaml.safe_dump(v, allow_unicode=True, default_flow_style=True).strip().removesuffix("...").strip()


def render_kit_yaml(g: Guess, config_dir: Path) -> str:
    root = os.path.relpath(g.root, config_dir.resolve())

    def line(key: str, value: object, comment: str) -> str:
        shown = "null" if value is None else _q(value)
        return f"  {key}: {shown}".ljust(40) + f"  # {comment}\n"

    out = [
        "# kit.yaml: written by `kit init`; check the guesses, then run `kit validate` and `kit train`.\n",
        "# Paths under competition are relative to competition.root; root is relative to this file.\n",
        "competition:\n",
        line("name", g.root.name, "used in submission file names"),
        line("root", root, "the competition folder"),
        line("train", g.train, "train table (.csv) or train/<class>/ folders"),
        line("train_images", g.train_images, "folder the train table's ids/paths are in (null: root)"),
        line("test", g.test, "test table (.csv) or folder of test images"),
        line("test_images", g.test_images, "folder the test table's ids/paths are in (null: root)"),
        line("sample_submission", g.sample_submission, "shape of the file `kit submit` writes"),
        line("id_column", g.id_column, "row id, kept as the exact string"),
        line("image_column", g.image_column, "image path column (null: find images by id)"),
        line("label_column", g.label_column, "class label column"),
        line("group_column", g.group_column, "same group never in train and validation"),
        line("classes", None, "class order; null = sorted labels"),
        line("metric", "weighted_f1", "weighted_f1 | macro_f1 | accuracy | log_loss"),
        "folds:\n",
        "  k: 5\n",
        "  seed: 42\n",
        "  use_groups: true                         # StratifiedGroupKFold when group_column is set\n",
        "workdir: work                              # caches, folds, member artifacts, blends\n",
        "members:\n",
        "  convnext:\n",
        "    kind: timm\n",
        "    model: convnext_tiny                   # any timm name: swin_tiny_patch4_window7_224, efficientnet_b0\n",
        "    pretrained: true                       # hub weights; or weights: /path/to/file.safetensors\n",
        "    img_size: 224\n",
        "    epochs: 10\n",
        "    batch_size: 32\n",
        "    lr: 0.0001\n",
        "    loss: {kind: focal, gamma: 2.0}\n",
        "    sampler: {kind: weighted, power: 0.5}   # WeightedRandomSampler for long tails\n",
        "    tta: [plain, hflip]                    # flips only where orientation is not the label\n",
        "  # more members for the blend (uncomment; `kit train NAME` trains one):\n",
        "  # swin:\n",
        "  #   kind: timm\n",
        "  #   model: swin_tiny_patch4_window7_224\n",
        "  #   pretrained: true\n",
        "  #   img_size: 224\n",
        "  #   epochs: 10\n",
        "  #   lr: 0.0001\n",
        "  #   loss: {kind: focal, gamma: 2.0}\n",
        "  # effnet:\n",
        "  #   kind: timm\n",
        "  #   model: efficientnet_b0\n",
        "  #   pretrained: true\n",
        "  #   img_size: 224\n",
        "  #   epochs: 10\n",
        "  #   lr: 0.0003\n",
        "  #   sampler: {kind: weighted, power: 0.5}\n",
        "  # clip:                                  # frozen CLIP encoder + linear head on cached embeddings\n",
        "  #   kind: clip_probe\n",
        "  #   model: ViT-B-32\n",
        "  #   pretrained: laion2b_s34b_b79k\n",
        "  #   prompt: 'a photo of a {}.'            # zero-shot head init; class_names: maps labels to words\n",
    ]
    return "".join(out)


def _is_kit_config(path: Path) -> bool:
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return data is None or (isinstance(data, dict) and "competition" in data)  # None: comments only


def check_config_out(out: Path, *, force: bool) -> None:
    """`kit init --out`: a .yaml file; an existing one only with --force, and only when it is a kit config."""
    from kit.errors import KitError

    if out.suffix.lower() not in (".yaml", ".yml"):
        raise KitError(f"--out {out}: a kit config is a .yaml file; use e.g. --out kit.yaml")
    if out.is_dir():
        raise KitError(f"--out {out} is a folder; give a file name, e.g. --out {out / 'kit.yaml'}")
    if not out.exists():
        return
    if not force:
        raise KitError(f"{out} already exists; pass --force to overwrite it, or --out OTHER.yaml")
    if not _is_kit_config(out):
        raise KitError(
            f"refusing to overwrite {out}: it is not a kit config (no `competition:` section), so kit did not "
            "write it; --force replaces only a kit.yaml (or an empty one). Choose another --out"
        )


def write_kit_yaml(data_dir: Path, out: Path, *, force: bool = False) -> Guess:
    from kit.artifacts.atomic import atomic_write_text
    from kit.errors import KitError

    if not data_dir.is_dir():
        raise KitError(f"{data_dir}: not a folder; pass the competition's data folder to `kit init`")
    check_config_out(out, force=force)
    g = detect_layout(data_dir)
    atomic_write_text(out, render_kit_yaml(g, out.parent))
    ensemble = out.parent / "ensembles" / "all.yaml"
    if not ensemble.exists():
        ensemble.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(ensemble, default_ensemble_text())
        g.wrote.append(ensemble)
    return g


def default_ensemble_text() -> str:
    """The ensemble spec `kit init` writes next to kit.yaml (the same as the repository's ensembles/all.yaml)."""
    return (Path(__file__).resolve().parents[1] / "templates" / "ensemble_all.yaml").read_text("utf-8")
