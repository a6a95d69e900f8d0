"""`kit blend ensembles/NAME.yaml`: load members, judge every blender by nested CV, write workdir/blends/NAME/."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from kit.artifacts.atomic import atomic_dir
from kit.artifacts.blend import (
    OOF_FILE,
    TEST_FILE,
    WINNER_FILE,
    CandidateRecord,
    RowRecord,
    Winner,
    blend_dir,
)
from kit.artifacts.member import artifact_id
from kit.blend.candidates import build_candidates, load_members, resolve_members
from kit.blend.contributions import MEANING as CONTRIBUTIONS_MEANING
from kit.blend.contributions import Contribution, contributions
from kit.blend.nested import Candidate, describe, evaluate_blender, judge
from kit.blend.postprocess import variants
from kit.blend.report import per_class_csv, per_class_rows, table_csv, write_png
from kit.blend.selection import group_codes
from kit.config.ensemble import BestSingleSpec, BlenderSpec, EnsembleSpec
from kit.config.load import apply_overrides, read_yaml, validate_data
from kit.config.schema import K_METRICS, Competition, KitConfig
from kit.config.seeds import seed_bags
from kit.errors import KitError
from kit.metrics.scores import greater_is_better, score
from kit.workspace import Workspace, open_workspace

if TYPE_CHECKING:
    from kit.track import Tracker

SPEC_PREFIX = "spec."


@dataclass(frozen=True)
class BlendResult:
    """What a blend found (kit.cli.render.print_blend shows it); the full record is `path`/winner.json."""

    name: str  # workdir/blends/NAME
    metric: str
    n_candidates: int
    table: list[dict[str, Any]]  # one row per blender x post-processing (kit.blend.report.TABLE_KEYS)
    winner: str  # the picked row's label
    # candidate -> weight as winner.json `weights` records it (non-zero only): mixture weights summing to one
    # for a weighted average; for a stack, each candidate's share of |coefficients|, which is not a mixture
    # weight (a member with no skill can hold a large share); for an average of rows, the mean of the rows'
    # weights. What each member adds to the winner is `contributions`.
    weights: dict[str, float]
    nested_score: float
    nested_interval: tuple[float, float]
    selection_aware_score: float
    selection_aware_interval: tuple[float, float]
    selection: dict[str, Any]  # the selection rule and its evidence, as in winner.json
    insample_score: float
    overstatement: float
    best_single: str  # the best single candidate and its pooled OOF score
    best_single_score: float
    path: Path
    # per member: its own score, its mixture weight (None with a stack) and the winner's in-sample score
    # without it (kit.blend.contributions)
    contributions: list[Contribution] = field(default_factory=list)


def load_spec(path: Path, overrides: list[str] | None = None) -> EnsembleSpec:
    data = apply_overrides(read_yaml(path), overrides, source="--set spec.")
    return validate_data(data, EnsembleSpec, str(path))


def split_overrides(overrides: list[str] | None) -> tuple[list[str], list[str]]:
    """`--set spec.metric=macro_f1` goes to the ensemble spec; every other `--set` to kit.yaml."""
    spec_o = [o[len(SPEC_PREFIX) :] for o in overrides or [] if o.startswith(SPEC_PREFIX)]
    cfg_o = [o for o in overrides or [] if not o.startswith(SPEC_PREFIX)]
    return spec_o, cfg_o


def blend_metric(spec: EnsembleSpec, comp: Competition) -> str:
    """The metric the blend optimises: the spec's `metric` or the competition's, with its k (map_at_k@5)."""
    if spec.metric is None:
        return comp.scored_by
    if spec.metric in K_METRICS:
        if comp.metric_k is None:
            raise KitError(
                f"the spec's metric {spec.metric} needs k; set competition.metric_k in kit.yaml (e.g. 5)"
            )
        return f"{spec.metric}@{comp.metric_k}"
    return spec.metric


def with_baseline(blenders: list[BlenderSpec]) -> list[BlenderSpec]:
    """The spec's blenders, with a best_single row first when the spec has none: every row is compared with it."""
    if any(b.kind == "best_single" for b in blenders):
        return list(blenders)
    labels = {b.label for b in blenders}
    name = next(n for n in ("best_single", "best_single_baseline", "baseline_best_single") if n not in labels)
    return [BestSingleSpec(kind="best_single", name=None if name == "best_single" else name), *blenders]


BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """One BLAS thread while blending, unless the user set a BLAS thread count: the blend's matrix products
    (the stack's fits, the bootstrap) are small, and a BLAS team's spin-waiting threads slow them many-fold
    whenever other processes use the cores."""
    if any(os.environ.get(k) for k in BLAS_ENV):
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def blend(
    spec: EnsembleSpec, ws: Workspace, name: str, spec_path: Path | None = None, *, allow_stale: bool = False
) -> BlendResult:
    """Run the spec against a workspace and write workdir/blends/NAME/.

    Members made from other data are refused; members made with another config too, unless `allow_stale`."""
    with one_blas_thread():
        return _blend(spec, ws, name, spec_path, allow_stale=allow_stale)


