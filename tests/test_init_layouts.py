"""`kit init` on folders laid out as real competitions ship them (tiny images, real sample submissions):
iWildCam (CSV and the 2020 COCO JSON), dog breed, paddy disease, plant pathology 2020 and 2021, herbarium (COCO
JSON), Dacon wallpaper and crop disease, histopathologic cancer detection, APTOS and the 2015 retinopathy, humpback
whale, plant seedlings, aerial cactus, cassava, State Farm, invasive species, leaf classification, SIIM-ISIC,
Hotel-ID, iMet, and samples with a BOM, a pandas index column, tabs. Each must give a kit.yaml that `kit
validate` passes, with the right columns and the reasons printed, and `kit submit` must write every cell right;
the two layouts kit cannot read are refused naming the key that fixes them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import TINY_INIT_MEMBER, invoke, set_args, write_csv, write_image
from train_helpers import known_member

from kit.config.load import load_config
from kit.workspace import open_workspace


def iwildcam(root: Path) -> None:
    rows = []
    for i in range(40):
        name = f"{i:08x}.jpg"
        write_image(root / "train" / name, seed=i)
        rows.append(
            [f"id{i:04d}", name, str([0, 3, 372][i % 3]), str(10 + i % 5), f"seq{i // 2}", "20", f"t{i}"]
        )
    write_csv(
        root / "train.csv", ["id", "file_name", "category_id", "location", "seq_id", "width", "date"], rows
    )
    test = []
    for i in range(6):
        write_image(root / "test" / f"t{i:07x}.jpg", seed=100 + i)
        test.append([f"tid{i}", f"t{i:07x}.jpg", str(50 + i % 2), f"tseq{i}"])
    write_csv(root / "test.csv", ["id", "file_name", "location", "seq_id"], test)
    write_csv(root / "sample_submission.csv", ["Id", "Category"], [[f"tid{i}", "0"] for i in range(6)])


def dog_breed(root: Path) -> None:
    breeds = ["affenpinscher", "beagle", "collie"]
    rows = []
    for i in range(24):
        iid = f"{i:032x}"
        write_image(root / "train" / f"{iid}.jpg", seed=i)
        rows.append([iid, breeds[i % 3]])
    write_csv(root / "labels.csv", ["id", "breed"], rows)
    for i in range(5):
        write_image(root / "test" / f"{1000 + i:032x}.jpg", seed=50 + i)
    write_csv(
        root / "sample_submission.csv",
        ["id", *breeds],
        [[f"{1000 + i:032x}", *["0.333333"] * 3] for i in range(5)],
    )


def paddy(root: Path) -> None:
    labels = ["bacterial_leaf_blight", "blast", "normal"]
    rows = []
    for i in range(24):
        lab = labels[i % 3]
        write_image(root / "train_images" / lab / f"{100000 + i}.jpg", seed=i)
        rows.append([f"{100000 + i}.jpg", lab, "ADT45", str(45 + 5 * (i % 4))])
    write_csv(root / "train.csv", ["image_id", "label", "variety", "age"], sorted(rows, key=lambda r: r[1]))
    for i in range(5):
        write_image(root / "test_images" / f"{200000 + i}.jpg", seed=60 + i)
    write_csv(
        root / "sample_submission.csv", ["image_id", "label"], [[f"{200000 + i}.jpg", ""] for i in range(5)]
    )


PLANT = ["healthy", "multiple_diseases", "rust", "scab"]


def plant_pathology(root: Path) -> None:
    rows = []
    for i in range(32):
        write_image(root / "images" / f"Train_{i}.jpg", seed=i)
        onehot = ["0"] * 4
        onehot[i % 4] = "1"
        rows.append([f"Train_{i}", *onehot])
    write_csv(root / "train.csv", ["image_id", *PLANT], rows)
    for i in range(6):
        write_image(root / "images" / f"Test_{i}.jpg", seed=70 + i)
    write_csv(root / "test.csv", ["image_id"], [[f"Test_{i}"] for i in range(6)])
    write_csv(
        root / "sample_submission.csv", ["image_id", *PLANT], [[f"Test_{i}", *["0.25"] * 4] for i in range(6)]
    )


def herbarium(root: Path) -> None:
    images, annotations = [], []
    for i in range(30):
        name = f"images/{i // 10:03d}/{i:02d}/{437000 + i}.jpg"
        write_image(root / "train" / name, seed=i)
        images.append({"id": 437000 + i, "file_name": name, "height": 16, "width": 20})
        annotations.append(
            {"id": i, "image_id": 437000 + i, "category_id": [0, 7, 15][i % 3], "region_id": 1}
        )
    cats = [{"id": c, "name": f"species {c}"} for c in (0, 7, 15)]
    (root / "train" / "metadata.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": cats}), "utf-8"
    )
    test = []
    for i in range(5):
        name = f"images/000/{i}.jpg"
        write_image(root / "test" / name, seed=80 + i)
        test.append({"id": i, "file_name": name})
    (root / "test" / "metadata.json").write_text(json.dumps({"images": test}), "utf-8")
    write_csv(root / "sample_submission.csv", ["Id", "Predicted"], [[str(i), "0"] for i in range(5)])


def dacon_wallpaper(root: Path) -> None:
    classes = ["가구수정", "걸레받이수정", "곰팡이"]
    for c, name in enumerate(classes):
        for i in range(8):
            write_image(root / "train" / name / f"{i}.png", seed=10 * c + i)
    for i in range(5):
        write_image(root / "test" / f"TEST_{i:03d}.png", seed=90 + i)
    write_csv(
        root / "test.csv",
        ["id", "img_path"],
        [[f"TEST_{i:03d}", f"./test/TEST_{i:03d}.png"] for i in range(5)],
    )
    write_csv(root / "sample_submission.csv", ["id", "label"], [[f"TEST_{i:03d}", "0"] for i in range(5)])


def histopathologic(root: Path) -> None:
    rows = []
    for i in range(30):
        iid = f"{i:040x}"
        write_image(root / "train" / f"{iid}.tif", seed=i)
        rows.append([iid, str(i % 2)])
    write_csv(root / "train_labels.csv", ["id", "label"], rows)
    for i in range(6):
        write_image(root / "test" / f"{900 + i:040x}.tif", seed=40 + i)
    write_csv(root / "sample_submission.csv", ["id", "label"], [[f"{900 + i:040x}", "0"] for i in range(6)])


def aptos(root: Path) -> None:
    rows = []
    for i in range(30):
        write_image(root / "train_images" / f"{i:012x}.png", seed=i)
        rows.append([f"{i:012x}", str(i % 5)])
    write_csv(root / "train.csv", ["id_code", "diagnosis"], rows)
    for i in range(5):
        write_image(root / "test_images" / f"{500 + i:012x}.png", seed=30 + i)
    write_csv(root / "test.csv", ["id_code"], [[f"{500 + i:012x}"] for i in range(5)])
    write_csv(
        root / "sample_submission.csv", ["id_code", "diagnosis"], [[f"{500 + i:012x}", "0"] for i in range(5)]
    )


def humpback(root: Path) -> None:
    rows = []
    for i in range(30):
        write_image(root / "train" / f"{i:08x}.jpg", seed=i)
        rows.append([f"{i:08x}.jpg", ["new_whale", "w_1a2b3c4", "w_5d6e7f8"][i % 3]])
    write_csv(root / "train.csv", ["Image", "Id"], rows)
    for i in range(5):
        write_image(root / "test" / f"{900 + i:08x}.jpg", seed=50 + i)
    write_csv(
        root / "sample_submission.csv",
        ["Image", "Id"],
        [[f"{900 + i:08x}.jpg", "new_whale w_23a388d w_9b5109b w_9c506f6 w_0369a5c"] for i in range(5)],
    )


# ---------------------------------------------------------------- more layouts (issue 27): builders as the
# competitions ship their files, with the sample's own quirks


SEEDLINGS = ["Black-grass", "Common Chickweed", "Shepherds Purse", "Sugar beet"]


def plant_seedlings(root: Path) -> None:
    """Class folders whose names have spaces; `file,species` pre-filled with one of them."""
    for c, name in enumerate(SEEDLINGS):
        for i in range(6):
            write_image(root / "train" / name / f"{c}{i:08x}.png", seed=10 * c + i)
    for i in range(6):
        write_image(root / "test" / f"{i:09x}.png", seed=80 + i)
    write_csv(
        root / "sample_submission.csv",
        ["file", "species"],
        [[f"{i:09x}.png", "Sugar beet"] for i in range(6)],
    )


def aerial_cactus(root: Path) -> None:
    """Ids with `.jpg` in the tables, a 0.5-filled sample, scored by ROC AUC."""
    rows = []
    for i in range(24):
        name = f"{i:032x}.jpg"
        write_image(root / "train" / name, seed=i)
        rows.append([name, str(int(i % 3 == 0))])
    write_csv(root / "train.csv", ["id", "has_cactus"], rows)
    for i in range(6):
        write_image(root / "test" / f"{500 + i:032x}.jpg", seed=40 + i)
    write_csv(
        root / "sample_submission.csv",
        ["id", "has_cactus"],
        [[f"{500 + i:032x}.jpg", "0.5"] for i in range(6)],
    )


def cassava(root: Path) -> None:
    """Integer labels with a name map beside them (a JSON that is not COCO); the sample pre-filled with 4."""
    rows = []
    for i in range(30):
        write_image(root / "train_images" / f"{1000015157 + i}.jpg", seed=i)
        rows.append([f"{1000015157 + i}.jpg", str(i % 5)])
    write_csv(root / "train.csv", ["image_id", "label"], rows)
    names = [
        "Cassava Bacterial Blight (CBB)",
        "Cassava Brown Streak Disease (CBSD)",
        "Cassava Green Mottle (CGM)",
        "Cassava Mosaic Disease (CMD)",
        "Healthy",
    ]
    (root / "label_num_to_disease_map.json").write_text(
        json.dumps({str(i): n for i, n in enumerate(names)}), "utf-8"
    )
    for i in range(5):
        write_image(root / "test_images" / f"{2216849948 + i}.jpg", seed=60 + i)
    write_csv(
        root / "sample_submission.csv",
        ["image_id", "label"],
        [[f"{2216849948 + i}.jpg", "4"] for i in range(5)],
    )


def state_farm(root: Path) -> None:
    """imgs/train/c0..c9 class folders, a driver list, a sample `img,c0,...,c9` of 0.1s, scored by log loss."""
    rows = []
    for c in range(10):
        for i in range(3):
            name = f"img_{100 * c + i}.jpg"
            write_image(root / "imgs" / "train" / f"c{c}" / name, seed=10 * c + i)
            rows.append([f"p0{(c + i) % 4:02d}", f"c{c}", name])
    write_csv(root / "driver_imgs_list.csv", ["subject", "classname", "img"], rows)
    for i in range(6):
        write_image(root / "imgs" / "test" / f"img_{9000 + i}.jpg", seed=200 + i)
    write_csv(
        root / "sample_submission.csv",
        ["img", *[f"c{c}" for c in range(10)]],
        [[f"img_{9000 + i}.jpg", *["0.1"] * 10] for i in range(6)],
    )


def invasive_species(root: Path) -> None:
    """Integer ids 1..N naming 1.jpg..N.jpg in both train and test; `name,invasive` of 0.5s."""
    rows = []
    for i in range(1, 25):
        write_image(root / "train" / f"{i}.jpg", seed=i)
        rows.append([str(i), str(i % 2)])
    write_csv(root / "train_labels.csv", ["name", "invasive"], rows)
    for i in range(1, 7):
        write_image(root / "test" / f"{i}.jpg", seed=300 + i)
    write_csv(root / "sample_submission.csv", ["name", "invasive"], [[str(i), "0.5"] for i in range(1, 7)])


LEAVES = ["Acer_Capillipes", "Acer_Circinatum", "Quercus_Afares"]


def leaf_classification(root: Path) -> None:
    """Train and test images in one folder, float feature columns beside the species, 99-column-like sample."""
    rows, test = [], []
    for i in range(1, 31):
        write_image(root / "images" / f"{i}.jpg", seed=i, mode="L")
        if i <= 24:
            rows.append(
                [str(i), LEAVES[i % 3], f"{0.001953 * i:.6f}", f"{0.0097 * i:.6f}", f"{0.01 + i / 1000:.6f}"]
            )
        else:
            test.append([str(i), f"{0.002 * i:.6f}", f"{0.009 * i:.6f}", f"{0.02:.6f}"])
    write_csv(root / "train.csv", ["id", "species", "margin1", "shape1", "texture1"], rows)
    write_csv(root / "test.csv", ["id", "margin1", "shape1", "texture1"], test)
    write_csv(root / "sample_submission.csv", ["id", *LEAVES], [[t[0], *["0.010101"] * 3] for t in test])


def iwildcam_coco(root: Path) -> None:
    """iWildCam 2020: COCO annotations at the top, images in train/ and test/, file names bare."""
    images, annotations = [], []
    for i in range(30):
        uid = f"{i:08x}-21bc-11ea-a13a-137349068a90"
        write_image(root / "train" / f"{uid}.jpg", seed=i)
        images.append({"id": uid, "file_name": f"{uid}.jpg", "location": i % 4, "seq_id": f"s{i // 3}"})
        annotations.append({"id": f"a{i}", "image_id": uid, "category_id": [0, 2, 372][i % 3]})
    cats = [
        {"id": c, "name": n, "count": 10}
        for c, n in ((0, "empty"), (2, "tayassu pecari"), (372, "homo sapiens"))
    ]
    (root / "iwildcam2020_train_annotations.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": cats}), "utf-8"
    )
    test = []
    for i in range(6):
        uid = f"{900 + i:08x}-21bc-11ea-a13a-137349068a90"
        write_image(root / "test" / f"{uid}.jpg", seed=400 + i)
        test.append({"id": uid, "file_name": f"{uid}.jpg", "location": 9})
    (root / "iwildcam2020_test_information.json").write_text(
        json.dumps({"images": test, "categories": cats}), "utf-8"
    )
    write_csv(root / "sample_submission.csv", ["Id", "Category"], [[t["id"], "0"] for t in test])


def siim_isic(root: Path) -> None:
    """Images two levels down (jpeg/train), a patient column, several label-like columns, 0-filled sample."""
    rows = []
    for i in range(30):
        name = f"ISIC_{2637011 + i:07d}"
        write_image(root / "jpeg" / "train" / f"{name}.jpg", seed=i)
        target = int(i % 5 == 0)
        rows.append(
            [
                name,
                f"IP_{7279968 + i // 3}",
                "male",
                "45.0",
                "head/neck",
                "melanoma" if target else "unknown",
                "malignant" if target else "benign",
                str(target),
            ]
        )
    header = [
        "image_name",
        "patient_id",
        "sex",
        "age_approx",
        "anatom_site_general_challenge",
        "diagnosis",
        "benign_malignant",
        "target",
    ]
    write_csv(root / "train.csv", header, rows)
    test = []
    for i in range(6):
        name = f"ISIC_{52060 + i:07d}"
        write_image(root / "jpeg" / "test" / f"{name}.jpg", seed=500 + i)
        test.append([name, f"IP_{3579794 + i}", "female", "70.0", ""])
    write_csv(root / "test.csv", header[:5], test)
    write_csv(root / "sample_submission.csv", ["image_name", "target"], [[t[0], "0"] for t in test])


PATHOLOGY21 = ["complex", "frog_eye_leaf_spot", "healthy", "rust", "scab"]


def plant_pathology_2021(root: Path) -> None:
    """Multi-label: space-separated labels a cell; the sample pre-filled with `healthy`."""
    rows = []
    for i in range(30):
        labs = [PATHOLOGY21[i % 5]] + ([PATHOLOGY21[(i + 2) % 5]] if i % 3 == 0 else [])
        write_image(root / "train_images" / f"{i:016x}.jpg", seed=i)
        rows.append([f"{i:016x}.jpg", " ".join(labs)])
    write_csv(root / "train.csv", ["image", "labels"], rows)
    for i in range(3):
        write_image(root / "test_images" / f"{900 + i:016x}.jpg", seed=600 + i)
    write_csv(
        root / "sample_submission.csv",
        ["image", "labels"],
        [[f"{900 + i:016x}.jpg", "healthy"] for i in range(3)],
    )


def dacon_crop(root: Path) -> None:
    """Dacon crop disease: names and codes side by side in train; the sample asks for the code column."""
    diseases = ["정상", "고추탄저병", "토마토잎곰팡이병"]
    rows = []
    for i in range(24):
        write_image(root / "train" / f"{10000 + i}.jpg", seed=i)
        rows.append([str(10000 + i), f"train/{10000 + i}.jpg", diseases[i % 3], str([0, 3, 7][i % 3])])
    write_csv(root / "train.csv", ["uid", "img_path", "disease", "disease_code"], rows)
    test = []
    for i in range(6):
        write_image(root / "test" / f"{20000 + i}.jpg", seed=700 + i)
        test.append([str(20000 + i), f"test/{20000 + i}.jpg"])
    write_csv(root / "test.csv", ["uid", "img_path"], test)
    write_csv(root / "sample_submission.csv", ["uid", "disease_code"], [[t[0], "0"] for t in test])


KOREAN = ["가구수정", "걸레받이수정", "창틀,문틀수정", "훼손"]


def dacon_cp949_bom(root: Path) -> None:
    """A cp949 train table whose labels hold a comma, zero-padded ids, a UTF-8 BOM sample pre-filled with a
    class name, `\\r\\n` line ends."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["id", "img_path", "label"])
    for i in range(24):
        write_image(root / "train" / f"TRAIN_{i:04d}.png", seed=i)
        w.writerow([f"TRAIN_{i:04d}", f"./train/TRAIN_{i:04d}.png", KOREAN[i % 4]])
    (root / "train.csv").write_bytes(buf.getvalue().encode("cp949"))
    for i in range(5):
        write_image(root / "test" / f"TEST_{i:04d}.png", seed=800 + i)
    write_csv(
        root / "test.csv",
        ["id", "img_path"],
        [[f"TEST_{i:04d}", f"./test/TEST_{i:04d}.png"] for i in range(5)],
    )
    (root / "sample_submission.csv").write_bytes(
        b"\xef\xbb\xbf" + b"id,label\r\n" + "".join(f"TEST_{i:04d},가구수정\r\n" for i in range(5)).encode()
    )


