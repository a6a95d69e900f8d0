"""The report's pictures as data URIs (the page embeds them: it opens offline and travels as one file).

Figures are drawn with matplotlib's Agg backend at a fixed size and dpi (each PNG stays a few tens of kB
whatever the number of images), with the CJK fallback font for class names; thumbnails are small JPEGs.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

from kit.plots.fonts import with_cjk_fallback


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72)
    plt.close(fig)
    return data_uri(buf.getvalue(), "image/png")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@with_cjk_fallback  # class names in Korean, Japanese or Chinese
def confusion_figure(cm: np.ndarray, names: list[str], title: str) -> str:
    """A [true, predicted] count matrix (rows normalised for the colour, counts written in the cells)."""
    plt = _pyplot()
    k = len(names)
    side = min(4.0 + 0.32 * k, 11.0)
    fig, ax = plt.subplots(figsize=(side + 1.5, side), constrained_layout=True)
    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                colour = "white" if norm[i, j] > 0.5 else "black"
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7, color=colour)
    short = [n if len(n) <= 24 else n[:23] + "…" for n in names]
    ax.set_xticks(range(k), short, rotation=90, fontsize=8)
    ax.set_yticks(range(k), short, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the true class")
    return _png(fig)


@with_cjk_fallback
def reliability_figure(curves: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> str:
    """Reliability diagram: per prediction set (name, bin confidence, bin accuracy, bin counts), accuracy
    against confidence of the top class, and below it how many rows fall in each bin."""
    plt = _pyplot()
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(6.5, 6.5), height_ratios=(3, 1), sharex=True, constrained_layout=True
    )
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for name, conf, acc, counts in curves:
        keep = counts > 0
        ax.plot(conf[keep], acc[keep], marker="o", markersize=3, label=name)
    ax.set_ylabel("accuracy of the top class")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("reliability (out-of-fold)", fontsize=10)
    if curves:
        name, conf, _, counts = curves[-1]
        edges = np.linspace(0, 1, len(counts) + 1)
        hist.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="tab:blue", alpha=0.6)
        hist.set_ylabel(f"rows ({name})", fontsize=8)
    hist.set_xlabel("confidence of the top class")
    return _png(fig)


def thumbnail(pixels: np.ndarray, size: int = 96) -> str:
    """A JPEG data URI of an RGB uint8 image [h, w, 3], its longer side at most `size` px."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8))
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return data_uri(buf.getvalue(), "image/jpeg")


def png_file_uri(data: bytes) -> str:
    """A PNG kit wrote (a blend's report.png) as a data URI."""
    return data_uri(data, "image/png")
