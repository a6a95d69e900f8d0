"""The fine-tuning recipe of timm members (kit.train.recipe): layer-wise LR decay and a head LR multiplier,
gradient accumulation, torch.compile (opt-in), per-fold weight averaging, gradual unfreezing and seed bags,
through real tiny timm models, real PNGs and the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import invoke, write_csv
from train_helpers import CLASSES, make_competition, member, write_config, write_relative_config

from kit.config.load import load_config
from kit.errors import KitError
from kit.metrics.scores import score
from kit.progress import NullReporter
from kit.train.fold_loop import run_hash
from kit.train.run import train_in_process
from kit.workspace import open_workspace

REPO = Path(__file__).resolve().parents[1]


def _kind(tmp_path: Path, **kw: object):  # a prepared timm member on the tiny competition
    from kit.train.kinds.timm import TimmKind

    data = make_competition(tmp_path / "data")
    cfg = load_config(write_config(tmp_path / "kit.yaml", data, {"m": member(**kw)}))
    ws = open_workspace(cfg)
    return TimmKind.prepare(ws, "m", cfg.members["m"], NullReporter())


def _project(base: Path, members: dict) -> Path:
    """The tiny competition with a sample submission and kit.yaml beside it (what `kit validate` checks whole)."""
    if not (base / "data").exists():
        data = make_competition(base / "data")
        write_csv(
            data / "sample_submission.csv", ["id", "label"], [[f"t{j:03d}", CLASSES[0]] for j in range(8)]
        )
    return write_relative_config(base, members)


def _weights(run: Path, f: int) -> dict:
    import torch

    return torch.load(run / f"fold{f}" / "best.pt", weights_only=True)["model"]


def _run(workdir: Path, name: str) -> Path:
    (run,) = (workdir / "runs" / name).iterdir()
    return run


# ---------------------------------------------------------------- parameter groups


def test_layer_decay_and_head_lr_set_each_groups_lr(tmp_path: Path) -> None:
    from kit.train.kinds.timm import build
    from kit.train.recipe import layer_ids

    kind = _kind(tmp_path, lr=1e-3, layer_decay=0.5, head_lr=10.0, warmup_epochs=0)
    ft = build(kind, 0)
    opt, model = ft.trainee.optimizer, ft.trainee.model
    layer = layer_ids(model, coarse=False)
    top = max(layer.values())
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    names = dict(model.named_parameters())
    start = (
        ft.trainee.scheduler.get_last_lr()[0] / opt.param_groups[0]["initial_lr"]
    )  # the schedule at step 0
    for n, p in names.items():
        expected = 1e-3 * 0.5 ** (top - layer[n]) * (10.0 if n in ft.head else 1.0)
        assert lr_of[id(p)] == pytest.approx(expected * start, rel=1e-9), n
    assert lr_of[id(names["head.fc.weight"])] == pytest.approx(10 * 1e-3 * start)
    stem = lr_of[id(names["stem.0.weight"])]
    assert stem == min(lr_of.values()) and stem == pytest.approx(1e-3 * 0.5**top * start)
    # the schedule keeps each group's ratio: LambdaLR scales every group's initial lr by one multiplier
    for _ in range(2):
        opt.step()  # no gradients yet: moves nothing, but steps come in the order the loop takes
        ft.trainee.scheduler.step()
    after = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    ratio = after[id(names["head.fc.weight"])] / after[id(names["stem.0.weight"])]
    assert ratio == pytest.approx(10 / 0.5**top)


def test_default_groups_are_todays_two(tmp_path: Path) -> None:
    from kit.train.kinds.timm import build

    ft = build(_kind(tmp_path), 0)
    groups = ft.trainee.optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    assert all(p.ndim > 1 for p in groups[0]["params"]) and all(p.ndim <= 1 for p in groups[1]["params"])
    assert len({g["initial_lr"] for g in groups}) == 1


def test_new_keys_at_their_defaults_keep_the_run_hash(tmp_path: Path) -> None:
    data = make_competition(tmp_path / "data")
    defaults = {
        "layer_decay": None,
        "head_lr": 1.0,
        "accumulate": 1,
        "compile": False,
        "average": "none",
        "average_k": 3,
        "swa_start": None,
        "unfreeze": "all",
    }
    cfg = load_config(write_config(tmp_path / "kit.yaml", data, {"a": member(), "b": member(**defaults)}))
    ws = open_workspace(cfg)
    base = run_hash(ws, cfg.members["a"])
    assert run_hash(ws, cfg.members["b"]) == base
    dump = cfg.members["a"].model_dump(mode="json")
    hashed = {k for k in defaults if k in dump}
    assert hashed == set(defaults)  # they are in the dump, and popped from the hash at their defaults
    for key, value in [("head_lr", 2.0), ("accumulate", 2), ("average", "top_k"), ("unfreeze", "gradual")]:
        changed = cfg.members["a"].model_copy(update={key: value})
        assert run_hash(ws, changed) != base, key


# ---------------------------------------------------------------- gradient accumulation


def test_accumulating_two_batches_of_4_equals_one_batch_of_8(tmp_path: Path) -> None:
    """test_vit has no batch-dependent layers (LayerNorm, no dropout), and preset none draws no crop: one
    optimizer step over rows r0..r7 is the same whether they come as one batch or two accumulated ones."""
    data = make_competition(tmp_path / "data")
    # crop_pct 1: images stored at img_size, so the train crop is the stored image itself (no resampling)
    common = {"augment": {"preset": "none"}, "grad_clip": None, "lr": 1e-2, "crop_pct": 1.0}
    members = {
        "b8": member("test_vit", batch_size=8, **common),
        "acc": member("test_vit", batch_size=4, accumulate=2, **common),
        "b4": member("test_vit", batch_size=4, **common),  # the control: same micro-batches, stepped each
    }
    cfg = load_config(write_config(tmp_path / "kit.yaml", data, members))
    train_in_process(cfg)
    w8, wacc, w4 = (_weights(_run(cfg.workdir, n), 0) for n in ("b8", "acc", "b4"))
    for k in w8:
        x, y = wacc[k].numpy(), w8[k].numpy()
        if k.endswith("attn.qkv.bias"):
            # the key bias shifts every attention logit of a query alike: its gradient is zero but for rounding,
            # which Adam's normalisation blows up to steps of size lr; the query and value biases must agree
            dim = len(x) // 3
            x, y = np.r_[x[:dim], x[2 * dim :]], np.r_[y[:dim], y[2 * dim :]]
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6, err_msg=k)
    assert max(float((w4[k] - w8[k]).abs().max()) for k in w8) > 1e-3  # the comparison can fail
    done = json.loads((_run(cfg.workdir, "acc") / "fold0" / "done.json").read_text())
    assert (
        done["train_rows"] == 17
    )  # 17 rows: 2 optimizer steps of 8, one row left over (as batch 8 drops it)


def test_accumulation_that_cannot_fill_a_step_is_refused_before_training(tmp_path: Path, runner) -> None:
    _project(tmp_path, {"m": member(batch_size=8, accumulate=3)})
    r = invoke(runner, ["train", "m"], cwd=tmp_path)
    assert r.exit_code == 1
    assert "members.m.accumulate: 3 x batch_size 8 = 24 rows per optimizer step" in r.output
    assert "smallest fold trains on 17 rows" in r.output and "use accumulate: 2" in r.output
    assert not (tmp_path / "work" / "runs").exists()
    r = invoke(runner, ["validate"], cwd=tmp_path)
    assert r.exit_code == 1 and "members.m.accumulate: 3 x batch_size 8" in r.output


# ---------------------------------------------------------------- compile


def test_compile_key_is_validated_and_documented(tmp_path: Path) -> None:
    data = make_competition(tmp_path / "data")
    path = write_config(tmp_path / "kit.yaml", data, {"m": member(compile="sometimes", head_lr=0)})
    with pytest.raises(KitError) as e:
        load_config(path)
    text = "\n".join(e.value.problems or [])
    assert "members.m.compile" in text and "members.m.head_lr" in text  # every problem at once
    assert load_config(path, ["members.m.compile=true", "members.m.head_lr=2"]).members["m"].compile is True
    docs = (REPO / "docs" / "train.md").read_text()
    for key in ("compile:", "layer_decay:", "head_lr:", "accumulate:", "average:", "unfreeze:", "seeds:"):
        assert key in docs, key


# ---------------------------------------------------------------- weight averaging


@pytest.mark.parametrize(
    ("model", "extra", "epochs"),
    [
        ("test_convnext", {"average": "top_k", "average_k": 2}, None),
        ("test_efficientnet", {"average": "swa", "swa_start": 1}, [1, 2]),  # BatchNorm: update_bn runs
    ],
)
def test_averaged_weights_become_best_pt(
    tmp_path: Path, runner, model: str, extra: dict, epochs: list[int] | None
) -> None:
    data = make_competition(tmp_path / "data")
    write_config(
        tmp_path / "kit.yaml", data, {"m": member(model, epochs=3, **extra), "p": member(model, epochs=3)}
    )
    r = invoke(runner, ["train"], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    cfg = load_config(tmp_path / "kit.yaml")
    ws = open_workspace(cfg)
    run, plain = _run(cfg.workdir, "m"), _run(cfg.workdir, "p")
    for f in range(2):
        done = json.loads((run / f"fold{f}" / "done.json").read_text())
        avg = done["average"]
        assert avg["kind"] == extra["average"]
        if epochs is not None:
            assert avg["epochs"] == epochs
        else:  # the 2 best epochs by the held-out score
            ranked = sorted(done["history"], key=lambda h: (-h["score"], h["epoch"]))
            assert avg["epochs"] == sorted(h["epoch"] for h in ranked[:2])
        # OOF logits come from best.pt, the averaged network: their score is the one recorded
        oof = np.load(run / f"fold{f}" / "oof.npy")
        y = ws.train.labels[ws.folds.valid_idx(f)]
        assert score("weighted_f1", y, oof[:, 0]) == pytest.approx(avg["score"])
        # same seed, same epochs, no averaging: the best epoch's weights differ from the average
        a, b = _weights(run, f), _weights(plain, f)
        assert a.keys() == b.keys()
        assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) > 1e-4
    assert (cfg.workdir / "members" / "m" / "oof_logits.npy").exists()


def test_top_k_mean_is_the_mean_of_the_k_best_epochs() -> None:
    import timm
    import torch

    from kit.config.schema import TimmMember
    from kit.train.recipe import Averaging

    m = TimmMember.model_validate(member("test_efficientnet", epochs=3, average="top_k", average_k=2))
    model = timm.create_model("test_efficientnet", num_classes=3)
    avg = Averaging.of(m, model, higher=True)
    assert avg is not None
    snaps = []
    for epoch, s in enumerate([0.5, 0.9, 0.7]):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * (epoch + 1))
        snaps.append({k: v.clone() for k, v in model.state_dict().items()})
        avg.after_epoch(epoch, s, model, model)
    assert avg.epochs == [1, 2]
    out = avg.averaged(model, []).state_dict()
    for k, v in out.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (snaps[1][k] + snaps[2][k]) / 2)
        else:
            assert torch.equal(v, snaps[1][k])  # counters: the best epoch's


@pytest.mark.parametrize("extra", [{"average": "top_k", "average_k": 2}, {"average": "swa", "swa_start": 1}])
def test_interrupted_averaging_resumes_bit_equal(tmp_path: Path, extra: dict) -> None:
    from test_train_resume import InterruptAfter, _artifacts

    data = make_competition(tmp_path / "data")
    m = member("test_efficientnet", epochs=3, **extra)
    a = load_config(write_config(tmp_path / "a" / "kit.yaml", data, {"m": m}))
    b = load_config(write_config(tmp_path / "b" / "kit.yaml", data, {"m": m}))
    train_in_process(a, ["m"])
    with pytest.raises(
        KeyboardInterrupt
    ):  # fold 1, epoch 2: the average holds epoch 1 (top_k) or nothing yet
        train_in_process(b, ["m"], InterruptAfter(9))
    last = _run(b.workdir, "m") / "fold1" / "last.pt"
    assert last.exists()
    import torch

    assert "average" in torch.load(last, weights_only=True)
    train_in_process(b, ["m"])
    for x, y in zip(_artifacts(a.workdir, "m"), _artifacts(b.workdir, "m"), strict=True):
        assert np.array_equal(x, y)
    for f in range(2):
        da = json.loads((_run(a.workdir, "m") / f"fold{f}" / "done.json").read_text())["average"]
        db = json.loads((_run(b.workdir, "m") / f"fold{f}" / "done.json").read_text())["average"]
        assert da == db


def test_averaging_keys_are_checked() -> None:
    from kit.config.schema import TimmMember

    for bad, words in [
        ({"swa_start": 1}, "swa_start is set but average is none"),
        ({"average": "swa", "swa_start": 3, "epochs": 3}, "swa_start (3) must be below epochs (3)"),
        ({"average": "top_k", "average_k": 4, "epochs": 3}, "average_k (4) is more than epochs (3)"),
        ({"average": "mean"}, "average"),
    ]:
        with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
            TimmMember.model_validate(member(**bad))


# ---------------------------------------------------------------- gradual unfreezing


def test_gradual_unfreezing_releases_one_stage_per_epoch_from_the_top() -> None:
    import timm

    from kit.config.schema import TimmMember
    from kit.train.models import head_parameter_names
    from kit.train.recipe import Unfreezing

    m = TimmMember.model_validate(member(epochs=8, freeze_epochs=1, unfreeze="gradual"))
    model = timm.create_model("test_convnext", num_classes=3)
    head = head_parameter_names(model)
    plan = Unfreezing.of(model, head, m)

    def training(epoch: int) -> set[str]:
        plan.apply(model, epoch)
        return {n for n, p in model.named_parameters() if p.requires_grad}

    everything = {n for n, _ in model.named_parameters()}
    assert training(0) == head
    assert training(1) == head | {"head.norm.weight", "head.norm.bias"}  # timm's top coarse group
    assert training(2) == training(1) | {n for n in everything if n.startswith("stages.3.")}
    assert training(3) == training(2) | {n for n in everything if n.startswith("stages.2.")}
    assert not any(n.startswith("stem.") for n in training(5))
    assert training(6) == everything and training(7) == everything


def test_gradual_unfreezing_trains_only_the_released_stages(tmp_path: Path) -> None:
    """One epoch, no freeze_epochs: the head and the top stage train, the stem keeps its starting weights."""
    import torch

    from kit.train.data import derive_seed

    data = make_competition(tmp_path / "data")
    cfg = load_config(write_config(tmp_path / "kit.yaml", data, {"g": member(unfreeze="gradual", seed=3)}))
    train_in_process(cfg)
    from kit.train.models import resolve_model

    spec = resolve_model("g", cfg.members["g"], 3)
    torch.manual_seed(derive_seed(3, 0))  # the starting weights, seeded by (seed, fold) as build does
    start = spec.create().state_dict()
    trained = _weights(_run(cfg.workdir, "g"), 0)
    changed = {k for k in start if not torch.equal(start[k], trained[k])}
    assert {"head.fc.weight", "head.norm.weight"} <= changed
    assert not any(k.startswith(("stem.", "stages.0.", "stages.3.")) for k in changed)


# ---------------------------------------------------------------- seed bags


def test_seed_bag_trains_lists_and_blends_as_members(tmp_path: Path, runner) -> None:
    _project(tmp_path, {"cnx": member(seeds=[0, 1])})
    data = tmp_path / "data"
    r = invoke(runner, ["validate"], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "cnx-s0" in r.output and "cnx-s1" in r.output
    r = invoke(runner, ["train", "cnx"], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    work = tmp_path / "work"
    for s in (0, 1):
        meta = json.loads((work / "members" / f"cnx-s{s}" / "meta.json").read_text())
        assert meta["config"]["member"]["seed"] == s and meta["config"]["member"]["seeds"] is None
    a, b = (np.load(work / "members" / f"cnx-s{s}" / "oof_logits.npy") for s in (0, 1))
    assert a.shape == b.shape and not np.array_equal(a, b)  # two seeds, two networks
    # a hand-written member with seed: 1 is the same run as the bag's cnx-s1
    hand = load_config(write_config(tmp_path / "h" / "kit.yaml", data, {"cnx-s1": member(seed=1)}))
    cfg = load_config(tmp_path / "kit.yaml")
    ws = open_workspace(cfg)
    assert run_hash(ws, hand.members["cnx-s1"]) == _run(work, "cnx-s1").name

    r = invoke(runner, ["runs"], cwd=tmp_path)
    assert r.exit_code == 0 and "cnx-s0" in r.output and "cnx-s1" in r.output
    spec = tmp_path / "ensembles" / "bag.yaml"
    spec.parent.mkdir()
    spec.write_text(yaml.safe_dump({"members": ["cnx"], "blenders": [{"kind": "uniform"}]}))
    r = invoke(runner, ["blend", str(spec)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    blend = work / "blends" / "bag"
    text = " ".join(p.read_text(errors="ignore") for p in blend.glob("*.json"))
    assert "cnx-s0" in text and "cnx-s1" in text


def test_seed_bag_name_clash_is_an_error(tmp_path: Path, runner) -> None:
    _project(tmp_path, {"cnx": member(seeds=[0, 1]), "cnx-s1": member()})
    r = invoke(runner, ["validate"], cwd=tmp_path)
    assert r.exit_code == 1
    assert "members.cnx.seeds: the seed member 'cnx-s1' is also defined in kit.yaml" in r.output
    _project(tmp_path, {"cnx": member(seeds=[0, 1], seed=4)})
    r = invoke(runner, ["validate"], cwd=tmp_path)
    assert r.exit_code == 1 and "set seed (4) or seeds ([0, 1]), not both" in r.output