def pandas_index_sample(root: Path) -> None:
    """A sample written by pandas with its index (`,id,label`), a trailing comma after the header, ids
    without their zero padding in the test file names."""
    rows = []
    for i in range(24):
        write_image(root / "train" / f"{i:05d}.png", seed=i)
        rows.append([str(i), ["ant", "bee", "wasp"][i % 3]])
    write_csv(root / "train.csv", ["id", "label"], rows)
    for i in range(5):
        write_image(root / "test" / f"{100 + i:05d}.png", seed=900 + i)
    (root / "sample_submission.csv").write_text(
        ",id,label,\n" + "".join(f"{n},{100 + n},ant,\n" for n in range(5)), "utf-8"
    )


def tab_separated(root: Path) -> None:
    """A tab-separated train table and sample (`.tsv`, names with spaces in the labels)."""
    rows = []
    for i in range(24):
        write_image(root / "images" / f"img{i}.png", seed=i)
        rows.append(f"img{i}.png\t{['red fox', 'grey wolf', 'brown bear'][i % 3]}")
    (root / "train.tsv").write_text("image\tlabel\n" + "\n".join(rows) + "\n", "utf-8")
    for i in range(5):
        write_image(root / "test_images" / f"t{i}.png", seed=950 + i)
    (root / "sample_submission.csv").write_text(
        "image\tlabel\n" + "".join(f"t{i}.png\tred fox\n" for i in range(5)), "utf-8"
    )


