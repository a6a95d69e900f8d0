"""Train and test tables: ids (strings as written), image paths, labels as class indices, groups.

Reads CSV tables or class-folder layouts. Pure Python; no image is opened here.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kit.config.schema import COCO_SUFFIXES, TABLE_SUFFIXES, Competition
from kit.data.encoding import decode_bytes
from kit.errors import KitError

if TYPE_CHECKING:
    from kit.data.fingerprint import FileHashes

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")


# how a missing value reads after a round trip through pandas (`df.to_csv` writes NaN as 'nan' or '')
MISSING_SPELLINGS = ("nan", "NaN", "NAN")


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTS


def is_blank_group(value: str) -> bool:
    """An empty (or NaN) group cell: each such row is its own group (competition.blank_groups)."""
    return value.strip() == "" or value.strip() in MISSING_SPELLINGS


@dataclass(frozen=True)
class Table:
    """One split. `labels` holds class indices [n] (train), a 0/1 label matrix [n, L] (train of a multilabel
    competition), or is None (test)."""

    ids: list[str]
    paths: list[Path]
    labels: np.ndarray | None = None
    groups: list[str] | None = None
    classes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def multilabel(self) -> bool:
        return self.labels is not None and self.labels.ndim == 2

    def ids_fingerprint(self) -> str:
        return _digest("\n".join(self.ids))

    def fingerprint(self, root: Path | None = None, hashes: FileHashes | None = None) -> str:
        """Ids, labels, groups, relative paths and image bytes (kit.data.fingerprint): changes when the data
        does, not when it moves."""
        from kit.data.fingerprint import table_fingerprints

        return table_fingerprints(self, root, hashes).combined


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows as strings exactly as written (encoding detected, BOM stripped, ids keep their zero padding)."""
    if not path.exists():
        raise KitError(f"{path}: file not found; check competition paths in kit.yaml")
    _, text = decode_bytes(path.read_bytes())  # UTF-8 (BOM or not), cp949/EUC-KR, latin-1
    with io.StringIO(text, newline="") as f:
        sample = f.read(4096)
        f.seek(0)
        delimiter = "\t" if path.suffix.lower() == ".tsv" or ("\t" in sample and "," not in sample) else ","
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise KitError(f"{path}: the file is empty; it needs a header row") from None
        header = [h.strip() for h in header]
        rows = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            rows.append(dict(zip(header, row, strict=False)))
    return header, rows


def sort_classes(labels: list[str]) -> list[str]:
    """Numeric labels sort numerically ('2' before '10', '2.0' before '10.0', as pandas writes an integer
    column that held a NaN); names sort as strings."""
    uniq = sorted(set(labels))
    values = [number(c) for c in uniq]
    if any(v is None for v in values) or len(set(values)) != len(uniq):
        return uniq  # names, or two spellings of one number ('1', '1.0'): no numeric order to trust
    return sorted(uniq, key=float)


