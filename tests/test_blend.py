"""kit blend on real data without training: scikit-learn classifiers' OOF probabilities on the digits demo,
written as member artifacts over the workspace's saved folds, blended through the library and the CLI."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score, log_loss
from typer.testing import CliRunner

from kit.artifacts.blend import load_blend
from kit.artifacts.member import write_member
from kit.blend.blenders import Greedy, HillClimb, Subsets, combine, greedy_counts
from kit.blend.report import TABLE_KEYS
from kit.blend.run import blend, load_spec
from kit.blend.scoring import FastScorer, class_major
from kit.cli.app import app
from kit.config.ensemble import EnsembleSpec
from kit.config.load import load_config, validate_data
from kit.demo.digits import build_demo, competition_section
from kit.errors import KitError
from kit.metrics.scores import log_softmax, score
from kit.workspace import Workspace, open_workspace

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _kit_yaml(path: Path, demo: Path) -> Path:
    cfg = {
        "competition": competition_section(demo),
        "folds": {"k": 5, "seed": 42},
        "workdir": str(path.parent / "work"),
    }
    path.write_text(yaml.safe_dump(cfg), "utf-8")
    return path


def _pixels(paths: list[Path]) -> np.ndarray:
    return np.stack(
        [np.asarray(Image.open(p).convert("L").resize((8, 8)), dtype=np.float32).ravel() / 255 for p in paths]
    )


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The demo competition and OOF/test probabilities of four scikit-learn classifiers over its saved folds."""
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import PredefinedSplit, cross_val_predict
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier

    root = tmp_path_factory.mktemp("digits")
    demo = build_demo(root / "demo")
    ws = open_workspace(load_config(_kit_yaml(root / "kit.yaml", demo)))
    X, Xt, y = _pixels(ws.train.paths), _pixels(ws.test.paths), ws.train.labels
    models = {
        "logreg": LogisticRegression(C=0.05, max_iter=300),
        "gnb": GaussianNB(var_smoothing=0.05),
        "knn": KNeighborsClassifier(n_neighbors=7),
        "trees": ExtraTreesClassifier(n_estimators=60, min_samples_leaf=2, random_state=0),
    }
    cv = PredefinedSplit(ws.folds.fold)
    probs = {}
    for name, m in models.items():
        oof = cross_val_predict(m, X, y, cv=cv, method="predict_proba")
        test = m.fit(X, y).predict_proba(Xt)
        probs[name] = (oof, test)
    return {"demo": demo, "probs": probs, "y": y, "fold": ws.folds.fold}


def _logits(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(p, 1e-6, 1.0)).astype(np.float32)


def write_members(ws: Workspace, digits: dict, names: dict[str, str] | None = None, **overrides: str) -> None:
    """Members from the digits models' probabilities; `overrides` change their Fingerprints (e.g. folds=...)."""
    """Write each classifier as a member with views plain and hflip (a noisier copy of the logits)."""
    rng = np.random.default_rng(0)
    for source, name in (names or {k: k for k in digits["probs"]}).items():
        oof, test = digits["probs"][source]
        noisy = lambda a: _logits(a) + rng.normal(0, 1.0, a.shape).astype(np.float32)  # noqa: E731
        write_member(
            ws.workdir,
            name,
            oof=np.stack([_logits(oof), noisy(oof)], axis=1),
            test=np.stack([_logits(test), noisy(test)], axis=1),
            views=["plain", "hflip"],
            classes=ws.classes,
            fingerprints=replace(ws.fingerprints(), **overrides),
            config={"kind": "sklearn", "source": source},
            metrics={},
            timings={},
        )


@pytest.fixture
def ws(tmp_path: Path, digits: dict) -> Workspace:
    return open_workspace(load_config(_kit_yaml(tmp_path / "kit.yaml", digits["demo"])))


def _spec_file(tmp_path: Path, name: str, spec: dict) -> Path:
    path = tmp_path / "ensembles" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(spec), "utf-8")
    return path


# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize("metric", ["weighted_f1", "macro_f1", "accuracy", "log_loss"])
@pytest.mark.parametrize("space", ["probs", "logits"])
def test_fast_scorer_equals_sklearn(metric: str, space: str) -> None:
    rng = np.random.default_rng(1)
    n, C = 3000, 12
    y = rng.integers(0, C - 2, n)  # two classes never true: sklearn's label set includes predicted-only ones
    raw = rng.normal(size=(n, C)).astype(np.float32)
    raw[:200] = np.round(raw[:200])  # exact ties: both must take the lowest class
    raw[:50] = 0.0
    lp = log_softmax(raw.astype(np.float64))
    arr = (lp if space == "logits" else np.exp(lp)).astype(np.float32)
    got = FastScorer(metric, y, C, space).score(np.ascontiguousarray(arr.T))
    pred = arr.argmax(1)
    want = {
        "weighted_f1": lambda: f1_score(y, pred, average="weighted"),
        "macro_f1": lambda: f1_score(y, pred, average="macro"),
        "accuracy": lambda: accuracy_score(y, pred),
        "log_loss": lambda: log_loss(y, np.exp(lp), labels=range(C)),
    }[metric]()
    assert got == pytest.approx(want, rel=1e-5, abs=1e-9)


def test_greedy_reproduces_hand_computed_case() -> None:
    # y = 0 0 1 1; probability of class 1 per candidate:
    #   A .2 .7 .8 .45 -> preds 0 1 1 0, accuracy .50
    #   B .4 .2 .4 .9  -> preds 0 0 0 1, accuracy .75
    #   C .05 everywhere -> all 0, accuracy .50
    # round 1 picks B (.75); round 2: B+A means .3 .45 .6 .675 -> 0 0 1 1, accuracy 1.0 (B+B .75, B+C .5);
    # round 3: A+2B -> 0 0 1 1 (1.0), no better; round 4: 2A+2B ties at 1.0. The best prefix is {A, B}.
    y = np.array([0, 0, 1, 1])
    p1 = np.array([[0.2, 0.7, 0.8, 0.45], [0.4, 0.2, 0.4, 0.9], [0.05] * 4])
    P = np.stack([1 - p1, p1], axis=-1).transpose(1, 0, 2).astype(np.float32)  # [n, M, C]
    counts, gain, history = greedy_counts(class_major(P), FastScorer("accuracy", y, 2), rounds=4)
    assert counts.tolist() == [1, 1, 0]
    assert gain == 1.0
    assert history == [0.75, 1.0, 1.0, 1.0]
    g = Greedy("accuracy", rounds=4).fit(P, y)
    assert g.weights_.tolist() == [0.5, 0.5, 0.0]
    assert g.counts_.tolist() == [1, 1, 0]
    np.testing.assert_allclose(g.predict(P)[:, 1], [0.3, 0.45, 0.6, 0.675], rtol=1e-6)


def test_blenders_weights_sum_to_one_and_beat_members(digits: dict) -> None:
    y = digits["y"]
    P = np.stack([digits["probs"][k][0] for k in digits["probs"]], axis=1).astype(np.float32)
    singles = [f1_score(y, P[:, m].argmax(1), average="weighted") for m in range(P.shape[1])]
    for b in (
        Greedy(rounds=20, init=1),
        Greedy(rounds=10, bags=5, bag_fraction=0.5),
        HillClimb(),
        Subsets(max_size=3, weights="greedy", rounds=5),
    ):
        b.fit(P, y)
        assert b.weights_.sum() == pytest.approx(1.0, abs=1e-12)
        assert (b.weights_ >= 0).all()
        got = f1_score(y, combine(P, b.weights_, "probs").argmax(1), average="weighted")
        assert got >= max(singles) - 1e-12  # in-sample, each search starts from (or contains) the best member


# ---------------------------------------------------------------- the engine on the digits workspace