def hotel_id(root: Path) -> None:
    """Hotel-ID 2021: train_images/<chain>/<image>.jpg (folders are chains, not the label), the label is
    hotel_id, the sample pre-filled with five placeholder hotel ids, scored by MAP@5."""
    rows = []
    for i in range(30):
        chain = str(i % 3)
        name = f"{i:016x}.jpg"
        write_image(root / "train_images" / chain / name, seed=i)
        rows.append(
            [name, chain, str([36363, 53586, 18807, 64314, 60181, 1000][i % 6]), "2018-04-19 11:13:41"]
        )
    write_csv(root / "train.csv", ["image", "chain", "hotel_id", "timestamp"], rows)
    for i in range(3):
        write_image(root / "test_images" / f"{900 + i:016x}.jpg", seed=600 + i)
    write_csv(
        root / "sample_submission.csv",
        ["image", "hotel_id"],
        [[f"{900 + i:016x}.jpg", "36363 53586 18807 64314 60181"] for i in range(3)],
    )


def retinopathy_2015(root: Path) -> None:
    """trainLabels.csv `image,level` with ids like 10_left (no extension), .jpeg files, a 0-filled sample."""
    rows = []
    for i in range(15):
        for side in ("left", "right"):
            write_image(root / "train" / f"{10 + i}_{side}.jpeg", seed=2 * i + (side == "left"))
            rows.append([f"{10 + i}_{side}", str((i + (side == "left")) % 5)])
    write_csv(root / "trainLabels.csv", ["image", "level"], rows)
    for i in range(3):
        for side in ("left", "right"):
            write_image(root / "test" / f"{1 + i}_{side}.jpeg", seed=700 + 2 * i + (side == "left"))
    write_csv(
        root / "sample_submission.csv",
        ["image", "level"],
        [[f"{1 + i}_{side}", "0"] for i in range(3) for side in ("left", "right")],
    )