class ImageIndex:
    """Finds an image in a folder by relative path, file name, or stem (ids without extension); failing that, a
    bare name or stem anywhere below it (train_images/<chain>/<image>.jpg), where exactly one file has it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._by_stem: dict[str, Path] | None = None
        self._by_number: dict[int, Path] | None = None
        self._below: dict[str, Path] | None = None
        self._clashes: dict[str, list[Path]] = {}  # names that more than one file below the folder has

    def find(self, key: str) -> Path | None:
        direct = self.folder / key
        try:
            if direct.is_file():
                return direct
        except OSError:  # a name over 255 bytes: no such file can exist; _not_found says why
            return None
        if self._by_stem is None:
            self._by_stem = {}
            if self.folder.is_dir():
                for entry in os.scandir(self.folder):
                    p = Path(entry.path)
                    if entry.is_file() and is_image(p):
                        self._by_stem.setdefault(p.stem, p)
                        self._by_stem.setdefault(p.name, p)
        found = self._by_stem.get(key) or self._by_stem.get(Path(key).name)
        if found is None and is_int(key):  # id 1 for a zero-padded file name 00001.png
            if self._by_number is None:
                numbers: dict[int, list[Path]] = {}
                for stem, p in self._by_stem.items():
                    if stem == p.stem and is_int(stem):
                        numbers.setdefault(int(stem), []).append(p)
                self._by_number = {k: v[0] for k, v in numbers.items() if len(v) == 1}
            found = self._by_number.get(int(key))
        if found is None and "/" not in key:  # a bare name; a path names its folder and is not searched for
            found = self._index_below().get(key)
        return found

    def clash(self, key: str) -> list[Path]:
        """The files below the folder that share the name or stem `key` (why `find` found none of them)."""
        return self._clashes.get(key, []) if "/" not in key else []

    def _index_below(self) -> dict[str, Path]:
        if self._below is None:
            seen: dict[str, list[Path]] = {}
            for dirpath, dirnames, filenames in os.walk(self.folder):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                if Path(dirpath) == self.folder:
                    continue
                for f in sorted(filenames):
                    p = Path(dirpath) / f
                    if is_image(p):
                        for k in dict.fromkeys((p.name, p.stem)):
                            seen.setdefault(k, []).append(p)
            self._below = {k: v[0] for k, v in seen.items() if len(v) == 1}
            self._clashes = {k: v for k, v in seen.items() if len(v) > 1}
        return self._below


def table_split(
    comp: Competition, table: Path, images: Path | None, split: str, *, labelled: bool
) -> tuple[list[str], list[Path], list[str] | None, list[str] | None]:
    """ids, image paths, labels and groups of a CSV table, its columns as `comp` names them."""
    header, rows = read_csv(table)
    needed = {"id_column": comp.id_column, "image_column": comp.image_column}
    if labelled:
        needed["label_column"] = comp.label_column
        needed["group_column"] = comp.group_column
    missing = [
        f"competition.{k}: column '{v}' is not in {table.name} (columns: {header})"
        for k, v in needed.items()
        if v is not None and v not in header
    ]
    if labelled and comp.label_columns:
        missing += [
            f"competition.label_columns: column '{c}' is not in {table.name} (columns: {header})"
            for c in comp.label_columns
            if c not in header
        ]
    if split == "test" and comp.id_column is not None and comp.id_column not in header:
        missing = [m for m in missing if not m.startswith("competition.id_column")]
    if missing:
        raise KitError(f"{table}: columns named in kit.yaml are missing:", problems=missing)
    if not rows:
        raise KitError(f"{table}: no rows; the {split} table needs one row per image")
    index = ImageIndex(images or comp.root)
    id_col = comp.id_column if comp.id_column in header else None
    img_col = comp.image_column if comp.image_column in header else None
    if id_col is None and img_col is None:
        raise KitError(f"{table}: needs an id or image column (competition.id_column / image_column)")
    ids, paths, labels, groups, problems = [], [], [], [], []
    for n, row in enumerate(rows, start=2):
        key = row[img_col] if img_col else row[id_col]  # type: ignore[index]
        rid = row[id_col] if id_col else Path(key).stem
        p = index.find(key.strip().removeprefix("./")) if key.strip() else None
        if p is None:
            problems.append(_not_found(f"{table.name} row {n}", key, index))
            continue
        ids.append(rid)
        paths.append(p)
        if labelled and comp.multilabel and comp.label_columns:
            bad = [c for c in comp.label_columns if not _is_binary(row.get(c, ""))]
            if bad:
                problems.append(
                    f"{table.name} row {n}: label column(s) {bad[:5]} hold "
                    f"{[row.get(c, '') for c in bad[:5]]}, not 0 or 1; fix the cells or the label_columns list"
                )
            labels.append(comp.label_separator.join(c for c in comp.label_columns if _is_one(row.get(c, ""))))
        elif labelled and comp.multilabel:
            labels.append(row.get(comp.label_column or "", "").strip())
        elif labelled and comp.label_columns:
            on = [c for c in comp.label_columns if _is_one(row.get(c, ""))]
            if len(on) != 1:
                problems.append(
                    f"{table.name} row {n}: {len(on)} of the one-hot competition.label_columns hold 1 "
                    f"({on[:5]}); a single-label competition needs exactly one"
                )
            labels.append(on[0] if on else "")
        elif labelled:
            lab = row.get(comp.label_column or "", "").strip()
            if lab == "":
                problems.append(f"{table.name} row {n}: empty label in column '{comp.label_column}'")
            elif lab in MISSING_SPELLINGS and lab not in (comp.classes or []):
                problems.append(
                    f"{table.name} row {n}: label '{lab}' in column '{comp.label_column}' is a missing value "
                    "(pandas writes NaN for an empty cell); fill in the class or remove the row"
                )
            labels.append(lab)
        if labelled and comp.group_column:
            groups.append(row[comp.group_column])
            if comp.blank_groups == "error" and is_blank_group(groups[-1]):
                problems.append(
                    f"{table.name} row {n}: blank group in column '{comp.group_column}' "
                    "(competition.blank_groups: error); fill it in, or set blank_groups: own"
                )
    if problems:
        raise KitError(
            f"{table}: {len(problems)} row(s) point at missing images or lack labels or groups; fix the table or "
            f"competition.{split}_images:",
            problems=problems[:50] + ([f"... and {len(problems) - 50} more"] if len(problems) > 50 else []),
        )
    dupes = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if dupes:
        raise KitError(f"{table}: ids repeat ({dupes[:10]}); every row needs a unique id")
    return ids, paths, (labels if labelled else None), (groups if labelled and comp.group_column else None)


NAME_MAX = 255  # bytes in one file name on ext4, xfs, btrfs, APFS and NTFS (UTF-16 units there)


def _not_found(where: str, key: str, index: ImageIndex) -> str:
    long = [part for part in Path(key.strip()).parts if len(os.fsencode(part)) > NAME_MAX]
    if long:
        name = long[0]
        return (
            f"{where}: image name '{name[:40]}...{name[-12:]}' is {len(os.fsencode(name))} bytes, more than the "
            f"{NAME_MAX} bytes a file name can have, so no such file can exist under {index.folder}; rename the "
            "image to a shorter name and write that name in the table"
        )
    clash = index.clash(key.strip().removeprefix("./"))
    if clash:
        shown = ", ".join(p.relative_to(index.folder).as_posix() for p in clash[:3])
        return (
            f"{where}: image '{key}' is not directly under {index.folder}, and {len(clash)} files below it have "
            f"that name ({shown}); point competition.train_images / test_images at the one folder"
        )
    return f"{where}: image '{key}' not found under {index.folder}"


_INT = re.compile(r"^[+-]?\d+$")


def is_int(text: str) -> bool:
    """An integer as written in a CSV cell (sign allowed, surrounding spaces ignored)."""
    return bool(_INT.match(text.strip()))


def is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def number(text: str) -> float | None:
    """The value of a finite number as written in a cell ('3', '1.0', '2e-3'), else None ('nan', 'cat')."""
    try:
        x = float(text)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _is_binary(cell: str) -> bool:
    """A 0/1 cell as pandas may write it (0, 1, 0.0, 1.0, True, False)."""
    return cell.strip().lower() in ("0", "1", "0.0", "1.0", "true", "false")


def _is_one(cell: str) -> bool:
    """A one-hot cell holding 1 (as pandas may write it: 1, 1.0, True)."""
    v = cell.strip().lower()
    return v in ("1", "1.0", "true")


def _coco_split(
    path: Path, images: Path | None, *, labelled: bool
) -> tuple[list[str], list[Path], list[str] | None]:
    """COCO-style annotations (herbarium, iNaturalist): `images` [{id, file_name}], `annotations`
    [{image_id, category_id}], `categories`. Ids are the image ids, labels the category ids as text, file names
    relative to `images` or the JSON's folder."""
    import json

    if not path.is_file():
        raise KitError(f"{path}: file not found; check competition paths in kit.yaml")
    try:
        data = json.loads(decode_bytes(path.read_bytes())[1])
    except json.JSONDecodeError as e:
        raise KitError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); check the file") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise KitError(
            f"{path}: expected COCO-style annotations with an `images` list (and `annotations`, `categories` "
            "for train); point competition.train/test at the annotations file or a table"
        )
    base = images or path.parent
    index = ImageIndex(base)
    category: dict[str, str] = {}
    problems: list[str] = []
    if labelled:
        if not isinstance(data.get("annotations"), list):
            raise KitError(f"{path}: no `annotations` list; a train file needs each image's category_id")
        for a in data["annotations"]:
            iid, cat = str(a.get("image_id", "")), a.get("category_id")
            if cat is None:
                problems.append(f"{path.name}: annotation {a.get('id', '?')} has no category_id")
                continue
            if iid in category and category[iid] != str(cat):
                problems.append(f"{path.name}: image {iid} has two categories ({category[iid]}, {cat})")
            category[iid] = str(cat)
    ids, paths, labels = [], [], []
    for i, img in enumerate(data["images"]):
        iid, name = str(img.get("id", "")), str(img.get("file_name", ""))
        p = index.find(name) if name else None
        if p is None:
            problems.append(_not_found(f"{path.name} images[{i}]", name, index))
            continue
        if labelled and iid not in category:
            problems.append(f"{path.name} images[{i}]: image {iid} has no annotation (no category_id)")
            continue
        ids.append(iid)
        paths.append(p)
        if labelled:
            labels.append(category[iid])
    if problems:
        raise KitError(
            f"{path}: {len(problems)} problem(s) in the annotations:",
            problems=problems[:50] + ([f"... and {len(problems) - 50} more"] if len(problems) > 50 else []),
        )
    if not ids:
        raise KitError(f"{path}: the `images` list is empty")
    return ids, paths, (labels if labelled else None)


