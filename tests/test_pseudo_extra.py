"""Pseudo-labels and external data (issue 19): rows that join the training side of every fold and never a
validation side, so the OOF estimate stays a score on the competition's own labelled images.

Real tiny members (timm test_convnext, the one-layer CLIP) on real PNGs through the `kit` CLI; the fold
builder is wrapped (the real one runs) to record each fold's training and validation rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import invoke, threshold_in_gap, write_csv
from PIL import Image
from train_helpers import CLASSES, make_competition, member, write_config
from typer.testing import CliRunner

from kit.config.load import load_config
from kit.metrics.scores import softmax
from kit.workspace import open_workspace


@pytest.fixture
def record_folds(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Each fold's training and validation positions, as the real timm fold builder returns them."""
    import kit.train.kinds.timm as timm_kind

    seen: list[dict[str, Any]] = []
    real = timm_kind.build

    def build(kind: Any, f: int) -> Any:
        ft = real(kind, f)
        seen.append({"fold": f, "train": np.array(ft.train_idx), "valid": np.array(ft.valid_idx)})
        return ft

    monkeypatch.setattr(timm_kind, "build", build)
    return seen


def _train(runner: CliRunner, cfg: Path, *names: str, sets: tuple[str, ...] = ()) -> Any:
    args = ["train", *names, "-c", str(cfg)]
    for s in sets:
        args += ["--set", s]
    return invoke(runner, args, cwd=cfg.parent)


def _source_probs(work: Path, name: str) -> np.ndarray:
    """The source member's test probabilities as pseudo-labels take them: mean over views of the softmax."""
    return softmax(np.load(work / "members" / name / "test_logits.npy").astype(np.float64), axis=-1).mean(1)


def test_pseudo_rows_train_every_fold_and_are_never_validated(
    tmp_path: Path, runner: CliRunner, record_folds: list[dict[str, Any]]
) -> None:
    data = make_competition(tmp_path / "data", n_test=12)
    cfg = write_config(tmp_path / "kit.yaml", data, {"src": member(epochs=2, lr=5e-3)})
    r = _train(runner, cfg, "src")
    assert r.exit_code == 0, r.output
    work = tmp_path / "work"
    probs = _source_probs(work, "src")
    conf = probs.max(1)
    # about half the test rows reach it; in a gap between rows' confidences, never on one: kit's values come
    # from another path (renormalised rows) and may differ from these in the last bits
    threshold = threshold_in_gap(conf, quantile=0.5)
    expected = np.flatnonzero(conf >= threshold)
    assert 0 < len(expected) < len(probs)
    top2 = np.sort(probs[expected], axis=1)[:, -2:]
    assert (top2[:, 1] - top2[:, 0] > 1e-6).all()  # each selected row's class is not decided by rounding
    counts = np.bincount(probs[expected].argmax(1), minlength=3)

    pl = member(pseudo={"source": "src", "min_confidence": threshold})
    cfg = write_config(tmp_path / "kit.yaml", data, {"src": member(epochs=2, lr=5e-3), "pl": pl})
    record_folds.clear()
    r = _train(runner, cfg, "pl")
    assert r.exit_code == 0, r.output
    per_class = ", ".join(f"{c} {n}" for c, n in zip(CLASSES, counts.tolist(), strict=True))
    assert f"pseudo-labels from member 'src': {len(expected)} test row(s) reach" in r.output
    assert f"({per_class})" in r.output

    ws = open_workspace(load_config(cfg))
    n_train = len(ws.train)
    assert [s["fold"] for s in record_folds] == [0, 1]
    for s in record_folds:
        f = s["fold"]
        labelled = ws.folds.train_idx(f)
        # the fold's training side grew by exactly the selected rows; its validation side is untouched
        assert len(s["train"]) == len(labelled) + len(expected)
        assert np.array_equal(s["valid"], ws.folds.valid_idx(f))
        assert (s["valid"] < n_train).all()
        added = np.setdiff1d(s["train"], labelled)
        assert (added >= n_train).all() and np.array_equal(added - n_train, expected)  # test cache rows

    meta = json.loads((work / "members" / "pl" / "meta.json").read_text())
    assert meta["run"]["train_rows"] == [len(ws.folds.train_idx(f)) + len(expected) for f in range(2)]
    assert meta["n_train"] == n_train  # OOF rows: the labelled train images only
    p = meta["pseudo"]
    assert p["rows"] == len(expected) and p["per_class"] == dict(zip(CLASSES, counts.tolist(), strict=True))
    src_meta = json.loads((work / "members" / "src" / "meta.json").read_text())
    assert p["source"]["kind"] == "member" and p["source"]["name"] == "src"
    for k in ("folds_fingerprint", "data_fingerprint", "test_fingerprint", "classes"):
        assert p["source"][k] == src_meta[k]
    oof = np.load(work / "members" / "pl" / "oof_logits.npy")
    assert oof.shape[0] == n_train and np.isfinite(oof).all()

    # the pseudo rows are part of the run's identity: another threshold is another run
    hashes = {d.name for d in (work / "runs" / "pl").iterdir()}
    higher = threshold_in_gap(conf[conf > threshold], quantile=0.5)  # fewer rows, at least one
    assert 0 < np.count_nonzero(conf >= higher) < len(expected)
    r = _train(runner, cfg, "pl", sets=(f"members.pl.pseudo.min_confidence={higher!r}",))
    assert r.exit_code == 0, r.output
    assert f"{np.count_nonzero(conf >= higher)} test row(s) reach" in r.output
    assert len({d.name for d in (work / "runs" / "pl").iterdir()} - hashes) == 1


