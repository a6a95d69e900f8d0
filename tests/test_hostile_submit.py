"""Issue 27: submission shapes and how labels are read, through the real CLI.

Numeric labels written as floats (`1.0`..`10.0`) with a `0`-filled sample, every (classes, placeholder)
combination, multi-label separators that never split, class names with spaces, and the default TTA views.
Members are either trained for real (tiny timm models) or written with known logits through kit's own
artifact writer, so every written cell can be checked exactly."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from conftest import TINY_INIT_MEMBER, invoke, set_args, write_csv, write_image
from train_helpers import known_member

from kit.config.load import load_config


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return list(csv.reader(f))


def labelled_competition(
    root: Path,
    labels: list[str],
    placeholders: list[str],
    *,
    n_train: int = 20,
    header: tuple[str, str] = ("id", "label"),
) -> Path:
    """train/ and test/ PNGs, train.csv `id,label` cycling through `labels`, a sample pre-filled with
    `placeholders` (cycled over the rows)."""
    rows = []
    for i in range(n_train):
        write_image(root / "train" / f"{i:03d}.png", seed=i)
        rows.append([f"{i:03d}", labels[i % len(labels)]])
    write_csv(root / "train.csv", ["id", "label"], rows)
    for j in range(6):
        write_image(root / "test" / f"t{j:02d}.png", seed=100 + j)
    write_csv(
        root / "sample_submission.csv",
        list(header),
        [[f"t{j:02d}", placeholders[j % len(placeholders)]] for j in range(6)],
    )
    return root


def kit_yaml(path: Path, data: Path, **competition: object) -> Path:
    cfg = {
        "competition": {
            "root": str(data),
            "train": "train.csv",
            "train_images": "train",
            "test": "test",
            "sample_submission": "sample_submission.csv",
            "id_column": "id",
            "label_column": "label",
            "metric": "accuracy",
            **competition,
        },
        "folds": {"k": 2},
        "workdir": str(path.parent / "work"),
    }
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), "utf-8")
    return path


# ---------------------------------------------------------------- case 1: numeric labels spelled as floats

FLOATS = [f"{i}.0" for i in range(1, 11)]  # how pandas writes an integer column that held a NaN


def test_float_spelled_labels_with_a_zero_sample_train_and_submit_labels(tmp_path: Path, runner) -> None:
    """Issue 27 #1, as reported: train labels 1.0..10.0, a sample pre-filled with 0, a real tiny member.
    Before the fix kit wrote label codes (indices into the classes sorted as strings). Also issue 27's TTA
    default: a member that sets no `tta` keeps only the plain view."""
    data = labelled_competition(tmp_path / "data", FLOATS, ["0"], n_train=30)
    assert invoke(runner, ["init", str(data)], cwd=tmp_path).exit_code == 0
    sets = set_args([*TINY_INIT_MEMBER, "competition.metric=accuracy"])
    cfg = yaml.safe_load((tmp_path / "kit.yaml").read_text("utf-8"))
    del cfg["members"]["convnext"]["tta"]  # the schema's default views
    (tmp_path / "kit.yaml").write_text(yaml.safe_dump(cfg), "utf-8")
    r = invoke(runner, ["train", *sets], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "work" / "members" / "convnext" / "meta.json").read_text("utf-8"))
    assert meta["views"] == ["plain"]
    assert meta["classes"] == FLOATS  # numeric labels in numeric order, spelled as train spells them
    r = invoke(runner, ["submit", "--member", "convnext", "-o", "sub.csv", *sets], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    out = flat(r.output)
    assert "6 rows, label)" in out
    assert "competition.submission.kind" in out and "label_code" in out  # what was chosen, and the key
    values = [row[1] for row in read_rows(tmp_path / "sub.csv")[1:]]
    assert len(values) == 6 and set(values) <= set(FLOATS)
    side = json.loads((tmp_path / "sub.csv.json").read_text("utf-8"))
    assert side["kind"] == "label"


INTS = [str(i) for i in range(1, 11)]
NAMED = ["cat", "dog", "fox"]

# classes, sample placeholders, expected kind (None: refused), words the output must hold, words it must not
MATRIX = {
    "int-0": (INTS, ["0"], "label", [], ["label_code"]),
    "int-1.0": (INTS, ["1.0"], "label", ["'1.0'"], ["probabilities"]),
    "int-class": (INTS, ["3"], "label", [], []),
    "int-empty": (INTS, [""], "label", [], []),
    "int-proba": (INTS, ["0.5"], "label", ["probabilities"], []),
    "float-0": (FLOATS, ["0"], "label", ["competition.submission.kind", "label_code"], []),
    "float-1.0": (FLOATS, ["1.0"], "label", [], ["probabilities"]),
    "float-7": (FLOATS, ["7"], "label", ["competition.submission.kind"], []),
    "float-empty": (FLOATS, [""], "label", [], []),
    "named-codes": (
        NAMED,
        ["0", "2", "1"],
        "label_code",
        ["class indices", "competition.submission.kind"],
        [],
    ),
    "named-0": (NAMED, ["0"], None, ["competition.submission.kind", "label_code", "label"], []),
    "named-codes-1based": (NAMED, ["1", "3", "2"], None, ["competition.submission.kind", "1..3"], []),
    "named-1.0": (NAMED, ["1.0"], "label", ["probabilities", "competition.submission.kind"], []),
    "named-class": (NAMED, ["dog"], "label", [], []),
    "named-empty": (NAMED, [""], "label", [], []),
}


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_label_kind_matrix(case: str, tmp_path: Path, runner) -> None:
    """Every (classes, placeholder) pair: labels in the classes' own spelling, label codes only where the
    integers can only be class indices, and a refusal naming competition.submission.kind where the sample
    cannot tell. `kit validate` refuses what `kit submit` refuses."""
    classes, placeholders, kind, words, absent = MATRIX[case]
    data = labelled_competition(tmp_path / "data", classes, placeholders)
    config = kit_yaml(tmp_path / "kit.yaml", data)
    want = list(known_member(config).values())
    v = invoke(runner, ["validate", str(config)])
    r = invoke(runner, ["submit", "--member", "m", "-c", str(config), "-o", str(tmp_path / "sub.csv")])
    out = flat(r.output)
    for w in words:
        assert w in out, out
    for w in absent:
        assert w not in out, out
    if kind is None:
        assert r.exit_code == 1 and v.exit_code == 1 and "Traceback" not in out, out
        assert "competition.submission.kind" in flat(v.output)
        assert not (tmp_path / "sub.csv").exists()
        return
    assert v.exit_code == 0, v.output
    assert r.exit_code == 0, r.output
    assert f"6 rows, {kind})" in out
    got = [row[1] for row in read_rows(tmp_path / "sub.csv")[1:]]
    ws_classes = sorted(set(classes), key=float) if classes is not NAMED else sorted(classes)
    expected = [str(ws_classes.index(c)) for c in want] if kind == "label_code" else want
    assert got == expected


def test_float_classes_codes_follow_numeric_order(tmp_path: Path, runner) -> None:
    """With competition.submission.kind: label_code set, codes index the classes in numeric order
    (10.0 is the last class, not the second)."""
    data = labelled_competition(tmp_path / "data", FLOATS, ["0"])
    config = kit_yaml(tmp_path / "kit.yaml", data, submission={"kind": "label_code"})
    want = list(known_member(config).values())
    r = invoke(runner, ["submit", "--member", "m", "-c", str(config), "-o", str(tmp_path / "sub.csv")])
    assert r.exit_code == 0, r.output
    got = [row[1] for row in read_rows(tmp_path / "sub.csv")[1:]]
    assert got == [str(FLOATS.index(c)) for c in want]


# ---------------------------------------------------------------- case 2: multi-label separators


def multilabel_competition(root: Path, cells: list[str]) -> Path:
    rows = []
    for i in range(24):
        write_image(root / "train" / f"{i:03d}.png", seed=i)
        rows.append([f"{i:03d}", cells[i % len(cells)]])
    write_csv(root / "train.csv", ["id", "tags"], rows)
    for j in range(4):
        write_image(root / "test" / f"t{j}.png", seed=50 + j)
    write_csv(root / "sample_submission.csv", ["id", "tags"], [[f"t{j}", "red"] for j in range(4)])
    return root


def test_a_separator_that_never_splits_is_refused_before_training(tmp_path: Path, runner) -> None:
    """label_separator ',' on space-separated cells would train on label combinations, one per image."""
    data = multilabel_competition(tmp_path / "data", ["red green", "blue", "green blue", "red"])
    config = kit_yaml(
        tmp_path / "kit.yaml",
        data,
        label_column="tags",
        task="multilabel",
        label_separator=",",
        metric="f1_samples",
    )
    cfg = yaml.safe_load(config.read_text("utf-8"))
    cfg["members"] = {
        "m": {"kind": "timm", "model": "test_convnext", "pretrained": False, "img_size": 32, "epochs": 1}
    }
    config.write_text(yaml.safe_dump(cfg), "utf-8")
    for cmd in (["validate", str(config)], ["train", "-c", str(config)]):
        r = invoke(runner, cmd)
        out = flat(r.output)
        assert r.exit_code == 1 and "Traceback" not in out, out
        assert "competition.label_separator" in out and "never splits" in out, out
        assert "' '" in out  # the separator the cells do use
    assert not (tmp_path / "work" / "members").exists()
    # the same cells with the right separator train as labels
    r = invoke(runner, ["validate", str(config), "--set", "competition.label_separator=' '"])
    assert r.exit_code == 0, r.output


def test_multilabel_task_with_one_label_a_row_is_refused(tmp_path: Path, runner) -> None:
    data = multilabel_competition(tmp_path / "data", ["red", "blue", "green"])
    config = kit_yaml(
        tmp_path / "kit.yaml", data, label_column="tags", task="multilabel", metric="f1_samples"
    )
    r = invoke(runner, ["validate", str(config)])
    out = flat(r.output)
    assert r.exit_code == 1 and "Traceback" not in out, out
    assert "competition.task" in out and "multiclass" in out and "exactly one label" in out, out


def test_multilabel_one_hot_columns_with_one_label_a_row_are_refused(tmp_path: Path, runner) -> None:
    rows = []
    for i in range(18):
        write_image(tmp_path / "data" / "train" / f"{i:03d}.png", seed=i)
        rows.append([f"{i:03d}", *["1" if i % 3 == c else "0" for c in range(3)]])
    write_csv(tmp_path / "data" / "train.csv", ["id", "a", "b", "c"], rows)
    write_image(tmp_path / "data" / "test" / "t0.png", seed=99)
    write_csv(tmp_path / "data" / "sample_submission.csv", ["id", "a", "b", "c"], [["t0", "0", "0", "0"]])
    config = kit_yaml(
        tmp_path / "kit.yaml",
        tmp_path / "data",
        label_column=None,
        label_columns=["a", "b", "c"],
        task="multilabel",
        metric="f1_samples",
    )
    r = invoke(runner, ["validate", str(config)])
    out = flat(r.output)
    assert r.exit_code == 1 and "competition.task" in out and "exactly one" in out, out


# ---------------------------------------------------------------- case 3: class names with spaces

SEEDLINGS = ["Black-grass", "Common Chickweed", "Shepherds Purse", "Sugar beet"]


def seedlings(root: Path, placeholder: str = "Sugar beet") -> Path:
    for c, name in enumerate(SEEDLINGS):
        for i in range(5):
            write_image(root / "train" / name / f"{c}{i:08x}.png", seed=10 * c + i)
    for i in range(6):
        write_image(root / "test" / f"{i:09x}.png", seed=80 + i)
    write_csv(
        root / "sample_submission.csv", ["file", "species"], [[f"{i:09x}.png", placeholder] for i in range(6)]
    )
    return root


def test_spaced_class_names_with_a_label_sample_are_written_exactly(tmp_path: Path, runner) -> None:
    """Plant seedlings: class folders 'Sugar beet', 'Common Chickweed'; `file,species` pre-filled with one."""
    data = seedlings(tmp_path / "data")
    r = invoke(runner, ["init", str(data)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    v = invoke(runner, ["validate", *set_args(TINY_INIT_MEMBER)], cwd=tmp_path)
    assert v.exit_code == 0, v.output
    want = list(known_member(tmp_path / "kit.yaml", ["folds.k=2"]).values())
    r = invoke(runner, ["submit", "--member", "m", "-o", "sub.csv", "--set", "folds.k=2"], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "6 rows, label)" in flat(r.output)
    rows = read_rows(tmp_path / "sub.csv")
    assert rows[0] == ["file", "species"]
    assert [row[0] for row in rows[1:]] == [f"{i:09x}.png" for i in range(6)]
    assert [row[1] for row in rows[1:]] == want and {"Common Chickweed", "Sugar beet"} <= set(want)
    assert invoke(runner, ["check-submission", "sub.csv", "--set", "folds.k=2"], cwd=tmp_path).exit_code == 0


@pytest.mark.parametrize(
    "sets,placeholder,key",
    [
        (["competition.metric=map_at_k", "competition.metric_k=3"], "Sugar beet", "competition.metric"),
        ([], "Sugar beet Black-grass Maize", "competition.submission.kind"),
    ],
)
def test_ranked_lists_of_spaced_class_names_are_refused_naming_one_key(
    tmp_path: Path, runner, sets: list[str], placeholder: str, key: str
) -> None:
    """A ranked list (space-separated) cannot hold names with spaces: refused, naming the key that decided
    it, never advising to rename the classes (which would break the CSV)."""
    data = seedlings(tmp_path / "data", placeholder)
    assert invoke(runner, ["init", str(data)], cwd=tmp_path).exit_code == 0
    r = invoke(runner, ["validate", *set_args([*TINY_INIT_MEMBER, *sets])], cwd=tmp_path)
    out = flat(r.output)
    assert r.exit_code == 1 and "Traceback" not in out, out
    assert key in out and "rename" not in out, out


# ---------------------------------------------------------------- case 5: TTA views kit init proposes


def test_init_says_flips_assume_orientation_is_not_the_label(tmp_path: Path, runner) -> None:
    """kit init proposes [plain, hflip] and says what the mirrored view assumes; a member without `tta`
    keeps the plain view only (the schema's default), which `kit train` shows in the per-view scores."""
    data = labelled_competition(tmp_path / "data", ["b", "d", "p", "q"], ["b"])
    r = invoke(runner, ["init", str(data)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    cfg = yaml.safe_load((tmp_path / "kit.yaml").read_text("utf-8"))
    assert cfg["members"]["convnext"]["tta"] == ["plain", "hflip"]
    out = flat(r.output)
    assert "orientation does not carry the label" in out and "members.convnext.tta: ['plain']" in out, out
    del cfg["members"]["convnext"]["tta"]
    (tmp_path / "kit.yaml").write_text(yaml.safe_dump(cfg), "utf-8")
    assert load_config(tmp_path / "kit.yaml").members["convnext"].tta == ["plain"]
