"""`kit submit` and `kit check-submission` as functions over a config (the CLI calls these, tests too)."""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts.names import plain_name
from kit.config.schema import KitConfig
from kit.data.table import load_train
from kit.errors import KitError
from kit.submit.check import CheckReport, check_submission_rows, raise_if_failed
from kit.submit.format import fill_rows, match_ids, render_csv, value_cells
from kit.submit.sample import CsvFile, Layout, detect_layout, read_csv_exact
from kit.submit.source import Source, blend_name, blend_source, member_source
from kit.submit.write import SUBMISSIONS_DIR, check_out_path, default_path, write_submission
from kit.workspace import Workspace, open_workspace


@dataclass(frozen=True)
class SubmitResult:
    path: Path
    layout: Layout
    source: Source
    n_rows: int
    warnings: list[str]

    def summary(self, header: list[str]) -> str:
        return self.layout.describe(header)


def load_sample(cfg: KitConfig, classes: list[str]) -> tuple[CsvFile, Layout]:
    comp = cfg.competition
    if comp.sample_submission is None:
        raise KitError(
            "competition.sample_submission is not set; kit copies the submission's shape from it, so point it "
            "at the competition's sample_submission.csv in kit.yaml"
        )
    sample = read_csv_exact(comp.sample_submission, "sample submission")
    if not sample.rows:
        raise KitError(f"{comp.sample_submission}: the sample submission has a header but no rows")
    return sample, detect_layout(
        sample,
        classes,
        comp.submission,
        comp.id_column,
        comp.scored_by,
        multilabel=comp.multilabel,
        at_least_one=comp.at_least_one_label,
    )


def build_rows(sample: CsvFile, layout: Layout, test_ids: list[str], test_probs: np.ndarray) -> CsvFile:
    """Pure: the submission as a CsvFile (rows in the sample's order), before any check or write."""
    test_probs = np.asarray(test_probs)
    if test_probs.shape[0] != len(test_ids):
        raise KitError(f"{test_probs.shape[0]} rows of test probabilities for {len(test_ids)} test ids")
    sample_ids = sample.column(layout.id_col)
    idx = match_ids(sample_ids, test_ids, lines=sample.lines)
    rows = fill_rows(sample, layout, value_cells(layout, test_probs[idx]))
    return CsvFile(
        path=sample.path,
        header_line=sample.header_line,
        header=list(sample.header),
        rows=rows,
        lines=list(sample.lines),
        encoding=sample.encoding,
        newline=sample.newline,
        delimiter=sample.delimiter,
    )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _sidecar(
    ws: Workspace, src: Source, layout: Layout, sample: CsvFile, path: Path, now: datetime
) -> dict[str, Any]:
    return {
        "file": path.name,
        "source": {"kind": src.kind, "name": src.name, **src.details},
        "metric": src.metric,
        "cv_score": src.cv_score,
        "cv_interval": src.cv_interval,
        "score_kind": src.score_kind,
        "kind": layout.kind,
        **_thresholds(src, layout),
        "n_rows": len(sample.rows),
        "competition": ws.cfg.competition.name,
        "fingerprints": {
            "config": _sha(ws.cfg.model_dump_json().encode()),
            "data": ws.data_fingerprint,
            "train_ids": ws.train.ids_fingerprint(),
            "test_ids": ws.test.ids_fingerprint() if ws.test is not None else None,
            "folds": ws.folds.fingerprint,
            "sample_submission": _sha(sample.path.read_bytes()),
        },
        "created": now.astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
    }


def _thresholds(src: Source, layout: Layout) -> dict[str, Any]:
    """Multi-label sidecars: the per-label decision thresholds behind the cells (the blend's fitted ones, else
    0.5 for every label) and whether every row keeps a label."""
    if not layout.kind.startswith("multilabel_"):
        return {}
    fitted = ((src.details.get("postprocess") or {}).get("thresholds") or {}).get("thresholds")
    values = fitted if fitted is not None else [0.5] * len(layout.classes)
    return {
        "thresholds": dict(zip(layout.classes, values, strict=True)),
        "thresholds_from": "the blend's per-label thresholds (post-processing)"
        if fitted
        else "0.5 (default)",
        "at_least_one_label": layout.at_least_one,
    }


def make_submission(
    cfg: KitConfig,
    ensemble: str | Path | None = None,
    *,
    member: str | None = None,
    out: Path | None = None,
    folder: Path = SUBMISSIONS_DIR,
    now: datetime | None = None,
    allow_stale: bool = False,
    force: bool = False,
) -> SubmitResult:
    """What `kit submit` runs: fill the sample with a blend's (`ensemble`: its spec file or blend name) or a
    member's test probabilities, validate, write CSV + sidecar (default submissions/NAME-TIME.csv).

    `out` never replaces a competition file, anything under the workdir, or a file `kit submit` did not write;
    an existing submission of kit's only with `force` (`check_out_path`).
    """
    if (ensemble is None) == (member is None):
        raise KitError("name what to submit: `kit submit ensembles/NAME.yaml` or `kit submit --member NAME`")
    from kit.track import tracking

    with tracking(cfg, f"submit {ensemble if member is None else member}") as tracker:
        result = _make_submission(cfg, ensemble, member, out, folder, now, allow_stale, force)
        cv = result.source.cv_score
        tracker.scalars({} if cv is None else {"submission/cv_score": cv})
        tracker.text("submission/metric", result.source.metric)
        tracker.text("submission/score_kind", result.source.score_kind)
        tracker.text("submission/file", str(result.path))
    return result


def _make_submission(
    cfg: KitConfig,
    ensemble: str | Path | None,
    member: str | None,
    out: Path | None,
    folder: Path,
    now: datetime | None,
    allow_stale: bool,
    force: bool,
) -> SubmitResult:
    if member is not None:
        plain_name(member, "member")
    if out is not None:
        check_out_path(out, cfg, force=force)
    ws = open_workspace(cfg)
    if ws.test is None:
        raise KitError("competition.test is not set; kit needs the test table to match the sample's ids")
    sample, layout = load_sample(cfg, ws.classes)
    src = (
        blend_source(ws, blend_name(ensemble), allow_stale=allow_stale)
        if ensemble is not None
        else member_source(ws, str(member), allow_stale=allow_stale)
    )
    sub = build_rows(sample, layout, ws.test.ids, src.test_probs)
    rep = check_submission_rows(sub, sample, layout)
    raise_if_failed(rep, f"submission from {src.kind} '{src.name}'", "; nothing was written")
    left_out = len(ws.test.ids) - len(sub.rows)
    if left_out > 0:
        rep.warnings.append(f"{left_out} test images are not in the sample submission and are left out")
    now = now or datetime.now()
    path = out if out is not None else default_path(src.name, now, folder)
    check_out_path(path, cfg, force=force)
    write_submission(
        path, render_csv(sample, sub.rows), sample.encoding, _sidecar(ws, src, layout, sample, path, now)
    )
    return SubmitResult(path=path, layout=layout, source=src, n_rows=len(sub.rows), warnings=rep.warnings)


def check_submission_file(cfg: KitConfig, path: Path) -> tuple[CheckReport, Layout, CsvFile]:
    """Validate any CSV against the config's sample_submission; raises KitError listing every problem."""
    classes = (
        list(cfg.competition.classes) if cfg.competition.classes else load_train(cfg.competition).classes
    )
    sample, layout = load_sample(cfg, classes)
    sub = read_csv_exact(path)
    rep = check_submission_rows(sub, sample, layout)
    raise_if_failed(rep, str(path))
    return rep, layout, sample