def folder_split(folder: Path, *, labelled: bool) -> tuple[list[str], list[Path], list[str] | None]:
    """ids, image paths and labels of a folder: one sub-folder per class when `labelled`, else every image
    (ids: paths relative to the folder, without extension). The folder's name is not looked at."""
    if not folder.is_dir():
        raise KitError(f"{folder}: folder not found; check competition paths in kit.yaml")
    ids, paths, labels = [], [], []
    if labelled:
        class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not class_dirs:
            raise KitError(f"{folder}: expected one sub-folder per class (train/<class>/*.jpg); found none")
        for d in class_dirs:
            for p in sorted(d.rglob("*")):
                if p.is_file() and is_image(p):
                    ids.append(f"{d.name}/{p.relative_to(d).as_posix()}")
                    paths.append(p)
                    labels.append(d.name)
    else:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and is_image(p):
                ids.append(p.relative_to(folder).with_suffix("").as_posix())
                paths.append(p)
    if not ids:
        raise KitError(f"{folder}: no images found (looked for {', '.join(IMAGE_EXTS)} in any case)")
    return ids, paths, (labels if labelled else None)


def read_split(
    comp: Competition, source: Path, images: Path | None, split: str, *, labelled: bool
) -> tuple[list[str], list[Path], list[str] | None, list[str] | None]:
    """ids, image paths, labels and groups of a split: a table, COCO-style JSON, or a folder."""
    suffix = source.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return table_split(comp, source, images, split, labelled=labelled)
    if suffix in COCO_SUFFIXES:
        return (*_coco_split(source, images, labelled=labelled), None)
    return (*folder_split(source, labelled=labelled), None)


