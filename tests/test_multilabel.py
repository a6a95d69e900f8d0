"""Multi-label competitions end to end through the CLI (kit init -> train -> blend -> submit -> check), and the
parts that make them: thresholds, losses, the rarest-label sampler, the blend scorer, the submission checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_INIT_MEMBER, invoke, set_args, write_csv

LABELS = ["blue", "green", "red"]  # sorted: kit's default label order
TINY = [*TINY_INIT_MEMBER, "members.convnext.batch_size=8"]


def _sets(extra: list[str] | None = None) -> list[str]:
    return set_args([*TINY, *(extra or [])])


def make_multilabel(root: Path, *, columns: bool, n: int = 40, n_test: int = 8, seed: int = 0) -> Path:
    """Real PNGs: label c present = channel c bright. Train ids are integers, files zero-padded (00007.png).
    `columns`: one 0/1 column per label (dirty MNIST); else one column of space-separated labels."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir(parents=True)
    rows, test_ids = [], []
    channel = {"red": 0, "green": 1, "blue": 2}
    for i in range(n + n_test):
        on = [lab for lab, p in zip(LABELS, (0.3, 0.45, 0.6), strict=True) if rng.random() < p]
        if i % 9 == 0:
            on = []
        a = rng.integers(0, 80, (24, 24, 3), dtype=np.uint8)
        for lab in on:
            a[:, :, channel[lab]] = a[:, :, channel[lab]] // 2 + 150
        if i < n:
            Image.fromarray(a).save(root / "train" / f"{i:05d}.png")
            rows.append(
                [str(i), *(["1" if lab in on else "0" for lab in LABELS] if columns else [" ".join(on)])]
            )
        else:
            Image.fromarray(a).save(root / "test" / f"x{i}.png")
            test_ids.append(f"x{i}")
    write_csv(root / "train.csv", ["id", *(LABELS if columns else ["labels"])], rows)
    write_csv(root / "test.csv", ["id"], [[t] for t in test_ids])
    return root


def write_sample(path: Path, shape: str, test_ids: list[str]) -> Path:
    if shape == "labels":
        return write_csv(path, ["id", "labels"], [[t, "red"] for t in test_ids])
    cell = "0" if shape == "binary" else "0.5"
    return write_csv(path, ["id", *LABELS], [[t, cell, cell, cell] for t in test_ids])


def _test_ids(data: Path) -> list[str]:
    return [ln for ln in (data / "test.csv").read_text().splitlines()[1:]]


