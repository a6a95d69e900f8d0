"""What `kit predict` and `kit export` run: images in, a sample-shaped CSV out (or a bundle)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from kit.errors import KitError
from kit.predict.images import read_images
from kit.predict.predictor import Predictor


@dataclass(frozen=True)
class PredictResult:
    path: Path
    n_rows: int
    kind: str  # the submission kind, or "id,label"
    npy: Path | None
    warnings: list[str]


def _check_out(path: Path, force: bool, cfg: Any | None) -> None:
    from kit.submit.write import check_out_path, is_kit_sidecar, sidecar_path

    if cfg is not None:
        check_out_path(path, cfg, force=force)
        return
    if path.is_dir():
        raise KitError(f"--out {path} is a folder; give a file name, e.g. --out {path / 'submission.csv'}")
    if path.exists() and not is_kit_sidecar(sidecar_path(path)):
        raise KitError(
            f"refusing to write {path}: the file exists and kit did not write it; choose another --out"
        )
    if path.exists() and not force:
        raise KitError(f"{path} exists; pass --force to replace it, or choose another --out")


def check_sample_labels(sample: Any, layout: Any, classes: list[str]) -> None:
    """A label sample whose labels (more than one placeholder value, not integers) are not the predictor's
    classes was made for other classes: a bundle of another competition, or a workspace with other classes."""
    from kit.data.table import is_int

    if layout.kind != "label":
        return
    col = layout.value_cols[0]
    values = {r[col].strip() for r in sample.rows if len(r) > col} - {""}
    words = {v for v in values if not is_int(v)}
    foreign = sorted(words - set(classes))
    if len(words) > 1 and foreign:
        raise KitError(
            f"{sample.path}: its column '{sample.header[col].strip()}' holds labels that are not classes of "
            f"this predictor ({', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}); it predicts "
            f"{', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''}. The bundle or ensemble was made "
            "for other classes: export the one trained on this competition. Nothing was written"
        )


def predict_files(
    predictor: Predictor,
    images: Path,
    *,
    sample: Path | None = None,
    out: Path | None = None,
    force: bool = False,
    cfg: Any | None = None,
    now: datetime | None = None,
) -> PredictResult:
    """Predict a folder or table of images and write the CSV: shaped like `sample` through kit submit's
    validated writer, else `id,label` plus a .npy of probabilities beside it. Nothing is written on error."""
    from kit.config.schema import SubmissionConfig
    from kit.submit.check import check_submission_rows, raise_if_failed
    from kit.submit.format import render_csv
    from kit.submit.make import build_rows
    from kit.submit.sample import CsvFile, detect_layout, read_csv_exact
    from kit.submit.write import default_path, is_kit_sidecar, sidecar_path

    comp = predictor.competition
    now = now or datetime.now()
    path = out if out is not None else default_path(f"predict-{predictor.name}", now)
    _check_out(path, force, cfg)
    layout = sample_file = None
    if sample is not None:
        sample_file = read_csv_exact(sample, "sample submission")
        if not sample_file.rows:
            raise KitError(f"{sample}: the sample submission has a header but no rows")
        sub_cfg = SubmissionConfig.model_validate(comp["submission"]) if comp.get("submission") else None
        layout = detect_layout(
            sample_file, predictor.classes, sub_cfg, comp.get("id_column"), comp.get("metric")
        )
        check_sample_labels(sample_file, layout, predictor.classes)
    imgs = read_images(images, comp.get("id_column"), comp.get("image_column"))
    probs = predictor.predict_proba(imgs.items)
    warnings: list[str] = []
    npy = None
    kind: str
    if sample_file is not None and layout is not None:
        sub = build_rows(sample_file, layout, imgs.ids, probs)
        rep = check_submission_rows(sub, sample_file, layout)
        raise_if_failed(
            rep, f"predictions of {predictor.recipe['kind']} '{predictor.name}'", "; nothing was written"
        )
        warnings = rep.warnings
        left = len(imgs.ids) - len(sub.rows)
        if left > 0:
            warnings.append(f"{left} images are not in the sample submission and are left out")
        text, encoding, kind, n = (
            render_csv(sample_file, sub.rows),
            sample_file.encoding,
            layout.kind,
            len(sub.rows),
        )
    else:
        labels = [predictor.classes[i] for i in np.argmax(probs, axis=1)]
        header = CsvFile(
            path=path,
            header_line="id,label",
            header=["id", "label"],
            rows=[],
            lines=[],
            encoding="utf-8",
            newline="\n",
            delimiter=",",
        )
        text = render_csv(header, [[i, lab] for i, lab in zip(imgs.ids, labels, strict=True)])
        encoding, kind, n = "utf-8", "id,label", len(labels)
        npy = path.with_suffix(".npy")
        if npy.exists() and not is_kit_sidecar(sidecar_path(path)):  # not the .npy of an earlier kit predict
            raise KitError(
                f"refusing to write {npy}: the file exists and kit did not write it; choose another --out"
            )
    sidecar = {
        "file": path.name,
        "source": {"kind": "predict", "name": predictor.name, "recipe": predictor.recipe["kind"]},
        "metric": comp.get("metric"),
        "cv_score": predictor.recipe.get("cv_score"),
        "score_kind": predictor.recipe.get("score_kind"),
        "kind": kind,
        "n_rows": n,
        "images": str(images),
        "classes": predictor.classes,
        "created": now.astimezone().isoformat(timespec="seconds"),
    }
    _write_outputs(path, text, encoding, json.loads(json.dumps(sidecar, default=str)), npy, probs)
    return PredictResult(path, n, kind, npy, warnings)


def _write_outputs(
    path: Path, text: str, encoding: str, sidecar: dict[str, Any], npy: Path | None, probs: np.ndarray
) -> None:
    """The CSV with its sidecar and, without a sample, the .npy of probabilities: all or none of them. Temps
    that killed kit runs left beside --out are removed first."""
    from kit.artifacts.atomic import tmp_name
    from kit.predict.scratch import clean_dead_temps, write_failed
    from kit.submit.write import write_submission

    npy_tmp = tmp_name(npy) if npy is not None else None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_dead_temps(path.parent)
        if npy is not None and npy_tmp is not None:
            with npy_tmp.open("wb") as f:
                np.save(f, np.asarray(probs, dtype=np.float32))
        write_submission(path, text, encoding, sidecar)
        if npy is not None and npy_tmp is not None:
            os.replace(npy_tmp, npy)
    except OSError as e:
        raise write_failed("--out", path, e, "the predictions") from None
    finally:
        if npy_tmp is not None:
            npy_tmp.unlink(missing_ok=True)


def export_bundle(
    predictor: Predictor,
    out: Path,
    *,
    half: bool = False,
    configs: dict[str, Any] | None = None,
    wheels: bool = False,
) -> int:
    """Write the bundle; with `wheels`, also kit's and its dependencies' wheels (torch/torchvision excluded)."""
    from kit.predict.bundle import write_bundle
    from kit.predict.wheels import write_wheels

    return write_bundle(
        out,
        predictor.recipe,
        list(predictor.plans.values()),
        predictor.competition,
        half=half,
        configs=configs,
        wheels=write_wheels if wheels else None,
    )