def _blend(
    spec: EnsembleSpec, ws: Workspace, name: str, spec_path: Path | None, *, allow_stale: bool
) -> BlendResult:
    started = time.time()
    metric = blend_metric(spec, ws.cfg.competition)
    y = ws.train.labels
    if y is None:
        raise KitError("the train table has no labels; kit blend needs labelled train rows")
    choices = resolve_members(spec, ws.workdir, seed_bags(ws.cfg.members))
    arts = load_members(list(choices), ws.workdir, ws.expected(allow_stale=allow_stale))
    cands = build_candidates(spec, choices, arts, y)
    n_test = 0 if ws.test is None else len(ws.test)
    if cands.test.shape[0] != n_test and ws.test is not None:
        raise KitError(
            f"members' test logits have {cands.test.shape[0]} rows but the test table has {n_test}; "
            "run `kit train NAME` again with the current kit.yaml"
        )
    P, fold = cands.oof, ws.folds.fold
    multilabel = ws.train.multilabel
    pp_spec = spec.postprocess
    if multilabel and pp_spec.thresholds.at_least_one is None:
        at_least_one = ws.cfg.competition.at_least_one_label
        pp_spec = pp_spec.model_copy(
            update={"thresholds": pp_spec.thresholds.model_copy(update={"at_least_one": at_least_one})}
        )
    pp = variants(pp_spec, metric, multilabel=multilabel)
    space: Any = cands.space if multilabel else spec.space  # multi-label blenders take the space object
    rows = []
    for b in with_baseline(spec.blenders):
        rows.extend(evaluate_blender(b, pp, pp_spec, P, y, fold, metric, space))
    codes = group_codes(ws.train.groups, len(y))
    judged = judge(rows, y, fold, codes, metric, spec.selection)
    picked = [rows[r] for r in judged.winners]
    test_probs = (
        np.mean([r.chain.transform(r.blender.predict(cands.test)) for r in picked], axis=0)
        if len(cands.test)
        else np.zeros((0, len(ws.classes)))
    )

    probs = cands.space.to_probs(P)
    single_scores = [score(metric, y, probs[:, m], logits=False) for m in range(P.shape[1])]
    sign = 1 if greater_is_better(metric) else -1
    best = int(np.argmax([sign * s for s in single_scores]))
    per_class = per_class_rows(ws.classes, y, probs[:, best], judged.pick_oof)

    records = [row_record(r, cands.specs) for r in picked]
    rows_of_pick: list[RowRecord] | None = None
    if len(picked) == 1:
        pick = records[0]
        insample = picked[0].insample
    else:
        insample = score(metric, y, np.mean([r.insample_oof for r in picked], axis=0), logits=False)
        pick = RowRecord(
            blender="average",
            blender_kind="average",
            row=average_label(picked),
            weights=mean_weights(records),
            weights_meaning="mean of the averaged rows' weights (each row's own are under `rows`)"
            + (
                "; a stack row's weights are its shares of |coefficients|, not mixture weights: see contributions"
                if any(r.kind == "stack" for r in picked)
                else ""
            ),
            postprocess={},
        )
        rows_of_pick = records
    weights = pick.weights
    contribs = contributions(picked, P, y, [c.member for c in cands.specs], single_scores, metric, insample)
    used = [c for c in cands.specs if c.name in weights]
    members = list(dict.fromkeys(c.member for c in used))
    views = {m: sorted({v for c in used if c.member == m for v in c.views}) for m in members}
    table = describe(rows, judged)
    sel = spec.selection
    lo, hi = judged.pick_interval
    overstatement = sign * (insample - judged.pick_score)
    selection = {
        "rule": sel.rule,
        "confidence": sel.confidence,
        "resamples": sel.resamples,
        "seed": sel.seed,
        "level": sel.level,
        "resampled_by": "group" if ws.train.groups is not None else "row",
        "groups": judged.n_groups,
        "max_nested_row": rows[judged.max_nested].label,
        "baseline_row": rows[judged.baseline].label,
        "picked_rows": [r.label for r in picked],
        "p_beats_best_single": judged.pick_p_beats_single,
        "selection_aware_picks": {
            str(f): " + ".join(rows[r].label for r in rs) for f, rs in judged.aware.picks.items()
        },
    }
    winner = Winner(
        name=name,
        metric=metric,
        space=spec.space,
        classes=list(ws.classes),
        candidates={c.name: CandidateRecord(c.member, list(c.views), c.temperature) for c in cands.specs},
        pick=pick,
        rows=rows_of_pick,
        members=members,
        views=views,
        nested_score=judged.pick_score,
        nested_interval=[float(lo), float(hi)],
        selection_aware_score=judged.aware.score,
        selection_aware_interval=[float(v) for v in judged.aware.interval],
        insample_score=insample,
        selection=selection,
        fingerprints=ws.expected().fingerprints,
        member_artifacts={m: artifact_id(ws.workdir, m) for m in choices},
        report={
            "contributions": [asdict(c) for c in contribs],
            "contributions_meaning": CONTRIBUTIONS_MEANING,
            "overstatement": overstatement,
            "best_single": {"candidate": cands.specs[best].name, "score": single_scores[best]},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(time.time() - started, 3),
        },
    )

    out = blend_dir(ws.workdir, name)
    with atomic_dir(out) as tmp:
        np.save(tmp / OOF_FILE, judged.pick_oof.astype(np.float32))
        np.save(tmp / TEST_FILE, np.asarray(test_probs, dtype=np.float32))
        import json

        (tmp / WINNER_FILE).write_text(
            json.dumps(winner.to_json(), indent=2, ensure_ascii=False) + "\n", "utf-8"
        )
        (tmp / "table.csv").write_text(table_csv(table), "utf-8")
        (tmp / "per_class_f1.csv").write_text(per_class_csv(per_class), "utf-8")
        resolved = spec.model_dump(mode="json")
        resolved["metric"] = metric
        resolved["resolved_members"] = {c: ch.model_dump(mode="json") for c, ch in choices.items()}
        header = f"# ensemble spec as resolved by `kit blend`{f' from {spec_path}' if spec_path else ''}\n"
        (tmp / "spec.yaml").write_text(
            header + yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True), "utf-8"
        )
        write_png(
            tmp / "report.png",
            title=f"{name}: {pick.row} ({sel.rule}), nested {metric} {judged.pick_score:.4f} "
            f"[{lo:.4f}, {hi:.4f}] (selection-aware {judged.aware.score:.4f}; in-sample {insample:.4f}; "
            f"best single {single_scores[best]:.4f})",
            contributions=contribs,
            metric=metric,
            per_class=per_class,
            single_name=cands.specs[best].name,
            y=y,
            blend=judged.pick_oof,
            classes=list(ws.classes),
        )
    return BlendResult(
        name=name,
        metric=metric,
        n_candidates=len(cands.specs),
        table=table,
        winner=pick.row,
        weights=weights,
        nested_score=judged.pick_score,
        nested_interval=(float(lo), float(hi)),
        selection_aware_score=judged.aware.score,
        selection_aware_interval=judged.aware.interval,
        selection=selection,
        insample_score=insample,
        overstatement=overstatement,
        best_single=cands.specs[best].name,
        best_single_score=single_scores[best],
        path=out,
        contributions=contribs,
    )


