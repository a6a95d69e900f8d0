"""The public Python API (`kit.load_config`, `kit.train_members`, `kit.blend_members`, `kit.make_submission`,
`kit.Predictor`) and the README's notebook example,
run as written against a tiny competition; plus the layering it relies on (lazy imports, explicit commands)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from train_helpers import CLASSES, make_competition, member, write_config

REPO = Path(__file__).resolve().parents[1]


def readme_python() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text("utf-8"), flags=re.S)
    assert len(blocks) == 1, "the README has one python example (its own section)"
    return blocks[0]


def tiny_project(home: Path) -> None:
    """kit.yaml + ensembles/all.yaml (what `kit init` writes) over a 34-image, 3-class competition with a sample
    submission; one 1-epoch test_convnext member at 32 px, plain view only, 2 folds."""
    from kit.data.layout import default_ensemble_text

    data = make_competition(home / "data")
    with (data / "sample_submission.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["id", "label"])
        w.writerows([f"t{j:03d}", CLASSES[0]] for j in range(8))
    config = write_config(home / "kit.yaml", data, {"convnext": member(tta=["plain"])})
    cfg = yaml.safe_load(config.read_text())
    cfg["competition"]["sample_submission"] = "sample_submission.csv"
    cfg["workdir"] = "work"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    (home / "ensembles").mkdir()
    (home / "ensembles" / "all.yaml").write_text(default_ensemble_text())


@dataclass
class Readme:
    home: Path
    scope: dict[str, object]  # the example's variables after it ran
    out: str  # what it printed


@pytest.fixture(scope="module")
def readme(tmp_path_factory: pytest.TempPathFactory) -> Readme:
    """The README's python block, run as written in a tiny project's folder (as a notebook opened there)."""
    home = tmp_path_factory.mktemp("readme")
    tiny_project(home)
    scope: dict[str, object] = {}
    buf, old = io.StringIO(), Path.cwd()
    os.chdir(home)
    try:
        with contextlib.redirect_stdout(buf):
            exec(compile(readme_python(), "README.md", "exec"), scope)
    finally:
        os.chdir(old)
    return Readme(home, scope, buf.getvalue())


def test_readme_notebook_example_runs_and_returns_typed_results(readme: Readme) -> None:
    from kit.blend.run import BlendResult
    from kit.submit.make import SubmitResult
    from kit.train.run import TrainResult

    trained, blended, sub = readme.scope["trained"], readme.scope["blended"], readme.scope["sub"]
    assert isinstance(trained, TrainResult) and isinstance(blended, BlendResult)
    assert isinstance(sub, SubmitResult)
    work = readme.home / "work"
    assert trained.members == {"convnext": work / "members" / "convnext"} and trained.pending == []
    assert (trained.members["convnext"] / "meta.json").is_file()
    # the result is what the blend wrote
    winner = json.loads((work / "blends" / "all" / "winner.json").read_text())
    assert blended.path == work / "blends" / "all" and blended.name == "all"
    assert blended.winner == winner["row"] and blended.nested_score == winner["nested_score"]
    picked = [r["blender"] for r in blended.table if r["picked"]]
    assert blended.weights == winner["weights"] and picked == winner["selection"]["picked_rows"]
    lo, hi = blended.nested_interval
    assert lo <= blended.nested_score <= hi and blended.metric == "weighted_f1"
    # the submission: the sample's shape, written under ./submissions, its CV score the blend's selection-aware one
    assert sub.path.parent == Path("submissions") and sub.n_rows == 8
    rows = list(csv.reader((readme.home / sub.path).open()))
    assert rows[0] == ["id", "label"] and [r[0] for r in rows[1:]] == [f"t{j:03d}" for j in range(8)]
    assert {r[1] for r in rows[1:]} <= set(CLASSES)
    assert sub.source.kind == "blend" and sub.source.cv_score == pytest.approx(blended.selection_aware_score)
    # the example prints what it shows the reader
    assert blended.winner in readme.out and str(sub.path) in readme.out


def test_api_takes_a_loaded_config_and_a_spec_built_in_code(readme: Readme) -> None:
    import kit
    from kit.config.ensemble import EnsembleSpec
    from kit.errors import KitError

    cfg = kit.load_config(readme.home / "kit.yaml", ["folds.seed=0"])
    assert cfg.workdir == readme.home / "work"
    with pytest.raises(KitError, match="unknown member"):
        kit.train_members(cfg, ["nope"])
    spec = EnsembleSpec.model_validate({"members": ["convnext"], "blenders": [{"kind": "uniform"}]})
    with pytest.raises(KitError, match="pass name='NAME'"):
        kit.blend_members(cfg, spec)
    res = kit.blend_members(cfg, spec, name="one")
    assert res.path == cfg.workdir / "blends" / "one" and (res.path / "winner.json").is_file()
    assert res.best_single == "convnext" and res.weights == {"convnext": 1.0}
    sub = kit.make_submission(cfg, member="convnext", out=readme.home / "sub.csv")
    assert sub.path == readme.home / "sub.csv" and sub.source.name == "convnext" and sub.n_rows == 8


def run_python(code: str) -> str:
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": str(REPO)}
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_import_kit_is_light_and_its_names_are_the_real_functions() -> None:
    out = run_python(
        "import sys, inspect\n"
        "import kit\n"
        "print(sorted(m for m in ('torch', 'timm', 'numpy', 'pydantic', 'sklearn') if m in sys.modules))\n"
        "print(set(kit.__all__) <= set(dir(kit)))\n"
        "from kit import load_config, train_members, blend_members, make_submission\n"
        "import kit.train.run, kit.blend.run, kit.submit.make, kit.config.load, kit.predict.predictor\n"
        "print(train_members is kit.train.run.train, blend_members is kit.blend.run.run_blend,\n"
        "      make_submission is kit.submit.make.make_submission, load_config is kit.config.load.load_config,\n"
        "      kit.Predictor is kit.predict.predictor.Predictor, kit.train_members is train_members)\n"
        "print(list(inspect.signature(kit.blend_members).parameters)[:2], kit.make_submission.__name__)\n"
        "try:\n"
        "    kit.nope\n"
        "except AttributeError as e:\n"
        "    print(e)\n"
    )
    assert out.splitlines() == [
        "[]",
        "True",
        "True True True True True True",
        "['cfg', 'spec'] make_submission",
        "module 'kit' has no attribute 'nope'",
    ]


def test_kit_config_imports_nothing_above_it() -> None:
    """kit.config is the leaf the other layers build on: it imports kit.errors and itself only."""
    imports = set()
    for path in (REPO / "kit" / "config").glob("*.py"):
        imports |= set(re.findall(r"^\s*(?:from|import) (kit\.[\w.]+)", path.read_text("utf-8"), flags=re.M))
    assert imports and {i for i in imports if not i.startswith(("kit.config.", "kit.errors"))} == set()


def test_a_missing_command_module_fails_loudly() -> None:
    """Command modules are imported by name: one that cannot be imported is an error, not a missing command."""
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "class Gone:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'kit.cli.blend':\n"
            "            raise ModuleNotFoundError(\"No module named 'kit.cli.blend'\", name=name)\n"
            "sys.meta_path.insert(0, Gone())\n"
            "import kit.cli.app\n",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO)},
    )
    assert r.returncode == 1 and "No module named 'kit.cli.blend'" in r.stderr
