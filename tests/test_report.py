"""`kit report`: the page built from a real tiny trained and blended workspace through the real CLI, its
bounds, what it refuses, `--open`, and the page loaded in a real headless Chromium (skipped without one)."""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import invoke, write_csv, write_image
from train_helpers import make_competition, member, write_config
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
KIT = Path(sys.executable).parent / "kit"
SECTIONS = [
    "members",
    "per-class",
    "confusion",
    "blends",
    "calibration",
    "gallery",
    "label-issues",
    "duplicates",
    "leaderboard",
    "data",
]
HOSTILE = '<i>dog</i> & "co"'  # a class name that is HTML
KOREAN = "고양이"


def _rename_classes(data: Path, names: dict[str, str]) -> None:
    path = data / "train.csv"
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    write_csv(path, rows[0], [[*r[:2], names.get(r[2], r[2])] for r in rows[1:]])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """make_competition's 34 images with a Korean and an HTML class name, two real tiny members trained and
    blended with the shipped ensembles/all.yaml through the CLI, one submission, then `kit report`."""
    root = tmp_path_factory.mktemp("report")
    data = make_competition(root / "data")
    _rename_classes(data, {"cat": KOREAN, "dog": HOSTILE})
    write_csv(data / "sample_submission.csv", ["id", "label"], [[f"t{j:03d}", "eel"] for j in range(8)])
    members = {
        "cnx": member("test_convnext", lr=1e-4, tta=["plain"]),
        "eff": member("test_efficientnet", tta=["plain"]),
    }
    cfg_path = write_config(root / "kit.yaml", data, members)
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["competition"]["sample_submission"] = "sample_submission.csv"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    (root / "ensembles").mkdir()
    shutil.copy(REPO / "ensembles" / "all.yaml", root / "ensembles" / "all.yaml")
    runner = CliRunner()
    for args in (["train"], ["blend", "ensembles/all.yaml"], ["submit", "ensembles/all.yaml"], ["report"]):
        r = invoke(runner, args, cwd=root)
        assert r.exit_code == 0, r.output
    (root / "report-output.txt").write_text(r.output)
    return root


def page(project: Path) -> str:
    return (project / "work" / "report.html").read_text("utf-8")


