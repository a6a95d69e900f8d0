"""kit.yaml validation: every error at once with its key path, overrides, the CLI's exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import invoke

from kit.config.load import load_config
from kit.errors import KitError

REPO = Path(__file__).resolve().parents[1]

GOOD = """
competition:
  root: data
  train: train.csv
  test: test.csv
  sample_submission: sample_submission.csv
  id_column: id
  image_column: img_path
  label_column: label
members:
  cnx:
    kind: timm
    model: test_convnext
    epochs: 2
"""


def test_good_config_resolves_paths_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "kit.yaml").write_text(GOOD)
    cfg = load_config(tmp_path / "kit.yaml")
    assert cfg.competition.root == (tmp_path / "data").resolve()
    assert cfg.competition.train == (tmp_path / "data" / "train.csv").resolve()
    assert cfg.workdir == (tmp_path / "work").resolve()
    assert cfg.members["cnx"].kind == "timm"
    assert cfg.members["cnx"].tta == ["plain"]  # the default views: no flip unless asked for
    assert cfg.folds.k == 5 and cfg.competition.metric == "weighted_f1"


def test_overrides_are_validated_like_the_file(tmp_path: Path) -> None:
    (tmp_path / "kit.yaml").write_text(GOOD)
    cfg = load_config(
        tmp_path / "kit.yaml", ["members.cnx.epochs=1", "folds.k=3", "competition.metric=macro_f1"]
    )
    assert cfg.members["cnx"].epochs == 1 and cfg.folds.k == 3 and cfg.competition.metric == "macro_f1"
    with pytest.raises(KitError) as e:
        load_config(tmp_path / "kit.yaml", ["members.cnx.epochs=zero", "folds.kk=3"])
    text = str(e.value)
    assert "members.cnx.epochs" in text and "folds.kk: unknown key; did you mean 'k'?" in text
    with pytest.raises(KitError, match="expected dotted.key=value"):
        load_config(tmp_path / "kit.yaml", ["folds.k"])
    with pytest.raises(KitError, match="competition.root is a value, not a section"):
        load_config(tmp_path / "kit.yaml", ["competition.root.x=1"])


BAD = """
competition:
  root: data
  train: train.csv
  lable_column: label
  metric: f2
folds: {k: 1}
members:
  a: {kind: timm, model: x, epochs: 0, tta: [plain, sideways], lrr: 0.1}
  b: {kind: nope}
  c: {kind: timm, model: y, pretrained: true, weights: w.pth}
"""


def test_cli_validate_lists_every_problem_without_traceback(tmp_path: Path, runner) -> None:
    (tmp_path / "bad.yaml").write_text(BAD)
    r = invoke(runner, ["validate", str(tmp_path / "bad.yaml")])
    assert r.exit_code == 1
    out = r.output
    assert "Traceback" not in out
    for expected in [
        "competition.lable_column: unknown key; did you mean 'label_column'?",
        "competition.metric:",
        "folds.k:",
        "members.a.epochs:",
        "members.a.tta:",
        "sideways",
        "members.a.lrr: unknown key; did you mean 'lr'?",
        "members.b: member needs `kind:` one of ['timm', 'clip_probe']",
        "members.c: ",
    ]:
        assert expected in out, expected
    assert "set either weights: PATH" in out
    assert "8 problem(s)" in out


def test_cross_field_rules_name_the_key(tmp_path: Path) -> None:
    (tmp_path / "kit.yaml").write_text(GOOD.replace("  label_column: label\n", ""))
    with pytest.raises(KitError, match="competition.label_column is required"):
        load_config(tmp_path / "kit.yaml")


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path, runner) -> None:
    (tmp_path / "kit.yaml").write_text("competition:\n  root: [unclosed\n")
    r = invoke(runner, ["validate", str(tmp_path / "kit.yaml")])
    assert r.exit_code == 1
    assert f"{tmp_path / 'kit.yaml'}:" in r.output and "not valid YAML" in r.output


def test_missing_config_says_how_to_make_one(tmp_path: Path, runner) -> None:
    r = invoke(runner, ["folds", "-c", str(tmp_path / "kit.yaml")])
    assert r.exit_code == 1
    assert "file not found; run `kit init DATA_DIR`" in r.output


def test_every_shipped_yaml_validates(runner, demo_dir: Path) -> None:
    shipped = [REPO / "kit.yaml", *sorted((REPO / "ensembles").glob("*.yaml"))]
    root = (
        f"competition.root={demo_dir}"  # validate checks the data too; the demo data is built by `kit demo`
    )
    r = invoke(runner, ["validate", *map(str, shipped), "--set", root], cwd=REPO)
    assert r.exit_code == 0, r.output
    assert r.output.count("✓") == len(shipped)
    for p in shipped:  # every shipped YAML says what it does and how to run it
        head = p.read_text(encoding="utf-8").splitlines()[0]
        assert head.startswith("#"), p


def test_help_and_validate_do_not_import_torch(demo_dir: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from kit.cli.app import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        f"r = CliRunner().invoke(app, ['validate', {str(REPO / 'kit.yaml')!r}, '--set', "
        f"{'competition.root=' + str(demo_dir)!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('torch', 'timm', 'open_clip', 'sklearn', 'numba') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_overrides_reach_list_items_by_index() -> None:
    from kit.config.load import apply_overrides

    data = {"blenders": [{"kind": "greedy", "rounds": 10}, {"kind": "stack"}]}
    assert apply_overrides(data, ["blenders.0.rounds=3"])["blenders"][0]["rounds"] == 3
    with pytest.raises(KitError, match=r"blenders is a list of 2; use an index 0..1"):
        apply_overrides(data, ["blenders.2.rounds=3"])