def imet_2019(root: Path) -> None:
    """iMet 2019: space-separated integer attribute ids a cell; the sample pre-filled with '0 1 2'."""
    rows = []
    for i in range(30):
        attrs = sorted({str(13 * (i % 4)), str(51 + i % 3)} | ({"1059"} if i % 5 == 0 else set()), key=int)
        write_image(root / "train" / f"{i:016x}.png", seed=i)
        rows.append([f"{i:016x}", " ".join(attrs)])
    write_csv(root / "train.csv", ["id", "attribute_ids"], rows)
    for i in range(3):
        write_image(root / "test" / f"{900 + i:016x}.png", seed=800 + i)
    write_csv(
        root / "sample_submission.csv",
        ["id", "attribute_ids"],
        [[f"{900 + i:016x}", "0 1 2"] for i in range(3)],
    )


def dogs_vs_cats(root: Path) -> None:
    """Dogs vs cats redux: the label is in the file name (cat.0.jpg); test 1.jpg..; `id,label` of 0.5."""
    for i in range(10):
        for animal in ("cat", "dog"):
            write_image(root / "train" / f"{animal}.{i}.jpg", seed=i + 50 * (animal == "dog"))
    for i in range(1, 5):
        write_image(root / "test" / f"{i}.jpg", seed=900 + i)
    write_csv(root / "sample_submission.csv", ["id", "label"], [[str(i), "0.5"] for i in range(1, 5)])


