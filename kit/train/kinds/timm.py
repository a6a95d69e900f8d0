"""`kind: timm`: any timm backbone fine-tuned end to end, one fold at a time (the fold loop: kit.train.fold_loop).

Prepare: resolve the model (name, weights, image size, preprocessing) and decode the images once into the cache
at the member's size with the model's interpolation. Per fold, in phases over a typed `FoldState`:

    build    the network, optimizer, schedule, scaler, EMA, loss, augmentation (seeded by (seed, fold))
    resume   model, optimizer, scheduler, scaler, EMA and the fold state from fold{f}/last.pt, if there
    epochs   train, score the held-out rows, keep the best epoch, stop early on patience
    save     fold{f}/best.pt when the score improves, fold{f}/last.pt after every epoch

then predict the held-out rows and the test set with best.pt under every TTA view. Random numbers are derived
from (seed, fold, epoch, batch), so a resumed fold draws exactly what an uninterrupted one would; nothing but
the epoch number needs replaying.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from kit.config.schema import TimmMember
from kit.data.cache import Geometry, Images, ImageStore, build_image_store
from kit.errors import KitError
from kit.metrics.scores import greater_is_better, score
from kit.progress import EpochEvent, Reporter, epoch_done
from kit.train.added import AddedRows, FitRows, added_rows, fit_rows
from kit.train.checkpoint import load_checkpoint, save_checkpoint
from kit.train.data import Preprocess, build_mixup, derive_seed, epoch_order, mixup_epoch, split_batches
from kit.train.device import DeviceSetup, select_device
from kit.train.dist import broadcast_value, joined
from kit.train.kinds import RESUME_FILE, Clock, FoldResult, MemberSummary, fold_lists, register_kind
from kit.train.loop import Trainee, oom_error, predict, train_one_epoch, warmup_cosine
from kit.train.losses import make_loss
from kit.train.models import ModelSpec, head_parameter_names, resolve_model
from kit.train.recipe import Averaging, Unfreezing, accumulation_batches, effective_batch, param_groups

if TYPE_CHECKING:
    from collections.abc import Iterator

    import torch
    from torch import nn

    from kit.data.table import Table
    from kit.workspace import Workspace


@dataclass
class FoldState:
    """A fold's progress, saved in last.pt beside the weights: what resuming restores."""

    epoch: int = -1  # the last finished epoch
    best: float | None = None  # the best held-out score so far
    best_epoch: int = -1
    bad: int = 0  # epochs since the best one (early stopping's patience)
    stopped: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    elapsed: float = 0.0  # training seconds over every process that worked on the fold
    average: dict[str, Any] | None = None  # the weight average that became best.pt (average: swa | top_k)

    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint entries (plain types: checkpoints are read back with weights_only)."""
        state = {
            "epoch": self.epoch,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad": self.bad,
            "stopped": self.stopped,
        }
        return {"state": state, "history": self.history, "elapsed": self.elapsed}

    @classmethod
    def from_checkpoint(cls, ck: dict[str, Any]) -> FoldState:
        return cls(**ck["state"], history=ck["history"], elapsed=ck["elapsed"])

    def record(self, epoch: int, s: float, higher: bool, patience: int | None) -> bool:
        """Epoch `epoch` scored `s`; whether it is the best so far."""
        improved = self.best is None or (s > self.best if higher else s < self.best)
        if improved:
            self.best, self.best_epoch, self.bad = s, epoch, 0
        else:
            self.bad += 1
        self.epoch = epoch
        if patience is not None and self.bad >= patience:
            self.stopped = True
        return improved

    def info(self, f: int) -> dict[str, Any]:
        return {
            "fold": f,
            "epochs": self.epoch + 1,
            "best_epoch": self.best_epoch,
            "best_score": self.best,
            "stopped_early": self.stopped,
            "train_s": self.elapsed,
            "history": self.history,
            **({"average": self.average} if self.average is not None else {}),
        }


@register_kind("timm")
@dataclass
class TimmKind:
    """A timm member prepared for its folds: the model spec, the image caches and the device."""

    trains_images: ClassVar[bool] = True
    supports_ddp: ClassVar[bool] = True  # `kit train --ddp N` (kit.train.ddp)

    ws: Workspace
    name: str
    member: TimmMember
    spec: ModelSpec
    train_cache: ImageStore  # the stored images (kit.data.cache; members.NAME.resize at spec.cache_size)
    test_cache: ImageStore | None
    setup: DeviceSetup
    reporter: Reporter
    added: AddedRows = field(default_factory=AddedRows)  # extra data and pseudo rows (kit.train.added)
    fit: FitRows | None = None  # the training index space: train rows, then the added rows
    prep: Preprocess | None = None  # built by `augment` (or prepare, before any image is decoded)

    @classmethod
    def prepare(cls, ws: Workspace, name: str, member: TimmMember, reporter: Reporter) -> TimmKind:
        from kit.config.attributes import attribute_codes

        attributes = attribute_codes(ws.cfg.competition.attributes, ws.classes)  # checked by preflight
        spec = resolve_model(name, member, len(ws.classes), attributes)

        prep = preprocess(name, member, spec)  # a bad augment declaration fails before decoding
        geometry = Geometry(member.resize, spec.cache_size)

        def images(table: Table, split: str, fingerprint: str) -> ImageStore:
            """The split decoded once at the member's geometry with the model's interpolation; one line
            (how many, what shape, the bytes on disk) is printed before decoding."""
            return build_image_store(
                table,
                geometry,
                ws.cache_dir,
                split=split,
                fingerprint=fingerprint,
                resample=spec.interpolation,
                report=reporter.line,
            )

        train_cache = images(ws.train, "train", ws.train_images_fingerprint)
        test_cache = None if ws.test is None else images(ws.test, "test", ws.test_images_fingerprint)
        setup = select_device(name, member.device, amp=member.amp, channels_last=member.channels_last)
        added = added_rows(ws, name, member)
        extra_caches = [images(e.table, f"extra{e.index}", e.images_fingerprint) for e in added.extras]
        assert ws.train.labels is not None  # train tables always carry labels
        fit = fit_rows(train_cache, ws.train.labels, added, extra_caches, test_cache, len(ws.classes))
        for line in added.lines(name, ws.classes):
            reporter.line(line)
        return cls(ws, name, member, spec, train_cache, test_cache, setup, reporter, added, fit, prep)

    @property
    def run_extra(self) -> dict[str, Any] | None:
        extra = self.added.identity()
        head = self.spec.head
        if head is not None and head.attributes is not None:  # competition.attributes shape the network
            extra = {**(extra or {}), "attributes": head.attributes.to_json()}
        return extra

    @property
    def n_classes(self) -> int:
        return len(self.ws.classes)

    @property
    def augment(self) -> Preprocess:
        """The member's train transform (built once) and its eval centre crop at img_size."""
        if self.prep is None:
            self.prep = preprocess(self.name, self.member, self.spec)
        return self.prep

    def fit_predict_fold(self, f: int, fold_dir: Path) -> FoldResult:
        import torch

        try:
            info = fit_fold(self, f, fold_dir)
            if (d := joined()) is not None and not d.main:  # rank 0 alone predicts and writes
                empty = np.zeros((0, len(self.member.tta), self.n_classes), np.float32)
                return FoldResult(info, empty, empty)
            t0 = time.perf_counter()
            oof, test = predict_fold(self, f, fold_dir)
        except torch.cuda.OutOfMemoryError:
            raise oom_error(self.name, self.member.batch_size) from None
        except FloatingPointError as e:
            raise KitError(
                f"member '{self.name}' fold {f}: training diverged ({e}); lower members.{self.name}.lr "
                f"(now {self.member.lr}) or raise members.{self.name}.warmup_epochs"
            ) from None
        info["predict_s"] = time.perf_counter() - t0
        return FoldResult(info, oof, test)

    def load_model(self, fold_dir: Path, which: str = "best") -> nn.Module:
        """The fold's saved network (`best` or `last`), on the member's device, in eval mode."""
        import torch

        state = load_checkpoint(fold_dir / f"{which}.pt")
        model = self.spec.create(with_weights=False)
        model.load_state_dict(state["model"] if which == "best" else state["eval_model"])
        model.to(self.setup.device)
        if self.setup.channels_last:
            model.to(memory_format=torch.channels_last)
        return model.eval()

    def describe(self, root: Path, infos: list[dict[str, Any]], clock: Clock) -> MemberSummary:
        m, spec = self.member, self.spec
        train_s = sum(i["train_s"] + i.get("predict_s", 0.0) for i in infos)
        return MemberSummary(
            timings={"train_s": round(train_s, 2), "this_call_s": round(clock.folds_s, 2)},
            extra={
                "run": {
                    "hash": root.name,
                    "dir": str(root),
                    "device": str(self.setup.device),
                    **fold_lists(infos, ("epochs", "best_epoch", "best_score", "stopped_early")),
                    "train_rows": [i.get("train_rows") for i in infos],
                },
                "preprocess": {
                    "img_size": m.img_size,
                    "mean": list(spec.mean),
                    "std": list(spec.std),
                    "interpolation": spec.interpolation,
                    "resize": m.resize,  # stored at cache_size (kit.data.cache.Geometry), centre crop img_size
                    "cache_size": spec.cache_size,
                    "crop_pct": spec.crop_pct,
                    "model_crop_mode": spec.crop_mode,  # timm's, for comparison with resize
                    "model_kwargs": {k: v for k, v in spec.kwargs.items()},
                },
                **({"head": spec.head.to_json()} if spec.head is not None else {}),
                **self.added.meta(self.ws.classes),
            },
        )