def split_labels(cell: str, sep: str) -> list[str]:
    """The labels of one multi-label cell: split at `sep` (a space: any run of whitespace), blanks dropped."""
    parts = cell.split() if sep == " " else cell.split(sep)
    return [p.strip() for p in parts if p.strip()]


# separators a multi-label cell may use, to name the one that does when competition.label_separator never splits
SEPARATORS = (" ", ",", ";", "|", "/")


def _refuse_single_labels(comp: Competition, cells: list[str]) -> None:
    """competition.task: multilabel where no train row holds two labels: a separator that never splits
    (training would learn each combination as one label) or a single-label task."""
    if comp.label_columns:
        raise KitError(
            f"{comp.train}: competition.task is multilabel, but no row of competition.label_columns holds more "
            "than one 1 (each row has exactly one label or none): these are one-hot class columns; set "
            "competition.task: multiclass"
        )
    sep = comp.label_separator
    col = comp.label_column
    for other in SEPARATORS:
        split = next((c for c in cells if other != sep and len(split_labels(c, other)) > 1), None)
        if split is not None:
            raise KitError(
                f"{comp.train}: competition.label_separator {sep!r} never splits a cell of column '{col}', so "
                f"each cell would be learnt as one label (a combination per image), but cells hold {other!r} "
                f"({split[:60]!r}); set competition.label_separator: {other!r} (or, if each image has one label, "
                "competition.task: multiclass)"
            )
    raise KitError(
        f"{comp.train}: competition.task is multilabel, but every row of column '{col}' holds exactly one "
        f"label or none (competition.label_separator {sep!r} never splits a cell): a single-label task; set "
        "competition.task: multiclass"
    )


