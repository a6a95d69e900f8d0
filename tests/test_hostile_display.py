"""What kit prints about results (issue 27), through the real `kit` console script at fixed terminal widths:
tables readable at 80 columns (and 60, and 200), the selection-aware CV of a blend in `kit submit`, its sidecar
and `kit submissions`, and what each member contributes to a blend, labelled by what it is."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import invoke, write_csv
from train_helpers import make_competition, member, write_config
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
KIT = Path(sys.executable).parent / "kit"
BOX = "┏┃┡│├└"

STACK_SPEC = """# a stack judged by log loss: the winner is a stack row
members: {members}
metric: log_loss
blenders:
  - kind: stack
    C: 1.0
postprocess:
  logit_adjust: {{enabled: false}}
  class_bias: {{enabled: false}}
selection:
  rule: max_nested
"""


class Run:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = code, stdout, stderr


def kit(args: list[str], cwd: Path) -> Run:
    """The real `kit` app in this process (conftest.invoke) on a 200-column console, stdout not a terminal."""
    from kit.cli.common import console

    old = console._width  # None: rich measures the terminal (or reads COLUMNS) at each print
    console.width = 200
    try:
        r = invoke(CliRunner(), args, cwd=cwd)
    finally:
        console._width = old
    return Run(r.exit_code, r.stdout, r.stderr)


def kit_script(args: list[str], cwd: Path, columns: int) -> Run:
    """The installed console script in a subprocess, stdout a pipe, COLUMNS set as a CI log would have it."""
    env = {**os.environ, "COLUMNS": str(columns), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(
        [str(KIT), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return Run(r.returncode, r.stdout, r.stderr)


def ok(r: Run) -> str:
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny real members whose scores differ (a blend's nested and selection-aware estimates differ too),
    trained once, with the shipped ensembles/all.yaml and two stack specs; blends all.yaml once."""
    root = tmp_path_factory.mktemp("display")
    data = make_competition(root / "data")
    write_csv(data / "sample_submission.csv", ["id", "label"], [[f"t{j:03d}", "cat"] for j in range(8)])
    members = {
        "cnx": member("test_convnext", lr=1e-4, tta=["plain"]),
        "eff": member("test_efficientnet", tta=["plain"]),
    }
    cfg_path = write_config(root / "kit.yaml", data, members)
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["competition"]["sample_submission"] = "sample_submission.csv"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    ok(kit(["train"], root))
    (root / "ensembles").mkdir()
    shutil.copy(REPO / "ensembles" / "all.yaml", root / "ensembles" / "all.yaml")
    for name, which in (("stack", "all"), ("stack_cnx", "[cnx]"), ("stack_eff", "[eff]")):
        (root / "ensembles" / f"{name}.yaml").write_text(STACK_SPEC.format(members=which))
    (root / "blend-all.txt").write_text(ok(kit(["blend", "ensembles/all.yaml"], root)))  # at 200 columns
    return root


# ---------------------------------------------------------------- reading rich's tables back


