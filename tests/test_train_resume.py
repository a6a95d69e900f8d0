"""Resume: an interrupted `kit train` continues where it stopped and ends bit-equal to an uninterrupted run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from train_helpers import make_competition, member, write_config

from kit.config.load import load_config
from kit.data.cache import DecodeStats
from kit.progress import NullReporter, Task
from kit.train.run import train_in_process


class InterruptAfter(NullReporter):
    """Raises KeyboardInterrupt (as Ctrl-C would) once `n` training batches have run."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.batches = 0

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Task]:
        outer = self

        class Counting:
            def advance(self, n: int = 1) -> None:
                if "batches" in description:
                    outer.batches += n
                    if outer.batches >= outer.n:
                        raise KeyboardInterrupt

            def describe(self, text: str) -> None:
                pass

        yield Counting()


def _artifacts(workdir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    d = workdir / "members" / name
    return np.load(d / "oof_logits.npy"), np.load(d / "test_logits.npy")


@pytest.mark.parametrize("extras", [{}, {"ema": 0.9, "freeze_epochs": 1, "sampler": {"kind": "weighted"}}])
def test_interrupted_run_resumes_bit_equal(tmp_path: Path, extras: dict) -> None:
    data = make_competition(tmp_path / "data")
    m = member(epochs=3, batch_size=8, augment={"preset": "strong", "hflip": True}, **extras)
    a = load_config(write_config(tmp_path / "a" / "kit.yaml", data, {"cnx": m}))
    b = load_config(write_config(tmp_path / "b" / "kit.yaml", data, {"cnx": m}))
    train_in_process(a, ["cnx"])

    # 17 train images per fold, batch 8 -> 2 batches an epoch; stop in fold 1, epoch 2 (batch 9 of the run)
    with pytest.raises(KeyboardInterrupt):
        train_in_process(b, ["cnx"], InterruptAfter(9))
    run = next((b.workdir / "runs" / "cnx").iterdir())
    assert (run / "fold0" / "done.json").exists()
    assert (run / "fold1" / "last.pt").exists() and not (run / "fold1" / "done.json").exists()
    assert not (b.workdir / "members" / "cnx").exists()  # nothing half-written

    rep = NullReporter()
    train_in_process(b, ["cnx"], rep)
    assert any("fold 0: done earlier" in line for line in rep.lines)
    assert any("fold 1: resuming after epoch 1/3" in line for line in rep.lines)
    assert sum("fold 1 epoch" in line for line in rep.lines) == 2  # epochs 2 and 3 only

    for x, y in zip(_artifacts(a.workdir, "cnx"), _artifacts(b.workdir, "cnx"), strict=True):
        assert x.shape == y.shape
        assert np.array_equal(x, y)


def test_changed_config_starts_a_new_run(tmp_path: Path) -> None:
    data = make_competition(tmp_path / "data")
    path = write_config(tmp_path / "kit.yaml", data, {"cnx": member()})
    train_in_process(load_config(path), ["cnx"])
    cfg2 = load_config(path, ["members.cnx.lr=0.002"])
    rep = NullReporter()
    decoded = DecodeStats.decoded
    train_in_process(cfg2, ["cnx"], rep)
    assert DecodeStats.decoded == decoded  # the image cache is shared: nothing decoded again
    runs = sorted(p.name for p in (cfg2.workdir / "runs" / "cnx").iterdir())
    assert len(runs) == 2
    assert not any("done earlier" in line for line in rep.lines)
    # same config again: nothing retrained
    rep = NullReporter()
    train_in_process(cfg2, ["cnx"], rep)
    assert sum("done earlier" in line for line in rep.lines) == 2
