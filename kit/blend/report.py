"""What a blend writes for its user: the selection table (CSV), per-class F1, and a PNG report.

The terminal table is rendered by kit.cli.render.print_blend."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.metrics.scores import confusion_matrix, f1_from_confusion
from kit.plots.fonts import with_cjk_fallback

if TYPE_CHECKING:
    from kit.blend.contributions import Contribution


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


TABLE_KEYS = [
    "blender",
    "complexity",
    "insample",
    "nested",
    "nested_lo",
    "nested_hi",
    "p_beats_single",
    "overstatement",
    "seconds",
    "picked",
]


def table_csv(rows: list[dict[str, Any]]) -> str:
    def cell(k: str, v: Any) -> Any:
        return v if isinstance(v, (str, bool, int)) else f"{v:.6f}"

    return _csv(TABLE_KEYS, [[cell(k, r[k]) for k in TABLE_KEYS] for r in rows])


def per_class_rows(
    classes: list[str], y: np.ndarray, single: np.ndarray, blend: np.ndarray
) -> list[dict[str, Any]]:
    C = len(classes)
    if np.ndim(y) == 2:  # multi-label: each label's F1 at the 0.5 decision
        from kit.metrics.multilabel import cell_counts, decide, f1_of_counts

        tp, pr, support = cell_counts(y, decide(single), axis=0)
        f1_s = f1_of_counts(tp, pr, support)
        f1_b = f1_of_counts(*cell_counts(y, decide(blend), axis=0))
    else:
        f1_s, support, _ = f1_from_confusion(confusion_matrix(y, single.argmax(1), C))
        f1_b, _, _ = f1_from_confusion(confusion_matrix(y, blend.argmax(1), C))
    return [
        {
            "class": c,
            "support": int(support[i]),
            "best_single": float(f1_s[i]),
            "blend": float(f1_b[i]),
            "delta": float(f1_b[i] - f1_s[i]),
        }
        for i, c in enumerate(classes)
    ]


def per_class_csv(rows: list[dict[str, Any]]) -> str:
    keys = ["class", "support", "best_single", "blend", "delta"]
    return _csv(keys, [[r[k] if k in ("class", "support") else f"{r[k]:.6f}" for k in keys] for r in rows])


@with_cjk_fallback  # class names in Korean, Japanese or Chinese
def write_png(
    path: Path,
    *,
    title: str,
    contributions: list[Contribution],
    metric: str,
    per_class: list[dict[str, Any]],
    single_name: str,
    y: np.ndarray,
    blend: np.ndarray,
    classes: list[str],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    C = len(classes)
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5), constrained_layout=True)
    _contributions(axes[0], contributions, metric)
    ax = axes[1]
    x = np.arange(C)
    ax.bar(x - 0.2, [r["best_single"] for r in per_class], 0.4, label=f"best single ({single_name})")
    ax.bar(x + 0.2, [r["blend"] for r in per_class], 0.4, label="blend (nested OOF)")
    ax.set_xticks(x, [f"{r['class']}\n({r['support']})" for r in per_class], rotation=90, fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.set_title("per-class F1 (support)")
    ax.legend(loc="lower left", fontsize=8)
    ax = axes[2]
    if np.ndim(y) == 2:  # multi-label: per label, the images predicted without / with it by truth
        _label_cells(ax, y, blend, classes)
        fig.suptitle(title)
        fig.savefig(path, dpi=80)
        plt.close(fig)
        return
    cm = confusion_matrix(y, blend.argmax(1), C).astype(np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if C <= 30:
        for i in range(C):
            for j in range(C):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        int(cm[i, j]),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ax.set_xticks(range(C), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(C), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (blend, nested OOF; row-normalised colour)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _contributions(ax: Any, contribs: list[Contribution], metric: str) -> None:
    """Per member: how much better the winner's in-sample score is with it (the score without it, measured;
    kit.blend.contributions), its mixture weight beside the bar when the winner is a weighted average."""
    names = [c.member for c in contribs][::-1]
    gains = [0.0 if c.gain is None else c.gain for c in contribs][::-1]
    colours = ["tab:grey" if c.gain is None else "tab:blue" if c.gain >= 0 else "tab:red" for c in contribs]
    ax.barh(names, gains, color=colours[::-1])
    ax.axvline(0, color="black", linewidth=0.8)
    for i, c in enumerate(contribs[::-1]):
        note = "the winner is this member alone" if c.gain is None else f"{c.gain:+.4f}"
        if c.weight is not None:
            note += f" (mixture weight {c.weight:.2f})"
        ax.text(0, i, " " + note, va="center", fontsize=7)
    ax.set_xlabel(f"how much better the winner's {metric} is with the member (in-sample, all OOF rows)")
    ax.set_title("what each member adds to the winner")


def _label_cells(ax: Any, Y: np.ndarray, blend: np.ndarray, labels: list[str]) -> None:
    """Per label: true negatives, false positives, false negatives, true positives of the 0.5 decision."""
    Yb, pred = np.asarray(Y, dtype=bool), np.asarray(blend) >= 0.5
    cells = np.stack([(~Yb & ~pred).sum(0), (~Yb & pred).sum(0), (Yb & ~pred).sum(0), (Yb & pred).sum(0)], 1)
    norm = cells / np.maximum(cells.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    if len(labels) <= 40:
        for i in range(len(labels)):
            for j in range(4):
                ax.text(j, i, int(cells[i, j]), ha="center", va="center", fontsize=6)
    ax.set_xticks(range(4), ["TN", "FP", "FN", "TP"])
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_title("per-label decisions (blend, nested OOF)")