def section(text: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', text, re.S)
    assert m, f"section {sid} missing"
    return m.group(1)


def test_report_has_every_section_and_is_self_contained(project: Path) -> None:
    text = page(project)
    for sid in SECTIONS:
        section(text, sid)
    out = (project / "report-output.txt").read_text()
    assert f"wrote {project / 'work' / 'report.html'}" in out.replace("\n", "")
    assert not re.search(r"https?://", text)  # no CDN, font, script or image from the network
    srcs = re.findall(r'<img[^>]* src="([^"]*)"', text)
    assert len(srcs) >= 5 and all(
        s.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for s in srcs
    )
    assert "<script" not in text and "<link" not in text
    # user class names are escaped everywhere: the HTML name never appears as markup
    assert "<i>dog</i>" not in text
    assert "&lt;i&gt;dog&lt;/i&gt; &amp; &#34;co&#34;" in text
    assert KOREAN in text


def test_member_scores_match_kit_runs(project: Path) -> None:
    from kit.config.load import load_config
    from kit.runs import collect_runs

    text = section(page(project), "members")
    rows = {r.name: r for r in collect_runs(load_config(project / "kit.yaml"))}
    assert set(rows) == {"cnx", "eff"}
    for name, r in rows.items():
        assert r.interval is not None
        score, lo, hi = r.interval
        row = re.search(rf"<tr><td class=\"l\">{name}</td>.*?</tr>", text, re.S)
        assert row, name
        assert f"{score:.4f} [{lo:.4f}, {hi:.4f}]" in row.group(0)
        meta = json.loads((project / "work" / "members" / name / "meta.json").read_text("utf-8"))
        for fold_score in meta["metrics"]["per_fold"].values():
            assert f"{fold_score:.4f}" in row.group(0)


def test_per_class_f1_matches_the_members_own_metrics(project: Path) -> None:
    text = section(page(project), "per-class")
    head = re.search(r"<tr><th class=\"l\">class</th><th>support</th>(.*?)</tr>", text, re.S)
    assert head
    columns = re.findall(r"<th>(.*?)</th>", head.group(1))
    assert columns[:2] == ["cnx", "eff"] and columns[2] == "all (blend)"
    rows = re.findall(r"<tr><td class=\"l\">(.*?)</td><td>(\d+)</td>((?:<td>[0-9.]+</td>)+)</tr>", text)
    got = {
        html.unescape(c): (int(n), [float(v) for v in re.findall(r"<td>([0-9.]+)</td>", vals)])
        for c, n, vals in rows
    }
    assert got[KOREAN][0] == 18 and got[HOSTILE][0] == 10 and got["eel"][0] == 6  # support: train counts
    for k, name in enumerate(("cnx", "eff")):
        meta = json.loads((project / "work" / "members" / name / "meta.json").read_text("utf-8"))
        for c, f1 in meta["metrics"]["per_class_f1"].items():
            assert got[c][1][k] == pytest.approx(f1, abs=5e-4), (name, c)
    # the blend's column: its nested OOF probabilities, as per_class_f1.csv has them
    with (project / "work" / "blends" / "all" / "per_class_f1.csv").open(encoding="utf-8") as f:
        for r in csv.DictReader(f):
            assert got[r["class"]][1][2] == pytest.approx(float(r["blend"]), abs=5e-4)


def test_blend_gallery_calibration_and_data_sections(project: Path) -> None:
    text = page(project)
    winner = json.loads((project / "work" / "blends" / "all" / "winner.json").read_text("utf-8"))
    blends = section(text, "blends")
    assert f"{winner['nested_score']:.4f}" in blends and f"{winner['selection_aware_score']:.4f}" in blends
    for c in winner["contributions"]:
        assert f"{c['alone']:.4f}" in blends
    assert blends.count('class="picked"') == len(winner["selection"]["picked_rows"])
    # the gallery lists wrong rows only, most confident first
    oof = np.load(project / "work" / "blends" / "all" / "oof_probs.npy")
    from kit.config.load import load_config
    from kit.data.table import load_train

    train = load_train(load_config(project / "kit.yaml").competition)
    wrong = oof.argmax(1) != train.labels
    gallery = section(text, "gallery")
    assert f"{int(wrong.sum())} of {len(oof)} out-of-fold rows are wrong" in gallery
    shown = re.findall(r"<div><b>(\d{3})</b>", gallery)
    assert shown and all(wrong[train.ids.index(i)] for i in shown)
    conf = [float(oof[train.ids.index(i)].max()) for i in shown]
    assert conf == sorted(conf, reverse=True)
    calib = section(text, "calibration")
    assert re.search(r"blend all</td><td>[0-9.]+</td>", calib)
    data = section(text, "data")
    assert "34 train images" in data and "8 test images" in data
    assert "24 x 24 (34)" in data and "24 x 24 (8)" in data  # header sizes of every image (under the sample)
    # label issues: the suggested overrides file was written beside the page and is linked
    issues = section(text, "label-issues")
    csv_path = project / "work" / "report-label-overrides.csv"
    assert csv_path.is_file() and 'download="report-label-overrides.csv"' in issues
    lb = section(text, "leaderboard")
    assert "all-" in lb and "record" in lb.lower()  # the submission is listed, no LB score recorded yet


def test_report_refuses_a_file_it_did_not_write_and_replaces_its_own(project: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    foreign = tmp_path / "notes.html"
    foreign.write_text("<html>my notes</html>")
    r = invoke(runner, ["report", "-c", str(project / "kit.yaml"), "--out", str(foreign)], cwd=project)
    assert r.exit_code == 1
    assert "refusing to write" in r.output and "not written by `kit report`" in r.output
    assert foreign.read_text() == "<html>my notes</html>"
    r = invoke(runner, ["report", "--out", str(tmp_path)], cwd=project)
    assert r.exit_code == 1 and "is a folder" in r.output
    own = tmp_path / "r.html"
    for _ in range(2):  # the second run replaces the first page
        r = invoke(runner, ["report", "--out", str(own)], cwd=project)
        assert r.exit_code == 0, r.output
    assert own.read_text("utf-8").count('<section id="members">') == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_report_open_runs_the_browser_named_by_BROWSER(project: Path, tmp_path: Path) -> None:
    record = tmp_path / "opened.txt"
    script = tmp_path / "browser.sh"
    script.write_text(f'#!/bin/sh\nprintf "%s" "$1" > {record}\n')
    script.chmod(0o755)
    out = tmp_path / "shared.html"
    env = {**os.environ, "BROWSER": str(script), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(
        [str(KIT), "report", "--out", str(out), "--open"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert record.read_text() == out.resolve().as_uri()


def test_sections_without_inputs_say_so(tmp_path: Path) -> None:
    """No member trained, no blend, no test set: the page still builds and says what to run."""
    data = make_competition(tmp_path / "data")
    cfg_path = write_config(tmp_path / "kit.yaml", data, {"cnx": member()})
    cfg = yaml.safe_load(cfg_path.read_text())
    del cfg["competition"]["test"]
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = invoke(CliRunner(), ["report"], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    text = (tmp_path / "work" / "report.html").read_text("utf-8")
    assert "no trained members" in section(text, "members") and "kit train cnx" in section(text, "members")
    assert "no blend" in section(text, "blends")
    for sid in ("per-class", "confusion", "calibration", "gallery", "label-issues"):
        assert 'class="missing"' in section(text, sid), sid
    assert "no test set" in section(text, "data") and "no test set" in section(text, "duplicates")
    assert "34 train images" in section(text, "data")
    assert (tmp_path / "work" / ".kit-workdir.json").is_file()  # the default page claims the workdir


def test_report_refuses_a_workdir_kit_did_not_make_and_writes_nothing(tmp_path: Path) -> None:
    data = make_competition(tmp_path / "data")
    write_config(tmp_path / "kit.yaml", data, {"cnx": member()})
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "my_notes.txt").write_text("mine")
    r = invoke(CliRunner(), ["report"], cwd=tmp_path)
    assert r.exit_code == 1 and "my_notes.txt" in r.output and "kit did not write" in r.output
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["my_notes.txt"]


def test_a_member_whose_train_data_changed_is_not_judged(project: Path, tmp_path: Path) -> None:
    """A label override after training: the members' OOF rows no longer fit the train labels, so the page
    judges none of them and says why (as `kit blend` would refuse them)."""
    copy = tmp_path / "p"
    shutil.copytree(project, copy, symlinks=True)
    cfg = yaml.safe_load((copy / "kit.yaml").read_text())
    cfg["workdir"] = str(copy / "work")
    first = next(csv.DictReader((Path(cfg["competition"]["root"]) / "train.csv").open()))
    other = "eel" if first["label"] != "eel" else "bird"
    write_csv(copy / "overrides.csv", ["id", "label"], [[first["id"], other]])
    cfg["competition"]["label_overrides"] = "overrides.csv"
    (copy / "kit.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    r = invoke(CliRunner(), ["report"], cwd=copy)
    assert r.exit_code == 0, r.output
    text = (copy / "work" / "report.html").read_text("utf-8")
    for name in ("cnx", "eff"):
        assert f"member &#39;{name}&#39;" in text and "cannot be used" in text
    assert 'class="missing"' in section(text, "per-class")


def test_many_classes_keep_the_page_bounded(tmp_path: Path) -> None:
    """30 classes: the confusion matrix keeps the 20 most confused, the per-class table all 30; member OOF
    logits written with kit's artifact writer."""
    from kit.artifacts.member import write_member
    from kit.config.load import load_config
    from kit.report import build
    from kit.workspace import open_workspace

    n_c, per = 30, 3
    rows = []
    for c in range(n_c):
        for j in range(per):
            name = f"train/{c:02d}_{j}.png"
            write_image(tmp_path / "data" / name, seed=c * per + j, size=(12, 10))
            rows.append([f"{c:02d}_{j}", name, f"class{c:02d}"])
    write_csv(tmp_path / "data" / "train.csv", ["id", "img_path", "label"], rows)
    cfg_path = write_config(tmp_path / "kit.yaml", tmp_path / "data", {"m": member()}, k=3)
    cfg = yaml.safe_load(cfg_path.read_text())
    del cfg["competition"]["test"]
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    cfg_obj = load_config(cfg_path)
    ws = open_workspace(cfg_obj)
    rng = np.random.default_rng(0)
    y = ws.train.labels
    logits = rng.normal(size=(len(y), 1, n_c)).astype(np.float32)
    logits[np.arange(len(y)), 0, y] += 1.5
    write_member(
        ws.workdir, "m", oof=logits, test=np.zeros((0, 1, n_c), np.float32), views=["plain"],
        classes=ws.classes, fingerprints=ws.fingerprints(), config={"kind": "timm"},
        metrics={"metric": "weighted_f1", "pooled": {}}, timings={},
    )  # fmt: skip
    result = build.build_report(cfg_obj)
    conf = next(s for s in result.sections if s.id == "confusion")
    assert (
        conf.data["scope"]
        == f"the {build.MAX_CONFUSION_CLASSES} most confused of {n_c} classes (counts among them only)"
    )
    per_class = next(s for s in result.sections if s.id == "per-class")
    assert len(per_class.data["rows"]) == n_c and per_class.data["hidden"] == 0
    f1s = [r["f1"][0] for r in per_class.data["rows"]]
    assert f1s == sorted(f1s)  # worst first
    gallery = next(s for s in result.sections if s.id == "gallery")
    assert len(gallery.data["cards"]) == min(build.MAX_GALLERY, gallery.data["wrong"])
    # no cache store was built (nothing trained): thumbnails were decoded from the files, one per shown row
    assert all(c["thumb"].startswith("data:image/jpeg;base64,") for c in gallery.data["cards"])
    assert result.size < build.SIZE_BOUND_BYTES


# ---------------------------------------------------------------- a real browser


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


needs_chromium = pytest.mark.skipif(chromium() is None, reason="no Chromium on PATH (install `chromium`)")


def _chromium(args: list[str], target: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    exe = chromium()
    assert exe is not None
    cmd = [exe, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={tmp_path / 'profile'}",
           "--enable-logging=stderr", "--v=0", *args, target.resolve().as_uri()]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@needs_chromium
def test_page_loads_in_chromium_without_console_messages(project: Path, tmp_path: Path) -> None:
    target = project / "work" / "report.html"
    r = _chromium(["--dump-dom"], target, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    console = [line for line in r.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    dom = r.stdout
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in dom, sid
    assert dom.count("<img") >= 5
    # the check sees console messages: a page that logs one is caught
    bad = tmp_path / "bad.html"
    bad.write_text(
        target.read_text("utf-8").replace("</body>", "<script>console.error('kit-broken')</script></body>")
    )
    assert "kit-broken" in "\n".join(
        line for line in _chromium(["--dump-dom"], bad, tmp_path).stderr.splitlines() if ":CONSOLE" in line
    )


@pytest.mark.slow
@needs_chromium
def test_page_screenshot_is_not_blank(project: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "shot.png"
    r = _chromium(
        [f"--screenshot={shot}", "--window-size=1280,3000", "--hide-scrollbars"],
        project / "work" / "report.html",
        tmp_path,
    )
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    px = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int64)
    assert px.shape[:2] == (3000, 1280)
    non_white = (px.min(axis=2) < 200).mean()
    assert non_white > 0.02  # text, tables and figures drawn
    colour = (px.max(axis=2) - px.min(axis=2) > 60).mean()
    assert colour > 0.002  # the figures' and thumbnails' colours, not only black text