def tables(out: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every box-drawn table in `out` as (headers, rows). A cell that wraps onto several lines is read back
    with its pieces joined by a space; rows are told apart by the separator lines a wrapped table draws."""
    found = []
    lines = out.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("┏"):
            i += 1
            continue
        head: list[list[str]] = []
        body: list[list[list[str]]] = [[]]
        i += 1
        while not lines[i].startswith("┡"):
            head.append([c.strip() for c in lines[i].split("┃")[1:-1]])
            i += 1
        i += 1
        while not lines[i].startswith("└"):
            if lines[i].startswith("├"):
                body.append([])
            else:
                body[-1].append([c.strip() for c in lines[i].split("│")[1:-1]])
            i += 1
        separated = len(body) > 1
        rows = body if separated else [[line] for line in body[0]]
        found.append(([_join(col) for col in zip(*head, strict=True)], [_cells(r) for r in rows if r]))
        i += 1
    return found


def _join(pieces: tuple[str, ...]) -> str:
    return " ".join(p for p in pieces if p)


def _cells(row_lines: list[list[str]]) -> list[str]:
    return [_join(col) for col in zip(*row_lines, strict=True)]


def plain(cell: str) -> str:
    """A wrapped name read back: the pieces of `greedy_bagged+logit_adjust` wrap at the `+`."""
    return cell.replace(" ", "").replace("←", "")


def column(table: tuple[list[str], list[list[str]]], header: str) -> list[str]:
    heads, rows = table
    j = heads.index(header)
    return [r[j] for r in rows]


def assert_fits(out: str, width: int) -> None:
    for line in out.splitlines():
        if line[:1] in BOX:
            assert len(line) <= width, f"{len(line)} > {width} columns: {line}"
    assert "…" not in out, out


# ---------------------------------------------------------------- 1. tables at 80, 60 and 200 columns


RUNS_HEADERS = [
    "member",
    "kind",
    "w-F1",
    "macro-F1",
    "acc",
    "logloss",
    "weighted_f1 [95% interval]",
    "epochs",
    "time",
]


@pytest.mark.parametrize("width", [80, 60, 200])
def test_runs_table_shows_every_member_and_column_at_any_width(project: Path, width: int) -> None:
    out = ok(kit_script(["runs"], project, width))
    assert_fits(out, width)
    found = tables(out)
    assert found, out
    headers = [h for heads, _ in found for h in heads]
    assert set(RUNS_HEADERS) <= set(headers), headers
    for t in found:  # every part of a table that had to be split names its rows
        assert t[0][0] == "member" and column(t, "member") == ["cnx", "eff"], out
    by_header = {h: column(t, h) for t in found for h in t[0]}
    assert by_header["kind"] == ["timm", "timm"]
    assert all(v.count(".") == 1 and len(v) == 6 for v in by_header["w-F1"]), by_header  # 0.3971: whole
    if width == 200:
        assert len(found) == 1, out  # a wide terminal keeps one table


@pytest.mark.parametrize("width", [80, 60, 200])
def test_blend_table_names_every_row_at_any_width(project: Path, width: int) -> None:
    import csv

    out = (
        (project / "blend-all.txt").read_text()
        if width == 200
        else ok(kit_script(["blend", "ensembles/all.yaml"], project, width))
    )
    assert_fits(out, width)
    with (project / "work" / "blends" / "all" / "table.csv").open() as f:
        want = list(csv.DictReader(f))
    found = [t for t in tables(out) if t[0][0] == "blender"]
    assert found, out
    headers = {h for heads, _ in found for h in heads}
    assert {
        "in-sample",
        "nested CV",
        "95% interval",
        "P(beats single)",
        "overstates by",
        "seconds",
    } <= headers
    for t in found:
        names = column(t, "blender")
        assert [plain(n) for n in names] == [r["blender"] for r in want], out
        assert ["←" in n for n in names] == [r["picked"] == "True" for r in want], out
    nested = next(column(t, "nested CV") for t in found if "nested CV" in t[0])
    # table.csv keeps 6 decimals and the table prints 4 of the full value: rounding the 6-decimal copy again
    # can differ in the last digit, so compare as numbers within the two roundings
    assert len(nested) == len(want)
    for shown, r in zip(nested, want, strict=True):
        assert abs(float(shown) - float(r["nested"])) <= 5e-5 + 5e-7, (shown, r["nested"])
    if width == 200:
        assert len(found) == 1, out


def test_submissions_table_fits_80_columns(project: Path, tmp_path: Path) -> None:
    folder = tmp_path / "subs"
    ok(kit(["submit", "--member", "cnx", "--out", str(folder / "a-very-long-submission-name.csv")], project))
    out = ok(kit_script(["submissions", "--dir", str(folder)], project, 80))
    assert_fits(out, 80)
    found = tables(out)
    files = {plain(f) for t in found for f in column(t, "file")}
    assert files == {"a-very-long-submission-name.csv"}, out


# ---------------------------------------------------------------- 2. the CV a blend submission shows


def winner(project: Path, name: str = "all") -> dict:
    return json.loads((project / "work" / "blends" / name / "winner.json").read_text())


def test_blend_submission_shows_and_records_the_selection_aware_estimate(
    project: Path, tmp_path: Path
) -> None:
    w = winner(project)
    aware, nested = w["selection_aware_score"], w["nested_score"]
    assert abs(aware - nested) > 0.01  # the two estimates differ here, so the test tells them apart
    out_csv = tmp_path / "blend.csv"
    out = ok(kit(["submit", "ensembles/all.yaml", "--out", str(out_csv)], project))
    line = next(ln for ln in out.splitlines() if "blend 'all'" in ln)
    assert f"weighted_f1 {aware:.4f}" in line and "selection-aware" in line, out
    assert f"{nested:.4f}" in line and "optimistic" in line, out  # the winner's own estimate, labelled
    side = json.loads(Path(str(out_csv) + ".json").read_text())
    assert side["cv_score"] == pytest.approx(aware) and side["score_kind"] == "selection-aware nested CV"
    assert side["cv_interval"] == pytest.approx(w["selection_aware_interval"])
    assert side["source"]["nested_score"] == pytest.approx(nested)

    ok(kit(["submit", "--member", "cnx", "--out", str(tmp_path / "cnx.csv")], project))
    member_side = json.loads((tmp_path / "cnx.csv.json").read_text())
    assert member_side["score_kind"] == "pooled OOF"
    meta = json.loads((project / "work" / "members" / "cnx" / "meta.json").read_text())
    assert member_side["cv_score"] == pytest.approx(meta["metrics"]["pooled"]["weighted_f1"])


def old_sidecar(folder: Path, name: str, cv: float, aware: float | None) -> None:
    """A blend submission as kit wrote it before issue 27: `cv_score` the winner's nested score, the
    selection-aware estimate (when that kit had it) only under `source`."""
    (folder / f"{name}.csv").write_text("id,label\nt000,cat\n")
    source = {"kind": "blend", "name": name, "score_from": "winner.json nested_score"}
    if aware is not None:
        source["selection_aware_score"] = aware
    side = {
        "file": f"{name}.csv",
        "source": source,
        "metric": "weighted_f1",
        "cv_score": cv,
        "cv_interval": [cv - 0.1, cv + 0.05],
        "score_kind": "nested CV",
        "kind": "label",
        "created": "2026-01-01T00:00:00+00:00",
    }
    (folder / f"{name}.csv.json").write_text(json.dumps(side))


def test_submissions_rank_by_the_selection_aware_estimate_and_list_old_sidecars(
    project: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "subs"
    ok(kit(["submit", "ensembles/all.yaml", "--out", str(folder / "blend.csv")], project))
    for m in ("cnx", "eff"):
        ok(kit(["submit", "--member", m, "--out", str(folder / f"{m}.csv")], project))
    scores = {
        n: json.loads((folder / f"{n}.csv.json").read_text())["cv_score"] for n in ("blend", "cnx", "eff")
    }
    # an old blend sidecar: nested 0.99 (optimistic), selection-aware below every fresh file: ranked by the
    # nested score it would come first
    aware = min(scores.values()) - 0.01
    old_sidecar(folder, "old", 0.99, aware)
    old_sidecar(folder, "older", 0.98, None)  # from a kit without the selection-aware estimate
    (folder / "by-hand.csv").write_text("id,label\nt000,cat\n")  # no sidecar
    out = ok(kit(["submissions", "--dir", str(folder)], project))
    (t,) = tables(out)
    files = column(t, "file")
    fresh = [f"{n}.csv" for n in scores]
    assert sorted(files[:3]) == sorted(fresh) and files[3:] == ["old.csv", "older.csv", "by-hand.csv"], out
    ranked = [scores[f.removesuffix(".csv")] for f in files[:3]]
    assert ranked == sorted(ranked, reverse=True), (files, scores)
    cv = dict(zip(files, column(t, "CV"), strict=True))
    kinds = dict(zip(files, column(t, "CV is"), strict=True))
    assert cv["old.csv"] == f"{aware:.4f}" and cv["older.csv"] == "0.9800"
    assert kinds["blend.csv"] == kinds["old.csv"] == "selection-aware nested CV"
    assert kinds["cnx.csv"] == "pooled OOF" and "optimistic" in kinds["older.csv"]
    assert cv["by-hand.csv"] == "-"


# ---------------------------------------------------------------- 3. what each member contributes


def contributions(out: str) -> dict[str, dict[str, str]]:
    (t,) = [t for t in tables(out) if t[0][0] == "member"]
    heads, rows = t
    return {r[0]: dict(zip(heads, r, strict=True)) for r in rows}


def test_stack_blend_prints_what_each_member_adds_measured_not_coefficient_shares(project: Path) -> None:
    import csv

    out = ok(kit(["blend", "ensembles/stack.yaml"], project))
    w = winner(project, "stack")
    assert w["blender_kind"] == "stack"  # the case: a stack won
    assert "weights: " not in out  # no bare coefficient shares presented as weights
    got = contributions(out)
    assert set(got) == {"cnx", "eff"}
    heads = next(iter(got.values()))
    assert "mixture weight" not in heads  # a stack has none
    # "log_loss without it": the stack refit without that member, i.e. the one-member stack's in-sample score
    for left, kept in (("cnx", "eff"), ("eff", "cnx")):
        ok(kit(["blend", f"ensembles/stack_{kept}.yaml"], project))
        with (project / "work" / "blends" / f"stack_{kept}" / "table.csv").open() as f:
            alone = next(float(r["insample"]) for r in csv.DictReader(f) if r["blender"] == "stack")
        recorded = next(c for c in w["contributions"] if c["member"] == left)
        assert recorded["without"] == pytest.approx(alone, abs=1e-4)
        assert got[left]["log_loss without it"] == f"{recorded['without']:.4f}"
        # log loss: lower is better, so a member adds (without it) - (with it)
        assert float(got[left]["it adds"]) == pytest.approx(
            recorded["without"] - w["insample_score"], abs=1e-4
        )
    # each member's own pooled OOF log loss, as `kit runs` shows it
    (runs,) = tables(ok(kit(["runs"], project)))
    logloss = dict(zip(column(runs, "member"), column(runs, "logloss"), strict=True))
    for m in ("cnx", "eff"):
        assert got[m]["alone"] == logloss[m]


def test_weighted_average_blend_labels_mixture_weights(project: Path) -> None:
    out = (project / "blend-all.txt").read_text()
    w = winner(project)
    assert all(r["blender_kind"] != "stack" for r in w.get("rows") or [w])  # weighted averages only
    got = contributions(out)
    weights = {m: float(c["mixture weight"]) for m, c in got.items()}
    assert sum(weights.values()) == pytest.approx(1.0, abs=2e-4)
    for m, c in got.items():
        if weights[m] == 0:  # not in the winner: leaving it out changes nothing
            assert c["it adds"] == "+0.0000"