def _multilabel_matrix(comp: Competition, labels: list[str]) -> tuple[np.ndarray, list[str]]:
    """[n, L] uint8 label matrix and the label order (competition.classes, label_columns, or sorted labels)."""
    sets = [split_labels(cell, comp.label_separator) for cell in labels]
    if max((len(s) for s in sets), default=0) <= 1:
        _refuse_single_labels(comp, labels)
    repeated = [(n, s) for n, s in enumerate(sets) if len(set(s)) != len(s)]
    if repeated:
        n, s = repeated[0]
        raise KitError(
            f"{comp.train}: {len(repeated)} row(s) repeat a label (first: data row {n + 1}, {s}); list each "
            "label once per row"
        )
    if comp.classes:
        classes = list(comp.classes)
    elif comp.label_columns:
        classes = list(comp.label_columns)
    else:
        classes = sort_classes([lab for s in sets for lab in s])
        if len(classes) < 2:
            raise KitError(
                f"{comp.train}: the labels of column '{comp.label_column}' hold {len(classes)} distinct "
                f"label(s) ({classes}); check competition.label_separator ('{comp.label_separator}')"
            )
    lookup = {c: i for i, c in enumerate(classes)}
    unknown = sorted({lab for s in sets for lab in s if lab not in lookup})
    if unknown:
        raise KitError(
            f"{comp.train}: labels {unknown[:10]} are not in competition.classes; add them there or "
            "remove competition.classes to take the labels found"
        )
    y = np.zeros((len(sets), len(classes)), dtype=np.uint8)
    for n, s in enumerate(sets):
        y[n, [lookup[lab] for lab in s]] = 1
    unseen = [c for i, c in enumerate(classes) if not y[:, i].any()]
    if unseen:
        raise KitError(
            f"{comp.train}: no train image has label(s) {unseen[:10]}; kit cannot learn a label it never "
            "sees: remove it from competition.classes / label_columns or add its images"
        )
    return y, classes


def load_train(comp: Competition) -> Table:
    ids, paths, labels, groups = read_split(comp, comp.train, comp.train_images, "train", labelled=True)
    assert labels is not None
    if comp.groups_file is not None:  # groups from a CSV id,group (kit.data.groups), before rows are dropped
        from kit.data.groups import read_groups_file

        groups = read_groups_file(comp.groups_file, ids)
    if comp.label_overrides is not None:  # corrections and dropped rows (kit.data.overrides)
        from kit.data.overrides import apply_label_overrides

        ids, paths, labels, groups = apply_label_overrides(comp, ids, paths, labels, groups)
    if comp.multilabel:
        y, classes = _multilabel_matrix(comp, labels)
        return Table(ids=ids, paths=paths, labels=y, groups=groups, classes=classes)
    if comp.classes:
        classes = list(comp.classes)
    elif comp.label_columns:
        classes = list(comp.label_columns)
    else:
        classes = sort_classes(labels)
        if comp.metric == "qwk" and not all(number(c) is not None for c in classes):
            raise KitError(
                f"competition.metric: qwk scores ordered grades, but the labels of {comp.train} are not numbers "
                f"({classes[:5]}); list them in grade order in competition.classes"
            )
    lookup = {c: i for i, c in enumerate(classes)}
    unknown = sorted({lab for lab in labels if lab not in lookup})
    if unknown:
        raise KitError(
            f"{comp.train}: labels {unknown[:10]} are not in competition.classes; add them there or "
            "remove competition.classes to take the labels found"
        )
    y = np.fromiter((lookup[lab] for lab in labels), dtype=np.int64, count=len(labels))
    unseen = [c for i, c in enumerate(classes) if not (y == i).any()]
    if unseen:
        raise KitError(
            f"{comp.train}: competition.classes lists {unseen[:10]} but no train image has that label; kit "
            "cannot learn a class it never sees: remove it from competition.classes or add its images"
        )
    return Table(ids=ids, paths=paths, labels=y, groups=groups, classes=classes)


def load_test(comp: Competition, classes: list[str]) -> Table:
    if comp.test is None:
        raise KitError("competition.test is not set; point it at the test table or the test image folder")
    ids, paths, _, _ = read_split(comp, comp.test, comp.test_images, "test", labelled=False)
    return Table(ids=ids, paths=paths, classes=classes)