# builder, metric overrides, expected competition keys, expected submission kind, words the init output says
CASES = {
    "iwildcam": (
        iwildcam,
        [],
        {
            "label_column": "category_id",
            "group_column": "location",
            "id_column": "id",
            "image_column": "file_name",
        },
        "label",
        ["group column: 'location'", "also group-like: ['seq_id']"],
    ),
    "dog_breed": (
        dog_breed,
        [],
        {"train": "labels.csv", "label_column": "breed", "test": "test"},
        "proba",
        [],
    ),
    "paddy": (
        paddy,
        [],
        {"train": "train_images", "label_column": None, "test": "test_images"},
        "label",
        ["class-folder layout", "labels are its folder names"],
    ),
    "plant_pathology": (
        plant_pathology,
        ["competition.metric=roc_auc"],
        {"label_columns": PLANT, "label_column": None, "train_images": "images", "test_images": "images"},
        "proba",
        ["one-hot label columns"],
    ),
    "herbarium": (
        herbarium,
        ["competition.metric=macro_f1"],
        {"train": "train/metadata.json", "test": "test/metadata.json", "label_column": None},
        "label",
        ["COCO-style annotations"],
    ),
    "dacon_wallpaper": (
        dacon_wallpaper,
        ["competition.submission.kind=label"],  # a 0-filled sample for named classes: refused without it
        {"train": "train", "test": "test.csv", "id_column": "id", "image_column": "img_path"},
        "label",
        ["test table columns: id 'id', image 'img_path'"],
    ),
    "histopathologic": (
        histopathologic,
        ["competition.metric=roc_auc"],
        {"train": "train_labels.csv", "label_column": "label", "train_images": "train", "test": "test"},
        "binary_proba",
        [],
    ),
    "aptos": (
        aptos,
        ["competition.metric=qwk"],
        {"label_column": "diagnosis", "id_column": "id_code", "train_images": "train_images"},
        "label",
        [],
    ),
    "humpback": (
        humpback,
        ["competition.metric=map_at_k", "competition.metric_k=5"],
        {"label_column": "Id", "image_column": "Image"},
        "topk",
        [],
    ),
    "plant_seedlings": (
        plant_seedlings,
        ["competition.metric=accuracy"],
        {"train": "train", "test": "test", "label_column": None},
        "label",  # one class name a row, spaces and all
        ["class-folder layout"],
    ),
    "aerial_cactus": (
        aerial_cactus,
        ["competition.metric=roc_auc"],
        {"label_column": "has_cactus", "id_column": "id", "train_images": "train"},
        "binary_proba",
        [],
    ),
    "cassava": (
        cassava,
        ["competition.metric=accuracy"],
        {"label_column": "label", "train_images": "train_images", "test": "test_images"},
        "label",
        [],
    ),
    "state_farm": (
        state_farm,
        ["competition.metric=log_loss"],
        {
            "train": "driver_imgs_list.csv",
            "train_images": "imgs/train",
            "image_column": "img",
            "label_column": "classname",
            "group_column": "subject",
            "test": "imgs/test",
        },
        "proba",
        ["reads the table for its group column 'subject'"],
    ),
    "invasive_species": (
        invasive_species,
        ["competition.metric=roc_auc"],
        {"train": "train_labels.csv", "id_column": "name", "label_column": "invasive"},
        "binary_proba",
        [],
    ),
    "leaf_classification": (
        leaf_classification,
        ["competition.metric=log_loss"],
        {"label_column": "species", "train_images": "images", "test_images": "images"},
        "proba",
        [],
    ),
    "iwildcam_coco": (
        iwildcam_coco,
        ["competition.metric=macro_f1"],
        {
            "train": "iwildcam2020_train_annotations.json",
            "train_images": "train",
            "test": "iwildcam2020_test_information.json",
            "test_images": "test",
        },
        "label",
        ["images in train", "images in test"],
    ),
    "siim_isic": (
        siim_isic,
        ["competition.metric=roc_auc"],
        {"label_column": "target", "group_column": "patient_id", "train_images": "jpeg/train"},
        "binary_proba",
        [],
    ),
    "plant_pathology_2021": (
        plant_pathology_2021,
        [],
        {"label_column": "labels", "task": "multilabel", "train_images": "train_images"},
        "multilabel_labels",
        ["multi-label"],
    ),
    "dacon_crop": (
        dacon_crop,
        [],
        {"label_column": "disease_code", "id_column": "uid", "image_column": "img_path"},
        "label",  # the codes 0, 3, 7 as train spells them, not indices of the disease names
        ["the column the sample submission asks for"],
    ),
    "dacon_cp949_bom": (
        dacon_cp949_bom,
        [],
        {"label_column": "label", "id_column": "id", "image_column": "img_path"},
        "label",
        [],
    ),
    "pandas_index_sample": (
        pandas_index_sample,
        [],
        {"label_column": "label", "id_column": "id", "train_images": "train", "test": "test"},
        "label",
        [],
    ),
    "tab_separated": (
        tab_separated,
        [],
        {"train": "train.tsv", "label_column": "label", "task": "multiclass", "test": "test_images"},
        "label",
        [],
    ),
    "hotel_id": (
        hotel_id,
        ["competition.metric=map_at_k", "competition.metric_k=5"],
        {"label_column": "hotel_id", "train_images": "train_images"},
        "topk",
        [],
    ),
    "retinopathy_2015": (
        retinopathy_2015,
        ["competition.metric=qwk"],
        {"train": "trainLabels.csv", "label_column": "level", "id_column": "image"},
        "label",
        [],
    ),
    "imet_2019": (
        imet_2019,
        [],
        {"label_column": "attribute_ids", "task": "multilabel"},
        "multilabel_labels",
        [],
    ),
}