def preprocess(name: str, member: TimmMember, spec: ModelSpec) -> Preprocess:
    """The member's input pipeline: TrainTransform (kit.train.transforms) and eval crops at img_size."""
    from kit.train.transforms import build_train_transform

    transform = build_train_transform(
        member.augment,
        member.img_size,
        spec.mean,
        spec.std,
        spec.interpolation,
        key=f"members.{name}.augment",
    )
    return Preprocess(tuple(spec.mean), tuple(spec.std), member.img_size, transform)


# ---------------------------------------------------------------- one fold, in phases


@dataclass
class FoldTraining:
    """What the epochs of one fold work with (built from the member config, seeded by (seed, fold))."""

    trainee: Trainee
    head: set[str]  # the classifier's parameter names (trained alone while frozen)
    train_idx: np.ndarray
    valid_idx: np.ndarray
    drop_last: bool  # of the optimizer batches (batch_size x accumulate rows)
    unfreezing: Unfreezing  # which parameters train at each epoch (freeze_epochs, unfreeze)
    averaging: Averaging | None = None  # the fold's weight average (average: swa | top_k)


def build(kind: TimmKind, f: int) -> FoldTraining:
    """The network with its starting weights, AdamW, warmup + cosine, the grad scaler, EMA, loss and mixup."""
    import torch
    from torch.optim.lr_scheduler import LambdaLR

    m, ws, setup = kind.member, kind.ws, kind.setup
    train_idx, valid_idx = ws.folds.train_idx(f), ws.folds.valid_idx(f)
    y = ws.train.labels
    if kind.fit is not None:  # added rows train in every fold, never validate (kit.train.added)
        train_idx, y = np.concatenate([train_idx, kind.fit.added_idx]), kind.fit.labels
    assert y is not None  # train tables always carry labels

    torch.manual_seed(derive_seed(m.seed, f))
    model = kind.spec.create().to(setup.device)
    if setup.channels_last:
        model.to(memory_format=torch.channels_last)
    if (d := joined()) is not None and m.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    head = head_parameter_names(model)
    # each group carries its own lr (layer_decay, head_lr): LambdaLR scales every group's initial lr
    optimizer = torch.optim.AdamW(param_groups(model, m, head), lr=m.lr)
    batch = effective_batch(m)  # rows per optimizer step: the schedule counts these steps
    drop_last = len(train_idx) > batch
    steps = len(train_idx) // batch if drop_last else 1
    warmup = round(m.warmup_epochs * steps)
    total = steps * m.epochs
    scheduler = LambdaLR(optimizer, lambda s: warmup_cosine(s, warmup, total))
    scaler = torch.amp.GradScaler(setup.device.type, enabled=setup.needs_scaler)
    ema = None
    if m.ema is not None:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=m.ema)
    trainee = Trainee(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        loss_fn=make_loss(m.loss, y[train_idx], kind.n_classes),
        augment=kind.augment,
        setup=setup,
        grad_clip=m.grad_clip,
        ema=ema,
        mixup=build_mixup(m.augment, kind.n_classes),
        accumulate=m.accumulate,
    )
    unfreezing = Unfreezing.of(model, head, m)
    if d is not None:
        from torch.nn.parallel import DistributedDataParallel

        # frozen epochs leave the backbone without gradients: DDP must not wait for them
        trainee.ddp = DistributedDataParallel(model, find_unused_parameters=unfreezing.leaves_unused)
    if m.compile:  # the training forward only; checkpoints and evaluation use the plain module
        trainee.compiled = torch.compile(trainee.ddp if trainee.ddp is not None else model)
    averaging = Averaging.of(m, model, greater_is_better(ws.cfg.competition.scored_by))
    return FoldTraining(trainee, head, train_idx, valid_idx, drop_last, unfreezing, averaging)


