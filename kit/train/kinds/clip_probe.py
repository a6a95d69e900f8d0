"""`kind: clip_probe`: a frozen open_clip image encoder and a linear head trained per fold on cached embeddings.

1. Prepare: embeddings of every train and test image under every TTA view come from the embedding cache
   (kit.train.embeddings), computed once per (data, weights, image size, view).
2. Optional zero-shot init: the head starts as CLIP's text classifier for `prompt` and `class_names`.
3. Per fold, the head is trained on the other folds' embeddings (kit's losses and weighted sampler) and the
   epoch with the best competition metric on the fold's validation rows is kept.
4. OOF logits come from the fold head that never saw the row; test logits are the mean of the k fold heads
   (the fold loop, kit.train.fold_loop, assembles them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from kit.config.schema import ClipProbeMember
from kit.errors import KitError
from kit.progress import Reporter
from kit.train.added import AddedRows, added_rows
from kit.train.clip_model import ClipSource
from kit.train.device import select_device
from kit.train.embeddings import EmbeddingCache
from kit.train.kinds import Clock, FoldResult, MemberSummary, fold_lists, register_kind
from kit.train.linear_head import LinearHead, fit_linear_head, zero_shot_head

if TYPE_CHECKING:
    from kit.workspace import Workspace


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
    targets: np.ndarray | None = None,
    row_weight: np.ndarray | None = None,
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
        targets=targets,
        row_weight=row_weight,
    )


HEAD_FILE = "head.npz"  # a fold's head (weight [C, D], bias [C]): what `kit predict` runs on new images


def save_head(fold_dir: Path, head: LinearHead) -> None:
    from kit.artifacts.atomic import atomic_file

    with atomic_file(fold_dir / HEAD_FILE) as tmp, tmp.open("wb") as f:
        np.savez(f, weight=head.weight, bias=head.bias)


@register_kind("clip_probe")
@dataclass
class ClipProbeKind:
    """A probe prepared for its folds: the embeddings of every image under every view, the zero-shot init."""

    trains_images: ClassVar[bool] = False  # a head on embeddings

    ws: Workspace
    name: str
    member: ClipProbeMember
    reporter: Reporter
    device: str
    src: ClipSource
    cache: EmbeddingCache
    train_emb: np.ndarray  # [n_train, V, D]
    test_emb: np.ndarray  # [n_test, V, D]
    init: LinearHead | None
    added: AddedRows = field(default_factory=AddedRows)  # extra data and pseudo rows (kit.train.added)
    added_emb: np.ndarray | None = None  # [m, V, D]: extra images, then pseudo rows (test embeddings)

    @classmethod
    def prepare(cls, ws: Workspace, name: str, member: ClipProbeMember, reporter: Reporter) -> ClipProbeKind:
        views = list(member.tta)
        device = select_device(name, member.device, amp=False).device.type
        src = clip_source(name, member)
        names = prompt_names(name, member, ws.classes) if member.prompt is not None else []
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
        added = added_rows(ws, name, member)
        parts = [
            cache.images(e.table, f"extra{e.index}", e.images_fingerprint, views, reporter)
            for e in added.extras
        ]
        if added.pseudo is not None:
            parts.append(test_emb[added.pseudo.test_idx])
        added_emb = np.concatenate(parts) if parts else None
        for line in added.lines(name, ws.classes):
            reporter.line(line)
        return cls(
            ws, name, member, reporter, device, src, cache, train_emb, test_emb, init, added, added_emb
        )

    @property
    def run_extra(self) -> dict[str, Any] | None:
        return {"encoder": self.cache.key, **(self.added.identity() or {})}

    def training_rows(
        self, tr: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Fold rows `tr` plus the added rows (never validated): embeddings [n, V', D], labels, soft targets
        and row weights (None when not needed), before flattening the views."""
        y = np.asarray(self.ws.train.labels)
        x, labels = self.train_emb[tr], y[tr]
        if self.added_emb is None:
            return x, labels, None, None
        a = self.added
        x = np.concatenate([x, self.added_emb])
        C = len(self.ws.classes)
        targets = np.concatenate([np.eye(C, dtype=np.float32)[labels], a.targets(C)]) if a.soft else None
        weights = np.concatenate([np.ones(len(tr), np.float32), a.weights()]) if a.weighted else None
        return x, np.concatenate([labels, a.labels()]), targets, weights

    def fit_predict_fold(self, f: int, fold_dir: Path) -> FoldResult:
        ws, member, init = self.ws, self.member, self.init
        y = np.asarray(ws.train.labels)
        metric = ws.cfg.competition.scored_by
        tr, va = ws.folds.train_idx(f), ws.folds.valid_idx(f)
        x_tr, lab_tr, t_tr, w_tr = self.training_rows(tr)
        x_tr = x_tr if member.train_views else x_tr[:, :1]
        y_tr = np.repeat(lab_tr, x_tr.shape[1], axis=0)
        t_tr = None if t_tr is None else np.repeat(t_tr, x_tr.shape[1], axis=0)
        w_tr = None if w_tr is None else np.repeat(w_tr, x_tr.shape[1], axis=0)
        x_tr = x_tr.reshape(-1, x_tr.shape[-1])
        if member.epochs == 0:
            assert init is not None  # the config requires prompt with epochs 0
            head = init
        else:
            head = fit_member_head(
                member,
                x_tr,
                y_tr,
                self.train_emb[va],
                y[va],
                len(ws.classes),
                metric,
                init,
                member.seed + f,
                self.device,
                t_tr,
                w_tr,
            )
        save_head(fold_dir, head)
        oof = head.logits(self.train_emb[va]).astype(np.float32)
        test = head.logits(self.test_emb).astype(np.float32)
        ran = len(head.history) - (1 if init is not None else 0)
        self.reporter.line(
            f"{self.name} fold {f}: best epoch {head.best_epoch}, {metric} {head.best_score:.4f}"
        )
        info = {
            "epochs": ran,
            "best_epoch": int(head.best_epoch),
            "best_score": float(head.best_score),
            "train_rows": len(lab_tr),  # labelled rows of the fold + added rows (images, not views)
        }
        return FoldResult(info, oof, test)

    def describe(self, root: Path, infos: list[dict[str, Any]], clock: Clock) -> MemberSummary:
        cache, src = self.cache, self.src
        timings = {
            "train_s": round(clock.prepare_s + clock.folds_s, 3),
            "embed_s": round(clock.prepare_s, 3),
            "heads_s": round(clock.folds_s, 3),
        }
        extra = {
            "run": {
                "device": self.device,
                "hash": root.name,
                **fold_lists(infos, ("epochs", "best_epoch", "best_score")),
                "train_rows": [i.get("train_rows") for i in infos],
            },
            "encoder": {"model": src.model, "pretrained": src.pretrained, "key": cache.key},
            "preprocess": {
                k: cache.preprocess().get(k) for k in ("size", "mean", "std", "interpolation", "resize_mode")
            },
            "zero_shot_init": self.member.prompt is not None,
            "embeddings_computed": list(cache.computed),
            **self.added.meta(self.ws.classes),
        }
        note = f"{len(cache.computed)} embedding file(s) computed, {timings['train_s']:.1f} s"
        return MemberSummary(timings, extra, note)
