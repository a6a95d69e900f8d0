"""DDP inside a fold: `kit train MEMBER --ddp 2` on the CPU (gloo) matches the one-process run at the same global
batch within the tolerance docs/scale.md states, rank 0 alone writes, and an interrupted run resumes under DDP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke
from test_train_resume import InterruptAfter
from train_helpers import make_competition, member, write_config
from typer.testing import CliRunner

from kit.config.load import load_config
from kit.train.run import train_in_process

# docs/scale.md, "DDP inside a fold": the same arithmetic, summed in another order (each rank's loss over its
# half of the batch, the gradients averaged by an all-reduce), so float32 rounding differs in the last bits
ATOL = 1e-4  # measured: 3e-7 after 2 epochs


def test_ddp_two_ranks_match_one_process_and_resume(
    tmp_path: Path, runner: CliRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch.distributed", reason="torch without torch.distributed")
    data = make_competition(tmp_path / "data")
    m = member(
        epochs=2, batch_size=8, sampler={"kind": "weighted"}, augment={"preset": "strong", "hflip": True}
    )
    one = load_config(write_config(tmp_path / "one" / "kit.yaml", data, {"cnx": m}))
    train_in_process(one, ["cnx"])

    # a one-process run interrupted in fold 0's second epoch (17 rows, batch 8: 2 batches an epoch) ...
    cfg = write_config(tmp_path / "ddp" / "kit.yaml", data, {"cnx": m})
    with pytest.raises(KeyboardInterrupt):
        train_in_process(load_config(cfg), ["cnx"], InterruptAfter(3))
    capfd.readouterr()
    # ... resumed by 2 ranks: fold 0 from its last.pt, fold 1 from scratch
    r = invoke(runner, ["train", "cnx", "-c", str(cfg), "--ddp", "2"], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    ranks = capfd.readouterr().out  # the torchrun ranks' output (rank 0 reports)
    assert ranks.count("cnx fold 0: resuming after epoch 1/2") == 1
    assert ranks.count("cnx fold 0 epoch 2/2") == 1 and "cnx fold 0 epoch 1/2" not in ranks
    assert ranks.count("cnx fold 1 epoch 1/2") == 1
    a, b = one.workdir / "members" / "cnx", tmp_path / "ddp" / "work" / "members" / "cnx"
    for f in ("oof_logits.npy", "test_logits.npy"):
        x, y = np.load(a / f), np.load(b / f)
        assert x.shape == y.shape
        diff = float(np.abs(x - y).max())
        assert diff < ATOL, (f, diff)
    runs = [next((d / "work" / "runs" / "cnx").iterdir()) for d in (tmp_path / "one", tmp_path / "ddp")]
    assert runs[0].name == runs[1].name  # the same run: DDP is how a fold trains, not what it trains
    for f in (0, 1):
        info = json.loads((runs[1] / f"fold{f}" / "done.json").read_text())
        assert info["epochs"] == 2
        assert {p.name for p in (runs[1] / f"fold{f}").iterdir()} == {
            "best.pt",
            "oof.npy",
            "test.npy",
            "done.json",
        }