def test_soft_weighted_pseudo_rows_with_mixup(
    tmp_path: Path, runner: CliRunner, record_folds: list[dict[str, Any]]
) -> None:
    data = make_competition(tmp_path / "data")
    src = member()
    pl = member(
        pseudo={"source": "member:src", "min_confidence": 0.01, "soft": True, "weight": 0.5},
        augment={"mixup": 0.4},
    )
    cfg = write_config(tmp_path / "kit.yaml", data, {"src": src, "pl": pl})
    assert _train(runner, cfg, "src").exit_code == 0
    record_folds.clear()
    r = _train(runner, cfg, "pl")
    assert r.exit_code == 0, r.output
    assert (
        "pseudo-labels from member 'src': 8 test row(s) reach 0.01" in r.output and "soft targets" in r.output
    )
    meta = json.loads((tmp_path / "work" / "members" / "pl" / "meta.json").read_text())
    assert meta["pseudo"]["soft"] is True and meta["pseudo"]["weight"] == 0.5 and meta["pseudo"]["rows"] == 8
    assert all(len(s["train"]) == 17 + 8 for s in record_folds)


def test_weighted_soft_loss_is_the_weighted_mean_of_row_losses() -> None:
    import torch

    from kit.config.schema import LossConfig
    from kit.train.losses import KitLoss

    torch.manual_seed(0)
    logits = torch.randn(5, 3)
    soft = torch.softmax(torch.randn(5, 3), dim=1)
    w = torch.tensor([1.0, 1.0, 0.5, 0.5, 2.0])
    for kind in ("ce", "focal", "label_smoothing"):
        loss = KitLoss(LossConfig(kind=kind), np.array([5, 3, 2]))
        rows = torch.stack([loss(logits[i : i + 1], soft[i : i + 1]) for i in range(5)])
        assert torch.allclose(loss(logits, soft, w), (rows * w).sum() / w.sum(), atol=1e-6)
        assert torch.allclose(loss(logits, soft, torch.ones(5)), loss(logits, soft), atol=1e-6)


