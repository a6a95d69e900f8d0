"""Tables and summaries the commands print (rich): library functions return data, these render it.

`kit demo` prints the same tables, so they live here rather than in the command modules. Every table goes
through `print_table`, which keeps it inside the terminal's width (a log, CI and a default terminal are 80
columns) without cutting a name or a number short.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.markup import escape
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from kit.blend.run import BlendResult, Contribution
    from kit.data.extra import ExtraSource
    from kit.runs import RunRow
    from kit.submit.write import SubmissionRecord


@dataclass(frozen=True)
class Col:
    """A column of `print_table`: its header and how its cells line up."""

    header: str
    justify: Literal["left", "right"] = "right"


# where a cell may wrap: after a space, before a `+` (blend rows: `greedy_bagged+logit_adjust`), after a comma
_BREAK = re.compile(r"(?<=\s)(?=\S)|(?<=\S)(?=\+)|(?<=,)(?=\S)")


def _tokens(line: str) -> list[str]:
    return [t for t in _BREAK.split(line) if t] or [""]


def _span(text: str) -> tuple[int, int]:
    """(narrowest, widest) width of a cell: its longest unbreakable piece, its longest line."""
    lines = text.split("\n")
    return (
        max(cell_len(t.rstrip()) for line in lines for t in _tokens(line)),
        max(cell_len(line) for line in lines),
    )


def _wrap(text: str, width: int) -> str:
    """`text` wrapped at its break points to `width` (a piece wider than that is folded by rich)."""
    out = []
    for line in text.split("\n"):
        cur = ""
        for tok in _tokens(line):
            if cur and cell_len((cur + tok).rstrip()) > width:
                out.append(cur.rstrip())
                cur = tok
            else:
                cur += tok
        out.append(cur.rstrip())
    return "\n".join(out)


def _overhead(n: int) -> int:
    return 3 * n + 1  # rich's default box: a border per column and one more, one space of padding each side


def _groups(widths: list[int], keys: int, width: int) -> list[list[int]]:
    """The non-key columns in order, split where the next one would not fit beside the keys."""
    groups: list[list[int]] = [[]]
    for i in range(keys, len(widths)):
        trial = [*range(keys), *groups[-1], i]
        if groups[-1] and sum(widths[j] for j in trial) + _overhead(len(trial)) > width:
            groups.append([i])
        else:
            groups[-1].append(i)
    return groups


def fit_tables(
    title: str, cols: Sequence[Col], rows: Sequence[Sequence[str]], width: int, keys: int = 1
) -> list[Table]:
    """`rows` (plain strings, one per column) as rich tables no wider than `width`.

    One table when it fits, its cells wrapped at spaces and `+` if need be (rows are then ruled apart);
    otherwise the columns are split over several tables, each repeating the first `keys` columns (the rows'
    names), so every name and every number is printed whole at any width."""
    cell_spans = [[_span(r[i]) for r in rows] for i in range(len(cols))]
    head_spans = [_span(c.header) for c in cols]
    lo = [max([head_spans[i][0], *(s[0] for s in cell_spans[i])]) for i in range(len(cols))]
    hi = [max([head_spans[i][1], *(s[1] for s in cell_spans[i])]) for i in range(len(cols))]
    # packing width: names may wrap; numbers stay on one line (their headers may wrap) where they fit at all
    pack = lo[:keys] + [
        max([head_spans[i][0], *(s[1] for s in cell_spans[i])]) for i in range(keys, len(cols))
    ]
    key_idx = list(range(keys))
    base = sum(lo[:keys]) + _overhead(keys)
    for i in range(keys, len(cols)):
        if base + pack[i] + 3 > width:
            pack[i] = lo[i]
    groups = _groups(pack, keys, width)
    tighter = _groups(lo, keys, width)  # every cell wrapped at its spaces: fewer parts, or none saved
    if len(tighter) < len(groups):
        groups, pack = tighter, lo
    out = []
    for g, group in enumerate(groups):
        idx = key_idx + group
        room = width - _overhead(len(idx))
        widths = {j: hi[j] for j in idx}
        if sum(widths.values()) > room:  # packing widths, the spare room to the names first
            widths = {j: pack[j] for j in idx}
            spare = room - sum(widths.values())
            for j in idx:
                add = max(0, min(spare, hi[j] - widths[j]))
                widths[j] += add
                spare -= add
        cells = [[_wrap(r[j], widths[j]) for j in idx] for r in rows]
        part = title if len(groups) == 1 else f"{title} (part {g + 1} of {len(groups)})"
        t = Table(title=Text(part), show_lines=any("\n" in c for r in cells for c in r))
        for j in idx:
            t.add_column(
                Text(_wrap(cols[j].header, widths[j])),
                justify=cols[j].justify,
                width=widths[j],
                overflow="fold",
            )
        for r in cells:
            t.add_row(*(Text(c) for c in r))
        out.append(t)
    return out


@dataclass(frozen=True)
class FittedTable:
    """A rich renderable: `fit_tables` at the width it is printed in (`console.print(FittedTable(...))`)."""

    title: str
    cols: Sequence[Col]
    rows: Sequence[Sequence[str]]
    keys: int = 1

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from fit_tables(self.title, self.cols, self.rows, options.max_width, self.keys)


def print_table(
    console: Console, title: str, cols: Sequence[Col], rows: Sequence[Sequence[str]], keys: int = 1
) -> None:
    console.print(FittedTable(title, cols, rows, keys))


def print_runs(rows: list[RunRow], workdir: Path, metric: str, console: Console) -> None:
    """The `kit runs` table (rows from kit.runs.collect_runs): pooled OOF scores, epochs and time per
    member, then per-view scores and the worst classes on one line per member."""
    if not rows:
        console.print(f"no members in {workdir}; add members to kit.yaml and run `kit train`")
        return
    multilabel = any(r.per_label for r in rows)
    keys, heads = ("weighted_f1", "macro_f1", "accuracy", "log_loss"), ("w-F1", "macro-F1", "acc", "logloss")
    if multilabel:  # multi-label members: their metrics instead of the single-label ones
        keys, heads = (
            ("f1_samples", "f1_micro", "f1_macro", "roc_auc"),
            ("F1-samples", "F1-micro", "F1-macro", "AUC"),
        )
    cols = [
        Col("member", "left"),
        Col("kind", "left"),
        *(Col(h) for h in heads),
        Col(f"{metric} [95% interval]"),
        Col("epochs"),
        Col("time"),
    ]
    table, notes = [], []
    for r in rows:
        if not r.trained:
            table.append([r.name, r.kind, *["-"] * (len(cols) - 2)])
            notes.append(f"[bold]{escape(r.name)}[/]: not trained; run `kit train {escape(r.name)}`")
            continue
        p = r.pooled
        lo, hi = (min(r.epochs), max(r.epochs)) if r.epochs else (0, 0)
        table.append(
            [
                r.name + (" (tuned)" if r.tuned else ""),
                r.kind,
                *(f"{p.get(k, float('nan')):.4f}" for k in keys),
                "-"
                if r.interval is None
                else f"{r.interval[0]:.4f} [{r.interval[1]:.4f}-{r.interval[2]:.4f}]",
                "-" if not r.epochs else (str(lo) if lo == hi else f"{lo}-{hi}"),
                f"{r.train_s:.0f}s" if r.train_s is not None else "-",
            ]
        )
        name = escape(r.name)
        views = ", ".join(f"{v} {s:.4f}" for v, s in r.per_view.items())
        worst = ", ".join(f"{escape(c)} {f:.2f}" for c, f in r.worst)
        notes.append(f"[bold]{name}[/]: {r.metric} per view: {views}; worst classes by F1: {worst}")
        if r.per_label:
            labs = ", ".join(
                f"{escape(c)} F1 {f:.2f} AUC {'-' if a is None else f'{a:.2f}'}"
                for c, (f, a) in r.per_label.items()
            )
            notes.append(f"[bold]{name}[/] per label: {labs}")
        if r.tuned:
            notes.append(f"[yellow]tuned:[/] {escape(r.tuned)}")
        if r.stale:
            why = escape("; ".join(r.stale))
            notes.append(f"[yellow]{name} is stale[/]: {why}; run `kit train {name}`")
    print_table(console, f"members in {workdir}: pooled out-of-fold scores (plain view)", cols, table)
    for n in notes:
        console.print(n, highlight=False)


def print_blend(result: BlendResult, console: Console) -> None:
    """The selection table, the winner, and what each member contributes to it, as `kit blend` shows them."""
    metric = result.metric
    sel = result.selection
    pct = round(100 * sel["level"])
    cols = [
        Col("blender", "left"),
        Col("in-sample"),
        Col("nested CV"),
        Col(f"{pct}% interval"),
        Col("P(beats single)"),
        Col("overstates by"),
        Col("seconds"),
    ]
    rows = [
        [
            r["blender"] + (" ←" if r["picked"] else ""),
            f"{r['insample']:.4f}",
            f"{r['nested']:.4f}",
            f"{r['nested_lo']:.4f}-{r['nested_hi']:.4f}",
            f"{r['p_beats_single']:.2f}",
            f"{r['overstatement']:+.4f}",
            f"{r['seconds']:.2f}",
        ]
        for r in result.table
    ]
    print_table(
        console, f"blend '{result.name}': {result.n_candidates} candidates, metric {metric}", cols, rows
    )
    lo, hi = result.nested_interval
    alo, ahi = result.selection_aware_interval
    console.print(
        f"winner [bold]{escape(result.winner)}[/] by rule {sel['rule']} (confidence {sel['confidence']}, "
        f"{sel['resamples']} resamples by {sel['resampled_by']}, {sel['groups']} {sel['resampled_by']}s): "
        f"nested {metric} {result.nested_score:.4f} [{lo:.4f}, {hi:.4f}], "
        f"P(beats best single) {sel['p_beats_best_single']:.2f}; "
        f"in-sample {result.insample_score:.4f} overstates by {result.overstatement:+.4f}",
        highlight=False,
    )
    console.print(
        f"estimate of the whole procedure (selection inside each outer fold): {metric} "
        f"{result.selection_aware_score:.4f} [{alo:.4f}, {ahi:.4f}]; "
        f"best single {escape(result.best_single)} {result.best_single_score:.4f}; "
        f"the raw maximum would pick {escape(sel['max_nested_row'])}",
        highlight=False,
    )
    print_contributions(result.contributions, metric, result.insample_score, console)
    console.print(f"wrote {result.path}", highlight=False)


def print_contributions(contribs: list[Contribution], metric: str, insample: float, console: Console) -> None:
    """Per member: its own score, its mixture weight (weighted averages only) and what the winner loses without
    it. Coefficient shares of a stack are not weights of a mixture, so they are never shown as such."""
    if not contribs:
        return
    mixture = all(c.weight is not None for c in contribs)
    cols = [
        Col("member", "left"),
        Col("alone"),
        *([Col("mixture weight")] if mixture else []),
        Col(f"{metric} without it"),
        Col("it adds"),
    ]
    rows = [
        [
            c.member,
            f"{c.alone:.4f}",
            *([f"{c.weight:.4f}"] if mixture else []),
            "-" if c.without is None else f"{c.without:.4f}",
            "-" if c.gain is None else _signed(c.gain),
        ]
        for c in contribs
    ]
    print_table(
        console, f"what each member adds to the winner (in-sample {metric} {insample:.4f})", cols, rows
    )
    console.print(
        f"alone: the member's pooled OOF {metric}; "
        + ("mixture weight: its share of the weighted average (before post-processing); " if mixture else "")
        + f"without it: the winner's in-sample {metric} (fitted and scored on all OOF rows) with the member left "
        "out (a weighted average rescales the others' weights, a stack is refit at its C without the member's "
        "inputs; the fitted post-processing is kept; '-': nothing would be left); it adds: how much better the "
        f"winner's {metric} is with it (negative: the winner does better without it)"
        + ("" if mixture else "; a stack's coefficient shares are not mixture weights (winner.json `stack`)"),
        highlight=False,
    )


def _signed(v: float) -> str:
    s = f"{v:+.4f}"
    return "+0.0000" if s == "-0.0000" else s


def _when(iso: str | None) -> str:
    """An ISO time as the tables show it: `2026-12-07 01:02`."""
    return (iso or "-")[:16].replace("T", " ")


def print_submissions(records: list[SubmissionRecord], folder: Path, console: Console) -> None:
    """`kit submissions`: best CV first (kit.submit.write.list_submissions), each score labelled by what it
    estimates, with its interval and the latest public leaderboard score `kit submissions --lb` recorded."""
    cols = [
        Col("file", "left"),
        Col("source", "left"),
        Col("metric", "left"),
        Col("CV"),
        Col("CV interval"),
        Col("CV is", "left"),
        Col("LB"),
        Col("LB recorded", "left"),
        Col("kind", "left"),
        Col("created", "left"),
    ]
    rows = [
        [
            r.path.name,
            r.source,
            r.metric or "-",
            f"{r.score:.4f}" if r.score is not None else "-",
            f"[{r.interval[0]:.4f}, {r.interval[1]:.4f}]" if r.interval else "-",
            r.score_kind or "-",
            f"{r.lb:.4f}" if r.lb is not None else "-",
            _when(r.lb_at) + (f" ({r.lb_note})" if r.lb_note else ""),
            r.kind or "-",
            _when(r.created),
        ]
        for r in records
    ]
    print_table(console, f"submissions in {folder}, best CV first", cols, rows)


def extra_table(extras: list[ExtraSource], classes: list[str]) -> FittedTable:
    """`kit folds`: one row per competition.extra_train source with its images per class and the duplicates
    dropped; they join the training side of every fold and are never validated."""
    cols = [
        Col("source", "left"),
        *(Col(c) for c in classes),
        Col("total"),
        Col("dropped: test dup."),
        Col("dropped: train dup."),
    ]
    rows = []
    for e in extras:
        counts = e.counts(len(classes)).tolist()
        rows.append(
            [
                f"extra_train[{e.index}] {e.cfg.train.name}",
                *map(str, counts),
                str(sum(counts)),
                str(len(e.test_duplicates)),
                str(len(e.train_duplicates)),
            ]
        )
    return FittedTable(
        "extra training data (training side of every fold, never validated or scored)", cols, rows
    )