def _id_key(s: str) -> str:
    """A sample id and a test id name the same image: image extension dropped, zero padding ignored."""
    stem, ext = os.path.splitext(s.strip())
    s = stem if ext.lower() in (".jpg", ".jpeg", ".png", ".tif") else s.strip()
    return str(int(s)) if s.isdigit() else s


def check_cells(sub: Path, sample: Path, kind: str, want: dict[str, str], classes: list[str]) -> None:
    """Every cell of `sub`: the header, the ids and every other cell as the sample has them, each value cell
    what the known member's probabilities give for the kind."""
    import codecs
    import csv
    import io

    raw, ref = sub.read_bytes(), sample.read_bytes()
    assert raw.startswith(codecs.BOM_UTF8) == ref.startswith(codecs.BOM_UTF8)
    text, ref_text = raw.decode("utf-8-sig"), ref.decode("utf-8-sig")
    assert text.splitlines()[0] == ref_text.splitlines()[0]  # the header line verbatim
    assert ("\r\n" in text) == ("\r\n" in ref_text)
    delim = "\t" if "\t" in ref_text.splitlines()[0] else ","
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delim))
    ref_rows = list(csv.reader(io.StringIO(ref_text, newline=""), delimiter=delim))
    header = rows[0]
    named = [j for j, h in enumerate(header) if h.strip() and not h.startswith("Unnamed")]
    id_j, value_j = named[0], named[1:]
    assert len(rows) == len(ref_rows)
    by_key = {_id_key(t): c for t, c in want.items()}
    for row, ref_row in zip(rows[1:], ref_rows[1:], strict=True):
        assert [c for j, c in enumerate(row) if j not in value_j] == [
            c for j, c in enumerate(ref_row) if j not in value_j
        ]  # ids and any index column copied as written
        expect = by_key[_id_key(row[id_j])]
        cells = [row[j] for j in value_j]
        if kind in ("label", "multilabel_labels"):
            assert cells == [expect]
        elif kind == "label_code":
            assert cells == [str(classes.index(expect))]
        elif kind == "topk":
            assert cells[0].split()[0] == expect and len(set(cells[0].split())) == len(cells[0].split())
        elif kind == "binary_proba":
            name = header[value_j[0]].strip()
            positive = name if name in classes else classes[1]
            assert (float(cells[0]) > 0.5) == (expect == positive)
        else:
            assert kind == "proba"
            probs = [float(c) for c in cells]
            assert abs(sum(probs) - 1) < 1e-6
            best = header[value_j[probs.index(max(probs))]].strip()
            assert best.casefold() == expect.casefold()


