"""`kit init`: discover a competition's layout from its folder and render a commented kit.yaml from it.

`detect_layout` only reads file names and CSV headers/rows; `render_kit_yaml` is pure text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

import yaml

from kit.config.schema import Metric
from kit.data.table import IMAGE_EXTS, ImageIndex, is_float, is_image, is_int, read_csv
from kit.errors import KitError

ID_NAMES = (
    "id",
    "image_id",
    "img_id",
    "imageid",
    "id_code",
    "image",
    "file",
    "filename",
    "file_name",
    "fname",
    "name",
)
# label columns by name, in order of preference (matched case-insensitively, whole name)
LABEL_NAMES = (
    "label",
    "labels",
    "target",
    "class",
    "category_id",
    "category",
    "class_id",
    "label_id",
    "species",
    "diagnosis",
    "breed",
    "class_name",
    "landmark_id",
    "disease",
    "grade",
    "level",
    "dx",
    "y",
    "type",
    "artist",
    "id",  # humpback whale's `Image,Id`: the whale id is the label when the image column is the key
)
# group-like column names (a name token starting with one of these), in order of preference: a subject before
# the place or the sequence a picture came from
GROUP_HINTS = (
    "patient",
    "subject",
    "person",
    "individual",
    "writer",
    "user",
    "author",
    "owner",
    "uploader",
    "family",
    "case",
    "study",
    "location",
    "site",
    "camera",
    "seq",
    "sequence",
    "session",
    "video",
    "source",
    "group",
)
ONE_HOT_VALUES = frozenset({"0", "1", "0.0", "1.0"})
# the test-time views `kit init` proposes (the schema's default is [plain]), and what it prints about them
INIT_TTA = ["plain", "hflip"]
INIT_TTA_NOTE = (
    "members.convnext.tta lists plain and hflip in kit.yaml: the hflip view mirrors each test image, which "
    "assumes orientation does not carry the label (it does for letters b/d, p/q, digits, arrows, left/right "
    "body parts); where it does, set members.convnext.tta: ['plain'] (the default when tta is left out)"
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
    label_columns: list[str] | None = None
    group_column: str | None = None
    groups_file: str | None = None  # near-duplicate clusters as groups (relative to the config's folder)
    task: str = "multiclass"  # multilabel: several labels in a cell, or 0/1 columns with several 1s a row
    at_least_one_label: bool = False  # multilabel: every train row has a label
    n_train: int | None = None
    n_classes: int | None = None
    notes: list[str] = field(default_factory=list)  # what was guessed, and how
    wrote: list[Path] = field(default_factory=list)  # files written besides the config
    missing: list[str] = field(default_factory=list)  # what could not be guessed


def _rel(p: Path, root: Path) -> str:
    return p.relative_to(root).as_posix()


TABLE_GLOBS = ("*.csv", "*.tsv")


def _csvs(root: Path) -> list[Path]:
    """Tables (.csv, .tsv) in the folder and one level down, shallow first."""
    found = [p for g in TABLE_GLOBS for p in [*root.glob(g), *root.glob(f"*/{g}")]]
    return sorted(found, key=lambda p: (len(p.parts), p.name))


def _pick(paths: list[Path], *words: str, avoid: tuple[str, ...] = ()) -> Path | None:
    for p in paths:
        n = p.stem.lower()
        if any(w in n for w in words) and not any(a in n for a in avoid):
            return p
    return None


def _image_folders(root: Path) -> dict[Path, int]:
    """Folders (up to three levels down) holding image files directly, with counts."""
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


def _class_root(root: Path) -> Path | None:
    """A train folder holding one sub-folder of images per class: train/, training/, train_images/, Train/ ..."""
    candidates = [root, *sorted(d for d in root.iterdir() if d.is_dir())]
    candidates += sorted(d for c in candidates[1:] for d in c.iterdir() if d.is_dir())
    for d in candidates:
        if d.name.lower().startswith(("train", "training")) and _class_folder_root(d):
            return d
    return None


def _coco_files(root: Path) -> list[tuple[Path, bool, list[str]]]:
    """COCO-style annotation files (up to two levels down): (path, has annotations and categories, the first
    image file names)."""
    import json

    out = []
    for p in sorted([*root.glob("*.json"), *root.glob("*/*.json")], key=lambda p: (len(p.parts), p.name)):
        if p.stat().st_size > 2_000_000_000:
            continue
        try:
            data = json.loads(p.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("images"), list):
            labelled = isinstance(data.get("annotations"), list) and isinstance(data.get("categories"), list)
            names = [str(i.get("file_name", "")) for i in data["images"][:20] if isinstance(i, dict)]
            out.append((p, labelled, names))
    return out


def _coco_images(g: Guess, coco: Path, names: list[str], folders: dict[Path, int], split: str) -> str | None:
    """competition.{split}_images for a COCO file whose file names are not relative to its own folder
    (iWildCam 2020: annotations at the top, images in train/ and test/)."""
    probe = [n for n in names if n]
    if not probe or _resolve_share(coco.parent, probe) >= 0.8:
        return None
    img_dir = _find_image_folder(g.root, probe, folders, split)
    if img_dir is None:
        g.missing.append(
            f"could not find the folder holding the images {_rel(coco, g.root)} names; set "
            f"competition.{split}_images"
        )
        return None
    return _rel(img_dir, g.root)


def _image_list(csvs: list[Path], avoid: tuple[str, ...]) -> Path | None:
    """A table that lists image files and is neither the sample nor the test table (State Farm's
    driver_imgs_list.csv: subject, classname, img)."""
    for p in csvs:
        if any(a in p.stem.lower() for a in avoid):
            continue
        try:
            header, rows = read_csv(p)
        except KitError:
            continue
        if rows and any(_looks_like_images([r.get(h, "") for r in rows]) for h in header):
            return p
    return None


def _labels_in_file_names(root: Path, folders: dict[Path, int]) -> str | None:
    """'cat.0.jpg', 'dog.1.jpg' in a train folder: the label is only in the file name (dogs vs cats)."""
    for d in folders:
        if not d.name.lower().startswith("train"):
            continue
        names = [f for f in sorted(os.listdir(d))[:200] if is_image(Path(f))]
        words = {f.split(".")[0] for f in names if re.fullmatch(r"[^.]+\.\d+\.[A-Za-z]+", f)}
        if names and 2 <= len(words) <= len(names) // 2:
            return f"{_rel(d, root)} ({', '.join(sorted(words)[:5])})"
    return None


def _looks_like_images(values: list[str]) -> bool:
    vals = [v for v in values[:50] if v]
    return bool(vals) and all(Path(v).suffix.lower() in IMAGE_EXTS for v in vals)


def _by_name(header: list[str], names: tuple[str, ...]) -> str | None:
    lower = {h.lower(): h for h in header}
    for n in names:
        if n in lower:
            return lower[n]
    return None


def _group_hint(name: str) -> str | None:
    """The group hint a column name carries (a token of the name starting with it), if any."""
    tokens = [t for t in re.split(r"[^a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()) if t]
    for hint in GROUP_HINTS:
        if any(t.startswith(hint) for t in tokens):
            return hint
    return None


def _find_image_folder(root: Path, keys: list[str], folders: dict[Path, int], prefer: str) -> Path | None:
    """The folder where the first table keys resolve: directly, by file name or by stem; failing that, the
    folder below which they resolve by file name (images in sub-folders: train_images/<chain>/<image>.jpg)."""
    probe = [k.strip().removeprefix("./") for k in keys[:20] if k.strip()]
    if not probe:
        return None
    ranked = sorted(folders, key=lambda d: (prefer not in d.name.lower(), len(d.parts)))
    for d in [root, *ranked]:
        if _resolve_share(d, probe) >= 0.8:
            return d
    parents = {a for d in folders for a in d.parents if root in a.parents}  # folders above image folders
    for d in sorted(parents, key=lambda d: (prefer not in d.name.lower(), len(d.parts))):
        index = ImageIndex(d)
        if sum(index.find(k) is not None for k in probe) >= 0.8 * len(probe):
            return d
    return None


def _resolve_share(d: Path, probe: list[str]) -> float:
    """The share of `probe` keys naming a file in folder `d`: as a path, a file name or a stem."""
    names = None
    hits = 0
    for k in probe:
        if (d / k).is_file():
            hits += 1
            continue
        if names is None:
            names = {n for f in os.listdir(d) for n in (f, Path(f).stem)}
            # zero-padded file names (00001.png) for integer ids (1)
            names |= {str(int(n)) for n in list(names) if is_int(n)}
        if k in names or Path(k).name in names:
            hits += 1
    return hits / len(probe)


@dataclass
class _Columns:
    """What a labelled table's columns are, guessed from names and values."""

    id_column: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    label_columns: list[str] | None = None
    group_column: str | None = None
    task: str = "multiclass"
    at_least_one_label: bool = False
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _separated_labels(values: list[str]) -> bool:
    """Cells of space-separated labels: some cell holds several, the labels recur over the rows, and in
    different company."""
    cells = [v.split() for v in values]
    if max((len(c) for c in cells), default=0) < 2:
        return False
    labels = {t for c in cells for t in c}
    if any(is_float(t) and not is_int(t) for t in labels):
        return False
    # a label appears beside different others ('scab', 'scab rust'); the words of a class name with spaces
    # ('red fox') always appear in the one cell that is that name
    cells_with: dict[str, set[str]] = {}
    for v in values:
        for t in v.split():
            cells_with.setdefault(t, set()).add(" ".join(v.split()))
    if all(len(c) == 1 for c in cells_with.values()):
        return False
    return len(labels) < max(2, len(values) // 2) and sum(len(c) for c in cells) >= 2 * len(labels)


def _measurements(values: list[str]) -> bool:
    """A column of non-integer numbers (leaf margins, ages): not labels. Integers spelled as floats (1.0, 2.0:
    how pandas writes an integer column that held a NaN) are labels."""
    return all(is_float(v) for v in values) and not all(
        is_int(v) or (is_float(v) and float(v).is_integer()) for v in values
    )


def _train_columns(header: list[str], rows: list[dict[str, str]], asked: str | None = None) -> _Columns:
    """`asked`: the one value column of the sample submission; a train column of that name is the label."""
    n = len(rows)
    cols = {h: [r.get(h, "").strip() for r in rows] for h in header}
    distinct = {h: len(set(v)) for h, v in cols.items()}
    out = _Columns()
    out.image_column = next((h for h in header if _looks_like_images(cols[h])), None)
    unique = [h for h in header if distinct[h] == n]
    named_id = _by_name(unique, ID_NAMES)  # may be the image column itself (ids written with extensions)
    out.id_column = named_id or next((h for h in unique if h != out.image_column), None)
    keys = {out.id_column, out.image_column}
    # one-hot label columns: several 0/1 columns with exactly one 1 a row (plant pathology 2020)
    binary = [h for h in header if h not in keys and cols[h] and set(cols[h]) <= ONE_HOT_VALUES]
    if len(binary) >= 2:
        ones = [sum(cols[h][i] in ("1", "1.0") for h in binary) for i in range(n)]
        if all(k == 1 for k in ones):
            out.label_columns = binary
            out.notes.append(f"one-hot label columns {binary}: each row has exactly one 1, read as its class")
            return _group_column(out, header, cols, distinct, n, keys | set(binary))
        out.label_columns, out.task = binary, "multilabel"
        out.at_least_one_label = min(ones) >= 1
        out.notes.append(
            f"multi-label: 0/1 columns {binary} hold up to {max(ones)} ones a row, so task: multilabel "
            f"(metric f1_samples; {min(ones)}-{max(ones)} labels a row)"
        )
        return _group_column(out, header, cols, distinct, n, keys | set(binary))
    groups = {h for h in header if _group_hint(h) is not None}
    candidates = [
        h
        for h in header
        if h not in keys and h not in groups and 1 < distinct[h] < n and not _measurements(cols[h])
    ]
    out.label_column = _by_name(candidates, LABEL_NAMES)
    if asked in candidates and asked != out.label_column:
        # Dacon crop disease: `disease` (names) and `disease_code`; the sample asks for disease_code
        out.label_column = asked
        out.notes.append(f"label column: '{asked}', the column the sample submission asks for")
    multi = [h for h in candidates if _separated_labels(cols[h])]
    if out.label_column is None and multi:
        out.label_column = multi[0]
    if out.label_column is not None and out.label_column in multi:
        tokens = [len(v.split()) for v in cols[out.label_column]]
        out.task, out.at_least_one_label = "multilabel", min(tokens) >= 1
        out.notes.append(
            f"multi-label: column '{out.label_column}' holds up to {max(tokens)} space-separated labels a cell, "
            f"so task: multilabel (metric f1_samples; {min(tokens)}-{max(tokens)} labels a row)"
        )
        return _group_column(out, header, cols, distinct, n, keys | {out.label_column})
    if out.label_column is None:
        plausible = [h for h in candidates if distinct[h] <= max(2, n // 2)]
        text = [h for h in plausible if not all(is_int(v) for v in cols[h])]
        pool = text or plausible
        out.label_column = pool[-1] if pool else None
        if out.label_column:
            out.notes.append(f"label column guessed by its values: '{out.label_column}' (check it)")
    return _group_column(out, header, cols, distinct, n, keys | {out.label_column})


def _group_column(
    out: _Columns, header: list[str], cols: dict[str, list[str]], distinct: dict[str, int], n: int, taken: set
) -> _Columns:
    """The group column by name (patient, subject, writer, location, seq_id, ...), with the reason."""
    found = [(GROUP_HINTS.index(hint), h) for h in header if h not in taken and (hint := _group_hint(h))]
    found = [(rank, h) for rank, h in sorted(found) if 1 < distinct[h] < n]
    if not found:
        return out
    out.group_column = found[0][1]
    counts: dict[str, int] = {}
    for v in cols[out.group_column]:
        counts[v] = counts.get(v, 0) + 1
    others = [h for _, h in found[1:]]
    out.notes.append(
        f"group column: '{out.group_column}', because its name says so and its {distinct[out.group_column]} "
        f"values repeat (up to {max(counts.values())} rows a value): folds keep each group on one side"
        + (f"; also group-like: {others}" if others else "")
    )
    return out


def detect_layout(root: Path) -> Guess:
    root = root.resolve()
    g = Guess(root=root)
    csvs = _csvs(root)
    folders = _image_folders(root)
    sample = _pick(csvs, "sample", "submission")
    test_csv = _pick(csvs, "test", avoid=("sample", "submission"))
    avoid = ("sample", "submission", "test")
    train_csv = _pick(csvs, "train", avoid=avoid) or _pick(csvs, "label", avoid=avoid)
    cocos = _coco_files(root) if train_csv is None else []
    if train_csv is None and not any(labelled for _, labelled, _ in cocos):
        train_csv = _image_list(csvs, avoid)
    if sample:
        g.sample_submission = _rel(sample, root)
        g.notes.append(f"sample submission: {g.sample_submission}")
    else:
        g.missing.append(
            "no sample_submission CSV found; `kit submit` needs one (competition.sample_submission)"
        )
    class_root = _class_root(root)
    train_coco = next(((p, names) for p, labelled, names in cocos if labelled), None)
    if train_csv is not None:
        _guess_train_table(g, train_csv, folders, class_root)
    elif train_coco is not None:
        g.train = _rel(train_coco[0], root)
        g.train_images = _coco_images(g, train_coco[0], train_coco[1], folders, "train")
        g.notes.append(
            f"COCO-style annotations: {g.train} (labels: each image's category_id; ids: the image ids)"
            + (f"; images in {g.train_images}" if g.train_images else "")
        )
    elif class_root is not None:
        _use_class_folders(g, class_root)
    elif (named := _labels_in_file_names(root, folders)) is not None:
        g.missing.append(
            f"the train images carry their labels only in their file names: {named}; kit reads labels from a "
            "table or from one folder per class: write a table `id,label` (or move the images into "
            "train/<label>/) and set competition.train"
        )
    else:
        g.missing.append("no train table (train*.csv) and no train/<class>/ folders; set competition.train")
    test_coco = next(
        ((p, names) for p, labelled, names in cocos if not labelled and "test" in _rel(p, root).lower()), None
    )
    if test_csv is not None:
        _guess_test_table(g, test_csv, folders, class_table=g.label_column is None and not g.label_columns)
    elif test_coco is not None:
        g.test = _rel(test_coco[0], root)
        g.test_images = _coco_images(g, test_coco[0], test_coco[1], folders, "test")
        g.notes.append(
            f"test: COCO-style image list {g.test}"
            + (f"; images in {g.test_images}" if g.test_images else "")
        )
    else:
        test_dir = next((d for d in folders if re.search(r"test", _rel(d, root), re.I)), None)
        if test_dir is not None:
            g.test = _rel(test_dir, root)
            g.notes.append(f"test images folder: {g.test} ({folders[test_dir]} images)")
        else:
            g.missing.append("no test table or test image folder found; set competition.test")
    if (
        not g.group_column
        and g.train
        and train_csv is not None
        and Path(g.train).suffix.lower() in (".csv", ".tsv")
    ):
        g.notes.append(
            "no group column found; if one subject/patient has several images, set "
            "competition.group_column or CV will leak"
        )
    if g.task == "multilabel":
        g.notes.append(
            "metric: f1_samples (the multi-label default); set competition.metric to the competition's metric "
            "(f1_samples, f1_micro, f1_macro, accuracy_cells, roc_auc or log_loss)"
        )
        return g
    g.notes.append(
        "metric: weighted_f1 (the default); set competition.metric to the competition's metric (weighted_f1, "
        "macro_f1, accuracy, log_loss, roc_auc, qwk, map_at_k or top_k_accuracy with metric_k)"
    )
    return g


def _use_class_folders(g: Guess, class_root: Path, why: str = "") -> None:
    g.train = _rel(class_root, g.root) if class_root != g.root else "."
    classes = sorted(d.name for d in class_root.iterdir() if d.is_dir())
    g.n_classes = len(classes)
    g.n_train = sum(1 for p in class_root.rglob("*") if p.is_file() and is_image(p))
    g.id_column = g.image_column = g.label_column = g.label_columns = g.group_column = g.train_images = None
    g.notes.append(
        f"class-folder layout: {g.train}/<class>/* ({g.n_classes} classes, {g.n_train} images){why}"
    )


def _guess_train_table(g: Guess, train_csv: Path, folders: dict[Path, int], class_root: Path | None) -> None:
    root = g.root
    header, rows = read_csv(train_csv)
    g.train = _rel(train_csv, root)
    g.n_train = len(rows)
    c = _train_columns(
        header, rows, _asked_column(root / g.sample_submission if g.sample_submission else None)
    )
    g.id_column, g.image_column, g.label_column = c.id_column, c.image_column, c.label_column
    g.label_columns, g.group_column = c.label_columns, c.group_column
    g.task, g.at_least_one_label = c.task, c.at_least_one_label
    g.missing += c.missing
    labels = (
        {r.get(c.label_column, "").strip() for r in rows} if c.label_column else set(c.label_columns or [])
    )
    if c.task == "multilabel" and c.label_column:
        labels = {t for r in rows for t in r.get(c.label_column, "").split()}
    g.n_classes = len(labels) or None
    in_class_folders = (
        class_root is not None
        and c.task != "multilabel"
        and labels
        and labels <= {d.name for d in class_root.iterdir() if d.is_dir()}
    )
    if in_class_folders and c.group_column is None:
        # the table's images sit in one folder per class (paddy disease): the folders are the labelled data
        _use_class_folders(g, class_root, f"; {g.train}'s labels are its folder names")  # type: ignore[arg-type]
        g.notes += c.notes
        return
    if in_class_folders:
        # State Farm: imgs/train/c0..c9 and a table with the driver of each image: the table, for its groups
        g.notes.append(
            f"the images of {g.train} sit in one folder per class ({_rel(class_root, root)}/<class>/); kit "  # type: ignore[arg-type]
            f"reads the table for its group column '{c.group_column}'"
        )
    keys = [r.get(g.image_column or g.id_column or "", "") for r in rows]
    img_dir = _find_image_folder(root, keys, folders, "train")
    if img_dir is not None and img_dir != root:
        g.train_images = _rel(img_dir, root)
    elif img_dir is None:
        g.missing.append("could not find the folder holding the train images; set competition.train_images")
    label = f"label columns {g.label_columns}" if g.label_columns else f"label column '{g.label_column}'"
    g.notes.append(
        f"train table: {g.train} ({g.n_train} rows): id column '{g.id_column}', image column "
        f"'{g.image_column}', {label} ({g.n_classes} classes)"
    )
    g.notes += c.notes
    if g.id_column is None and g.image_column is None:
        g.missing.append("no id or image-path column found in the train table; set competition.id_column")
    if g.label_column is None and not g.label_columns:
        g.missing.append("no label column found in the train table; set competition.label_column")


def _asked_column(sample: Path | None) -> str | None:
    """The sample submission's value column when it has exactly one besides the first (the id)."""
    if sample is None:
        return None
    try:
        header, _ = read_csv(sample)
    except KitError:
        return None
    named = [h for h in header if h and not h.startswith("Unnamed: ")]  # a pandas index column has no name
    return named[1] if len(named) == 2 else None


def _guess_test_table(g: Guess, test_csv: Path, folders: dict[Path, int], *, class_table: bool) -> None:
    """The test table's key columns; with class-folder train they set id_column and image_column (they name
    the test table's columns, as the Dacon layout `train/<class>/` + `test.csv` needs)."""
    header, rows = read_csv(test_csv)
    g.test = _rel(test_csv, g.root)
    cols = {h: [r.get(h, "") for r in rows] for h in header}
    img_col = (
        g.image_column
        if g.image_column in header
        else next((h for h in header if _looks_like_images(cols[h])), None)
    )
    id_col = g.id_column if g.id_column in header else None
    if id_col is None:
        unique = [h for h in header if h != img_col and len(set(cols[h])) == len(rows)]
        id_col = _by_name(unique, ID_NAMES) or (unique[0] if unique else None)
    if class_table:
        g.id_column, g.image_column = id_col, img_col
        g.notes.append(f"test table columns: id '{id_col}', image '{img_col}'")
    keys = [r.get(img_col or id_col or "", "") for r in rows]
    img_dir = _find_image_folder(g.root, keys, folders, "test")
    if img_dir is not None and img_dir != g.root:
        g.test_images = _rel(img_dir, g.root)
    elif img_dir is None:
        g.missing.append("could not find the folder holding the test images; set competition.test_images")
    if g.image_column and img_col != g.image_column:
        g.missing.append(f"the test table has no '{g.image_column}' column; check competition.image_column")
    g.notes.append(f"test table: {g.test} ({len(rows)} rows)")


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
        *(
            [line("label_columns", g.label_columns, "one-hot label columns (exactly one 1 a row)")]
            if g.label_columns and g.task != "multilabel"
            else [line("label_columns", g.label_columns, "0/1 label columns (any number of 1s a row)")]
            if g.label_columns
            else [line("label_column", g.label_column, "class label column")]
        ),
        *(
            [
                line("task", "multilabel", "images carry any number of labels (sigmoid outputs)"),
                line("at_least_one_label", g.at_least_one_label, "every image keeps its most probable label"),
            ]
            if g.task == "multilabel"
            else []
        ),
        line("group_column", g.group_column, "same group never in train and validation"),
        *(
            [line("groups_file", g.groups_file, "near-duplicate images as groups (CSV id,group)")]
            if g.groups_file
            else []
        ),
        line("classes", None, "class order; null = sorted labels"),
        line(
            "metric",
            "f1_samples" if g.task == "multilabel" else "weighted_f1",
            "the competition's: " + " | ".join(get_args(Metric)),
        ),
        line("metric_k", None, "k of map_at_k / top_k_accuracy (e.g. 5)"),
        "folds:\n",
        "  k: 5\n",
        "  seed: 42\n",
        "  use_groups: true                         # StratifiedGroupKFold when group_column/groups_file is set\n",
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
        f"    tta: {_q(INIT_TTA)}".ljust(43) + "# mirrored views: only where orientation is not the label\n",
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
    from kit.config.load import load_yaml_text

    try:
        data = load_yaml_text(path.read_text("utf-8"))
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


def write_kit_yaml(
    data_dir: Path,
    out: Path,
    *,
    force: bool = False,
    duplicates: bool = True,
    report: Callable[[str], None] | None = None,
) -> Guess:
    """Detect the layout and write `out`; with `duplicates` and no group column, near-duplicate train images
    are proposed as groups (propose_duplicate_groups). `report` gets a line before the images are hashed."""
    from kit.artifacts.atomic import atomic_write_text
    from kit.errors import KitError

    if not data_dir.is_dir():
        raise KitError(f"{data_dir}: not a folder; pass the competition's data folder to `kit init`")
    check_config_out(out, force=force)
    g = detect_layout(data_dir)
    g.notes.append(INIT_TTA_NOTE)
    atomic_write_text(out, render_kit_yaml(g, out.parent))
    if duplicates and g.group_column is None and propose_duplicate_groups(g, out, report):
        atomic_write_text(out, render_kit_yaml(g, out.parent))
    ensemble = out.parent / "ensembles" / "all.yaml"
    if not ensemble.exists():
        ensemble.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(ensemble, default_ensemble_text())
        g.wrote.append(ensemble)
    return g


def propose_duplicate_groups(g: Guess, config: Path, report: Callable[[str], None] | None = None) -> bool:
    """Hash the train images of the config just written; when near-duplicates cluster, write the clusters as
    its groups file (kit.data.groups) and set g.groups_file. What was found goes to g.notes / g.missing.
    Hashes are cached in the config's workdir when kit may write there (`kit report` reads them back)."""
    from kit.artifacts.workdir import claim_workdir, workdir_problem
    from kit.config.load import load_config
    from kit.data.duplicates import MAX_DISTANCE, ImageHasher, near_duplicates
    from kit.data.groups import groups_file_name, is_kit_groups_file, write_groups_file
    from kit.data.table import load_train

    path = groups_file_name(config)
    if path.exists() and not is_kit_groups_file(path):
        g.missing.append(
            f"near-duplicate images not searched: {path} exists and kit did not write it (no `# written by "
            "kit init` first line), so kit will not replace it; move it away and run `kit init --force`, or "
            "point competition.groups_file at it"
        )
        return False
    try:
        cfg = load_config(config)
        train = load_train(cfg.competition)
    except KitError as e:
        first = str(e).splitlines()[0]
        g.missing.append(f"near-duplicate images not searched: the train table does not load yet ({first})")
        return False
    n = len(train)
    cache = None
    if workdir_problem(cfg.workdir) is None:
        claim_workdir(cfg.workdir)
        cache = cfg.workdir / "cache"
    if report is not None:
        report(f"hashing {n:,} train images to find near-duplicates (--no-duplicates skips this)")
    try:
        hashes = ImageHasher(cache).hashes(train.paths)
    except KitError as e:
        g.missing.append(f"near-duplicate images not searched: {e}")
        return False
    found = near_duplicates(hashes, max_distance=MAX_DISTANCE)
    how = f"pHash within {MAX_DISTANCE} of 64 bits"
    if not found.train_clusters:
        if path.exists():  # kit's own file from an earlier init: no longer true
            path.unlink()
        g.notes.append(f"no near-duplicate train images ({how}) among {n:,}")
        return False
    clusters = found.train_clusters
    largest = len(clusters[0])
    shown = "; ".join(
        ", ".join(train.ids[i] for i in c[:3]) + (f" +{len(c) - 3}" if len(c) > 3 else "")
        for c in clusters[:3]
    )
    summary = f"{len(clusters)} clusters of near-duplicate images ({found.n_clustered} images; {how})"
    if largest > max(10, n // 10):
        g.missing.append(
            f"{summary}, the largest holding {largest} of {n:,} images: more likely alike images than copies, "
            f"so not proposed as groups (largest: {shown}); look at them in `kit report`"
        )
        return False
    write_groups_file(path, train.ids, clusters, f"near-duplicate train images ({how})")
    g.groups_file = os.path.relpath(path, config.parent)
    g.notes.append(
        f"{summary} proposed as groups: {g.groups_file} (competition.groups_file), so each cluster stays in one "
        f"fold: {shown}{' ...' if len(clusters) > 3 else ''}; remove the key if they are not copies"
    )
    return True


def default_ensemble_text() -> str:
    """The ensemble spec `kit init` writes next to kit.yaml (the same as the repository's ensembles/all.yaml)."""
    return (Path(__file__).resolve().parents[1] / "templates" / "ensemble_all.yaml").read_text("utf-8")
