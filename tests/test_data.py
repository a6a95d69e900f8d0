"""Tables keep ids and labels exactly; the image cache decodes once and names every bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_csv, write_image

from kit.config.schema import Competition
from kit.data.cache import DecodeStats, build_image_cache
from kit.data.table import load_test, load_train, sort_classes
from kit.errors import KitError


def comp(root: Path, **kw) -> Competition:
    base = dict(
        root=root, train=root / "train.csv", id_column="id", image_column="path", label_column="label"
    )
    base.update(kw)
    return Competition(**base)


def test_ids_stay_strings_and_labels_with_commas_survive(tmp_path: Path) -> None:
    rows = []
    for i, lab in enumerate(["창틀,문틀수정", "a", "창틀,문틀수정", "b"]):
        write_image(tmp_path / "img" / f"{i:04d}.png", seed=i)
        rows.append([f"{i:04d}", f"img/{i:04d}.png", lab])
    write_csv(tmp_path / "train.csv", ["id", "path", "label"], rows, bom=True)
    t = load_train(comp(tmp_path))
    assert t.ids == ["0000", "0001", "0002", "0003"]
    assert t.classes == ["a", "b", "창틀,문틀수정"]
    assert t.labels.tolist() == [2, 0, 2, 1]


def test_integer_labels_sort_numerically_and_config_order_wins(tmp_path: Path) -> None:
    assert sort_classes(["10", "2", "1"]) == ["1", "2", "10"]
    rows = []
    for i, lab in enumerate(["10", "2", "1", "2"]):
        write_image(tmp_path / f"{i}.png", seed=i)
        rows.append([str(i), f"{i}.png", lab])
    write_csv(tmp_path / "train.csv", ["id", "path", "label"], rows)
    assert load_train(comp(tmp_path)).classes == ["1", "2", "10"]
    t = load_train(comp(tmp_path, classes=["10", "2", "1"]))
    assert t.labels.tolist() == [0, 1, 2, 1]
    with pytest.raises(KitError, match=r"labels \['10'\] are not in competition.classes"):
        load_train(comp(tmp_path, classes=["1", "2"]))


def test_missing_images_and_empty_labels_are_all_listed(tmp_path: Path) -> None:
    write_image(tmp_path / "ok.png")
    rows = [["a", "ok.png", "x"], ["b", "gone1.png", "x"], ["c", "gone2.png", "y"], ["d", "ok.png", ""]]
    write_csv(tmp_path / "train.csv", ["id", "path", "label"], rows)
    with pytest.raises(KitError) as e:
        load_train(comp(tmp_path))
    text = str(e.value)
    assert "row 3: image 'gone1.png' not found" in text and "row 4: image 'gone2.png' not found" in text
    assert "row 5: empty label" in text


def test_missing_column_names_the_key(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    write_csv(tmp_path / "train.csv", ["id", "path", "target"], [["a", "a.png", "x"]])
    with pytest.raises(KitError, match=r"competition.label_column: column 'label' is not in train.csv"):
        load_train(comp(tmp_path))


def test_test_folder_ids_are_stems(tmp_path: Path) -> None:
    for name in ["b.JPG", "a.png", "sub/c.jpeg"]:
        write_image(tmp_path / "test" / name)
    (tmp_path / "test" / "notes.txt").write_text("x")
    t = load_test(comp(tmp_path, test=tmp_path / "test"), ["x"])
    assert t.ids == ["a", "b", "sub/c"]


def test_predict_images_folder_named_like_a_table_is_a_folder_and_a_table_keeps_its_order(
    tmp_path: Path,
) -> None:
    """`kit predict --images`: a folder is read as a folder whatever its name (`imgs.csv/`), a CSV as a table."""
    from kit.predict.images import read_images

    for name in ["b.png", "a.jpg"]:
        write_image(tmp_path / "imgs.csv" / name)
    folder = read_images(tmp_path / "imgs.csv")
    assert folder.ids == ["a", "b"] and [Path(p).name for p in folder.items] == ["a.jpg", "b.png"]
    write_csv(tmp_path / "list.csv", ["id", "path"], [["z", "imgs.csv/b.png"], ["y", "imgs.csv/a.jpg"]])
    table = read_images(tmp_path / "list.csv", image_column="path")
    assert table.ids == ["z", "y"] and [Path(p).name for p in table.items] == ["b.png", "a.jpg"]


def _table(tmp_path: Path, n: int = 6):
    rows = []
    for i in range(n):
        write_image(tmp_path / f"{i}.png", seed=i, size=(10 + i, 12))
        rows.append([str(i), f"{i}.png", "ab"[i % 2]])
    write_csv(tmp_path / "train.csv", ["id", "path", "label"], rows)
    return load_train(comp(tmp_path))


def test_cache_decodes_once_and_matches_pil(tmp_path: Path) -> None:
    from PIL import Image

    t = _table(tmp_path)
    before = DecodeStats.decoded
    arr = build_image_cache(t, 16, tmp_path / "cache", split="train")
    assert arr.shape == (6, 16, 16, 3) and arr.dtype == np.uint8
    assert DecodeStats.decoded - before == 6
    expected = np.asarray(
        Image.open(tmp_path / "3.png").convert("RGB").resize((16, 16), Image.Resampling.BICUBIC)
    )
    assert np.array_equal(arr[3], expected)
    again = build_image_cache(t, 16, tmp_path / "cache", split="train")
    assert DecodeStats.decoded - before == 6  # second use decodes nothing
    assert np.array_equal(again, arr)
    build_image_cache(t, 8, tmp_path / "cache", split="train")
    assert DecodeStats.decoded - before == 12  # another size is another cache


def test_bad_images_are_all_named_and_no_cache_is_left(tmp_path: Path) -> None:
    t = _table(tmp_path)
    (tmp_path / "1.png").write_bytes(b"not an image at all")
    data = (tmp_path / "4.png").read_bytes()
    (tmp_path / "4.png").write_bytes(data[: len(data) // 3])  # truncated
    (tmp_path / "5.png").unlink()
    with pytest.raises(KitError) as e:
        build_image_cache(t, 16, tmp_path / "cache", split="train")
    text = str(e.value)
    assert "3 train image(s) could not be read" in text
    assert f"{tmp_path / '1.png'}: unreadable" in text
    assert f"{tmp_path / '4.png'}: unreadable" in text
    assert f"{tmp_path / '5.png'}: missing" in text
    assert list((tmp_path / "cache" / "images").iterdir()) == []
