"""Public leaderboard scores beside CV: recording them in a submission's sidecar, and the rule that warns when
choosing by the leaderboard contradicts CV beyond its interval.

`kit submissions --lb FILE SCORE` appends `{"score", "recorded", "note"}` to the sidecar's `lb_history` (oldest
first; the last entry is the score that counts). Only a sidecar `kit submit` wrote is updated, atomically; the
CSV itself is never touched.

The rule (`lb_contradictions`, docs/submit.md "CV against the leaderboard"): two submissions A and B of the same
competition and metric, each with a leaderboard score and a comparable CV estimate (selection-aware nested CV
or pooled OOF), contradict when the leaderboard prefers A, CV prefers B, and A's CV lies outside B's interval
on the worse side (A is worse than every score B's interval holds plausible); when B has no interval, when B's CV
lies outside A's interval on the better side. Without an interval on either, CV's preference cannot be told from noise
and nothing is said.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from itertools import permutations
from pathlib import Path

from kit.artifacts.atomic import atomic_write_json
from kit.errors import KitError
from kit.metrics.scores import greater_is_better, parse_metric
from kit.submit.write import COMPARABLE, LbEntry, SubmissionRecord, is_kit_sidecar, read_record, sidecar_path

ADVICE = (
    "trust CV: the public leaderboard is a small sample of the test set and ranks noisily; CV scores every "
    "training row, and these CV gaps lie beyond their intervals"
)


def parse_lb_score(text: str) -> float:
    """A leaderboard score as typed (`0.8123`); words, a comma decimal, NaN and infinities are refused."""
    try:
        value = float(text.strip())
    except ValueError:
        hint = f" (write {text.strip().replace(',', '.')})" if "," in text else ""
        raise KitError(
            f"--lb score {text!r} is not a number{hint}: give the public leaderboard score as the platform shows "
            "it, e.g. `kit submissions --lb submissions/all-20260101-120000.csv 0.8123`"
        ) from None
    if not math.isfinite(value):
        raise KitError(f"--lb score {text!r} is not a finite number: give the score the leaderboard shows")
    return value


def _check_range(score: float, metric: str | None, path: Path) -> None:
    """Metrics other than log_loss are bounded ([-1, 1] for qwk, [0, 1] otherwise): a score outside is a typo,
    most often a percentage."""
    if metric is None:
        return
    name, _ = parse_metric(metric)
    lo, hi = (0.0, math.inf) if name == "log_loss" else (-1.0 if name == "qwk" else 0.0, 1.0)
    if not lo <= score <= hi:
        span = f">= {lo:g}" if hi == math.inf else f"in [{lo:g}, {hi:g}]"
        raise KitError(
            f"--lb score {score:g} for {path.name}: {metric} scores lie {span}; give the score as the "
            + (
                "leaderboard shows it"
                if hi == math.inf
                else f"leaderboard shows it (e.g. {score / 100:g} for a percentage)"
            )
        )


def resolve_submission(file: Path, folder: Path) -> Path:
    """The CSV `--lb FILE` names: a path as given, else a name (with or without `.csv`) inside `folder`. A
    sidecar's path (`….csv.json`) names its CSV."""
    if file.name.endswith(".csv.json"):
        file = file.with_name(file.name.removesuffix(".json"))
    tries = [file]
    if not file.is_absolute() and file.parent == Path("."):
        tries += [folder / file.name, folder / f"{file.name}.csv"]
    for p in tries:
        if p.is_file():
            return p
    raise KitError(
        f"--lb {file}: no such submission (looked for {', '.join(str(p) for p in dict.fromkeys(tries))}); "
        f"`kit submissions --dir {folder}` lists the files kit wrote"
    )


@dataclass(frozen=True)
class LbRecorded:
    """What `record_lb` did: the submission as it now reads, and the score it replaced (None: the first)."""

    record: SubmissionRecord
    replaced: LbEntry | None


