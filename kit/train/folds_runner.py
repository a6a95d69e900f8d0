"""The fold loop of a fine-tuned member: train each fold (resuming an interrupted one), predict its held-out
rows and the test set with every TTA view, and assemble the member artifacts.

Layout of a run (one per member config + metric + folds + data content; a changed config starts a new run;
locks and done markers: kit.train.fold_loop):

    workdir/runs/NAME/HASH/
        run.json                 the member config the hash was taken over
        fold{f}.lock             held while a process trains fold f
        fold{f}/last.pt          end-of-epoch state: model, optimizer, scheduler, scaler, EMA, history
        fold{f}/best.pt          the weights with the best validation score (EMA weights when ema is set)
        fold{f}/oof.npy          [n_valid, V, C] logits of best.pt on the fold's held-out rows
        fold{f}/test.npy         [n_test, V, C] logits of best.pt on the test set
        fold{f}/done.json        written last: the fold is finished and never retrained

Random numbers are derived from (seed, fold, epoch, batch), so a resumed fold draws exactly what an
uninterrupted one would; nothing but the epoch number needs replaying.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.artifacts.atomic import atomic_save_npy
from kit.artifacts.member import write_member
from kit.config.schema import TimmMember
from kit.errors import KitError
from kit.metrics.scores import greater_is_better, score
from kit.train.checkpoint import load_checkpoint, save_checkpoint
from kit.train.data import BatchAugment, build_mixup, derive_seed, epoch_order, split_batches
from kit.train.device import DeviceSetup, select_device
from kit.train.fold_loop import member_lock, open_run, run_hash, run_locked_folds, runs_root
from kit.train.loop import Trainee, oom_error, predict, train_one_epoch, warmup_cosine
from kit.train.losses import KitLoss, warn_stacked_rebalancers
from kit.train.models import ModelSpec, head_parameter_names
from kit.train.progress import Reporter
from kit.train.summary import member_metrics

if TYPE_CHECKING:
    from torch import nn

    from kit.data.workspace import Workspace


def run_dir(ws: Workspace, name: str, member: TimmMember) -> Path:
    return runs_root(ws, name) / run_hash(ws, member)


@dataclass
class FoldContext:
    ws: Workspace
    name: str
    member: TimmMember
    spec: ModelSpec
    train_cache: np.ndarray
    test_cache: np.ndarray | None
    setup: DeviceSetup
    root: Path
    reporter: Reporter

    @property
    def n_classes(self) -> int:
        return len(self.ws.classes)

    @property
    def augment(self) -> BatchAugment:
        return BatchAugment(self.member.augment, self.spec.mean, self.spec.std)

    def fold_dir(self, f: int) -> Path:
        return self.root / f"fold{f}"


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[Any] = []
    no_decay: list[Any] = []
    for _, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _set_frozen(model: nn.Module, head: set[str], frozen: bool) -> None:
    for n, p in model.named_parameters():
        p.requires_grad_(not frozen or n in head)


def load_fold_model(ctx: FoldContext, f: int, which: str = "best") -> nn.Module:
    """The fold's saved network (`best` or `last`), on the member's device, in eval mode."""
    import torch

    state = load_checkpoint(ctx.fold_dir(f) / f"{which}.pt")
    model = ctx.spec.create(with_weights=False)
    model.load_state_dict(state["model"] if which == "best" else state["eval_model"])
    model.to(ctx.setup.device)
    if ctx.setup.channels_last:
        model.to(memory_format=torch.channels_last)
    return model.eval()


def fit_fold(ctx: FoldContext, f: int) -> dict[str, Any]:
    """Train fold f from scratch or from its last epoch checkpoint; returns the fold's info."""
    import torch
    from torch.optim.lr_scheduler import LambdaLR

    m, ws, setup = ctx.member, ctx.ws, ctx.setup
    d = ctx.fold_dir(f)
    train_idx, valid_idx = ws.folds.train_idx(f), ws.folds.valid_idx(f)
    y = ws.train.labels
    assert y is not None  # train tables always carry labels
    y_train, y_valid = y[train_idx], y[valid_idx]
    counts = np.bincount(y_train, minlength=ctx.n_classes)
    metric = ws.cfg.competition.metric
    higher = greater_is_better(metric)

    torch.manual_seed(derive_seed(m.seed, f))
    model = ctx.spec.create().to(setup.device)
    if setup.channels_last:
        model.to(memory_format=torch.channels_last)
    head = head_parameter_names(model)
    optimizer = torch.optim.AdamW(_param_groups(model, m.weight_decay), lr=m.lr)
    drop_last = len(train_idx) > m.batch_size
    steps = len(train_idx) // m.batch_size if drop_last else 1
    warmup = round(m.warmup_epochs * steps)
    total = steps * m.epochs
    scheduler = LambdaLR(optimizer, lambda s: warmup_cosine(s, warmup, total))
    scaler = torch.amp.GradScaler(setup.device.type, enabled=setup.needs_scaler)
    ema = None
    if m.ema is not None:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=m.ema)
    t = Trainee(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        loss_fn=KitLoss(m.loss, counts),
        augment=ctx.augment,
        setup=setup,
        grad_clip=m.grad_clip,
        ema=ema,
        mixup=build_mixup(m.augment, ctx.n_classes),
    )

    state: dict[str, Any] = {"epoch": -1, "best": None, "best_epoch": -1, "bad": 0, "stopped": False}
    history: list[dict[str, float]] = []
    elapsed = 0.0
    last = d / "last.pt"
    if last.exists():
        ck = load_checkpoint(last)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        if ema is not None:
            ema.module.load_state_dict(ck["eval_model"])
        state, history, elapsed = ck["state"], ck["history"], ck["elapsed"]
        ctx.reporter.line(f"{ctx.name} fold {f}: resuming after epoch {state['epoch'] + 1}/{m.epochs}")

    start_epoch = state["epoch"] + 1
    with ctx.reporter.task(f"{ctx.name} fold {f} epochs", total=m.epochs) as epochs_task:
        epochs_task.advance(start_epoch)
        for epoch in range(start_epoch, m.epochs):
            if state["stopped"]:
                break
            t0 = time.perf_counter()
            _set_frozen(model, head, epoch < m.freeze_epochs)
            torch.manual_seed(derive_seed(m.seed, f, epoch, 1))  # dropout, drop_path
            order = epoch_order(y_train, m.sampler, derive_seed(m.seed, f, epoch, 2), ctx.n_classes)
            rows = split_batches(train_idx[order], m.batch_size, drop_last=drop_last)
            stats = train_one_epoch(
                t,
                ctx.train_cache,
                rows,
                y,
                derive_seed(m.seed, f, epoch, 3),
                ctx.reporter,
                label=f"epoch {epoch + 1} batches",
                num_workers=m.num_workers,
            )
            logits = predict(
                t.eval_model,
                ctx.train_cache,
                valid_idx,
                ["plain"],
                t.augment,
                setup,
                m.batch_size * 2,
                num_workers=m.num_workers,
            )[:, 0]
            s = score(metric, y_valid, logits)
            improved = state["best"] is None or (s > state["best"] if higher else s < state["best"])
            if improved:
                state.update(best=s, best_epoch=epoch, bad=0)
                save_checkpoint(
                    d / "best.pt", {"model": t.eval_model.state_dict(), "epoch": epoch, "score": s}
                )
            else:
                state["bad"] += 1
            state["epoch"] = epoch
            if m.early_stopping is not None and state["bad"] >= m.early_stopping:
                state["stopped"] = True
            lr = optimizer.param_groups[0]["lr"]
            elapsed += time.perf_counter() - t0
            history.append(
                {"epoch": epoch, "loss": stats.loss, "score": s, "lr": lr, "images_per_s": stats.images_per_s}
            )
            save_checkpoint(
                last,
                {
                    "model": model.state_dict(),
                    "eval_model": t.eval_model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "state": state,
                    "history": history,
                    "elapsed": elapsed,
                    "torch_rng": torch.get_rng_state(),  # informational: every epoch reseeds
                },
            )
            ctx.reporter.line(
                f"{ctx.name} fold {f} epoch {epoch + 1}/{m.epochs}: loss {stats.loss:.4f}  {metric} {s:.4f}"
                f"{' *' if improved else '  '}  lr {lr:.2e}  {stats.images_per_s:.0f} img/s"
                + ("  (early stop)" if state["stopped"] else "")
            )
            epochs_task.advance()
    return {
        "fold": f,
        "epochs": state["epoch"] + 1,
        "best_epoch": state["best_epoch"],
        "best_score": state["best"],
        "stopped_early": state["stopped"],
        "train_s": elapsed,
        "history": history,
    }


