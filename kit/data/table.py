"""Train and test tables: ids (strings as written), image paths, labels as class indices, groups.

Reads CSV tables or class-folder layouts. Pure Python; no image is opened here.
"""

from __future__ import annotations

import csv
import hashlib
import io
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
    """Integer labels sort numerically ('2' before '10'); names sort as strings."""
    uniq = sorted(set(labels))
    try:
        return sorted(uniq, key=int)
    except ValueError:
        return uniq


class _ImageIndex:
    """Finds an image in a folder by relative path, file name, or stem (ids without extension)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._by_stem: dict[str, Path] | None = None
        self._by_number: dict[int, Path] | None = None

    def find(self, key: str) -> Path | None:
        direct = self.folder / key
        if direct.is_file():
            return direct
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
        return found


def _table_split(
    comp: Competition, table: Path, images: Path | None, split: str, *, labelled: bool
) -> tuple[list[str], list[Path], list[str] | None, list[str] | None]:
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
    index = _ImageIndex(images or comp.root)
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
            problems.append(f"{table.name} row {n}: image '{key}' not found under {index.folder}")
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
    index = _ImageIndex(base)
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
            problems.append(f"{path.name} images[{i}]: image '{name}' not found under {base}")
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


def _folder_split(folder: Path, *, labelled: bool) -> tuple[list[str], list[Path], list[str] | None]:
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


def _read_split(
    comp: Competition, source: Path, images: Path | None, split: str, *, labelled: bool
) -> tuple[list[str], list[Path], list[str] | None, list[str] | None]:
    """ids, image paths, labels and groups of a split: a table, COCO-style JSON, or a folder."""
    suffix = source.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return _table_split(comp, source, images, split, labelled=labelled)
    if suffix in COCO_SUFFIXES:
        return (*_coco_split(source, images, labelled=labelled), None)
    return (*_folder_split(source, labelled=labelled), None)


def split_labels(cell: str, sep: str) -> list[str]:
    """The labels of one multi-label cell: split at `sep` (a space: any run of whitespace), blanks dropped."""
    parts = cell.split() if sep == " " else cell.split(sep)
    return [p.strip() for p in parts if p.strip()]


def _multilabel_matrix(comp: Competition, labels: list[str]) -> tuple[np.ndarray, list[str]]:
    """[n, L] uint8 label matrix and the label order (competition.classes, label_columns, or sorted labels)."""
    sets = [split_labels(cell, comp.label_separator) for cell in labels]
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
    ids, paths, labels, groups = _read_split(comp, comp.train, comp.train_images, "train", labelled=True)
    assert labels is not None
    if comp.multilabel:
        y, classes = _multilabel_matrix(comp, labels)
        return Table(ids=ids, paths=paths, labels=y, groups=groups, classes=classes)
    if comp.classes:
        classes = list(comp.classes)
    elif comp.label_columns:
        classes = list(comp.label_columns)
    else:
        classes = sort_classes(labels)
        if comp.metric == "qwk" and not all(is_int(c) for c in classes):
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
    ids, paths, _, _ = _read_split(comp, comp.test, comp.test_images, "test", labelled=False)
    return Table(ids=ids, paths=paths, classes=classes)
