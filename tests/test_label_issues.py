"""Issue 30, label issues: cleanlab ranks train rows by OOF evidence of a wrong label (kit.report.labels), and
competition.label_overrides relabels or drops rows for every consumer, entering the fingerprints and the folds
(kit.data.overrides). Real cleanlab, real tiny members, the real CLI."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import invoke, write_csv
from train_helpers import CLASSES, make_competition, member, write_relative_config
from typer.testing import CliRunner

from kit.errors import KitError
from kit.report.labels import (
    LabelIssue,
    member_oof_probs,
    member_oof_stack,
    rank_label_issues,
    write_override_suggestions,
)

# ---------------------------------------------------------------- ranking (pure arrays)


def noisy_oof(n: int = 300, c: int = 4, flips: int = 12, members: int = 3, seed: int = 0):
    """OOF probabilities of `members` models that predict the true class with confidence ~0.8, and labels
    with `flips` rows moved to another class. Returns (per-member probs [n, M, C], given labels, flipped rows,
    true labels)."""
    rng = np.random.default_rng(seed)
    true = np.arange(n) % c
    logits = rng.normal(0, 0.5, (n, members, c))
    logits[np.arange(n), :, true] += 2.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    flipped = rng.choice(n, flips, replace=False)
    given = true.copy()
    given[flipped] = (true[flipped] + 1 + rng.integers(0, c - 1, flips)) % c
    return probs, given, flipped, true


def test_flipped_labels_rank_at_the_top_with_the_true_class_suggested() -> None:
    probs, given, flipped, true = noisy_oof()
    classes = ["a", "b", "c", "d"]
    ids = [f"r{i:03d}" for i in range(len(given))]
    issues = rank_label_issues(probs, given, ids, classes, limit=50)
    assert all(isinstance(i, LabelIssue) for i in issues)
    top = [i.row for i in issues[: len(flipped)]]
    assert set(top) == set(flipped.tolist())  # every flipped row, and only those, in the top 12
    for i in issues[: len(flipped)]:
        assert i.id == ids[i.row] and i.given == classes[given[i.row]]
        assert i.suggested == classes[true[i.row]]
        assert i.members_agree == 3 and i.n_members == 3
        pooled = probs[i.row].mean(axis=0)
        assert i.quality == pytest.approx(pooled[given[i.row]])  # self-confidence: P(given label)
        assert i.suggested_prob == pytest.approx(pooled[true[i.row]])
        assert i.quality < 0.2 < i.suggested_prob
    # confident learning is precise but sparing: what it flags is flipped, and it flags most of the flips
    flagged = {i.row for i in issues if i.flagged}
    assert flagged <= set(flipped.tolist()) and len(flagged) >= 8
    qualities = [i.quality for i in issues]
    assert qualities == sorted(qualities)  # most suspicious first
    # the pooled [n, C] form ranks the same rows; it cannot count members
    pooled = rank_label_issues(probs.mean(axis=1), given, ids, classes, limit=len(flipped))
    assert [i.row for i in pooled] == top and pooled[0].members_agree is None
    assert len(rank_label_issues(probs, given, ids, classes, limit=3)) == 3


def test_clean_labels_give_few_issues_and_mismatched_shapes_are_refused() -> None:
    probs, _, _, true = noisy_oof(flips=0)
    ids = [str(i) for i in range(len(true))]
    assert len(rank_label_issues(probs, true, ids, list("abcd"), limit=None)) <= 3
    with pytest.raises(KitError, match="do not line up"):
        rank_label_issues(probs[:-1], true, ids, list("abcd"))


def test_multilabel_flips_rank_at_the_top() -> None:
    rng = np.random.default_rng(1)
    n, n_labels = 240, 3
    Y = (rng.random((n, n_labels)) < 0.4).astype(np.uint8)
    logits = rng.normal(0, 0.4, (n, 2, n_labels)) + np.where(Y[:, None, :] == 1, 2.5, -2.5)
    probs = 1 / (1 + np.exp(-logits))
    flipped = rng.choice(n, 8, replace=False)
    given = Y.copy()
    given[flipped, 0] = 1 - given[flipped, 0]  # label 0 added or removed
    issues = rank_label_issues(probs, given, [str(i) for i in range(n)], ["x", "y", "z"], 20, separator=";")
    assert {i.row for i in issues[:8]} == set(flipped.tolist())
    first = issues[0]
    assert first.suggested == ";".join(np.array(["x", "y", "z"])[Y[first.row] == 1])
    assert first.members_agree == 2 and 0 < first.quality < 0.5


# ---------------------------------------------------------------- the suggestions file


def issue(rid: str, suggested: str = "dog") -> LabelIssue:
    return LabelIssue(0, rid, "cat", suggested, 0.05, 0.9, 2, 3, flagged=rid == "001")


def test_suggestions_file_is_an_overrides_file_and_never_replaces_an_edited_one(tmp_path: Path) -> None:
    from kit.data.overrides import read_label_overrides

    path = tmp_path / "suggested.csv"
    write_override_suggestions(path, [issue("001"), issue("002", "eel"), issue("003", "")])
    rows = read_label_overrides(path)
    assert [(o.id, o.label) for o in rows] == [
        ("001", "dog"),
        ("002", "eel"),
    ]  # an empty suggestion is left out
    with path.open(encoding="utf-8-sig", newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["id", "label", "given", "quality", "suggested_prob", "members_agree", "flagged"]
    assert table[1] == ["001", "dog", "cat", "0.0500", "0.9000", "2/3", "yes"]
    assert table[2][-1] == ""
    assert json.loads((tmp_path / "suggested.csv.json").read_text())["rows"] == 2

    write_override_suggestions(path, [issue("004")])  # kit's own, unedited: replaced
    assert [o.id for o in read_label_overrides(path)] == ["004"]
    path.write_text(path.read_text("utf-8-sig") + "005,cat\n", "utf-8")  # a person reviewed it
    with pytest.raises(KitError, match="edited since"):
        write_override_suggestions(path, [issue("006")])
    assert "005" in path.read_text("utf-8")
    mine = tmp_path / "mine.csv"
    mine.write_text("id,label\n1,cat\n", "utf-8")
    with pytest.raises(KitError, match="kit did not write it"):
        write_override_suggestions(mine, [issue("006")])
    assert mine.read_text("utf-8") == "id,label\n1,cat\n"
    lone = tmp_path / "lone.csv"  # no CSV yet, but a JSON file of the sidecar's name that is someone's
    (tmp_path / "lone.csv.json").write_text('{"mine": true}')
    with pytest.raises(KitError, match="lone.csv.json: the file exists and kit did not write it"):
        write_override_suggestions(lone, [issue("006")])
    assert (tmp_path / "lone.csv.json").read_text() == '{"mine": true}' and not lone.exists()


# ---------------------------------------------------------------- overrides through a real workspace


def make_project(base: Path, competition: dict | None = None) -> Path:
    data = make_competition(base / "data")
    write_csv(data / "sample_submission.csv", ["id", "label"], [[f"t{j:03d}", CLASSES[0]] for j in range(8)])
    (base / "ensembles").mkdir(parents=True, exist_ok=True)
    spec = {"members": ["cnx"], "blenders": [{"kind": "uniform"}]}
    (base / "ensembles" / "all.yaml").write_text(yaml.safe_dump(spec), "utf-8")
    return write_relative_config(base, {"cnx": member()}, competition=competition)


def with_overrides(base: Path, rows: list[list[str]], name: str = "label_overrides.csv") -> Path:
    write_csv(base / name, ["id", "label"], rows)
    write_relative_config(base, {"cnx": member()}, competition={"label_overrides": name})
    return base / name


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("labels") / "project"
    make_project(base)
    r = invoke(CliRunner(), ["train", "cnx"], cwd=base)
    assert r.exit_code == 0, r.output
    return base


def open_ws(base: Path):
    from kit.config.load import load_config
    from kit.workspace import open_workspace

    return open_workspace(load_config(base / "kit.yaml"))


def test_member_oof_probs_and_ranking_over_a_trained_member(trained: Path, tmp_path: Path) -> None:
    from kit.config.load import load_config
    from kit.data.overrides import read_label_overrides

    cfg = load_config(trained / "kit.yaml")
    probs, names = member_oof_probs(cfg, None)
    stack, _ = member_oof_stack(cfg, ["cnx"])
    assert names == ["cnx"] and probs.shape == (34, 3) and stack.shape == (34, 1, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    ws = open_ws(trained)
    issues = rank_label_issues(stack, ws.train.labels, ws.train.ids, ws.classes, limit=10)
    assert len(issues) <= 10
    for i in issues:
        assert i.id == ws.train.ids[i.row] and i.given == ws.classes[ws.train.labels[i.row]]
        assert i.suggested != i.given and i.n_members == 1
    out = write_override_suggestions(tmp_path / "s.csv", issues)
    assert [o.id for o in read_label_overrides(out)] == [i.id for i in issues]
    with pytest.raises(KitError, match="member 'nope'"):
        member_oof_probs(cfg, ["nope"])


def test_overrides_relabel_and_drop_rows_and_stale_members_are_refused_until_retrained(
    trained: Path, tmp_path: Path, runner: CliRunner
) -> None:
    from kit.config.load import load_config
    from kit.cv.folds import folds_table_path

    base = tmp_path / "project"
    shutil.copytree(trained, base)
    before = open_ws(base)
    assert before.train.labels[before.train.ids.index("001")] == CLASSES.index("cat")
    with_overrides(base, [["001", "dog"], ["030", ""]])

    r = invoke(runner, ["validate"], cwd=base)
    assert r.exit_code == 0, r.output
    assert "label_overrides: 1 row(s) relabelled, 1 dropped" in r.output

    r = invoke(runner, ["blend", "ensembles/all.yaml"], cwd=base)
    assert r.exit_code == 1
    assert "member 'cnx'" in r.output and "run `kit train cnx`" in r.output
    assert "its train ids differ from the current train table" in r.output
    r = invoke(runner, ["runs"], cwd=base)
    assert r.exit_code == 0 and "cnx is stale" in r.output, r.output
    with pytest.raises(KitError, match="no trained member .* fits the current train table"):
        member_oof_probs(load_config(base / "kit.yaml"))  # OOF rows of other rows are never ranked

    ws = open_ws(base)  # what every command reads
    assert len(ws.train) == 33 and "030" not in ws.train.ids
    assert ws.train.labels[ws.train.ids.index("001")] == CLASSES.index("dog")
    assert ws.train.classes == CLASSES
    assert ws.train_fingerprints.labels != before.train_fingerprints.labels
    assert ws.data_fingerprint != before.data_fingerprint
    assert ws.folds.ids == ws.train.ids and ws.folds.fingerprint != before.folds.fingerprint
    # the saved folds table was rewritten for the new rows: never a stale (id, fold) list
    path = folds_table_path(ws.cfg)
    with path.open(newline="") as f:
        saved = list(csv.reader(f))[1:]
    assert [r[0] for r in saved] == ws.train.ids
    assert [int(r[1]) for r in saved] == ws.folds.fold.tolist()
    assert path.with_suffix(".fingerprint").read_text().strip() == ws.folds.fingerprint

    r = invoke(runner, ["train", "cnx"], cwd=base)
    assert r.exit_code == 0 and "done earlier" not in r.output, r.output
    meta = json.loads((base / "work" / "members" / "cnx" / "meta.json").read_text())
    assert meta["n_train"] == 33 and meta["data_fingerprint"] == ws.data_fingerprint
    r = invoke(runner, ["blend", "ensembles/all.yaml"], cwd=base)
    assert r.exit_code == 0, r.output

    # a relabel alone (same ids) is named as such
    with_overrides(base, [["001", "dog"], ["030", ""], ["002", "eel"]])
    r = invoke(runner, ["blend", "ensembles/all.yaml"], cwd=base)
    assert r.exit_code == 1
    assert "the train labels or groups changed since it was made (same ids)" in r.output
    # the overrides file itself is not part of the fingerprint, only what it does: rewritten with the
    # same effect (other order, spacing, an extra column), the member is current again
    write_csv(
        base / "label_overrides.csv", ["label", "id", "note"], [["", "030", "blurry"], ["dog", " 001 ", ""]]
    )
    r = invoke(runner, ["blend", "ensembles/all.yaml"], cwd=base)
    assert r.exit_code == 0, r.output


def test_overrides_on_a_class_folder_layout_name_rows_by_their_folder_path(tmp_path: Path) -> None:
    from PIL import Image

    from kit.config.load import load_config
    from kit.data.table import load_train

    for c in ("ant", "bee"):
        for j in range(3):
            (tmp_path / "data" / "train" / c).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (j * 40, 0, 0)).save(tmp_path / "data" / "train" / c / f"{j}.png")
    write_csv(tmp_path / "fix.csv", ["id", "label"], [["ant/1.png", "bee"], ["bee/2.png", ""]])
    cfg = {"competition": {"root": "data", "train": "train", "label_overrides": "fix.csv"}, "workdir": "work"}
    (tmp_path / "kit.yaml").write_text(yaml.safe_dump(cfg), "utf-8")
    train = load_train(load_config(tmp_path / "kit.yaml").competition)
    assert train.ids == ["ant/0.png", "ant/1.png", "ant/2.png", "bee/0.png", "bee/1.png"]
    assert train.labels.tolist() == [0, 1, 0, 1, 1]


# ---------------------------------------------------------------- bad overrides, as `kit validate` says them


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("bad") / "project"
    make_project(base)
    return base


BAD = {
    "unknown id": (
        "id,label\n001,dog\n0005,cat\n",
        [
            "label_overrides.csv row 3: id '0005' is no train row (did you mean '005'?)",
            "train ids look like '000'",
        ],
    ),
    "unknown class": (
        "id,label\n001,wolf\n",
        ["label_overrides.csv row 2: label 'wolf' for id '001' is not a class; classes: cat, dog, eel"],
    ),
    "duplicate id": (  # reported with the other rows' problems, all at once
        "id,label\n001,dog\n002,dog\n001,eel\n9,cat\n",
        [
            "label_overrides.csv row 4: id '001' is listed again (first at row 2); keep one row per id",
            "label_overrides.csv row 5: id '9' is no train row (did you mean '009'?)",
        ],
    ),
    "missing column": ("image,label\n001,dog\n", ["needs the columns id,label; missing ['id']"]),
    "class emptied": (
        "id,label\n" + "".join(f"{i:03d},\n" for i in range(28, 34)),
        ["after the overrides no train row has class(es) ['eel']"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_overrides_are_reported_by_validate_and_refused_by_train(
    project: Path, tmp_path: Path, runner: CliRunner, case: str
) -> None:
    base = tmp_path / "project"
    shutil.copytree(project, base)
    text, expected = BAD[case]
    (base / "label_overrides.csv").write_text(text, "utf-8")
    write_relative_config(base, {"cnx": member()}, competition={"label_overrides": "label_overrides.csv"})
    r = invoke(runner, ["validate"], cwd=base)
    assert r.exit_code == 1, r.output
    flat = " ".join(r.output.split())
    for e in expected:
        assert e in flat, r.output
    assert f"{base / 'label_overrides.csv'}: " in r.output  # the file, then its rows
    if case == "unknown class":
        r = invoke(runner, ["train", "cnx"], cwd=base)
        assert r.exit_code == 1 and "'wolf'" in r.output and not (base / "work" / "members").exists()


@pytest.mark.parametrize("where", ["missing", "folder", "in workdir"])
def test_overrides_path_problems(project: Path, tmp_path: Path, runner: CliRunner, where: str) -> None:
    base = tmp_path / "project"
    shutil.copytree(project, base)
    name = {"missing": "nope.csv", "folder": "data", "in workdir": "work/fix.csv"}[where]
    if where == "in workdir":
        write_csv(base / "work" / "fix.csv", ["id", "label"], [["001", "dog"]])
    write_relative_config(base, {"cnx": member()}, competition={"label_overrides": name})
    r = invoke(runner, ["validate"], cwd=base)
    assert r.exit_code == 1, r.output
    flat = " ".join(r.output.split())
    expected = {
        "missing": "does not exist (the path is relative to the kit.yaml)",
        "folder": "is a folder; point label_overrides at a CSV file",
        "in workdir": "is inside the workdir",
    }[where]
    assert expected in flat, r.output


def test_multilabel_overrides_and_member_probs_find_the_overridden_row(tmp_path: Path) -> None:
    from test_multilabel import make_multilabel

    from kit.artifacts.member import write_member
    from kit.config.load import load_config
    from kit.workspace import open_workspace

    make_multilabel(tmp_path / "data", columns=False)
    comp = {"root": "data", "train": "train.csv", "test": "test.csv", "id_column": "id"}
    comp |= {"train_images": "train", "test_images": "test"}
    comp |= {"label_column": "labels", "task": "multilabel", "metric": "f1_samples"}
    cfg = {"competition": comp, "folds": {"k": 2}, "workdir": "work"}
    (tmp_path / "kit.yaml").write_text(yaml.safe_dump(cfg), "utf-8")
    ws = open_workspace(load_config(tmp_path / "kit.yaml"))
    truth, before = ws.train.labels.copy(), list(ws.train.ids)
    i = before.index("4")
    wrong = ["green"] if truth[i].tolist() != [0, 1, 0] else ["red"]
    write_csv(tmp_path / "fix.csv", ["id", "label"], [["4", " ".join(wrong)], ["5", ""]])
    cfg["competition"]["label_overrides"] = "fix.csv"
    (tmp_path / "kit.yaml").write_text(yaml.safe_dump(cfg), "utf-8")
    ws = open_workspace(load_config(tmp_path / "kit.yaml"))
    assert len(ws.train) == len(truth) - 1 and "5" not in ws.train.ids
    row = ws.train.ids.index("4")
    assert [ws.classes[j] for j in np.flatnonzero(ws.train.labels[row])] == wrong
    # a member whose OOF logits say what the images show (the labels before the override)
    oof = np.where(np.delete(truth, before.index("5"), axis=0) == 1, 4.0, -4.0)
    write_member(
        ws.workdir,
        "m",
        oof=oof[:, None, :].astype(np.float32),
        test=np.zeros((len(ws.test), 1, 3), np.float32),
        views=["plain"],
        classes=ws.classes,
        fingerprints=ws.fingerprints(),
        config={"kind": "timm"},
        metrics={},
        timings={},
    )
    stack, names = member_oof_stack(ws)
    assert names == ["m"] and stack.shape == (len(ws.train), 1, 3)
    issues = rank_label_issues(stack, ws.train.labels, ws.train.ids, ws.classes, 5)
    assert issues[0].id == "4" and issues[0].given == " ".join(wrong)
    assert issues[0].suggested == " ".join(ws.classes[j] for j in np.flatnonzero(truth[i]))
    assert issues[0].members_agree == 1 and len(issues) == 1