@pytest.mark.parametrize("case", sorted(CASES))
def test_init_reads_real_competition_layouts(case: str, tmp_path: Path, runner) -> None:
    """kit init -> kit validate -> kit submit --member on each layout: the right keys in kit.yaml, the kind
    the competition needs, and every cell of the CSV written exactly (members with known logits)."""
    build, overrides, expected, kind, words = CASES[case]
    data = tmp_path / case
    data.mkdir()
    build(data)
    out = tmp_path / "kit.yaml"
    r = invoke(runner, ["init", str(data), "--out", str(out)])
    assert r.exit_code == 0, r.output
    for w in words:
        assert w in " ".join(r.output.split()), r.output
    sets = set_args([*TINY_INIT_MEMBER, *overrides])
    v = invoke(runner, ["validate", str(out), *sets])
    assert v.exit_code == 0, v.output
    cfg = load_config(out, [*TINY_INIT_MEMBER, *overrides])
    comp = cfg.competition
    for key, value in expected.items():
        got = getattr(comp, key)
        if isinstance(got, Path):
            got = got.relative_to(comp.root).as_posix() if got.is_absolute() else got.as_posix()
        assert got == value, (key, got)
    ws = open_workspace(cfg)
    assert len(ws.classes) >= 2 and ws.test is not None and len(ws.test) >= 3
    assert comp.sample_submission is not None
    want = known_member(out, [*TINY_INIT_MEMBER, *overrides])
    sub = tmp_path / "sub.csv"
    r = invoke(runner, ["submit", "--member", "m", "-c", str(out), "-o", str(sub), *sets])
    assert r.exit_code == 0, r.output
    assert f"rows, {kind})" in r.output, r.output
    check_cells(sub, comp.sample_submission, kind, want, ws.classes)


def test_a_zero_filled_sample_for_named_classes_is_refused_naming_the_key(tmp_path: Path, runner) -> None:
    """Dacon wallpaper: class folders with Korean names, `id,label` pre-filled with 0. Names or their indices?
    The sample cannot tell, so validate and submit refuse, naming competition.submission.kind."""
    data = tmp_path / "dacon"
    data.mkdir()
    dacon_wallpaper(data)
    assert invoke(runner, ["init", str(data)], cwd=tmp_path).exit_code == 0
    r = invoke(runner, ["validate", *set_args(TINY_INIT_MEMBER)], cwd=tmp_path)
    out = " ".join(r.output.split())
    assert r.exit_code == 1 and "Traceback" not in out
    assert "holds only the placeholder '0'" in out and "competition.submission.kind: label" in out, out
    known_member(tmp_path / "kit.yaml", TINY_INIT_MEMBER)
    r = invoke(
        runner, ["submit", "--member", "m", "-o", "sub.csv", *set_args(TINY_INIT_MEMBER)], cwd=tmp_path
    )
    assert r.exit_code == 1 and "competition.submission.kind" in " ".join(r.output.split())
    assert not (tmp_path / "sub.csv").exists()


