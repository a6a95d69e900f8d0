"""Configs that tried to destroy or flood: a workdir that is not kit's, `~` in paths, YAML alias bombs, and
messages that echoed their whole input (issue 27, items 6 and 7). Every case runs the real CLI."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from conftest import invoke, set_args
from test_reliability_files import clean_error, snapshot
from train_helpers import make_competition, member, write_config

MARKER = ".kit-workdir.json"  # the marker docs/artifacts.md names


def _project(tmp_path: Path, workdir: str | Path) -> Path:
    data = make_competition(tmp_path / "data", n_test=4)
    cfg = write_config(tmp_path / "kit.yaml", data, {"cnx": member()})
    raw = yaml.safe_load(cfg.read_text())
    raw["workdir"] = str(workdir)
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    return cfg


def test_a_workdir_holding_user_files_is_refused_and_its_folds_csv_survives(tmp_path: Path, runner) -> None:
    mine = tmp_path / "analysis"
    mine.mkdir()
    (mine / "folds.csv").write_text("id,fold\nmy own split,0\n")
    (mine / "notes.md").write_text("my notes\n")
    before = snapshot(mine)
    cfg = _project(tmp_path, mine)
    (tmp_path / "ensembles").mkdir()
    (tmp_path / "ensembles" / "x.yaml").write_text("members: all\nblenders: [{kind: uniform}]\n")
    for args in (["folds"], ["train"], ["blend", "ensembles/x.yaml"]):
        msg = clean_error(invoke(runner, [*args, "-c", str(cfg)], cwd=tmp_path))
        assert f"workdir: {mine} already holds files kit did not write (notes.md)" in msg, msg
        assert "Point workdir at a new folder" in msg
    r = invoke(runner, ["validate", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 1 and "already holds files kit did not write" in " ".join(r.output.split())
    assert snapshot(mine) == before  # folds.csv not replaced, nothing added


def test_a_system_like_folder_is_never_written(tmp_path: Path, runner) -> None:
    etc = tmp_path / "etc"  # stands in for /etc: a folder full of files that are not kit's
    for name in ("passwd", "hosts", "fstab"):
        (etc / name).parent.mkdir(parents=True, exist_ok=True)
        (etc / name).write_text(f"{name}\n")
    before = snapshot(etc)
    cfg = _project(tmp_path, etc)
    msg = clean_error(invoke(runner, ["folds", "-c", str(cfg)], cwd=tmp_path))
    assert "already holds files kit did not write (fstab, hosts, passwd)" in msg
    assert snapshot(etc) == before
    # the real /etc is refused too, by validate (which writes nothing)
    r = invoke(runner, ["validate", str(cfg), "--set", "workdir=/etc"], cwd=tmp_path)
    assert r.exit_code == 1 and "workdir: /etc already holds files kit did not write" in r.output


def test_workdir_tilde_is_the_home_folder_not_a_folder_named_tilde(
    tmp_path: Path, runner, monkeypatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    cfg = _project(tmp_path / "proj", "~/kitwork")
    r = invoke(runner, ["folds", "-c", str(cfg)], cwd=cfg.parent)
    assert r.exit_code == 0, r.output
    assert (home / "kitwork" / "folds.csv").is_file() and (home / "kitwork" / MARKER).is_file()
    assert not any(p.name == "~" for p in tmp_path.rglob("*"))
    assert str(home / "kitwork" / "folds.csv") in " ".join(r.output.split())


def test_kit_marks_the_workdir_it_creates_and_keeps_using_an_older_unmarked_one(
    tmp_path: Path, runner
) -> None:
    cfg = _project(tmp_path, tmp_path / "work")
    r = invoke(runner, ["train", "-c", str(cfg), "--set", "folds.k=2"], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    work = tmp_path / "work"
    assert (work / MARKER).is_file()
    # a workdir an earlier kit wrote (no marker, only kit's own entries) is still kit's
    (work / MARKER).unlink()
    r = invoke(runner, ["train", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "done earlier" in r.output and (work / MARKER).is_file()
    # harmless dotfiles a user keeps in an empty folder do not make it foreign
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / ".gitkeep").write_text("")
    r = invoke(runner, ["folds", "-c", str(cfg), "--set", f"workdir={fresh}"], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert (fresh / "folds.csv").is_file() and (fresh / ".gitkeep").is_file()


def _bomb(levels: int = 8) -> str:
    """A "billion laughs" document: 9 ** levels strings from a few hundred bytes of aliases."""
    lines = ['  l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "anchors:\n" + "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_in_a_few_lines(tmp_path: Path, runner) -> None:
    data = make_competition(tmp_path / "data", n_test=4)
    cfg = tmp_path / "kit.yaml"
    cfg.write_text(
        _bomb() + f"competition: {{root: {data}, train: train.csv, id_column: id, image_column: img_path, "
        "label_column: label}\nfolds:\n  k: 2\n  seed: [" + ", ".join(["*l7"] * 9) + "]\n"
    )
    assert cfg.stat().st_size < 1000
    r = invoke(runner, ["validate", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 1
    assert len(r.output) < 2000, len(r.output)  # today: 2 GB of output
    text = " ".join(r.output.split())
    assert "aliases (*name, from line 1) expand to more than 100,000 values" in text
    msg = clean_error(invoke(runner, ["train", "-c", str(cfg)], cwd=tmp_path))
    assert len(msg) < 2000 and "write the values out instead of repeating aliases" in msg
    ens = tmp_path / "ensembles" / "bomb.yaml"
    ens.parent.mkdir()
    ens.write_text(_bomb() + "members: [" + ", ".join(["*l7"] * 9) + "]\nblenders: [{kind: uniform}]\n")
    r = invoke(runner, ["validate", str(ens)], cwd=tmp_path)
    assert r.exit_code == 1 and len(r.output) < 2000 and "expand to more than" in r.output


def test_messages_quote_a_bounded_value_never_the_whole_input(tmp_path: Path, runner) -> None:
    data = make_competition(tmp_path / "data", n_test=4)
    cfg = tmp_path / "kit.yaml"
    classes = [f"class_{i:05d}" for i in range(3000)]
    raw = {
        "competition": {
            "root": str(data),
            "train": "train.csv",
            "id_column": "id",
            "image_column": "img_path",
            "label_column": "label",
            "classes": classes,
            "metric_k": 5,  # a cross-field error: metric weighted_f1 has no k
        },
        "folds": {"k": list(range(5000))},  # a huge value where an integer belongs
    }
    cfg.write_text(yaml.safe_dump(raw))
    r = invoke(runner, ["validate", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 1
    text = " ".join(r.output.split())
    assert "competition.metric_k is set but competition.metric is weighted_f1" in text
    assert "folds.k: Input should be a valid integer (got [0, 1, 2, 3, ...])" in text
    assert "class_02999" not in text and "'root':" not in text  # the whole competition mapping is not echoed
    assert len(r.output) < 3000, len(r.output)
    # many problems: the first ones and a count, each line bounded
    many = {"competition": raw["competition"] | {"metric_k": None}, "bogus": 1}
    many.update({f"unknown_{i}": i for i in range(200)})
    cfg.write_text(yaml.safe_dump(many))
    r = invoke(runner, ["validate", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 1 and "... and 171 more" in r.output and len(r.output) < 12_000


def test_set_values_are_bounded_too(tmp_path: Path, runner) -> None:
    data = make_competition(tmp_path / "data", n_test=4)
    cfg = write_config(tmp_path / "kit.yaml", data, {"cnx": member()})
    huge = "x" * 100_000
    msg = clean_error(invoke(runner, ["train", "-c", str(cfg), *set_args([f"folds.k={huge}"])], cwd=tmp_path))
    assert "folds.k: Input should be a valid integer" in msg and len(msg) < 1500
    assert os.path.isdir(tmp_path / "data") and not (tmp_path / "work").exists()
