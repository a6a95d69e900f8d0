"""`kit tune`: real optuna studies on SQLite files in tmp_path, tiny timm members (16 px, 1 epoch, fold 0)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import invoke
from train_helpers import make_competition, member, write_config
from typer.testing import CliRunner

optuna = pytest.importorskip("optuna")

SPACE = {"lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}, "loss.kind": ["ce", "focal"]}


def tiny(**kw: object) -> dict:
    return member(img_size=32, batch_size=8, tta=["plain"], **kw)


def setup(tmp_path: Path, tune: dict | None = SPACE) -> Path:
    data = make_competition(tmp_path / "data", size=16, n_test=4)
    return write_config(tmp_path / "kit.yaml", data, {"cnx": tiny(**({"tune": tune} if tune else {}))})


def test_tune_trials_plots_resume_apply_and_runs_mark(tmp_path: Path, runner: CliRunner) -> None:
    cfg = setup(tmp_path)
    text = cfg.read_text()
    cfg.write_text(
        "# my competition: keep this comment\n" + text.replace("members:", "members:  # the zoo", 1)
    )
    r = invoke(runner, ["tune", "cnx", "--trials", "2", "--folds", "0", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "this process finished 2 trial(s)" in r.output and "complete" in r.output
    work = tmp_path / "work"
    assert (work / "tune" / "tune.db").exists()
    assert (work / "tune" / "cnx" / "history.png").stat().st_size > 1000
    assert (work / "tune" / "cnx" / "importance.png").stat().st_size > 1000
    # trials train in scratch folders only, never into workdir/members or workdir/runs
    assert not (work / "members").exists() and not (work / "runs").exists()
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{work / 'tune' / 'tune.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert study.direction.name == "MAXIMIZE"  # weighted_f1
    # the objective is the pooled score of fold 0's held-out rows, recomputed here from the saved logits
    from kit.config.load import load_config
    from kit.metrics.scores import score
    from kit.workspace import open_workspace

    ws = open_workspace(load_config(cfg))
    y = ws.train.labels[ws.folds.valid_idx(0)]
    for t in study.trials:
        oof = np.load(work / "tune" / "cnx" / study.study_name / f"trial{t.number}" / "fold0" / "oof.npy")
        assert t.value == pytest.approx(score("weighted_f1", y, oof[:, 0]))
        assert not (
            work / "tune" / "cnx" / study.study_name / f"trial{t.number}" / "fold0" / "best.pt"
        ).exists()
        assert 1e-4 <= t.params["lr"] <= 1e-2 and t.params["loss.kind"] in ("ce", "focal")

    # resume: the study holds 2 finished trials; --trials 3 runs one more
    r = invoke(runner, ["tune", "cnx", "--trials", "3", "--folds", "0", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "this process finished 1 trial(s)" in r.output
    r = invoke(runner, ["tune", "cnx", "--trials", "3", "--folds", "0", "-c", str(cfg)], cwd=tmp_path)
    assert "already holds 3 finished trial(s)" in r.output

    # --apply: a new member with the best values, comments kept, tune: dropped, validated
    r = invoke(runner, ["tune", "cnx", "--folds", "0", "--apply", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    new = cfg.read_text()
    assert "# my competition: keep this comment" in new and "members:  # the zoo" in new
    assert "written by `kit tune cnx --apply`" in new
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{work / 'tune' / 'tune.db'}")
    tuned = yaml.safe_load(new)["members"]["cnx_tuned"]
    assert "tune" not in tuned and "tune" in yaml.safe_load(new)["members"]["cnx"]
    assert tuned["lr"] == study.best_params["lr"] and tuned["loss"]["kind"] == study.best_params["loss.kind"]
    assert load_config(cfg).members["cnx_tuned"].lr == study.best_params["lr"]
    # kit wrote it: applying again is allowed; edited by hand it is refused, and the file is left as it was
    assert (
        invoke(runner, ["tune", "cnx", "--folds", "0", "--apply", "-c", str(cfg)], cwd=tmp_path).exit_code
        == 0
    )
    edited = cfg.read_text().replace("cnx_tuned:\n", "cnx_tuned:\n    seed: 7\n", 1)
    cfg.write_text(edited)
    r = invoke(runner, ["tune", "cnx", "--folds", "0", "--apply", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 1 and "members.cnx_tuned already exists and kit did not write it" in r.output
    assert "--as cnx_tuned2" in r.output and cfg.read_text() == edited

    # kit runs marks a member whose values were chosen on the folds it is scored on
    r = invoke(runner, ["train", "cnx_tuned", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    r = invoke(runner, ["runs", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "cnx_tuned: hyperparameters chosen on fold 0 of 2" in r.output
    assert "optimistic" in r.output and "docs/tune.md" in r.output


def test_bad_tune_input_named_before_training(tmp_path: Path, runner: CliRunner) -> None:
    space = {
        "lrr": {"low": 1e-4, "high": 1e-2},
        "loss.label_smoothing": {"low": 0.0, "high": 1.5},
        "img_size": {"low": 8, "high": 32},
        "loss.kind": ["ce", "bce"],
        "loss": ["ce"],
    }
    cfg = setup(tmp_path, space)
    r = invoke(runner, ["tune", "cnx", "--trials", "1", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 1
    out = " ".join(r.output.split())
    assert "members.cnx.tune.lrr: not a field of the member (TimmMember); did you mean 'lr'?" in out
    assert "members.cnx.tune.loss.label_smoothing: 1.5 is outside what the member accepts" in out
    assert "members.cnx.tune.img_size: 8 is outside what the member accepts" in out
    assert "members.cnx.tune.loss.kind: 'bce' is outside" in out and "multi-label loss" in out
    assert "members.cnx.tune.loss: 'loss' is a section" in out
    assert not (tmp_path / "work").exists()  # nothing opened, nothing trained

    # a range that is not a range: the schema names the key
    cfg = setup(tmp_path / "b", {"lr": {"low": 1e-2, "high": 1e-4}})
    r = invoke(runner, ["tune", "cnx", "-c", str(cfg)], cwd=tmp_path)
    assert (
        r.exit_code == 1 and "members.cnx.tune: lr: range: low (0.01) must be below high (0.0001)" in r.output
    )

    cfg = setup(tmp_path / "c", None)
    r = invoke(runner, ["tune", "cnx", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 1 and "members.cnx has no `tune:` search space" in r.output

    cfg = setup(tmp_path / "d")
    for url, says in [
        (f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 't.db'}", "does not exist"),
        ("nosuchdb://host/db", "cannot open it"),
    ]:
        r = invoke(runner, ["tune", "cnx", "--storage", url, "-c", str(cfg)], cwd=tmp_path)
        assert r.exit_code == 1 and f"--storage {url}" in r.output and says in r.output, r.output
    assert not (tmp_path / "d" / "work" / "tune" / "cnx").exists()
    r = invoke(runner, ["tune", "cnx", "--folds", "5", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 1 and "folds are numbered 0..1" in r.output


def test_two_processes_share_one_sqlite_study(tmp_path: Path) -> None:
    cfg = setup(tmp_path)
    db = tmp_path / "shared.db"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [
        sys.executable, "-c", "from kit.cli.app import main; main()",
        "tune", "cnx", "--trials", "4", "--folds", "0", "--storage", f"sqlite:///{db}", "-c", str(cfg),
    ]  # fmt: skip
    # one process runs two trials at once in threads (--jobs 2), the other one at a time
    procs = [
        subprocess.Popen(
            cmd + extra, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for extra in (["--jobs", "2"], [])
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{db}")
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers)) >= 4
    # every trial finished; one that starts while 5 others have completed may be pruned (MedianPruner's
    # startup count), which depends on how the two processes' trials interleave, so PRUNED is a finish too
    states = [t.state.name for t in study.trials]
    assert set(states) <= {"COMPLETE", "PRUNED"} and states.count("COMPLETE") >= 4, states
    assert {t.user_attrs["pid"] for t in study.trials} == {p.pid for p in procs}
    assert all("this process finished" in out for out in outs)


def test_the_epoch_hook_prunes_a_trailing_trial() -> None:
    from kit.progress import EpochEvent, NullReporter, epoch_done
    from kit.tune.study import PruningReporter

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(1, 0))
    t = study.ask()
    rep = PruningReporter(NullReporter(), t, epochs=2)
    for e in range(2):
        epoch_done(rep, EpochEvent("cnx", 0, e, 1.0, 0.9, "weighted_f1", 1e-3, 10.0))
    study.tell(t, 0.9)
    t = study.ask()
    inner = NullReporter()
    rep = PruningReporter(inner, t, epochs=2)
    with pytest.raises(optuna.TrialPruned, match="trails the median"):
        epoch_done(rep, EpochEvent("cnx", 0, 0, 1.0, 0.1, "weighted_f1", 1e-3, 10.0))
    assert t.storage.get_trial(t._trial_id).intermediate_values == {0: 0.1}


def test_help_imports_no_tuning_or_tracking_package() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom kit.cli.app import app\n"
        "r = CliRunner().invoke(app, ['tune', '--help'])\nassert r.exit_code == 0\n"
        "print([m for m in ('optuna', 'mlflow', 'wandb', 'tensorboard', 'ruamel', 'sqlalchemy', 'torch') "
        "if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})  # fmt: skip
    assert out.stdout.strip() == "[]"


def test_runs_note_says_what_tuning_cost() -> None:
    from kit.artifacts.tuned import tuning_note

    rec = {"source": "cnx", "folds": [0, 1, 2, 3, 4], "k": 5, "folds_fingerprint": "abc"}
    note = tuning_note("cnx_tuned", rec, "abc")
    assert "chosen on all 5 folds it is scored on" in note and "optimistic" in note and "--folds 0" in note
    note = tuning_note("cnx_tuned", {**rec, "folds": [0]}, "abc")
    assert "chosen on fold 0 of 5" in note and "those 1 fold(s) are optimistic, the other 4 honest" in note
    note = tuning_note("cnx_tuned", {**rec, "folds": [0]}, "xyz")
    assert "another split (the folds changed since)" in note