def test_blend_writes_honest_outputs(ws: Workspace, digits: dict, tmp_path: Path) -> None:
    write_members(ws, digits)
    spec = EnsembleSpec.model_validate(
        {
            "members": {"logreg": {"views": "search"}, "gnb": None, "knn": None, "trees": None},
            "blenders": [
                {"kind": "best_single"},
                {"kind": "uniform"},
                {"kind": "greedy", "rounds": 20},
                {"kind": "hill_climb"},
                {"kind": "subsets", "max_size": 2},
                {"kind": "stack", "C": 0.5},
            ],
            "postprocess": {"logit_adjust": {"enabled": True}, "class_bias": {"enabled": True}},
        }
    )
    t0 = time.perf_counter()
    summary = blend(spec, ws, "digits")
    assert time.perf_counter() - t0 < 40
    out = ws.workdir / "blends" / "digits"
    for f in ("oof_probs.npy", "test_probs.npy", "winner.json", "table.csv", "per_class_f1.csv", "spec.yaml"):
        assert (out / f).is_file(), f
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    winner = json.loads((out / "winner.json").read_text())
    table = {r["blender"]: r for r in summary.table}
    # 6 blenders x (none, logit_adjust, class_bias, both)
    assert len(table) == 24 and "greedy+logit_adjust+class_bias" in table
    assert winner["row"] == summary.winner
    # the rule (average_1se by default) picks the rows within one paired SE of the best and averages them;
    # the raw maximum is reported beside it
    top = max(table.values(), key=lambda r: r["nested"])
    sel = winner["selection"]
    assert sel["rule"] == "average_1se" and sel["max_nested_row"] == top["blender"]
    picked = [r["blender"] for r in summary.table if r["picked"]]
    assert sel["picked_rows"] == picked and top["blender"] in picked
    if len(picked) == 1:
        assert winner["row"] == picked[0] and winner["nested_score"] == top["nested"]
    else:
        assert winner["row"] == f"average({', '.join(picked)})" and winner["blender_kind"] == "average"
        assert [r["row"] for r in winner["rows"]] == picked
    # the reported nested score is the pick's own pooled nested predictions, scored once
    oof = np.load(out / "oof_probs.npy")
    assert score("weighted_f1", ws.train.labels, oof, logits=False) == pytest.approx(winner["nested_score"])
    # the averaged test probabilities: each picked row's refit, transformed, then the mean
    assert np.load(out / "test_probs.npy").shape == (len(ws.test), len(ws.classes))
    assert table["best_single"]["p_beats_single"] == 0.0
    for r in table.values():
        assert r["nested_lo"] <= r["nested"] <= r["nested_hi"] or r["nested_hi"] - r["nested_lo"] < 0.05
    lo, hi = winner["selection_aware_interval"]
    assert lo <= winner["selection_aware_score"] <= hi and set(
        winner["selection"]["selection_aware_picks"]
    ) == {str(f) for f in range(ws.folds.k)}
    # searches flatter themselves in-sample; the report says by how much
    assert table["greedy"]["insample"] >= table["greedy"]["nested"] - 0.02
    assert table["greedy+class_bias"]["overstatement"] == pytest.approx(
        table["greedy+class_bias"]["insample"] - table["greedy+class_bias"]["nested"]
    )
    # the written OOF is the pooled nested prediction: scoring it reproduces the nested estimate
    y = ws.train.labels
    oof = np.load(out / "oof_probs.npy")
    test = np.load(out / "test_probs.npy")
    assert oof.shape == (len(ws.train), 10) and test.shape == (len(ws.test), 10)
    assert oof.dtype == np.float32 and test.dtype == np.float32
    np.testing.assert_allclose(oof.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(test.sum(1), 1, atol=1e-5)
    assert f1_score(y, oof.argmax(1), average="weighted") == pytest.approx(winner["nested_score"], abs=1e-9)
    assert set(winner["candidates"]) == {"logreg@plain", "logreg@hflip", "logreg@mean", "gnb", "knn", "trees"}
    assert winner["folds_fingerprint"] == ws.folds.fingerprint
    assert winner["classes"] == ws.classes
    lines = (out / "per_class_f1.csv").read_text().splitlines()
    assert lines[0] == "class,support,best_single,blend,delta" and len(lines) == 11
    res = load_blend(ws.workdir, "digits", ws.expected())
    np.testing.assert_array_equal(res.test_probs, test)


def test_recorded_weights_reproduce_test_probs(ws: Workspace, digits: dict) -> None:
    write_members(ws, digits)
    spec = EnsembleSpec.model_validate(
        {"members": "all", "views": "all", "blenders": [{"kind": "greedy", "rounds": 15}]}
    )
    blend(spec, ws, "g")
    winner = json.loads((ws.workdir / "blends" / "g" / "winner.json").read_text())
    assert winner["members"] and set(winner["members"]) <= {"logreg", "gnb", "knn", "trees"}
    assert sum(winner["weights"].values()) == pytest.approx(1.0, abs=1e-12)
    # recompute the test blend by hand from the recorded weights and the members' saved logits
    acc = 0
    for cand, w in winner["weights"].items():
        logits = np.load(ws.workdir / "members" / cand / "test_logits.npy").astype(np.float64).mean(axis=1)
        acc = acc + w * np.exp(log_softmax(logits))
    np.testing.assert_allclose(np.load(ws.workdir / "blends" / "g" / "test_probs.npy"), acc, atol=1e-6)


# ---------------------------------------------------------------- CLI, shipped specs, guard rails


def test_cli_blend_writes_outputs(ws: Workspace, digits: dict, tmp_path: Path) -> None:
    write_members(ws, digits)
    spec = _spec_file(
        tmp_path,
        "x",
        {
            "members": ["logreg", "k*"],
            "blenders": [{"kind": "best_single"}, {"kind": "greedy", "rounds": 10}],
        },
    )
    r = runner.invoke(
        app, ["blend", str(spec), "-c", str(tmp_path / "kit.yaml"), "--set", "spec.metric=macro_f1"]
    )
    assert r.exit_code == 0, r.output
    assert "nested CV" in r.output and "greedy" in r.output and "winner" in r.output
    winner = json.loads((ws.workdir / "blends" / "x" / "winner.json").read_text())
    assert winner["metric"] == "macro_f1"
    assert set(winner["candidates"]) == {"logreg", "knn"}
    table = (ws.workdir / "blends" / "x" / "table.csv").read_text().splitlines()
    assert table[0] == ",".join(TABLE_KEYS) and len(table) == 3


def test_shipped_specs_run_on_renamed_members(ws: Workspace, digits: dict, tmp_path: Path) -> None:
    """ensembles/swin_effnet.yaml blends exactly swin and effnet; ensembles/all.yaml every trained member."""
    write_members(ws, digits, {"logreg": "swin", "knn": "effnet", "gnb": "clip"})
    cfg = str(tmp_path / "kit.yaml")
    r = runner.invoke(app, ["blend", str(REPO / "ensembles" / "swin_effnet.yaml"), "-c", cfg])
    assert r.exit_code == 0, r.output
    w = json.loads((ws.workdir / "blends" / "swin_effnet" / "winner.json").read_text())
    assert {c["member"] for c in w["candidates"].values()} == {"swin", "effnet"}
    assert "swin@hflip" in w["candidates"] and "effnet@mean" in w["candidates"]
    r = runner.invoke(
        app,
        [
            "blend",
            str(REPO / "ensembles" / "all.yaml"),
            "-c",
            cfg,
            "--set",
            "spec.postprocess.class_bias.enabled=false",
        ],
    )
    assert r.exit_code == 0, r.output
    w = json.loads((ws.workdir / "blends" / "all" / "winner.json").read_text())
    assert set(w["candidates"]) == {"swin", "effnet", "clip"}


def test_shipped_specs_validate() -> None:
    files = sorted((REPO / "ensembles").glob("*.yaml"))
    assert {f.name for f in files} >= {"all.yaml", "swin_effnet.yaml"}
    r = runner.invoke(app, ["validate", *map(str, files)])
    assert r.exit_code == 0, r.output
    for f in files:
        text = f.read_text()
        assert text.startswith("#") and f"kit blend ensembles/{f.name}" in text
        load_spec(f)


def test_missing_member_names_the_fix(ws: Workspace, digits: dict, tmp_path: Path) -> None:
    write_members(ws, digits, {"logreg": "logreg"})
    spec = _spec_file(tmp_path, "m", {"members": ["logreg", "swin"], "blenders": [{"kind": "uniform"}]})
    r = runner.invoke(app, ["blend", str(spec), "-c", str(tmp_path / "kit.yaml")])
    assert r.exit_code == 1
    assert "member 'swin' has no artifacts" in r.output and "run `kit train swin`" in r.output
    assert not (ws.workdir / "blends" / "m").exists()


def test_folds_mismatch_is_refused(ws: Workspace, digits: dict, tmp_path: Path) -> None:
    write_members(ws, digits, {"logreg": "logreg"})
    write_members(ws, digits, {"knn": "knn"}, folds="0123456789abcdef")
    spec = _spec_file(tmp_path, "f", {"members": "all", "blenders": [{"kind": "uniform"}]})
    r = runner.invoke(app, ["blend", str(spec), "-c", str(tmp_path / "kit.yaml")])
    assert r.exit_code == 1
    assert "member 'knn'" in r.output and "folds differ" in r.output and "member 'logreg'" not in r.output


def test_nan_logits_are_refused(ws: Workspace, digits: dict, tmp_path: Path) -> None:
    write_members(ws, digits, {"logreg": "logreg", "knn": "knn"})
    path = ws.workdir / "members" / "knn" / "oof_logits.npy"
    arr = np.load(path)
    arr[3, 1, 2] = np.nan
    np.save(path, arr)
    spec = _spec_file(tmp_path, "n", {"members": "all", "blenders": [{"kind": "uniform"}]})
    r = runner.invoke(app, ["blend", str(spec), "-c", str(tmp_path / "kit.yaml")])
    assert r.exit_code == 1
    assert "member 'knn'" in r.output and "view 'hflip' contain NaN or inf" in r.output


def test_load_blend_missing_and_mismatch(ws: Workspace, digits: dict) -> None:
    with pytest.raises(KitError, match=r"run `kit blend ensembles/nope.yaml`"):
        load_blend(ws.workdir, "nope", ws.expected())
    write_members(ws, digits, {"logreg": "logreg"})
    blend(EnsembleSpec.model_validate({"members": ["logreg"], "blenders": [{"kind": "uniform"}]}), ws, "u")
    exp = ws.expected()
    wrong = replace(exp, classes=list(reversed(exp.classes)))
    with pytest.raises(KitError, match="class order"):
        load_blend(ws.workdir, "u", wrong)


def test_spec_errors_are_reported_together() -> None:
    data = {
        "members": {"swin": {"views": ["plain", "sideways"]}},
        "blendres": [],
        "blenders": [{"kind": "greedy"}, {"kind": "greedy", "rounds": 0}, {"kind": "magic"}],
    }
    with pytest.raises(KitError) as e:
        validate_data(data, EnsembleSpec, "ensembles/bad.yaml")
    text = str(e.value)
    assert "blendres: unknown key; did you mean 'blenders'?" in text
    assert "sideways" in text and "blenders.1.greedy.rounds" in text
    with pytest.raises(KitError, match="give each a distinct `name:`"):
        validate_data(
            {"members": "all", "blenders": [{"kind": "greedy"}, {"kind": "greedy"}]}, EnsembleSpec, "x"
        )


def test_greedy_row_pruning_matches_sklearn_scored_search(digits: dict) -> None:
    """The settled-row shortcut is exact: the same picks as a search scoring every row with sklearn."""
    y = digits["y"]
    Pt = class_major(np.stack([digits["probs"][k][0] for k in digits["probs"]], axis=1).astype(np.float32))
    counts, _, history = greedy_counts(Pt, FastScorer("weighted_f1", y, 10), rounds=15)
    S = np.zeros_like(Pt[0])
    ref_counts, ref_hist = np.zeros(len(Pt), dtype=int), []
    for _ in range(15):
        gains = [f1_score(y, (S + Pt[m]).argmax(0), average="weighted") for m in range(len(Pt))]
        j = int(np.argmax(gains))
        S += Pt[j]
        ref_counts[j] += 1
        ref_hist.append(gains[j])
    np.testing.assert_allclose(history, ref_hist, rtol=1e-12)
    best = int(np.argmax(ref_hist))  # first best prefix
    assert sum(counts) == best + 1


def test_blending_space_round_trips_and_blends() -> None:
    """kit.blend.space is the one place that knows the spaces: candidates encoded from log-probabilities read
    back as the same probabilities, and a blend of one candidate is that candidate's probabilities."""
    from kit.blend.space import as_space

    rng = np.random.default_rng(0)
    lp = log_softmax(rng.normal(size=(50, 4)))
    for name in ("probs", "logits"):
        space = as_space(name)
        P = space.encode(lp)
        np.testing.assert_allclose(space.to_probs(P), np.exp(lp), rtol=1e-12)
        np.testing.assert_allclose(space.blend(3 * P, 3.0), np.exp(lp), rtol=1e-12)
        np.testing.assert_allclose(combine(P[:, None, :], np.array([1.0]), name), np.exp(lp), rtol=1e-12)
    with pytest.raises(ValueError, match="space must be one of"):
        as_space("log_probs")


def test_make_blender_passes_every_spec_field() -> None:
    """make_blender reads a spec's fields as the blender's parameters of the same names."""
    from kit.blend.blenders import make_blender

    spec = EnsembleSpec.model_validate(
        {
            "members": "all",
            "blenders": [
                {"kind": "greedy", "rounds": 7, "init": 2, "bags": 3, "bag_fraction": 0.4, "seed": 9},
                {"kind": "hill_climb", "grid": [0.1, 0.2], "max_steps": 4, "tol": 0.01},
                {"kind": "subsets", "max_size": 2, "weights": "greedy", "rounds": 5, "max_subsets": 99},
                {"kind": "stack", "C": 0.5, "C_grid": [0.1, 1.0], "features": "log_probs", "max_iter": 50},
            ],
        }
    )
    for b in spec.blenders:
        blender = make_blender(b, "macro_f1", "logits")
        assert (blender.metric, blender.space) == ("macro_f1", "logits")
        for k, v in b:
            if k not in ("kind", "name"):
                assert getattr(blender, k) == (tuple(v) if isinstance(v, list) else v), (b.kind, k)