@pytest.fixture(scope="module")
def labels_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plant-pathology-like competition (space-separated labels) through init, train and blend."""
    from typer.testing import CliRunner

    runner = CliRunner()
    tmp = tmp_path_factory.mktemp("ml")
    data = make_multilabel(tmp / "leaves", columns=False)
    write_sample(data / "sample_submission.csv", "labels", _test_ids(data))
    r = invoke(runner, ["init", str(data)], cwd=tmp)
    assert r.exit_code == 0, r.output
    assert "multi-label: column 'labels'" in r.output and "task: multilabel" in r.output
    text = (tmp / "kit.yaml").read_text()
    assert "task: multilabel" in text and "metric: f1_samples" in text and "train_images: train" in text
    r = invoke(runner, ["folds", *_sets()], cwd=tmp)
    assert r.exit_code == 0, r.output
    assert "label" in r.output and "(images)" in r.output and "│ red" in r.output
    for cmd in (["train"], ["blend", "ensembles/all.yaml"]):
        r = invoke(runner, [*cmd, *_sets()], cwd=tmp)
        assert r.exit_code == 0, r.output
    return tmp


def test_kit_runs_shows_per_label_f1_and_auc(labels_run: Path, runner) -> None:
    r = invoke(runner, ["runs"], cwd=labels_run)
    assert r.exit_code == 0, r.output
    assert "convnext per label: blue F1" in r.output and "AUC" in r.output


def test_multilabel_member_artifacts(labels_run: Path) -> None:
    meta = json.loads((labels_run / "work" / "members" / "convnext" / "meta.json").read_text())
    assert meta["task"] == "multilabel" and meta["classes"] == LABELS
    oof = np.load(labels_run / "work" / "members" / "convnext" / "oof_logits.npy")
    test = np.load(labels_run / "work" / "members" / "convnext" / "test_logits.npy")
    assert oof.shape == (40, 2, 3) and test.shape == (8, 2, 3) and np.isfinite(oof).all()
    m = meta["metrics"]
    assert set(m["pooled"]) == {"f1_samples", "f1_micro", "f1_macro", "accuracy_cells", "roc_auc", "log_loss"}
    assert set(m["per_class_f1"]) == set(LABELS) and set(m["per_label_auc"]) == set(LABELS)
    winner = json.loads((labels_run / "work" / "blends" / "all" / "winner.json").read_text())
    assert winner["metric"] == "f1_samples"
    table = (labels_run / "work" / "blends" / "all" / "table.csv").read_text()
    assert "+thresholds" in table  # the per-label thresholds step is judged beside each blender
    assert np.load(labels_run / "work" / "blends" / "all" / "test_probs.npy").shape == (8, 3)


@pytest.mark.parametrize("shape", ["labels", "binary", "proba"])
def test_multilabel_submission_shapes(labels_run: Path, shape: str, runner) -> None:
    data = labels_run / "leaves"
    write_sample(data / f"sample_{shape}.csv", shape, _test_ids(data))
    extra = [f"competition.sample_submission=sample_{shape}.csv"]
    if shape == "proba":
        extra.append("competition.submission.kind=multilabel_proba")
    out = labels_run / f"sub_{shape}.csv"
    r = invoke(runner, ["submit", "ensembles/all.yaml", "-o", str(out), *_sets(extra)], cwd=labels_run)
    assert r.exit_code == 0, r.output
    assert f"multilabel_{shape}" in r.output
    lines = out.read_text().splitlines()
    assert len(lines) == 9 and [ln.split(",")[0] for ln in lines[1:]] == _test_ids(data)
    cells = [ln.split(",")[1:] for ln in lines[1:]]
    if shape == "labels":
        assert lines[0] == "id,labels"
        for (c,) in cells:
            toks = c.split()
            assert set(toks) <= set(LABELS) and len(set(toks)) == len(toks)
    elif shape == "binary":
        assert lines[0] == "id," + ",".join(LABELS) and all(v in ("0", "1") for row in cells for v in row)
    else:
        vals = np.array([[float(v) for v in row] for row in cells])
        assert ((vals >= 0) & (vals <= 1)).all() and not np.allclose(vals.sum(1), 1)
    side = json.loads(Path(str(out) + ".json").read_text())
    assert side["kind"] == f"multilabel_{shape}" and set(side["thresholds"]) == set(LABELS)
    assert invoke(runner, ["check-submission", str(out), *_sets(extra)], cwd=labels_run).exit_code == 0


def test_check_submission_rejects_bad_multilabel_cells(labels_run: Path, runner) -> None:
    data, ids = labels_run / "leaves", _test_ids(labels_run / "leaves")
    write_sample(data / "sample_binary.csv", "binary", ids)
    bad = write_csv(labels_run / "bad_bin.csv", ["id", *LABELS], [[t, "0.5", "1", "0"] for t in ids])
    r = invoke(
        runner,
        ["check-submission", str(bad), *_sets(["competition.sample_submission=sample_binary.csv"])],
        cwd=labels_run,
    )
    assert r.exit_code == 1 and "holds '0.5', not 0 or 1" in r.output
    bad = write_csv(labels_run / "bad_lab.csv", ["id", "labels"], [[t, "red red cat"] for t in ids])
    r = invoke(runner, ["check-submission", str(bad)], cwd=labels_run)
    assert r.exit_code == 1 and "['cat'] are not labels" in r.output and "labels repeat" in r.output


def test_one_hot_columns_multilabel_with_roc_auc(tmp_path: Path, runner) -> None:
    """Dirty-MNIST-like 0/1 columns with several 1s a row: init proposes multilabel; roc_auc writes one
    probability column per label."""
    data = make_multilabel(tmp_path / "mnist", columns=True)
    write_sample(data / "sample_submission.csv", "proba", _test_ids(data))
    r = invoke(runner, ["init", str(data)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "multi-label: 0/1 columns" in r.output
    sets = _sets(
        ["competition.metric=roc_auc", "members.convnext.loss.kind=asl", "members.convnext.tta=[plain]"]
    )
    for cmd in (["train"], ["blend", "ensembles/all.yaml"], ["submit", "ensembles/all.yaml", "-o", "s.csv"]):
        r = invoke(runner, [*cmd, *sets], cwd=tmp_path)
        assert r.exit_code == 0, r.output
    assert "multilabel_proba" in r.output
    assert invoke(runner, ["check-submission", "s.csv", *sets], cwd=tmp_path).exit_code == 0


def test_multilabel_config_errors(tmp_path: Path, runner) -> None:
    data = make_multilabel(tmp_path / "d", columns=False, n=10, n_test=2)
    write_sample(data / "sample_submission.csv", "labels", _test_ids(data))
    assert invoke(runner, ["init", str(data)], cwd=tmp_path).exit_code == 0
    r = invoke(runner, ["validate", "--set", "competition.metric=weighted_f1"], cwd=tmp_path)
    assert r.exit_code == 1 and "competition.task is multilabel" in r.output
    r = invoke(runner, ["validate", "--set", "members.convnext.loss.kind=weighted_ce"], cwd=tmp_path)
    assert r.exit_code == 1 and "softmax loss" in r.output


# ---------------------------------------------------------------- parts


def test_thresholds_fit_on_fit_rows_and_map_to_half() -> None:
    from kit.blend.thresholds import Thresholds
    from kit.metrics import score

    rng = np.random.default_rng(0)
    Y = (rng.random((600, 4)) < [0.5, 0.2, 0.1, 0.05]).astype(np.uint8)
    Q = np.clip(0.25 * Y + rng.random(Y.shape) * 0.5, 0, 1)  # calibrated low: 0.5 misses positives
    for metric in ("f1_samples", "f1_micro", "f1_macro", "accuracy_cells"):
        th = Thresholds(metric).fit(Q, Y)
        T = th.transform(Q)
        assert score(metric, Y, T, logits=False) >= score(metric, Y, Q, logits=False)
        for j, t in enumerate(th.thresholds_):
            assert np.array_equal(T[:, j] >= 0.5, Q[:, j] >= t)  # the threshold lands on 0.5
    th = Thresholds("f1_samples").fit(Q, Y)
    assert score("f1_samples", Y, th.transform(Q), logits=False) > score("f1_samples", Y, Q, logits=False)
    for metric in (
        "f1_samples",
        "f1_micro",
    ):  # converged: no single label's grid value does better (brute force)
        th = Thresholds(metric, passes=10).fit(Q, Y)
        best = score(metric, Y, np.greater_equal(Q, th.thresholds_).astype(float), logits=False)
        for j in range(Q.shape[1]):
            for g in th.grid:
                t = th.thresholds_.copy()
                t[j] = g
                assert score(metric, Y, np.greater_equal(Q, t).astype(float), logits=False) <= best + 1e-12
    one = Thresholds("f1_samples", at_least_one=True).fit(Q, Y).transform(np.full((3, 4), 0.01))
    assert ((one >= 0.5).sum(axis=1) == 1).all()


def test_multilabel_losses_match_their_formulas() -> None:
    import torch

    from kit.config.schema import LossConfig
    from kit.train.losses import make_loss

    x = torch.tensor([[2.0, -1.0, 0.3], [-0.5, 0.1, 1.5]])
    t = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    Y = t.numpy().astype(np.uint8)
    p = torch.sigmoid(x)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(x, t, reduction="none").sum(-1).mean()
    assert make_loss(LossConfig(kind="bce"), Y, 3)(x, t).item() == pytest.approx(bce.item(), rel=1e-6)
    assert make_loss(LossConfig(kind="ce"), Y, 3)(x, t).item() == pytest.approx(bce.item(), rel=1e-6)
    focal = -(t * (1 - p) ** 2 * p.log() + (1 - t) * p**2 * (1 - p).log()).sum(-1).mean()
    assert make_loss(LossConfig(kind="focal"), Y, 3)(x, t).item() == pytest.approx(focal.item(), rel=1e-5)
    pm = (p - 0.05).clamp(min=0)  # ASL: shifted probability of the negatives
    asl = -(t * p.log() + (1 - t) * pm**4 * (1 - pm).log()).sum(-1).mean()
    assert make_loss(LossConfig(kind="asl"), Y, 3)(x, t).item() == pytest.approx(asl.item(), rel=1e-5)


def test_weighted_sampler_uses_each_images_rarest_label() -> None:
    from kit.train.sampler import sample_weights

    Y = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 1], [1, 0, 0], [0, 0, 0], [0, 0, 0]])
    w = sample_weights(Y, power=1.0)
    # label counts 4, 1, 1; rows without labels: a group of 2
    assert np.allclose(w, [1 / 4, 1.0, 1.0, 1 / 4, 1 / 2, 1 / 2])


@pytest.mark.parametrize(
    "metric", ["f1_samples", "f1_micro", "f1_macro", "accuracy_cells", "roc_auc", "log_loss"]
)
@pytest.mark.parametrize("space", ["probs", "logits"])
def test_multilabel_scorer_equals_the_metric(metric: str, space: str) -> None:
    from kit.blend.blenders import Greedy
    from kit.blend.multilabel import MultilabelScorer, multilabel_space
    from kit.metrics import score

    rng = np.random.default_rng(1)
    Y = (rng.random((300, 5)) < 0.3).astype(np.uint8)
    logits = rng.normal(size=(300, 4, 5)) + 1.5 * (Y[:, None, :] - 0.5)
    sp = multilabel_space(space)
    P = sp.encode(logits).astype(np.float32)
    sc = MultilabelScorer(metric, Y, sp)
    X = sc.layout(P)
    S = X[0] + X[2]
    want = score(metric, Y, sp.blend(S.astype(np.float64), 2), logits=False)
    assert sc.score(S, 2) == pytest.approx(want, rel=1e-6)
    assert sc.score_added(X[0], X[2], 2) == pytest.approx(want, rel=1e-6)
    search = sc.search(X, [0, 1, 3])  # greedy's round after picking candidate 2
    search.add(2)
    for m, gain in zip([0, 1, 3], search.gains(), strict=True):
        blend = score(metric, Y, sp.blend((X[2] + X[m]).astype(np.float64), 2), logits=False)
        assert gain == pytest.approx(sc.gain(blend), rel=1e-6)
    g = Greedy(metric, sp, rounds=5).fit(P, Y)
    assert g.weights_.sum() == pytest.approx(1.0) and g.predict(P).shape == (300, 5)


def test_clip_probe_member_trains_multilabel(tmp_path: Path, runner) -> None:
    """The clip_probe kind on a multi-label table: a sigmoid head (focal by default), per-label logits."""
    from kit.demo.tiny_clip import write_tiny_clip

    write_tiny_clip(tmp_path / "clip-tiny")
    data = make_multilabel(tmp_path / "d", columns=False)
    write_sample(data / "sample_submission.csv", "labels", _test_ids(data))
    assert invoke(runner, ["init", str(data)], cwd=tmp_path).exit_code == 0
    import yaml

    # the init's timm-only keys do not fit a clip_probe member: write the member in full instead

    cfg = yaml.safe_load((tmp_path / "kit.yaml").read_text())
    cfg["members"] = {"clip": {"kind": "clip_probe", "model": "local-dir:clip-tiny", "epochs": 5}}
    (tmp_path / "kit.yaml").write_text(yaml.safe_dump(cfg))
    r = invoke(runner, ["train", "--set", "folds.k=2"], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "work" / "members" / "clip" / "meta.json").read_text())
    assert meta["task"] == "multilabel" and meta["kind"] == "clip_probe"
    oof = np.load(tmp_path / "work" / "members" / "clip" / "oof_logits.npy")
    assert oof.shape == (40, 1, 3) and np.isfinite(oof).all()  # the default views: plain only
    assert 0 <= meta["metrics"]["pooled"]["f1_samples"] <= 1


def test_submit_a_member_cuts_its_sigmoid_at_half(labels_run: Path, runner) -> None:
    data = labels_run / "leaves"
    write_sample(data / "sample_binary.csv", "binary", _test_ids(data))
    sets = _sets(["competition.sample_submission=sample_binary.csv"])
    out = labels_run / "member.csv"
    r = invoke(runner, ["submit", "--member", "convnext", "-o", str(out), *sets], cwd=labels_run)
    assert r.exit_code == 0, r.output
    logits = np.load(labels_run / "work" / "members" / "convnext" / "test_logits.npy")
    probs = (1 / (1 + np.exp(-logits.astype(np.float64)))).mean(axis=1)  # mean over views of the sigmoid
    cells = np.array([[int(v) for v in ln.split(",")[1:]] for ln in out.read_text().splitlines()[1:]])
    assert np.array_equal(cells, (probs >= 0.5).astype(int))
    side = json.loads(Path(str(out) + ".json").read_text())
    assert side["thresholds"] == dict.fromkeys(LABELS, 0.5) and side["thresholds_from"] == "0.5 (default)"


def test_report_of_a_multilabel_workspace(labels_run: Path, runner) -> None:
    """`kit report` on a multi-label workspace: per-label F1, calibration over every (image, label) cell,
    label issues through cleanlab's multi-label ranking, and no confusion matrix (it says why)."""
    import re

    r = invoke(runner, ["report", *_sets()], cwd=labels_run)
    assert r.exit_code == 0, r.output
    page = (labels_run / "work" / "report.html").read_text("utf-8")
    for sid in ("members", "per-class", "confusion", "calibration", "gallery", "label-issues", "data"):
        assert f'<section id="{sid}"' in page, sid
    per_class = page.split('<section id="per-class"')[1].split("</section>")[0]
    assert all(f'<td class="l">{label}</td>' in per_class for label in LABELS)
    confusion = page.split('<section id="confusion"')[1].split("</section>")[0]
    assert "multi-label" in confusion and "<img" not in confusion
    issues = page.split('<section id="label-issues"')[1].split("</section>")[0]
    assert "label quality" in issues and "data:text/csv;base64," in issues
    ece = re.findall(r'<td class="l">member convnext</td><td>([\d.]+)</td>', page)
    assert ece and 0.0 <= float(ece[0]) <= 1.0
