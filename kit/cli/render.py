"""Tables and summaries the commands print (rich): library functions return data, these render it.

`kit demo` prints the same tables, so they live here rather than in the command modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from kit.blend.run import BlendResult
    from kit.data.extra import ExtraSource
    from kit.train.runs import RunRow


def print_runs(rows: list[RunRow], workdir: Path, metric: str, console: Console) -> None:
    """The `kit runs` table (rows from kit.train.runs.collect_runs): pooled OOF scores, epochs and time per
    member, then per-view scores and the worst classes on one line per member."""
    if not rows:
        console.print(f"no members in {workdir}; add members to kit.yaml and run `kit train`")
        return
    t = Table(title=f"members in {workdir}: pooled out-of-fold scores (plain view)")
    for col in ("member", "kind"):
        t.add_column(col, overflow="fold")
    multilabel = any(r.per_label for r in rows)
    keys, heads = ("weighted_f1", "macro_f1", "accuracy", "log_loss"), ("w-F1", "macro-F1", "acc", "logloss")
    if multilabel:  # multi-label members: their metrics instead of the single-label ones
        keys, heads = (
            ("f1_samples", "f1_micro", "f1_macro", "roc_auc"),
            ("F1-samples", "F1-micro", "F1-macro", "AUC"),
        )
    for col in (*heads, f"{metric} [95% interval]", "epochs", "time"):
        t.add_column(col, justify="right", no_wrap=True)
    notes = []
    for r in rows:
        if not r.trained:
            t.add_row(r.name, r.kind, *["-"] * 7)
            notes.append(f"[bold]{r.name}[/]: not trained; run `kit train {r.name}`")
            continue
        p = r.pooled
        lo, hi = (min(r.epochs), max(r.epochs)) if r.epochs else (0, 0)
        t.add_row(
            r.name + (" (tuned)" if r.tuned else ""),
            r.kind,
            *(f"{p.get(k, float('nan')):.4f}" for k in keys),
            "-" if r.interval is None else f"{r.interval[0]:.4f} [{r.interval[1]:.4f}-{r.interval[2]:.4f}]",
            "-" if not r.epochs else (str(lo) if lo == hi else f"{lo}-{hi}"),
            f"{r.train_s:.0f}s" if r.train_s is not None else "-",
        )
        views = ", ".join(f"{v} {s:.4f}" for v, s in r.per_view.items())
        worst = ", ".join(f"{c} {f:.2f}" for c, f in r.worst)
        notes.append(f"[bold]{r.name}[/]: {r.metric} per view: {views}; worst classes by F1: {worst}")
        if r.per_label:
            labs = ", ".join(
                f"{c} F1 {f:.2f} AUC {'-' if a is None else f'{a:.2f}'}" for c, (f, a) in r.per_label.items()
            )
            notes.append(f"[bold]{r.name}[/] per label: {labs}")
        if r.tuned:
            notes.append(f"[yellow]tuned:[/] {escape(r.tuned)}")
        if r.stale:
            why = escape("; ".join(r.stale))
            notes.append(f"[yellow]{r.name} is stale[/]: {why}; run `kit train {r.name}`")
    console.print(t)
    for n in notes:
        console.print(n, highlight=False)


def print_blend(result: BlendResult, console: Console) -> None:
    """The selection table and the winner, as `kit blend` shows them."""
    metric = result.metric
    t = Table(title=f"blend '{result.name}': {result.n_candidates} candidates, metric {metric}")
    sel = result.selection
    pct = round(100 * sel["level"])
    t.add_column("blender")
    t.add_column("in-sample", justify="right")
    t.add_column("nested CV", justify="right")
    t.add_column(f"{pct}% interval", justify="right")
    t.add_column("P(beats single)", justify="right")
    t.add_column("overstates by", justify="right")
    t.add_column("seconds", justify="right")
    for r in result.table:
        mark = " ←" if r["picked"] else ""
        t.add_row(
            r["blender"] + mark,
            f"{r['insample']:.4f}",
            f"{r['nested']:.4f}",
            f"{r['nested_lo']:.4f}-{r['nested_hi']:.4f}",
            f"{r['p_beats_single']:.2f}",
            f"{r['overstatement']:+.4f}",
            f"{r['seconds']:.2f}",
        )
    console.print(t)
    w = result.weights
    lo, hi = result.nested_interval
    alo, ahi = result.selection_aware_interval
    console.print(
        f"winner [bold]{result.winner}[/] by rule {sel['rule']} (confidence {sel['confidence']}, "
        f"{sel['resamples']} resamples by {sel['resampled_by']}, {sel['groups']} {sel['resampled_by']}s): "
        f"nested {metric} {result.nested_score:.4f} [{lo:.4f}, {hi:.4f}], "
        f"P(beats best single) {sel['p_beats_best_single']:.2f}; "
        f"in-sample {result.insample_score:.4f} overstates by {result.overstatement:+.4f}",
        highlight=False,
    )
    console.print(
        f"estimate of the whole procedure (selection inside each outer fold): {metric} "
        f"{result.selection_aware_score:.4f} [{alo:.4f}, {ahi:.4f}]; "
        f"best single {result.best_single} {result.best_single_score:.4f}; "
        f"the raw maximum would pick {sel['max_nested_row']}",
        highlight=False,
    )
    console.print("weights: " + ", ".join(f"{k} {v:.4f}" for k, v in w.items()), highlight=False)
    console.print(f"wrote {result.path}", highlight=False)


def extra_table(extras: list[ExtraSource], classes: list[str]) -> Table:
    """`kit folds`: one row per competition.extra_train source with its images per class and the duplicates
    dropped; they join the training side of every fold and are never validated."""
    t = Table(title="extra training data (training side of every fold, never validated or scored)")
    t.add_column("source", overflow="fold")
    for c in classes:
        t.add_column(escape(c), justify="right")
    for col in ("total", "dropped: test dup.", "dropped: train dup."):
        t.add_column(col, justify="right")
    for e in extras:
        counts = e.counts(len(classes)).tolist()
        t.add_row(
            escape(f"extra_train[{e.index}] {e.cfg.train.name}"),
            *map(str, counts),
            str(sum(counts)),
            str(len(e.test_duplicates)),
            str(len(e.train_duplicates)),
        )
    return t