def test_bad_pseudo_sources_are_refused_before_training(tmp_path: Path, runner: CliRunner) -> None:
    data = make_competition(tmp_path / "data")
    cfg = write_config(tmp_path / "kit.yaml", data, {"pl": member(pseudo={"source": "nope"})})
    r = _train(runner, cfg)
    assert r.exit_code == 1
    assert "members.pl.pseudo.source: no member or blend named 'nope'" in r.output
    assert not (tmp_path / "work" / "runs").exists() and not (tmp_path / "work" / "members").exists()

    cfg = write_config(tmp_path / "kit.yaml", data, {"pl": member(pseudo={"source": "pl"})})
    r = _train(runner, cfg)
    assert r.exit_code == 1 and "members.pl.pseudo.source: 'pl' is this member itself" in r.output

    # a source made under other folds is refused with the reason, before anything trains
    cfg = write_config(tmp_path / "kit.yaml", data, {"src": member(), "pl": member(pseudo={"source": "src"})})
    assert _train(runner, cfg, "src").exit_code == 0
    r = _train(runner, cfg, "pl", sets=("folds.k=3",))
    assert r.exit_code == 1
    assert "members.pl.pseudo.source: member 'src'" in r.output and "its folds differ" in r.output
    assert not (tmp_path / "work" / "runs" / "pl").exists()


def test_pseudo_and_extra_are_refused_for_multilabel(tmp_path: Path) -> None:
    import yaml

    from kit.errors import KitError

    comp = {
        "root": ".",
        "train": "train.csv",
        "task": "multilabel",
        "id_column": "id",
        "label_column": "tags",
    }
    comp["metric"] = "f1_samples"
    comp["extra_train"] = [{"train": "extra"}]
    m = member(loss={"kind": "bce"}, pseudo={"source": "other"})
    (tmp_path / "kit.yaml").write_text(yaml.safe_dump({"competition": comp, "members": {"m": m}}))
    with pytest.raises(KitError) as e:
        load_config(tmp_path / "kit.yaml")
    assert "members.m.pseudo: pseudo-labels are for single-label competitions" in str(e.value)
    assert "competition.extra_train: external data is for single-label competitions" in str(e.value)


# ---------------------------------------------------------------- external data