def resume(kind: TimmKind, f: int, fold_dir: Path, ft: FoldTraining) -> FoldState:
    """The state of an interrupted fold from its last.pt (weights, optimizer, schedule, scaler, EMA), else
    a fresh one."""
    last = fold_dir / RESUME_FILE
    if not last.exists():
        return FoldState()
    t = ft.trainee
    ck = load_checkpoint(last)
    t.model.load_state_dict(ck["model"])
    t.optimizer.load_state_dict(ck["optimizer"])
    t.scheduler.load_state_dict(ck["scheduler"])
    t.scaler.load_state_dict(ck["scaler"])
    if t.ema is not None:
        t.ema.module.load_state_dict(ck["eval_model"])
    if ft.averaging is not None:
        ft.averaging.restore(ck["average"])
    state = FoldState.from_checkpoint(ck)
    kind.reporter.line(f"{kind.name} fold {f}: resuming after epoch {state.epoch + 1}/{kind.member.epochs}")
    return state


def run_epochs(kind: TimmKind, f: int, fold_dir: Path, ft: FoldTraining, state: FoldState) -> None:
    """The remaining epochs of fold f: train, score the held-out rows, save (best.pt, last.pt), report."""
    import torch

    m, ws, t = kind.member, kind.ws, ft.trainee
    y = ws.train.labels if kind.fit is None else kind.fit.labels
    assert y is not None
    y_train, y_valid = y[ft.train_idx], y[ft.valid_idx]
    metric = ws.cfg.competition.scored_by
    higher = greater_is_better(metric)
    start_epoch = state.epoch + 1
    d = joined()
    main = d is None or d.main
    with kind.reporter.task(f"{kind.name} fold {f} epochs", total=m.epochs) as epochs_task:
        epochs_task.advance(start_epoch)
        for epoch in range(start_epoch, m.epochs):
            if state.stopped:
                break
            t0 = time.perf_counter()
            ft.unfreezing.apply(t.model, epoch)
            mixup_epoch(t.mixup, m.augment, epoch)
            torch.manual_seed(derive_seed(m.seed, f, epoch, 1))  # dropout, drop_path
            order = epoch_order(y_train, m.sampler, derive_seed(m.seed, f, epoch, 2), kind.n_classes)
            batches = split_batches(ft.train_idx[order], effective_batch(m), drop_last=ft.drop_last)
            rows = accumulation_batches(batches, m.accumulate)  # micro-batches of batch_size
            stats = train_one_epoch(
                t,
                kind.train_cache if kind.fit is None else kind.fit.cache,
                rows,
                y if kind.fit is None else kind.fit.targets,
                derive_seed(m.seed, f, epoch, 3),
                kind.reporter,
                label=f"epoch {epoch + 1} batches",
                num_workers=m.num_workers,
                shard=d,
                weights=None if kind.fit is None else kind.fit.weights,
            )
            s = float("nan")
            if main:  # under DDP rank 0 scores the held-out rows alone and tells the others
                logits = predict(
                    t.eval_model,
                    kind.train_cache,
                    ft.valid_idx,
                    ["plain"],
                    t.augment,
                    kind.setup,
                    m.batch_size * 2,
                    num_workers=m.num_workers,
                )[:, 0]
                s = score(metric, y_valid, logits)
            if d is not None:
                s = broadcast_value(s)
            improved = state.record(epoch, s, higher, m.early_stopping)
            if improved and main:
                save_best(fold_dir, t, epoch, s)
            if ft.averaging is not None:
                ft.averaging.after_epoch(epoch, s, t.model, t.eval_model)
            lr = max(g["lr"] / g.get("lr_scale", 1.0) for g in t.optimizer.param_groups)  # the schedule's lr
            state.elapsed += time.perf_counter() - t0
            state.history.append(
                {"epoch": epoch, "loss": stats.loss, "score": s, "lr": lr, "images_per_s": stats.images_per_s}
            )
            if main:
                save_last(fold_dir, t, state, ft.averaging)
            epoch_done(
                kind.reporter, EpochEvent(kind.name, f, epoch, stats.loss, s, metric, lr, stats.images_per_s)
            )
            kind.reporter.line(
                f"{kind.name} fold {f} epoch {epoch + 1}/{m.epochs}: loss {stats.loss:.4f}  {metric} {s:.4f}"
                f"{' *' if improved else '  '}  lr {lr:.2e}  {stats.images_per_s:.0f} img/s"
                + ("  (early stop)" if state.stopped else "")
            )
            epochs_task.advance()


