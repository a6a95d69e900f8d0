"""`kit init` on folders laid out as real competitions ship them (tiny images, real sample submissions):
iWildCam, dog breed, paddy disease, plant pathology 2020, herbarium (COCO JSON), Dacon wallpaper, histopathologic
cancer detection, APTOS (diabetic retinopathy), humpback whale. Each must give a kit.yaml that `kit validate`
passes, with the right columns and the reasons printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_INIT_MEMBER, invoke, set_args, write_csv, write_image

from kit.config.load import load_config
from kit.data.workspace import open_workspace
from kit.submit.sample import detect_layout, read_csv_exact


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
        [],
        {"train": "train", "test": "test.csv", "id_column": "id", "image_column": "img_path"},
        "label_code",  # integer placeholders with named classes: class indices (docs/submit.md)
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
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_init_reads_real_competition_layouts(case: str, tmp_path: Path, runner) -> None:
    build, overrides, expected, kind, words = CASES[case]
    data = tmp_path / case
    data.mkdir()
    build(data)
    out = tmp_path / "kit.yaml"
    r = invoke(runner, ["init", str(data), "--out", str(out)])
    assert r.exit_code == 0, r.output
    for w in words:
        assert w in r.output, r.output
    sets = set_args(overrides)
    v = invoke(runner, ["validate", str(out), *sets])
    assert v.exit_code == 0, v.output
    cfg = load_config(out, [*overrides, "folds.k=2"])
    comp = cfg.competition
    for key, value in expected.items():
        got = getattr(comp, key)
        if isinstance(got, Path):
            got = got.relative_to(comp.root).as_posix() if got.is_absolute() else got.as_posix()
        assert got == value, (key, got)
    ws = open_workspace(cfg)
    assert len(ws.classes) >= 2 and ws.test is not None and len(ws.test) >= 5
    assert comp.sample_submission is not None
    layout = detect_layout(
        read_csv_exact(comp.sample_submission), ws.classes, comp.submission, comp.id_column, comp.scored_by
    )
    assert layout.kind == kind


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
    r = invoke(runner, ["validate", str(out), "--set", "competition.metric=qwk", "--set", ordered])
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