def _extra_folder(root: Path, data: Path) -> None:
    """extra/<label>/*.png: new images of cat and dog, 'kitty' (mapped onto cat), a re-saved copy of a test
    image and of a train image (same pixels, other bytes)."""
    rng = np.random.default_rng(7)
    for label, n, channel in (("cat", 3, 0), ("dog", 2, 1), ("kitty", 2, 0)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = rng.integers(0, 80, (24, 24, 3), dtype=np.uint8)
            a[:, :, channel] = a[:, :, channel] // 2 + 150
            Image.fromarray(a).save(root / label / f"{label}{i}.png")
    with Image.open(data / "test" / "t000.png") as im:  # test image 0 is class 0 (cat)
        im.save(root / "cat" / "copy_of_test.png", compress_level=1)
    with Image.open(data / "train" / "020.png") as im:  # train image 20 is a dog
        im.save(root / "dog" / "copy_of_train.png", compress_level=9)
    assert (root / "cat" / "copy_of_test.png").read_bytes() != (data / "test" / "t000.png").read_bytes()


def test_extra_data_trains_every_fold_shows_in_folds_and_drops_duplicates(
    tmp_path: Path, runner: CliRunner, record_folds: list[dict[str, Any]]
) -> None:
    data = make_competition(tmp_path / "data")
    _extra_folder(data / "extra", data)
    cfg = write_config(tmp_path / "kit.yaml", data, {"cnx": member()})
    plain = load_config(cfg)
    cfg_data = plain.model_dump(mode="json")
    import yaml

    raw = yaml.safe_load(cfg.read_text())
    raw["competition"]["extra_train"] = [{"train": "extra", "class_map": {"kitty": "cat"}}]
    cfg.write_text(yaml.safe_dump(raw))
    assert cfg_data["competition"]["extra_train"] == []

    r = invoke(runner, ["folds", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "extra training data" in r.output
    line = next(x for x in r.output.splitlines() if "extra_train[0]" in x)
    # cat 3 + kitty 2, dog 2; the copies of a test and a train image dropped
    assert [c for c in line.replace("│", " ").split() if c.isdigit()][-6:] == ["5", "2", "0", "7", "1", "1"]

    r = invoke(runner, ["validate", str(cfg)], cwd=tmp_path)
    assert "competition.extra_train" not in r.output

    r = _train(runner, cfg)
    assert r.exit_code == 0, r.output
    assert "cnx: competition.extra_train[0]: 7 image(s) (cat 5, dog 2)" in r.output
    assert "1 duplicate(s) of test images dropped" in r.output
    ws = open_workspace(load_config(cfg))
    for s in record_folds:
        assert len(s["train"]) == len(ws.folds.train_idx(s["fold"])) + 7
        assert np.array_equal(s["valid"], ws.folds.valid_idx(s["fold"]))
    meta = json.loads((tmp_path / "work" / "members" / "cnx" / "meta.json").read_text())
    (e,) = meta["extra_train"]
    assert e["rows"] == 7 and e["per_class"] == {"cat": 5, "dog": 2, "eel": 0}
    assert e["dropped_test_duplicates"] == 1 and e["dropped_train_duplicates"] == 1
    assert meta["n_train"] == 34

    # the extra data is part of the run's identity; without it the run hash is the one it always was
    runs = {d.name for d in (tmp_path / "work" / "runs" / "cnx").iterdir()}
    from kit.train.fold_loop import run_hash

    assert run_hash(open_workspace(plain), plain.members["cnx"]) not in runs


def test_bad_extra_data_names_the_key(tmp_path: Path, runner: CliRunner) -> None:
    import yaml

    data = make_competition(tmp_path / "data")
    _extra_folder(data / "extra", data)
    cfg = write_config(tmp_path / "kit.yaml", data, {"cnx": member()})
    raw = yaml.safe_load(cfg.read_text())
    write_csv(data / "sample.csv", ["id", "label"], [[f"t{j:03d}", "cat"] for j in range(8)])
    raw["competition"]["sample_submission"] = "sample.csv"

    raw["competition"]["extra_train"] = [{"train": "extra"}]  # 'kitty' is no class and not mapped
    cfg.write_text(yaml.safe_dump(raw))
    for cmd in (["validate", str(cfg)], ["train", "-c", str(cfg)]):
        r = invoke(runner, cmd, cwd=tmp_path)
        assert r.exit_code == 1, r.output
        assert "competition.extra_train[0].class_map: label(s) ['kitty']" in r.output
    assert not (tmp_path / "work" / "runs").exists()

    raw["competition"]["extra_train"] = [{"train": "extra", "class_map": {"kitty": "lion"}}]
    cfg.write_text(yaml.safe_dump(raw))
    r = invoke(runner, ["validate", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 1 and "competition.extra_train[0].class_map: ['lion'] are not classes" in r.output

    raw["competition"]["extra_train"] = [{"train": "extra", "class_map": {"kitty": None}}]
    cfg.write_text(yaml.safe_dump(raw))
    ws = open_workspace(load_config(cfg), need_test=True)
    assert [len(e.table) for e in ws.extra] == [5] and ws.extra[0].unmapped == 2

    raw["competition"]["extra_train"] = [{"train": "more.csv", "images": "more"}]
    cfg.write_text(yaml.safe_dump(raw))
    for cmd in (["validate", str(cfg)], ["train", "-c", str(cfg)], ["folds", "-c", str(cfg)]):
        r = invoke(runner, cmd, cwd=tmp_path)
        assert r.exit_code == 1, r.output
        assert f"competition.extra_train[0].train: {data / 'more.csv'} does not exist" in r.output
        assert "competition.extra_train[0].images" in r.output


def test_clip_probe_trains_on_extra_and_soft_pseudo_rows(tmp_path: Path, runner: CliRunner) -> None:
    from kit.demo.tiny_clip import write_tiny_clip

    tiny = write_tiny_clip(tmp_path / "clip-tiny")
    data = make_competition(tmp_path / "data")
    _extra_folder(data / "extra", data)
    probe = {"kind": "clip_probe", "model": f"local-dir:{tiny}", "epochs": 3, "tta": ["plain", "hflip"]}
    src = dict(probe)
    pl = {**probe, "pseudo": {"source": "src", "min_confidence": 0.01, "soft": True, "weight": 0.5}}
    cfg = write_config(tmp_path / "kit.yaml", data, {"src": src, "pl": pl})
    import yaml

    raw = yaml.safe_load(cfg.read_text())
    raw["competition"]["extra_train"] = [{"train": "extra", "class_map": {"kitty": "cat"}}]
    cfg.write_text(yaml.safe_dump(raw))
    r = _train(runner, cfg, "src", "pl")
    assert r.exit_code == 0, r.output
    assert "pl: pseudo-labels from member 'src': 8 test row(s)" in r.output
    ws = open_workspace(load_config(cfg))
    src_meta = json.loads((tmp_path / "work" / "members" / "src" / "meta.json").read_text())
    meta = json.loads((tmp_path / "work" / "members" / "pl" / "meta.json").read_text())
    folds = [len(ws.folds.train_idx(f)) for f in range(2)]
    assert src_meta["run"]["train_rows"] == [n + 7 for n in folds]  # extra data: every member
    assert meta["run"]["train_rows"] == [n + 7 + 8 for n in folds]  # and the pseudo rows
    assert meta["pseudo"]["soft"] is True and meta["n_train"] == 34


def test_pseudo_rows_from_a_blend(
    tmp_path: Path, runner: CliRunner, record_folds: list[dict[str, Any]]
) -> None:
    import yaml

    data = make_competition(tmp_path / "data")
    pl = member(pseudo={"source": "b", "min_confidence": 0.5, "max_per_class": 1})
    cfg = write_config(tmp_path / "kit.yaml", data, {"src": member(), "pl": pl})
    assert _train(runner, cfg, "src").exit_code == 0
    spec = tmp_path / "ensembles" / "b.yaml"
    spec.parent.mkdir()
    spec.write_text(yaml.safe_dump({"members": ["src"], "blenders": [{"kind": "best_single"}]}))
    r = invoke(runner, ["blend", str(spec), "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    probs = np.load(tmp_path / "work" / "blends" / "b" / "test_probs.npy")
    top, conf = probs.argmax(1), probs.max(1)
    expected = sorted(
        int(np.flatnonzero((top == c) & (conf >= 0.5))[np.argmax(conf[(top == c) & (conf >= 0.5)])])
        for c in np.unique(top[conf >= 0.5])
    )
    assert expected  # at most one row per class: the most confident of each

    record_folds.clear()
    r = _train(runner, cfg, "pl")
    assert r.exit_code == 0, r.output
    assert f"pseudo-labels from blend 'b': {len(expected)} test row(s)" in r.output
    n_train = 34
    for s in record_folds:
        assert list(np.setdiff1d(s["train"], np.arange(n_train)) - n_train) == expected
    meta = json.loads((tmp_path / "work" / "members" / "pl" / "meta.json").read_text())
    assert meta["pseudo"]["source"]["kind"] == "blend" and meta["pseudo"]["max_per_class"] == 1

    # the blend's member retrained since: the blend is stale, and so is the pseudo source
    assert _train(runner, cfg, "src", sets=("members.src.epochs=2",)).exit_code == 0
    r = _train(runner, cfg, "pl", sets=("members.src.epochs=2",))
    assert r.exit_code == 1
    assert "members.pl.pseudo.source: blend 'b'" in r.output and "retrained" in r.output