def save_best(fold_dir: Path, t: Trainee, epoch: int, s: float) -> None:
    """best.pt: the evaluated weights (EMA's when set) of the best epoch so far."""
    save_checkpoint(fold_dir / "best.pt", {"model": t.eval_model.state_dict(), "epoch": epoch, "score": s})


def save_last(fold_dir: Path, t: Trainee, state: FoldState, averaging: Averaging | None = None) -> None:
    """last.pt: everything an interrupted fold resumes from (the weight average so far included)."""
    import torch

    save_checkpoint(
        fold_dir / RESUME_FILE,
        {
            "model": t.model.state_dict(),
            "eval_model": t.eval_model.state_dict(),
            "optimizer": t.optimizer.state_dict(),
            "scheduler": t.scheduler.state_dict(),
            "scaler": t.scaler.state_dict(),
            **state.checkpoint(),
            **({"average": averaging.checkpoint()} if averaging is not None else {}),
            "torch_rng": torch.get_rng_state(),  # informational: every epoch reseeds
        },
    )


def fit_fold(kind: TimmKind, f: int, fold_dir: Path) -> dict[str, Any]:
    """Train fold f from scratch or from its last epoch checkpoint; returns the fold's info."""
    ft = build(kind, f)
    state = resume(kind, f, fold_dir, ft)
    run_epochs(kind, f, fold_dir, ft, state)
    save_average(kind, f, fold_dir, ft, state)
    return {**state.info(f), "train_rows": len(ft.train_idx)}  # labelled rows of the fold + added rows


