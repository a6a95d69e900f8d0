"""DDP inside a fold: `kit train MEMBER --ddp N` (or `torchrun --nproc_per_node N -m kit train MEMBER`).

Every rank runs `kit train`: opens the workspace, prepares the member (rank 0 first, so the image cache is
decoded once; the others then read it) and trains the same folds in step. Rank 0 leads: it takes the fold
locks, skips done folds, tells the others which fold comes next (a broadcast), and alone writes checkpoints,
fold outputs and the member artifacts. Within a fold every rank draws the same seeded global order (the
weighted sampler included), cuts each global batch of `batch_size` images into N equal contiguous shards and
trains its own (kit.train.loop.train_one_epoch), with the augmentation numbers of its shard's positions in the
global batch; DistributedDataParallel averages the gradients. Evaluation runs once, on rank 0 (the unwrapped
model, no collective), and its score is broadcast so every rank keeps the same best epoch and early stop.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.errors import KitError
from kit.progress import NullReporter, Reporter
from kit.train.dist import Dist, from_env

if TYPE_CHECKING:
    from kit.config.schema import KitConfig, MemberConfig
    from kit.workspace import Workspace

STOP = -1  # the lead's "no more folds" command


def check_members(cfg: KitConfig, names: list[str], n: int) -> None:
    """Refuse, before anything starts, members that cannot train under DDP with n ranks."""
    from kit.train.kinds import get_kind

    for name in names:
        m = cfg.members[name]
        if not getattr(get_kind(m.kind), "supports_ddp", False):
            raise KitError(
                f"--ddp: member '{name}' is kind '{m.kind}', which cannot train under DDP (it fits a small head "
                "on cached embeddings, one device is plenty); drop --ddp for it, e.g. `kit train "
                f"{name}`, or name only timm members with --ddp"
            )
        if m.batch_size % n:
            raise KitError(
                f"--ddp {n}: members.{name}.batch_size ({m.batch_size}) is the global batch and must split into "
                f"{n} equal shards; set it to a multiple of {n} (e.g. --set members.{name}.batch_size="
                f"{max(n, m.batch_size // n * n)})"
            )
        if getattr(m, "sync_bn", False):
            import torch

            if not torch.cuda.is_available() or m.device == "cpu":
                raise KitError(
                    f"members.{name}.sync_bn: torch's SyncBatchNorm runs on CUDA devices only and this run is "
                    f"on the CPU; set members.{name}.sync_bn: false (or train on GPUs)"
                )


def launch(n: int, args: list[str]) -> None:
    """Run `kit train ARGS` as n ranks under torchrun on this machine; returns when all have finished."""
    if n < 1:
        raise KitError(f"--ddp {n}: the number of processes must be at least 1 (one per device)")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]
    cmd += ["-m", "kit", "train", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    code = subprocess.run(cmd, env=env, check=False).returncode
    if code != 0:
        raise KitError(
            f"kit train --ddp {n}: a rank failed (exit code {code}); its message is above. Finished folds and "
            "epoch checkpoints are kept: fix it and run the same command again"
        )


@contextmanager
def session(cfg: KitConfig, names: list[str]) -> Iterator[Dist]:
    """The process group for this torchrun launch (nccl on CUDA, gloo on the CPU); a no-op outside one."""
    d = from_env()
    if not d.active:
        yield d
        return
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available() and any(cfg.members[n].device != "cpu" for n in names)
    if cuda:
        torch.cuda.set_device(d.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield d
    finally:
        dist.destroy_process_group()


def command(f: int | None) -> int:
    """Rank 0 sends the next fold (or STOP); every other rank receives it."""
    import torch.distributed as dist

    box = [f]
    dist.broadcast_object_list(box, src=0)
    return int(box[0])  # type: ignore[arg-type]


def train_member_ddp(
    ws: Workspace,
    name: str,
    member: MemberConfig,
    reporter: Reporter,
    d: Dist,
    folds: list[int] | None = None,
) -> Path | None:
    """`fold_loop.train_member` for one rank of a DDP launch: rank 0 leads the folds and writes everything."""
    import torch.distributed as dist

    from kit.train.fold_loop import prepare_run, train_fold, train_member

    if not d.main:
        dist.barrier()  # rank 0 decodes the image cache first
    run = prepare_run(ws, name, member, reporter if d.main else NullReporter())
    if d.main:
        dist.barrier()

    def lead(run: Any) -> list[dict[str, Any]] | None:
        from kit.train.fold_loop import run_locked_folds

        def fit(f: int) -> dict[str, Any]:
            command(f)
            return train_fold(run, f)

        infos = run_locked_folds(run.root, name, ws.folds.k, reporter, fit, folds)
        command(STOP)  # only on success: a failing rank 0 exits and torchrun stops the others
        return infos

    if d.main:
        return train_member(ws, name, member, reporter, runner=lead, prepared=run)
    while (f := command(None)) != STOP:
        run.kind.fit_predict_fold(f, run.root / f"fold{f}")
    return None