def record_lb(
    csv_path: Path, score: float, *, note: str | None = None, now: datetime | None = None
) -> LbRecorded:
    """Append a public leaderboard score to the sidecar of a submission `kit submit` wrote (atomically).

    Refuses a CSV without kit's sidecar beside it (kit never edits a file it did not write) and a score outside
    the metric's range."""
    side = sidecar_path(csv_path)
    if not csv_path.is_file():
        raise KitError(f"--lb {csv_path}: no such file; `kit submissions` lists the files kit wrote")
    if not is_kit_sidecar(side):
        why = "is not one `kit submit` wrote" if side.exists() else "is missing"
        raise KitError(
            f"refusing to record a leaderboard score for {csv_path}: its sidecar {side.name} {why}, so kit did "
            "not write this CSV and keeps no record of it; record scores for files `kit submit` wrote "
            "(`kit submissions` lists them), or write this one with `kit submit`"
        )
    if not math.isfinite(score):
        raise KitError(f"--lb score {score} for {csv_path.name} is not a finite number")
    meta = json.loads(side.read_text("utf-8"))
    metric = meta.get("metric") if isinstance(meta.get("metric"), str) else None
    _check_range(score, metric, csv_path)
    before = read_record(csv_path)
    when = (now or datetime.now()).astimezone().isoformat(timespec="seconds")
    kept = meta.get("lb_history")
    history = list(kept) if isinstance(kept, list) else []  # kept as found, entries kit cannot read included
    history.append(LbEntry(score, when, note or None).to_json())
    meta["lb_history"] = history
    atomic_write_json(side, meta)
    return LbRecorded(read_record(csv_path), before.lb_history[-1] if before.lb_history else None)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _fmt(r: SubmissionRecord) -> str:
    ci = f" [{r.interval[0]:.4f}, {r.interval[1]:.4f}]" if r.interval else " (no interval)"
    return f"{r.path.name} (CV {_num(r.score)}{ci}, LB {_num(r.lb)})"


@dataclass(frozen=True)
class Contradiction:
    """The leaderboard prefers `lb_choice`, CV prefers `cv_choice` beyond the interval of `separated_by`."""

    lb_choice: SubmissionRecord
    cv_choice: SubmissionRecord
    metric: str
    separated_by: SubmissionRecord  # whose interval the other's CV lies outside

    def message(self) -> str:
        """One line naming both files, their CV with its interval and their LB scores (the advice, `ADVICE`,
        is said once under all of them)."""
        a, b, s = self.lb_choice, self.cv_choice, self.separated_by
        other = a if s is b else b
        side = "below" if greater_is_better(self.metric) == (s is b) else "above"
        return (
            f"{self.metric}: the leaderboard prefers {_fmt(a)} to {_fmt(b)}, but CV prefers {b.path.name} beyond "
            f"its noise: {other.path.name}'s CV is {side} {s.path.name}'s interval"
        )


def _judged(r: SubmissionRecord) -> bool:
    return r.score is not None and r.metric is not None and r.lb is not None and r.score_kind in COMPARABLE


def _better(r: SubmissionRecord) -> float:
    """+1 where a greater score of `r`'s metric is better, else -1: scores times it compare as 'greater'."""
    return 1.0 if r.metric is None or greater_is_better(r.metric) else -1.0


def lb_contradictions(records: list[SubmissionRecord]) -> list[Contradiction]:
    """Every pair where choosing by the leaderboard contradicts CV beyond its interval (the module's rule),
    ordered by the leaderboard's choice, best LB first, then by the CV choice, best CV first. Pure: records in,
    findings out."""
    found = []
    judged = [r for r in records if _judged(r)]
    for a, b in permutations(judged, 2):
        if (a.competition, a.metric) != (b.competition, b.metric) or a.metric is None:
            continue
        s = _better(a)
        cv_a, cv_b, lb_a, lb_b = (s * float(v or 0.0) for v in (a.score, b.score, a.lb, b.lb))
        if not (lb_a > lb_b and cv_b > cv_a):
            continue
        if b.interval is not None:
            if cv_a < min(s * v for v in b.interval):  # below the worse end of B's interval
                found.append(Contradiction(a, b, a.metric, b))
        elif a.interval is not None and cv_b > max(s * v for v in a.interval):  # above the better end of A's
            found.append(Contradiction(a, b, a.metric, a))
    return sorted(
        found,
        key=lambda c: (
            -_better(c.lb_choice) * float(c.lb_choice.lb or 0.0),
            -_better(c.cv_choice) * float(c.cv_choice.score or 0.0),
            c.lb_choice.path.name,
            c.cv_choice.path.name,
        ),
    )
