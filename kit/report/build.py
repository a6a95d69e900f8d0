"""`kit report`: one self-contained HTML page of what a workspace's models get wrong.

Everything the page shows is read from artifacts other commands wrote (members' OOF logits and meta.json,
blends' winner.json / table.csv / oof_probs.npy, the image cache, submission sidecars) and computed with
numpy; pictures are embedded as data URIs, so the page opens offline and can be sent as one file. Work and
size are bounded whatever the number of images or classes: tables keep their worst rows (MAX_* below), the
confusion matrix its most confused classes, the galleries a fixed number of thumbnails (from the cache, else
decoded small), and image sizes come from a sample of headers. A section whose inputs are missing (no blend,
no test set, a helper module not installed) says so instead of failing.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.config.schema import KitConfig
from kit.errors import KitError

if TYPE_CHECKING:
    import numpy as np

    from kit.report.images import Thumbs
    from kit.runs import RunRow
    from kit.workspace import Workspace

REPORT_FILE = "report.html"
MARKER = '<meta name="generator" content="kit report">'  # how kit knows a report file is its own
MAX_CLASS_ROWS = 100  # per-class table: the worst classes by F1
MAX_CONFUSION_CLASSES = 20  # the confusion matrix: all classes up to this, else the most confused ones
MAX_PAIRS = 15  # most confused (true, predicted) pairs listed
MAX_GALLERY = 24  # most confidently wrong OOF images
MAX_LABEL_ISSUES = 30
MAX_DUPLICATES = 24  # train/test pairs and train clusters, each
MAX_CLUSTER_SHOWN = 4  # images shown per train cluster
MAX_BLENDS = 8
MAX_CURVES = 6  # reliability curves (members, then the blend)
CALIBRATION_BINS = 15
TOP_K = 3
# What the bounds above allow, generously: about 330 thumbnails of under 5 kB, a dozen figures of under 120 kB
# and the tables' text; bench/bench_report.py checks a 100k-image, 200-class workspace against it.
SIZE_BOUND_BYTES = 4_000_000


@dataclass
class Section:
    """One part of the page; `missing` says why it has nothing to show (and what to run)."""

    id: str
    title: str
    missing: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReportResult:
    path: Path
    size: int
    seconds: float
    sections: list[Section]
    files: list[Path] = field(default_factory=list)  # written beside the page (label override suggestions)

    def missing(self) -> list[Section]:
        return [s for s in self.sections if s.missing]


def default_report_path(cfg: KitConfig) -> Path:
    return cfg.workdir / REPORT_FILE


def is_kit_report(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return MARKER.encode() in head


def check_report_path(path: Path) -> None:
    """Refuse a path that is a folder or a file kit did not write (kit replaces only its own reports)."""
    if path.is_dir():
        raise KitError(f"--out {path} is a folder; give a file name, e.g. --out {path / REPORT_FILE}")
    if path.suffix.lower() not in (".html", ".htm"):
        raise KitError(f"--out {path}: a report is an HTML file; give a name ending in .html")
    if path.exists() and not is_kit_report(path):
        raise KitError(
            f"refusing to write {path}: the file exists and was not written by `kit report`; kit replaces only "
            "its own reports. Choose another --out"
        )


# ---------------------------------------------------------------- predictions


@dataclass
class Predictions:
    """One set of OOF (and test) probabilities the page judges: a member's plain view or a blend's."""

    name: str
    what: str  # "member" or "blend"
    oof: np.ndarray  # [n_train, C]
    test: np.ndarray | None  # [n_test, C]


def _member_predictions(ws: Workspace, rows: list[RunRow], notes: list[str]) -> list[Predictions]:
    """Each trained member's plain-view OOF (and test) probabilities, for the members whose OOF rows fit the
    current train table (kit.report.labels.oof_expected, the label ranking's check too)."""
    import numpy as np

    from kit.artifacts.member import load_member
    from kit.metrics.multilabel import sigmoid
    from kit.metrics.scores import softmax
    from kit.report.labels import oof_expected

    out = []
    act = sigmoid if ws.train.multilabel else softmax
    expected = oof_expected(ws)
    for r in rows:
        if not r.trained:
            continue
        try:
            art = load_member(ws.workdir, r.name, expected, mmap=True)
        except KitError as e:
            notes.append("; ".join([str(e).splitlines()[0], *e.problems]))
            continue
        t = None
        if ws.test is not None and len(art.test) == len(ws.test):
            t = act(np.asarray(art.test[:, 0, :], dtype=np.float64)).astype(np.float32)
        out.append(
            Predictions(r.name, "member", act(np.asarray(art.oof[:, 0, :], np.float64)).astype(np.float32), t)
        )
    return out


def _blend_records(ws: Workspace, notes: list[str]) -> list[dict[str, Any]]:
    """Every blend (newest first): winner.json, table.csv, its report.png, and its predictions when they can
    be used with the current data (load_blend's checks)."""
    import numpy as np

    from kit.artifacts.blend import (
        OOF_FILE,
        TEST_FILE,
        WINNER_FILE,
        Winner,
        blend_dir,
        list_blends,
        load_blend,
    )
    from kit.report.figures import png_file_uri

    names = sorted(
        list_blends(ws.workdir),
        key=lambda b: (blend_dir(ws.workdir, b) / WINNER_FILE).stat().st_mtime,
        reverse=True,
    )
    out = []
    for name in names[:MAX_BLENDS]:
        d = blend_dir(ws.workdir, name)
        try:
            winner = Winner.from_json(json.loads((d / WINNER_FILE).read_text("utf-8")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            notes.append(
                f"blend '{name}': {d / WINNER_FILE} is unreadable ({e}); run `kit blend ensembles/{name}.yaml`"
            )
            continue
        rec: dict[str, Any] = {"name": name, "winner": winner, "stale": None, "predictions": None}
        try:
            load_blend(ws.workdir, name, ws.expected())
            oof = np.load(d / OOF_FILE).astype(np.float32)
            test = np.load(d / TEST_FILE).astype(np.float32) if ws.test is not None else None
            rec["predictions"] = Predictions(name, "blend", oof, test)
        except KitError as e:
            rec["stale"] = str(e)
        rec["table"] = _read_table(d / "table.csv")
        rec["png"] = png_file_uri((d / "report.png").read_bytes()) if (d / "report.png").is_file() else None
        rec["contributions"] = list(winner.report.get("contributions") or [])
        rec["contributions_meaning"] = winner.report.get("contributions_meaning")
        out.append(rec)
    if len(names) > MAX_BLENDS:
        notes.append(f"{len(names) - MAX_BLENDS} older blend(s) not shown")
    return out


def _read_table(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


# ---------------------------------------------------------------- sections


def _members_section(rows: list[RunRow], metric: str, workdir: Path) -> Section:
    """kit runs' rows (pooled scores, the metric's group-bootstrap interval) with each member's per-fold scores
    (meta.json's metrics.per_fold)."""
    from kit.artifacts.member import read_meta

    s = Section("members", "Members: pooled and per-fold out-of-fold scores")
    per_fold: dict[str, dict[str, float]] = {}
    for r in rows:
        if r.trained:
            try:
                pf = read_meta(workdir, r.name).get("metrics", {}).get("per_fold") or {}
            except KitError:
                pf = {}
            per_fold[r.name] = {str(k): float(v) for k, v in pf.items() if isinstance(v, (int, float))}
    if not per_fold:
        s.missing = f"no trained members in {workdir}; run `kit train`"
    folds = sorted({f for pf in per_fold.values() for f in pf}, key=lambda f: (len(f), f))
    s.data = {"rows": rows, "metric": metric, "folds": folds, "per_fold": per_fold}
    return s


def _f1_per_class(y: np.ndarray, probs: np.ndarray, C: int) -> tuple[np.ndarray, np.ndarray]:
    """(F1, support) per class: of the argmax (multiclass) or of the 0.5 decision per label (multilabel)."""
    import numpy as np

    from kit.metrics.scores import confusion_matrix, f1_from_confusion

    if np.ndim(y) == 2:
        from kit.metrics.multilabel import cell_counts, decide, f1_of_counts

        tp, pr, support = cell_counts(y, decide(probs), axis=0)
        return f1_of_counts(tp, pr, support), support
    f1, support, _ = f1_from_confusion(confusion_matrix(y, probs.argmax(1), C))
    return f1, support


def _per_class_section(
    classes: list[str], y: np.ndarray, preds: list[Predictions], ref: Predictions | None
) -> Section:
    import numpy as np

    s = Section("per-class", "Per-class F1 with support")
    if ref is None:
        s.missing = "no predictions yet: run `kit train` (and `kit blend`)"
        return s
    C = len(classes)
    cols = {p.name: _f1_per_class(y, p.oof, C)[0] for p in preds}
    f1_ref, support = _f1_per_class(y, ref.oof, C)
    order = np.lexsort((-support, f1_ref))[:MAX_CLASS_ROWS]  # worst first, larger classes first among ties
    s.data = {
        "columns": [p.name + (" (blend)" if p.what == "blend" else "") for p in preds],
        "rows": [
            {
                "class": classes[i],
                "support": int(support[i]),
                "f1": [float(cols[p.name][i]) for p in preds],
            }
            for i in order
        ],
        "reference": ref.name,
        "hidden": max(0, C - MAX_CLASS_ROWS),
        "decision": "the 0.5 decision per label" if np.ndim(y) == 2 else "the argmax",
    }
    return s


def _confusion_section(classes: list[str], y: np.ndarray, ref: Predictions | None) -> Section:
    import numpy as np

    from kit.metrics.scores import confusion_matrix
    from kit.report.figures import confusion_figure

    s = Section("confusion", "Confusion matrix")
    if ref is None:
        s.missing = "no predictions yet: run `kit train`"
        return s
    if np.ndim(y) == 2:
        s.missing = "a multi-label competition has no single confusion matrix; see the per-label F1 above"
        return s
    C = len(classes)
    cm = confusion_matrix(y, ref.oof.argmax(1), C)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(off, axis=None)[::-1]
    pairs = [(int(k // C), int(k % C)) for k in flat[:MAX_PAIRS] if off.flat[k] > 0]
    if C <= MAX_CONFUSION_CLASSES:
        keep = list(range(C))
        scope = f"all {C} classes"
    else:  # the classes of the largest off-diagonal cells, in class order
        chosen: dict[int, None] = {}
        for k in flat:
            if off.flat[k] == 0 or len(chosen) >= MAX_CONFUSION_CLASSES:
                break
            for c in (int(k // C), int(k % C)):
                if len(chosen) < MAX_CONFUSION_CLASSES:
                    chosen[c] = None
        keep = sorted(chosen) or list(range(MAX_CONFUSION_CLASSES))
        scope = f"the {len(keep)} most confused of {C} classes (counts among them only)"
    sub = cm[np.ix_(keep, keep)]
    support = cm.sum(axis=1)
    s.data = {
        "figure": confusion_figure(sub, [classes[i] for i in keep], f"{ref.name}: {scope}"),
        "scope": scope,
        "reference": ref.name,
        "pairs": [
            {
                "true": classes[t],
                "predicted": classes[p],
                "count": int(cm[t, p]),
                "share": float(cm[t, p] / max(support[t], 1)),
            }
            for t, p in pairs
        ],
    }
    return s


def calibration(correct: np.ndarray, confidence: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Expected calibration error of top-class confidences (equal-width bins): the row-weighted mean of
    |accuracy - confidence| per bin, with each bin's mean confidence, accuracy and row count."""
    import numpy as np

    which = np.clip((confidence * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(which, minlength=bins).astype(np.float64)
    conf = np.bincount(which, weights=confidence, minlength=bins) / np.maximum(counts, 1)
    acc = np.bincount(which, weights=correct.astype(np.float64), minlength=bins) / np.maximum(counts, 1)
    ece = float((counts * np.abs(acc - conf)).sum() / max(counts.sum(), 1))
    return {"ece": ece, "confidence": conf, "accuracy": acc, "counts": counts}


def _calibration_section(y: np.ndarray, preds: list[Predictions]) -> Section:
    import numpy as np

    from kit.report.figures import reliability_figure

    s = Section("calibration", "Calibration: reliability diagram and expected calibration error")
    if not preds:
        s.missing = "no predictions yet: run `kit train`"
        return s
    shown = [p for p in preds if p.what == "member"][: MAX_CURVES - 1] + [
        p for p in preds if p.what == "blend"
    ][:1]
    rows, curves = [], []
    for p in shown:
        if np.ndim(y) == 2:  # every (image, label) cell: the probability of the label against its truth
            conf = np.maximum(p.oof, 1 - p.oof).ravel()
            correct = ((p.oof >= 0.5) == (y > 0)).ravel()
        else:
            conf = p.oof.max(1)
            correct = p.oof.argmax(1) == y
        c = calibration(correct, conf.astype(np.float64))
        rows.append(
            {
                "name": p.name,
                "what": p.what,
                "ece": c["ece"],
                "confidence": float(conf.mean()),
                "accuracy": float(correct.mean()),
            }
        )
        curves.append((p.name, c["confidence"], c["accuracy"], c["counts"]))
    s.data = {"figure": reliability_figure(curves), "rows": rows, "bins": CALIBRATION_BINS}
    return s


def _top(probs_row: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    import numpy as np

    idx = np.argsort(probs_row)[::-1][:TOP_K]
    return [{"class": classes[int(i)], "p": float(probs_row[int(i)])} for i in idx]


def _gallery_section(ws: Workspace, ref: Predictions | None, thumbs: Thumbs) -> Section:
    import numpy as np

    s = Section("gallery", "Most confidently wrong out-of-fold images")
    if ref is None:
        s.missing = "no predictions yet: run `kit train`"
        return s
    y = ws.train.labels
    assert y is not None
    if np.ndim(y) == 2:
        s.missing = "multi-label: see the label issues below for the images whose labels the models doubt"
        return s
    pred = ref.oof.argmax(1)
    wrong = np.flatnonzero(pred != y)
    conf = ref.oof[wrong, pred[wrong]]
    rows = wrong[np.argsort(-conf, kind="stable")[:MAX_GALLERY]]
    s.data = {
        "reference": ref.name,
        "wrong": len(wrong),
        "n": len(y),
        "cards": [
            {
                "id": ws.train.ids[i],
                "file": ws.train.paths[i].name,
                "true": ws.classes[int(y[i])],
                "p_true": float(ref.oof[i, int(y[i])]),
                "top": _top(ref.oof[i], ws.classes),
                "thumb": thumbs(int(i)),
            }
            for i in rows
        ],
    }
    return s


def _data_section(ws: Workspace, ref: Predictions | None) -> Section:
    import numpy as np

    from kit.report.images import size_stats

    s = Section("data", "Train and test: classes and image sizes")
    y = ws.train.labels
    assert y is not None
    C = len(ws.classes)
    counts = y.sum(axis=0) if np.ndim(y) == 2 else np.bincount(y, minlength=C)
    test_counts = None
    if ref is not None and ref.test is not None:
        test_counts = (
            (ref.test >= 0.5).sum(axis=0) if np.ndim(y) == 2 else np.bincount(ref.test.argmax(1), minlength=C)
        )
    n_test = len(ws.test) if ws.test is not None else 0
    order = np.argsort(-counts, kind="stable")
    shown = (
        order
        if C <= 2 * MAX_CLASS_ROWS
        else np.concatenate([order[:MAX_CLASS_ROWS], order[-MAX_CLASS_ROWS:]])
    )
    s.data = {
        "n_train": len(ws.train),
        "n_test": n_test,
        "test_source": ref.name if ref is not None and test_counts is not None else None,
        "rows": [
            {
                "class": ws.classes[i],
                "train": int(counts[i]),
                "train_share": float(counts[i] / max(len(ws.train), 1)),
                "test": None if test_counts is None else int(test_counts[i]),
                "test_share": None if test_counts is None else float(test_counts[i] / max(n_test, 1)),
            }
            for i in shown
        ],
        "hidden": C - len(shown),
        "imbalance": float(counts.max() / max(counts.min(), 1)),
        "sizes": [size_stats("train", ws.train.paths)]
        + ([size_stats("test", ws.test.paths)] if ws.test is not None else []),
        "no_test": ws.test is None,
    }
    return s


def _label_issues_section(ws: Workspace, out: Path, thumbs: Thumbs, files: list[Path]) -> Section:
    """kit.report.labels' ranking over every member that fits the train table, with the suggested
    competition.label_overrides CSV written beside the page and embedded as a download link."""
    from kit.report import labels
    from kit.report.figures import data_uri

    s = Section("label-issues", "Label issues: train images whose out-of-fold predictions doubt their label")
    try:
        stack, names = labels.member_oof_stack(ws)
    except KitError as e:
        s.missing = str(e)
        return s
    assert ws.train.labels is not None
    issues = labels.rank_label_issues(stack, ws.train.labels, ws.train.ids, ws.classes, MAX_LABEL_ISSUES)
    csv_path = out.with_name(out.stem + "-label-overrides.csv")
    link, problem = None, None
    if issues:
        try:
            labels.write_override_suggestions(csv_path, issues)
            files.append(csv_path)
            link = data_uri(csv_path.read_bytes(), "text/csv")
        except KitError as e:  # a reviewed copy is never replaced: the page still lists the issues
            problem = str(e)
    s.data = {
        "members": names,
        "cards": [{"issue": i, "file": ws.train.paths[i.row].name, "thumb": thumbs(i.row)} for i in issues],
        "csv": csv_path.name if link else None,
        "csv_uri": link,
        "problem": problem,
    }
    return s


def _duplicates_section(ws: Workspace, train_thumbs: Thumbs, test_thumbs: Thumbs | None) -> Section:
    """kit.data.duplicates' perceptual hashes (cached by content in the workdir's cache) and the clusters and
    train/test pairs they find."""
    from kit.artifacts.workdir import is_kit_workdir
    from kit.data import duplicates

    s = Section("duplicates", "Near-duplicates: within train, and between train and test")
    cache = ws.cache_dir if is_kit_workdir(ws.workdir) else None  # never litter a folder kit has not claimed
    try:
        train_h = duplicates.image_hashes(ws.train.paths, cache_dir=cache)
        test_h = duplicates.image_hashes(ws.test.paths, cache_dir=cache) if ws.test is not None else None
    except KitError as e:
        s.missing = str(e)
        return s
    found = duplicates.near_duplicates(train_h, test_h)
    s.data = {
        "pairs": [
            {
                "train": ws.train.ids[a],
                "train_label": _label_of(ws, a),
                "test": ws.test.ids[b] if ws.test is not None else "",
                "distance": d,
                "train_thumb": train_thumbs(a),
                "test_thumb": test_thumbs(b) if test_thumbs is not None else None,
            }
            for a, b, d in found.train_test[:MAX_DUPLICATES]
        ],
        "n_pairs": len(found.train_test),
        "clusters": [
            {
                "size": len(c),
                "cards": [
                    {"id": ws.train.ids[r], "label": _label_of(ws, r), "thumb": train_thumbs(r)}
                    for r in c[:MAX_CLUSTER_SHOWN]
                ],
            }
            for c in found.train_clusters[:MAX_DUPLICATES]
        ],
        "n_clusters": len(found.train_clusters),
        "n_clustered": found.n_clustered,
        "max_distance": found.max_distance,
        "no_test": ws.test is None,
    }
    return s


def _label_of(ws: Workspace, row: int) -> str:
    import numpy as np

    y = ws.train.labels
    assert y is not None
    if np.ndim(y) == 2:
        return ", ".join(ws.classes[j] for j in np.flatnonzero(y[row]))
    return ws.classes[int(y[row])]


def _leaderboard_section(folder: Path) -> Section:
    """Submissions in `folder` (kit.submit.write's records, with the public scores `kit submissions --lb`
    recorded) and where choosing by the leaderboard contradicts CV (kit.submit.leaderboard)."""
    from kit.submit.leaderboard import lb_contradictions
    from kit.submit.write import list_submissions

    s = Section("leaderboard", "CV against the leaderboard")
    records = list_submissions(folder)
    if not records:
        s.missing = f"no submissions in {folder}/: run `kit submit`, then `kit submissions --lb FILE SCORE`"
        return s
    s.data = {
        "records": records,
        "with_lb": sum(r.lb is not None for r in records),
        "warnings": [c.message() for c in lb_contradictions(records)],
    }
    return s


def _blends_section(blends: list[dict[str, Any]], workdir: Path) -> Section:
    s = Section("blends", "Blends: the selection table and what each member contributes")
    if not blends:
        s.missing = f"no blend in {workdir / 'blends'} yet: run `kit blend ensembles/all.yaml`"
    s.data = {"blends": blends}
    return s


# ---------------------------------------------------------------- the page


def _render(context: dict[str, Any]) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("kit.report", "templates"),
        autoescape=True,  # class names, ids and file names are user data
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = lambda v, d=4: "-" if v is None else f"{v:.{d}f}"
    env.filters["pct"] = lambda v: "-" if v is None else f"{100 * v:.1f}%"
    return env.get_template("report.html.j2").render(**context, marker=MARKER)


def build_report(cfg: KitConfig, out: Path | None = None, submissions: Path | None = None) -> ReportResult:
    """Write the workspace's report (default workdir/report.html, atomically) and say what it holds;
    `submissions`: the folder `kit submit` wrote to (default submissions/)."""
    import numpy as np

    from kit.artifacts.atomic import atomic_write_text
    from kit.artifacts.workdir import claim_workdir
    from kit.data.cache import find_store
    from kit.report.images import Thumbs
    from kit.runs import member_intervals, run_rows
    from kit.submit.write import SUBMISSIONS_DIR
    from kit.workspace import open_workspace

    t0 = time.perf_counter()
    path = out if out is not None else default_report_path(cfg)
    check_report_path(path)
    if out is None:  # the page and its suggestions CSV go into the workdir: only into one that is kit's
        claim_workdir(cfg.workdir)
    ws = open_workspace(cfg, write=False)
    y = ws.train.labels
    if y is None:
        raise KitError(
            f"{cfg.competition.train}: the train table has no labels; a report needs labelled train images"
        )
    notes: list[str] = []
    rows = run_rows(ws.workdir, cfg.members, ws.expected())
    if rows:
        member_intervals(cfg, rows, train=ws.train)
    preds = _member_predictions(ws, rows, notes)
    blends = _blend_records(ws, notes)
    blend = next((b["predictions"] for b in blends if b["predictions"] is not None), None)
    metric = cfg.competition.scored_by
    ref: Predictions | None = blend
    if ref is None and preds:  # the best member by its pooled score under the competition metric
        from kit.metrics.scores import greater_is_better

        scored = {r.name: r.interval[0] for r in rows if r.interval is not None}
        sign = 1.0 if greater_is_better(metric) else -1.0
        ref = max(preds, key=lambda p: sign * scored.get(p.name, -np.inf * sign))
    shown = preds + ([blend] if blend is not None else [])
    train_thumbs = Thumbs(
        ws.train.paths, find_store(ws.cache_dir, "train", ws.train_images_fingerprint, len(ws.train))
    )
    test_thumbs = (
        Thumbs(ws.test.paths, find_store(ws.cache_dir, "test", ws.test_images_fingerprint, len(ws.test)))
        if ws.test is not None
        else None
    )
    files: list[Path] = []
    sections = [
        _members_section(rows, metric, ws.workdir),
        _per_class_section(ws.classes, y, shown, ref),
        _confusion_section(ws.classes, y, ref),
        _blends_section(blends, ws.workdir),
        _calibration_section(y, shown),
        _gallery_section(ws, ref, train_thumbs),
        _label_issues_section(ws, path, train_thumbs, files),
        _duplicates_section(ws, train_thumbs, test_thumbs),
        _leaderboard_section(SUBMISSIONS_DIR if submissions is None else submissions),
        _data_section(ws, ref),
    ]
    context = {
        "title": f"kit report: {cfg.workdir.resolve().parent.name}",  # the project folder
        "created": time.strftime("%Y-%m-%d %H:%M:%S%z"),
        "workdir": str(ws.workdir),
        "metric": metric,
        "classes": len(ws.classes),
        "n_train": len(ws.train),
        "n_test": len(ws.test) if ws.test is not None else None,
        "k": ws.folds.k,
        "reference": None if ref is None else f"{ref.what} {ref.name}",
        "sections": sections,
        "by_id": {s.id: s for s in sections},
        "notes": notes,
        "thumbs_from": "kit's image cache"
        if train_thumbs.store is not None
        else "the image files (decoded small)",
    }
    html = _render(context)
    atomic_write_text(path, html)
    return ReportResult(path, len(html.encode("utf-8")), time.perf_counter() - t0, sections, files)