def save_average(kind: TimmKind, f: int, fold_dir: Path, ft: FoldTraining, state: FoldState) -> None:
    """average: swa | top_k: the averaged weights become best.pt (what OOF, test and `kit predict` use),
    scored on the held-out rows; state.average records which epochs and the score. Recomputed from last.pt's
    averaging state when a fold is resumed after its last epoch."""
    import torch

    a, m, t = ft.averaging, kind.member, ft.trainee
    d = joined()
    if a is None or (d is not None and not d.main):  # rank 0 alone writes best.pt
        return
    cache = kind.train_cache if kind.fit is None else kind.fit.cache
    torch.manual_seed(derive_seed(m.seed, f, m.epochs, 4))  # dropout while update_bn runs the network
    model = a.averaged(t.eval_model, _bn_batches(kind, cache, ft.train_idx))
    if model is None:
        state.average = {
            "kind": a.kind,
            "epochs": [],
            "note": "no epoch reached swa_start: best.pt is the best epoch",
        }
        return
    logits = predict(
        model, kind.train_cache, ft.valid_idx, ["plain"], t.augment, kind.setup, m.batch_size * 2
    )
    y = kind.ws.train.labels
    assert y is not None
    s = score(kind.ws.cfg.competition.scored_by, y[ft.valid_idx], logits[:, 0])
    state.average = {"kind": a.kind, "epochs": a.epochs, "score": s, "best_epoch_score": state.best}
    save_checkpoint(
        fold_dir / "best.pt", {"model": model.state_dict(), "epoch": state.best_epoch, "score": s}
    )
    kind.reporter.line(
        f"{kind.name} fold {f}: {a.kind} of epochs {[e + 1 for e in a.epochs]}: "
        f"{kind.ws.cfg.competition.scored_by} {s:.4f} (best epoch {state.best:.4f}) -> best.pt"
    )


