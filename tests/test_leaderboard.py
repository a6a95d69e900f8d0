"""`kit submissions --lb FILE SCORE`: public leaderboard scores in kit's sidecars, CV beside LB in the table, and
the warning when a choice by LB contradicts CV beyond its interval (kit.submit.leaderboard)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke
from test_hostile_display import column, tables
from test_submit_cli import Demo, demo, write_blend  # noqa: F401  (demo: the shared fixture)
from typer.testing import CliRunner

from kit.submit.leaderboard import lb_contradictions
from kit.submit.write import LbEntry, SubmissionRecord, list_submissions

ADVICE = "trust CV: the public leaderboard is a small sample of the test set"


def submit(runner: CliRunner, d: Demo, folder: Path, *, blends: dict[str, float]) -> None:
    """Member 'm' (pooled OOF 0.4321) as m.csv and one blend per name (selection-aware score, interval
    [0.8, 0.9]) as NAME.csv, each through the real `kit submit`."""
    assert d.ws.test is not None
    e = d.ws.expected()
    for i, (name, aware) in enumerate(blends.items()):
        probs = np.random.default_rng(10 + i).dirichlet(np.ones(10), size=len(d.ws.test))
        write_blend(d.ws.workdir, name, probs, e, len(d.ws.train), nested=aware + 0.05, aware=aware)
    jobs = [["--member", "m", "--out", str(folder / "m.csv")]]
    jobs += [[f"ensembles/{n}.yaml", "--out", str(folder / f"{n}.csv")] for n in blends]
    for job in jobs:
        r = invoke(runner, ["submit", *job, "-c", str(d.config)])
        assert r.exit_code == 0, r.output


def lb(runner: CliRunner, folder: Path, *args: str) -> tuple[int, str]:
    r = invoke(runner, ["submissions", "--dir", str(folder), "--lb", *args], cwd=folder.parent)
    return r.exit_code, r.output


def side(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}.csv.json").read_text("utf-8"))


def warnings_in(out: str) -> list[str]:
    """The warning lines, each joined back into one line (rich wraps them at the terminal's width)."""
    text = " ".join(out.split())
    return [w.strip() for w in text.split("warning:")[1:]]


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")


def test_record_scores_show_them_and_warn_exactly_when_lb_contradicts_cv(
    demo: Demo,  # noqa: F811
    tmp_path: Path,
    runner: CliRunner,
    wide: None,
) -> None:
    folder = tmp_path / "submissions"
    submit(runner, demo, folder, blends={"lb_all": 0.8765, "lb_near": 0.82})
    before = {n: side(folder, n) for n in ("m", "lb_all", "lb_near")}
    m_interval = before["m"]["cv_interval"]
    assert before["lb_all"]["cv_interval"] == [0.8, 0.9]
    t0 = datetime.now().astimezone() - timedelta(seconds=2)

    # the member by name without .csv, resolved inside --dir
    code, out = lb(runner, folder, "m", "0.7")
    assert code == 0, out
    assert f"recorded LB 0.7000 for {folder / 'm.csv'}" in out and "replaces" not in out
    s = side(folder, "m")
    assert [e["score"] for e in s["lb_history"]] == [0.7] and s["lb_history"][0]["note"] is None
    assert t0 <= datetime.fromisoformat(s["lb_history"][0]["recorded"]) <= datetime.now().astimezone()
    assert {k: v for k, v in s.items() if k != "lb_history"} == before["m"]  # nothing else changed
    assert "warning" not in out

    # LB and CV agree: the blend is better by both
    code, out = lb(runner, folder, "lb_all.csv", "0.75")
    assert code == 0, out
    assert "warning" not in out

    # a second score for m replaces the first (history kept) and makes LB prefer m, whose CV 0.4321 lies far
    # below the blend's interval [0.8, 0.9]
    code, out = lb(runner, folder, str(folder / "m.csv"), "0.8", "--note", "public 30%")
    assert code == 0, out
    assert "recorded LB 0.8000" in out and "replaces 0.7000 recorded" in out and "2 scores kept" in out
    hist = side(folder, "m")["lb_history"]
    assert [(e["score"], e["note"]) for e in hist] == [(0.7, None), (0.8, "public 30%")]
    assert hist[0]["recorded"] <= hist[1]["recorded"]
    (w,) = warnings_in(out)
    assert "prefers m.csv (CV 0.4321" in w and f"[{m_interval[0]:.4f}, {m_interval[1]:.4f}], LB 0.8000)" in w
    assert "to lb_all.csv (CV 0.8765 [0.8000, 0.9000], LB 0.7500)" in w
    assert "but CV prefers lb_all.csv beyond its noise: m.csv's CV is below lb_all.csv's interval" in w
    assert out.count(ADVICE) == 1

    # lb_near: LB best, CV 0.82 below lb_all's 0.8765 but inside its interval: no warning for that pair
    code, out = lb(runner, folder, "lb_near.csv", "0.9")
    assert code == 0, out
    (w,) = warnings_in(out)
    assert "prefers m.csv" in w and "lb_near" not in w

    # the plain listing: CV with its interval, LB and when, best CV first; the same warning
    r = invoke(runner, ["submissions", "--dir", str(folder)])
    assert r.exit_code == 0, r.output
    (t,) = tables(r.output)
    files = column(t, "file")
    assert files == ["lb_all.csv", "lb_near.csv", "m.csv"], r.output
    row = {f: dict(zip(t[0], cells, strict=True)) for f, cells in zip(files, t[1], strict=True)}
    assert row["lb_all.csv"]["CV"] == "0.8765" and row["lb_all.csv"]["CV interval"] == "[0.8000, 0.9000]"
    assert [row[f]["LB"] for f in files] == ["0.7500", "0.9000", "0.8000"]
    assert row["m.csv"]["LB recorded"].endswith("(public 30%)")
    assert row["m.csv"]["LB recorded"][:16] == hist[1]["recorded"][:16].replace("T", " ")
    assert len(warnings_in(r.output)) == 1 and "prefers m.csv" in r.output

    # the records another page reads carry the same fields
    recs = {x.path.name: x for x in list_submissions(folder)}
    assert (
        recs["m.csv"].lb == 0.8
        and recs["m.csv"].lb_note == "public 30%"
        and len(recs["m.csv"].lb_history) == 2
    )
    assert recs["lb_all.csv"].interval == (0.8, 0.9)
    (c,) = lb_contradictions(list(recs.values()))
    assert (c.lb_choice.path.name, c.cv_choice.path.name, c.separated_by.path.name) == (
        "m.csv",
        "lb_all.csv",
        "lb_all.csv",
    )

    # LB now agrees with CV again: the warning goes away
    code, out = lb(runner, folder, "m.csv", "0.6")
    assert code == 0, out
    assert "warning" not in out


def test_refusals_name_the_file_and_never_touch_a_csv_kit_did_not_write(
    demo: Demo,  # noqa: F811
    tmp_path: Path,
    runner: CliRunner,
    wide: None,
) -> None:
    folder = tmp_path / "submissions"
    submit(runner, demo, folder, blends={})
    by_hand = folder / "by-hand.csv"
    by_hand.write_bytes(b"id,label\r\nt000,cat\r\n")
    foreign = folder / "foreign.csv"
    foreign.write_bytes(b"id,label\nt000,dog\n")
    (folder / "foreign.csv.json").write_text('{"note": "mine"}')
    snapshot = {p.name: p.read_bytes() for p in folder.iterdir()}

    code, out = lb(runner, folder, "by-hand.csv", "0.8")
    assert code == 1 and "refusing to record a leaderboard score" in out and "by-hand.csv" in out
    assert "by-hand.csv.json is missing" in out and "kit submit" in out
    code, out = lb(runner, folder, str(foreign), "0.8")
    assert code == 1 and "foreign.csv.json is not one `kit submit` wrote" in out
    code, out = lb(runner, folder, "nope.csv", "0.8")
    assert code == 1 and "no such submission" in out and "nope.csv" in out
    for bad, says in (("abc", "is not a number"), ("0,81", "(write 0.81)"), ("nan", "not a finite number")):
        code, out = lb(runner, folder, "m.csv", bad)
        assert code == 1 and says in out, (bad, out)
    code, out = lb(runner, folder, "m.csv", "81.2")
    assert code == 1 and "weighted_f1 scores lie in [0, 1]" in out and "0.812" in out
    r = invoke(runner, ["submissions", "--dir", str(folder), "--note", "x"])
    assert r.exit_code == 1 and "--note goes with --lb" in r.output
    assert "Traceback" not in out

    assert {
        p.name: p.read_bytes() for p in folder.iterdir()
    } == snapshot  # nothing written, nothing left over


def rec(
    name: str, cv: float | None, interval: tuple[float, float] | None, lb_score: float | None, **kw: str
) -> SubmissionRecord:
    """A record as `list_submissions` reads it from a sidecar, for the pure rule."""
    fields = {"metric": "weighted_f1", "score_kind": "pooled OOF", "competition": "c", **kw}
    history = () if lb_score is None else (LbEntry(lb_score, "2026-01-01T00:00:00+00:00"),)
    return SubmissionRecord(
        path=Path(f"{name}.csv"),
        source=f"member {name}",
        metric=fields["metric"],
        score=cv,
        score_kind=fields["score_kind"],
        kind="label",
        created=None,
        interval=interval,
        competition=fields["competition"],
        lb_history=history,
    )


def pairs(records: list[SubmissionRecord]) -> list[tuple[str, str, str]]:
    return [
        (c.lb_choice.path.stem, c.cv_choice.path.stem, c.separated_by.path.stem)
        for c in lb_contradictions(records)
    ]


def test_the_rule_over_intervals_directions_and_what_is_comparable() -> None:
    a, b = rec("a", 0.70, (0.65, 0.75), 0.90), rec("b", 0.80, (0.76, 0.84), 0.85)
    assert pairs([a, b]) == [("a", "b", "b")]  # 0.70 < 0.76, B's worse end
    assert pairs([a, rec("b", 0.80, (0.70, 0.84), 0.85)]) == []  # 0.70 on the edge of B's interval: inside
    assert pairs([a, rec("b", 0.80, (0.76, 0.84), 0.90)]) == []  # an LB tie prefers neither
    assert pairs([a, rec("b", 0.80, (0.76, 0.84), 0.95)]) == []  # LB agrees with CV
    # B without an interval: B's CV against A's (0.80 > 0.75, A's better end); neither: nothing to judge by
    assert pairs([a, rec("b", 0.80, None, 0.85)]) == [("a", "b", "a")]
    assert pairs([a, rec("b", 0.74, None, 0.85)]) == []
    assert pairs([rec("a", 0.70, None, 0.90), rec("b", 0.99, None, 0.85)]) == []
    # log_loss: lower is better, for LB and CV alike
    loss_a = rec("a", 0.50, (0.45, 0.55), 0.30, metric="log_loss")
    loss_b = rec("b", 0.40, (0.36, 0.44), 0.35, metric="log_loss")
    assert pairs([loss_a, loss_b]) == [("a", "b", "b")]
    assert "a.csv's CV is above b.csv's interval" in lb_contradictions([loss_a, loss_b])[0].message()
    assert pairs([loss_a, rec("b", 0.40, None, 0.35, metric="log_loss")]) == [("a", "b", "a")]  # 0.40 < 0.45
    # not compared: another metric, another competition, an optimistic CV, no LB, no CV
    assert pairs([a, rec("b", 0.80, (0.76, 0.84), 0.85, metric="macro_f1")]) == []
    assert pairs([a, rec("b", 0.80, (0.76, 0.84), 0.85, competition="other")]) == []
    assert pairs([a, rec("b", 0.80, (0.76, 0.84), 0.85, score_kind="winner's nested CV (optimistic)")]) == []
    assert pairs([a, rec("b", 0.80, (0.76, 0.84), None)]) == []
    assert pairs([a, rec("b", None, None, 0.85)]) == []
    # every contradicting pair, LB's choice best first
    c = rec("c", 0.60, (0.55, 0.65), 0.95)
    assert pairs([a, b, c]) == [("c", "b", "b"), ("c", "a", "a"), ("a", "b", "b")]