def finish_fold(ctx: FoldContext, f: int, info: dict[str, Any]) -> None:
    """Predict held-out rows and the test set with the best checkpoint and every view (the fold loop then
    marks the fold done)."""
    m, d = ctx.member, ctx.fold_dir(f)
    t0 = time.perf_counter()
    model = load_fold_model(ctx, f)
    valid_idx = ctx.ws.folds.valid_idx(f)
    bs = m.batch_size * 2
    oof = predict(
        model,
        ctx.train_cache,
        valid_idx,
        m.tta,
        ctx.augment,
        ctx.setup,
        bs,
        ctx.reporter,
        f"fold {f} OOF x{len(m.tta)} views",
        m.num_workers,
    )
    if ctx.test_cache is not None:
        test = predict(
            model,
            ctx.test_cache,
            np.arange(len(ctx.test_cache)),
            m.tta,
            ctx.augment,
            ctx.setup,
            bs,
            ctx.reporter,
            f"fold {f} test x{len(m.tta)} views",
            m.num_workers,
        )
    else:
        test = np.zeros((0, len(m.tta), ctx.n_classes), dtype=np.float32)
    atomic_save_npy(d / "oof.npy", oof)
    atomic_save_npy(d / "test.npy", test)
    info["predict_s"] = time.perf_counter() - t0