def run_blend(
    cfg: KitConfig,
    spec: str | Path | EnsembleSpec,
    *,
    name: str | None = None,
    overrides: list[str] | None = None,
    allow_stale: bool = False,
) -> BlendResult:
    """What `kit blend` runs: an ensemble spec over a loaded config -> workdir/blends/NAME/.

    `spec` is a spec file (NAME defaults to its stem; `overrides` are its `key=value` overrides, what the CLI
    takes as `--set spec.key=value`) or an EnsembleSpec built in code (then pass `name`)."""
    from kit.track import tracking

    if isinstance(spec, EnsembleSpec):
        if name is None:
            raise KitError(
                "name the blend built in code: pass name='NAME' (it is written to workdir/blends/NAME/)"
            )
        if overrides:
            raise KitError("overrides apply to a spec file; change the EnsembleSpec itself instead")
        ens, path = spec, None
    else:
        path = Path(spec)
        ens, name = load_spec(path, overrides), name or path.stem
    with tracking(cfg, f"blend {name}") as tracker:
        return track_blend(tracker, blend(ens, open_workspace(cfg), name, path, allow_stale=allow_stale))


def track_blend(tracker: Tracker, result: BlendResult) -> BlendResult:
    """The selection table and the winner's scores to experiment tracking (kit.track)."""
    tracker.table(f"blend/{result.name}/selection", result.table)
    p = f"blend/{result.name}"
    tracker.scalars(
        {
            f"{p}/nested": result.nested_score,
            f"{p}/selection_aware": result.selection_aware_score,
            f"{p}/insample": result.insample_score,
        }
    )
    tracker.text(f"{p}/winner", result.winner)
    return result


def row_record(row: Candidate, specs: list[Any]) -> RowRecord:
    """What winner.json (and kit predict's recipe) needs of one fitted row: its blender, weights, stack
    coefficients and post-processing."""
    return RowRecord(
        blender=row.blender_label,
        blender_kind=row.kind,
        row=row.label,
        weights={c.name: float(w) for c, w in zip(specs, row.blender.weights_, strict=True) if w > 0},
        weights_meaning="share of |coefficients| (see stack), not mixture weights: see contributions"
        if row.kind == "stack"
        else "mixture weights summing to one",
        postprocess=row.chain.fitted_params(),
        nested_score=row.nested,
        fold_weights=row.fold_weights,
        # Stack, or MultilabelStack (kit.blend.multilabel)
        stack=row.blender.fitted_params() if row.kind == "stack" else None,
    )


def average_label(rows: list[Candidate]) -> str:
    return f"average({', '.join(r.label for r in rows)})"


def mean_weights(records: list[RowRecord]) -> dict[str, float]:
    names = list(dict.fromkeys(n for r in records for n in r.weights))
    return {n: sum(r.weights.get(n, 0.0) for r in records) / len(records) for n in names}