def _bn_batches(kind: TimmKind, cache: Images, idx: np.ndarray) -> Iterator[torch.Tensor]:
    """The training rows in order, as evaluated (centre crops, no augmentation): what SWA's BatchNorm
    statistics see."""
    import torch

    from kit.train.data import EvalBatches, iterate

    bs, setup, aug = kind.member.batch_size * 2, kind.setup, kind.augment
    rows = np.array_split(idx, -(-len(idx) // bs))  # equal batches: BatchNorm cannot take a batch of one
    data = EvalBatches(cache, rows, aug.size)
    for xb, _ in iterate(data, num_workers=kind.member.num_workers, pin_memory=setup.pin_memory):
        x = aug.normalize(xb.to(setup.device, non_blocking=setup.pin_memory))
        yield x.contiguous(memory_format=torch.channels_last) if setup.channels_last else x


def predict_fold(kind: TimmKind, f: int, fold_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Logits of best.pt under every view: [n_valid, V, C] on the held-out rows, [n_test, V, C] on the test set."""
    m = kind.member
    model = kind.load_model(fold_dir)
    bs = m.batch_size * 2
    oof = predict(
        model,
        kind.train_cache,
        kind.ws.folds.valid_idx(f),
        m.tta,
        kind.augment,
        kind.setup,
        bs,
        kind.reporter,
        f"fold {f} OOF x{len(m.tta)} views",
        m.num_workers,
    )
    if kind.test_cache is None:
        return oof, np.zeros((0, len(m.tta), kind.n_classes), dtype=np.float32)
    test = predict(
        model,
        kind.test_cache,
        np.arange(len(kind.test_cache)),
        m.tta,
        kind.augment,
        kind.setup,
        bs,
        kind.reporter,
        f"fold {f} test x{len(m.tta)} views",
        m.num_workers,
    )
    return oof, test