def run_folds(
    ws: Workspace,
    name: str,
    member: TimmMember,
    spec: ModelSpec,
    train_cache: np.ndarray,
    test_cache: np.ndarray | None,
    reporter: Reporter,
) -> Path | None:
    """Train the folds this process can take; the member's folder, or None while other processes still
    train some folds (the last one to finish writes the artifacts)."""
    import torch

    warn_stacked_rebalancers(name, member.loss, member.sampler)
    setup = select_device(name, member.device, amp=member.amp, channels_last=member.channels_last)
    root = open_run(ws, name, member)
    ctx = FoldContext(ws, name, member, spec, train_cache, test_cache, setup, root, reporter)
    start = time.perf_counter()

    def fold(f: int) -> dict[str, Any]:
        try:
            info = fit_fold(ctx, f)
            finish_fold(ctx, f, info)
        except torch.cuda.OutOfMemoryError:
            raise oom_error(name, member.batch_size) from None
        except FloatingPointError as e:
            raise KitError(
                f"member '{name}' fold {f}: training diverged ({e}); lower members.{name}.lr "
                f"(now {member.lr}) or raise members.{name}.warmup_epochs"
            ) from None
        return info

    def drop_last_pt(f: int) -> None:
        (ctx.fold_dir(f) / "last.pt").unlink(missing_ok=True)  # optimizer state is not needed once done

    infos = run_locked_folds(root, name, ws.folds.k, reporter, fold, drop_last_pt)
    if infos is None:
        return None
    with member_lock(ws, name):
        return assemble(ctx, infos, time.perf_counter() - start)


def assemble(ctx: FoldContext, infos: list[dict[str, Any]], wall_s: float) -> Path:
    ws, m = ctx.ws, ctx.member
    views, n_classes = list(m.tta), ctx.n_classes
    oof = np.full((len(ws.train), len(views), n_classes), np.nan, dtype=np.float32)
    tests = []
    for f in range(ws.folds.k):
        oof[ws.folds.valid_idx(f)] = np.load(ctx.fold_dir(f) / "oof.npy")
        tests.append(np.load(ctx.fold_dir(f) / "test.npy"))
    test = np.mean(tests, axis=0).astype(np.float32)
    y = ws.train.labels
    assert y is not None
    metrics = member_metrics(y, oof, ws.folds.fold, views, ws.classes, ws.cfg.competition.metric)
    train_s = sum(i["train_s"] + i.get("predict_s", 0.0) for i in infos)
    path = write_member(
        ws.workdir,
        ctx.name,
        oof=oof,
        test=test,
        views=views,
        classes=ws.classes,
        **ws.member_fingerprints(),
        config={
            "member": {"name": ctx.name, **m.model_dump(mode="json")},
            "competition": ws.cfg.competition.model_dump(mode="json"),
            "folds": ws.cfg.folds.model_dump(mode="json"),
        },
        metrics=metrics,
        timings={"train_s": round(train_s, 2), "this_call_s": round(wall_s, 2)},
        extra={
            "kind": "timm",
            "run": {
                "hash": ctx.root.name,
                "dir": str(ctx.root),
                "device": str(ctx.setup.device),
                "epochs": [i["epochs"] for i in infos],
                "best_epoch": [i["best_epoch"] for i in infos],
                "best_score": [i["best_score"] for i in infos],
                "stopped_early": [i["stopped_early"] for i in infos],
            },
            "preprocess": {
                "img_size": m.img_size,
                "mean": list(ctx.spec.mean),
                "std": list(ctx.spec.std),
                "interpolation": ctx.spec.interpolation,
                "model_kwargs": {k: v for k, v in ctx.spec.kwargs.items()},
            },
        },
    )
    return path