def test_labels_only_in_file_names_are_refused_naming_the_key(tmp_path: Path, runner) -> None:
    """Dogs vs cats: train/cat.0.jpg, train/dog.0.jpg and no table: kit init says where the labels are and
    which key to set."""
    data = tmp_path / "dvc"
    data.mkdir()
    dogs_vs_cats(data)
    r = invoke(runner, ["init", str(data)], cwd=tmp_path)
    out = " ".join(r.output.split())
    assert r.exit_code == 0 and "labels only in their file names: train (cat, dog)" in out, out
    assert "competition.train" in out


@pytest.mark.parametrize(
    "case,metric",
    [
        ("histopathologic", ["competition.metric=roc_auc"]),
        ("aptos", ["competition.metric=qwk"]),
        ("humpback", ["competition.metric=map_at_k", "competition.metric_k=5"]),
    ],
)
def test_metric_competitions_end_to_end(case: str, metric: list[str], tmp_path: Path, runner) -> None:
    """init -> train -> blend -> submit under the competition's own metric: every blender optimises it, the
    table and the sidecar report it, and the CSV has the shape the metric needs."""
    import csv

    data = tmp_path / case
    data.mkdir()
    CASES[case][0](data)
    assert invoke(runner, ["init", str(data)], cwd=tmp_path).exit_code == 0
    sets = set_args([*TINY_INIT_MEMBER, *metric])
    for cmd in (
        ["train"],
        ["blend", "ensembles/all.yaml"],
        ["submit", "ensembles/all.yaml", "-o", "sub.csv"],
    ):
        r = invoke(runner, [*cmd, *sets], cwd=tmp_path)
        assert r.exit_code == 0, r.output
    name = metric[0].split("=")[1]
    winner = json.loads((tmp_path / "work" / "blends" / "all" / "winner.json").read_text("utf-8"))
    assert winner["metric"].startswith(name)
    with (tmp_path / "work" / "blends" / "all" / "table.csv").open(encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    labels = [t["blender"] for t in table]
    assert {"greedy", "hill_climb", "subsets", "stack"} <= set(labels)
    if name == "qwk":
        assert "greedy+ordinal_thresholds" in labels and "greedy+class_bias" in labels
    else:  # rank metrics: no label post-processing rows
        assert not any("+" in lab for lab in labels)
    sidecar = json.loads(next((tmp_path).glob("sub.csv*.json")).read_text("utf-8"))
    assert str(sidecar["metric"]).startswith(name)
    rows = list(csv.reader((tmp_path / "sub.csv").open(encoding="utf-8")))
    values = [r[1] for r in rows[1:]]
    if name == "roc_auc":
        assert all(0.0 <= float(v) <= 1.0 for v in values) and len(set(values)) > 1  # probabilities
    elif name == "qwk":
        assert set(values) <= {"0", "1", "2", "3", "4"}
    else:
        assert all(len(v.split()) == 3 for v in values)  # 3 classes: a full ranked list


def test_metric_config_errors_name_the_key(tmp_path: Path, runner) -> None:
    """An unknown metric, a k-metric without k, k for a metric without one, qwk on unordered string labels."""
    data = tmp_path / "dog"
    data.mkdir()
    dog_breed(data)
    out = tmp_path / "kit.yaml"
    assert invoke(runner, ["init", str(data), "--out", str(out)]).exit_code == 0

    def validate(*sets: str) -> str:
        r = invoke(runner, ["validate", str(out), *[a for s in sets for a in ("--set", s)]])
        assert r.exit_code == 1 and "Traceback" not in r.output, r.output
        return r.output

    assert "competition.metric" in validate("competition.metric=auc") and "roc_auc" in validate(
        "competition.metric=auc"
    )
    assert "competition.metric_k" in validate("competition.metric=map_at_k")
    assert "remove metric_k" in validate("competition.metric_k=5")
    text = validate("competition.metric=qwk")
    assert "qwk scores ordered grades" in text and "competition.classes" in text
    ordered = "competition.classes=[collie, beagle, affenpinscher]"
    sets = set_args([*TINY_INIT_MEMBER, "competition.metric=qwk", ordered])
    r = invoke(runner, ["validate", str(out), *sets])
    assert r.exit_code == 0, r.output  # grades in the order the user gave


def test_validate_reports_train_test_and_sample_problems_at_once(tmp_path: Path, runner) -> None:
    """A train row without its image, a test row without its image and an empty sample: one run, all three."""
    data = tmp_path / "aptos"
    data.mkdir()
    aptos(data)
    out = tmp_path / "kit.yaml"
    assert invoke(runner, ["init", str(data), "--out", str(out)]).exit_code == 0
    (data / "train_images" / f"{3:012x}.png").unlink()
    (data / "test_images" / f"{501:012x}.png").unlink()
    (data / "sample_submission.csv").write_text("id_code,diagnosis\n", "utf-8")
    r = invoke(runner, ["validate", str(out)])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"image '{3:012x}' not found" in r.output
    assert f"image '{501:012x}' not found" in r.output
    assert "has a header but no rows" in r.output
