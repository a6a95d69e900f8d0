"""`kind: clip_probe`: a frozen open_clip image encoder and a linear head trained per fold on cached embeddings.

1. Embeddings of every train and test image under every TTA view come from the embedding cache
   (kit.train.embeddings), computed once per (data, weights, image size, view).
2. Optional zero-shot init: the head starts as CLIP's text classifier for `prompt` and `class_names`.
3. Per fold, the head is trained on the other folds' embeddings (kit's losses and weighted sampler) and the
   epoch with the best competition metric on the fold's validation rows is kept.
4. OOF logits come from the fold head that never saw the row; test logits are the mean of the k fold heads.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts.atomic import atomic_save_npy
from kit.artifacts.member import write_member
from kit.config.schema import ClipProbeMember
from kit.data.workspace import Workspace
from kit.errors import KitError
from kit.train.device import select_device
from kit.train.embeddings import ClipSource, EmbeddingCache
from kit.train.fold_loop import member_lock, open_run, run_locked_folds
from kit.train.linear_head import LinearHead, fit_linear_head, zero_shot_head
from kit.train.losses import warn_stacked_rebalancers
from kit.train.progress import NullReporter, Reporter
from kit.train.registry import register_trainer
from kit.train.summary import member_metrics


def clip_source(name: str, member: ClipProbeMember, base: Path | None = None) -> ClipSource:
    """The member's model reference with absolute paths.

    `kit.config.load.load_config` already resolves relative `local-dir:` and cache_dir paths against the
    kit.yaml's folder; for a config built in code they resolve against `base` (default: the current
    directory, which is what open_clip itself would use).
    """
    m = member.with_base(base or Path.cwd())
    return ClipSource(
        member=name, model=m.model, pretrained=m.pretrained, cache_dir=m.cache_dir, img_size=m.img_size
    )


def prompt_names(name: str, member: ClipProbeMember, classes: list[str]) -> list[str]:
    """The words put into the prompt for each class: class_names[label], else the label itself."""
    mapping = member.class_names or {}
    unknown = sorted(set(mapping) - set(classes))
    if unknown:
        raise KitError(
            f"members.{name}.class_names: {unknown} are not classes of this competition; "
            f"the classes are {classes[:20]}{' ...' if len(classes) > 20 else ''}"
        )
    return [mapping.get(c, c.replace("_", " ")) for c in classes]


def fit_member_head(
    member: ClipProbeMember,
    x_tr: np.ndarray,
    y_tr: np.ndarray,
    x_va: np.ndarray,
    y_va: np.ndarray,
    n_classes: int,
    metric: str,
    init: LinearHead | None,
    seed: int,
    device: str,
) -> LinearHead:
    """One fold's head on embeddings, with the member's loss, sampler and optimiser settings."""
    return fit_linear_head(
        x_tr,
        y_tr,
        x_va,
        y_va,
        n_classes=n_classes,
        loss=member.loss,
        sampler=member.sampler,
        metric=metric,
        epochs=member.epochs,
        batch_size=member.batch_size,
        lr=member.lr,
        weight_decay=member.weight_decay,
        patience=member.early_stopping,
        init=init,
        seed=seed,
        device=device,
    )


@register_trainer("clip_probe")
def train_clip_probe(
    ws: Workspace, name: str, member: ClipProbeMember, reporter: Reporter | None = None
) -> Path | None:
    """Train the probe over every fold this process can take (kit.train.fold_loop) and write its member
    artifacts; returns their folder, or None while other processes still train some folds."""
    t0 = time.perf_counter()
    reporter = reporter or NullReporter()
    classes, views = ws.classes, list(member.tta)
    n_classes = len(classes)
    y = np.asarray(ws.train.labels)
    metric = ws.cfg.competition.metric
    warn_stacked_rebalancers(name, member.loss, member.sampler)
    device = select_device(name, member.device, amp=False).device.type
    src = clip_source(name, member)
    names = prompt_names(name, member, classes) if member.prompt is not None else []
    cache = EmbeddingCache(src, ws.cache_dir, device=device, batch_size=min(member.batch_size, 256))

    train_emb = cache.images(ws.train, "train", ws.train_images_fingerprint, views, reporter)
    if ws.test is not None:
        test_emb = cache.images(ws.test, "test", ws.test_images_fingerprint, views, reporter)
    else:
        test_emb = np.zeros((0, len(views), train_emb.shape[-1]), np.float32)
    init: LinearHead | None = None
    if member.prompt is not None:
        text_w, scale = cache.text(names, member.prompt)
        init = zero_shot_head(text_w, scale)
    t_embed = time.perf_counter() - t0

    root = open_run(ws, name, member, extra={"encoder": cache.key})
    k = ws.folds.k

    def fit_fold(f: int) -> dict[str, Any]:
        tr, va = ws.folds.train_idx(f), ws.folds.valid_idx(f)
        x_tr = train_emb[tr] if member.train_views else train_emb[tr, :1]
        y_tr = np.repeat(y[tr], x_tr.shape[1])
        x_tr = x_tr.reshape(-1, x_tr.shape[-1])
        if member.epochs == 0:
            assert init is not None  # the config requires prompt with epochs 0
            head = init
        else:
            head = fit_member_head(
                member, x_tr, y_tr, train_emb[va], y[va], n_classes, metric, init, member.seed + f, device
            )
        d = root / f"fold{f}"
        atomic_save_npy(d / "oof.npy", head.logits(train_emb[va]).astype(np.float32))
        atomic_save_npy(d / "test.npy", head.logits(test_emb).astype(np.float32))
        ran = len(head.history) - (1 if init is not None else 0)
        reporter.line(f"{name} fold {f}: best epoch {head.best_epoch}, {metric} {head.best_score:.4f}")
        return {"epochs": ran, "best_epoch": int(head.best_epoch), "best_score": float(head.best_score)}

    fold_info = run_locked_folds(root, name, k, reporter, fit_fold)
    if fold_info is None:
        return None
    oof = np.zeros((len(y), len(views), n_classes), np.float32)
    test = np.zeros((len(test_emb), len(views), n_classes), np.float32)
    for f in range(k):
        oof[ws.folds.valid_idx(f)] = np.load(root / f"fold{f}" / "oof.npy")
        test += np.load(root / f"fold{f}" / "test.npy") / k

    metrics = member_metrics(y, oof, ws.folds.fold, views, classes, metric)
    timings = {
        "train_s": round(time.perf_counter() - t0, 3),
        "embed_s": round(t_embed, 3),
        "heads_s": round(time.perf_counter() - t0 - t_embed, 3),
    }
    with member_lock(ws, name):
        out = write_member(
            ws.workdir,
            name,
            oof=oof,
            test=test,
            views=views,
            classes=classes,
            **ws.member_fingerprints(),
            config={
                "member": {"name": name, **member.model_dump(mode="json")},
                "competition": ws.cfg.competition.model_dump(mode="json"),
                "folds": ws.cfg.folds.model_dump(mode="json"),
            },
            metrics=metrics,
            timings=timings,
            extra={
                "kind": "clip_probe",
                "run": {
                    "device": device,
                    "hash": root.name,
                    **{key: [i[key] for i in fold_info] for key in ("epochs", "best_epoch", "best_score")},
                },
                "encoder": {"model": src.model, "pretrained": src.pretrained, "key": cache.key},
                "preprocess": {
                    k: cache.preprocess().get(k)
                    for k in ("size", "mean", "std", "interpolation", "resize_mode")
                },
                "zero_shot_init": member.prompt is not None,
                "embeddings_computed": list(cache.computed),
            },
        )
    pooled = metrics["pooled"][metric]
    reporter.line(
        f"{name}: OOF {metric} {pooled:.4f} ({len(cache.computed)} embedding file(s) computed, "
        f"{timings['train_s']:.1f} s) -> {out}"
    )
    return out
