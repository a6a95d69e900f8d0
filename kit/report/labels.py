"""Train rows whose out-of-fold predictions say the label is wrong (cleanlab's confident learning).

The evidence is the members' OOF probabilities: each member's logits averaged over its TTA views, at the
temperature that fits its OOF log loss, mapped to probabilities as kit.blend.candidates maps them (softmax;
multilabel: per-label sigmoid), then averaged over members. cleanlab's `find_label_issues` lists the rows
whose prediction is not the given label, ranked by `get_label_quality_scores` (self-confidence: the
probability of the given label, so lower is more suspicious), and marks those its confident learning
(`prune_by_noise_rate`, precise but sparing: it can pass over a clear error when a pair of classes has too
few) counts among the label errors. `write_override_suggestions` writes them in competition.label_overrides'
format (kit.data.overrides) for a person to review.

Pure array code apart from `member_oof_probs` (reads member artifacts) and `write_override_suggestions`;
numpy and cleanlab are imported inside the functions.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.errors import KitError

if TYPE_CHECKING:
    import numpy as np

    from kit.artifacts.member import Expected
    from kit.config.schema import KitConfig
    from kit.workspace import Workspace

QUALITY_METHOD = "self_confidence"
TEMPERATURE_CELLS = 2_000_000
WRITTEN_BY = "kit label suggestions"
SUGGESTION_COLUMNS = ("id", "label", "given", "quality", "suggested_prob", "members_agree", "flagged")


@dataclass(frozen=True)
class LabelIssue:
    """One train row whose label the OOF predictions doubt.

    `row` indexes the train table (and the OOF arrays); `id` is the table's row key, as
    competition.label_overrides names it. `given` and `suggested` are class names (multilabel: labels joined
    by the separator; `suggested` may then be empty). `quality` is cleanlab's label quality score in [0, 1]
    (lower: more likely mislabelled), `suggested_prob` the pooled probability of the suggestion (multilabel:
    of exactly that label set), `members_agree` how many of `n_members` members' own predictions are the
    suggestion (None when only pooled probabilities were given). `flagged`: cleanlab's confident learning
    counts the row among the label errors (the rest are candidates ranked by quality)."""

    row: int
    id: str
    given: str
    suggested: str
    quality: float
    suggested_prob: float
    members_agree: int | None
    n_members: int | None
    flagged: bool


def oof_expected(ws: Workspace) -> Expected:
    """What a member must fit for its OOF rows to be read against the current train table: only the data
    decides (ids, labels, images, folds and classes), not its config, the metric or the test set."""
    expected = replace(ws.expected(), member_configs=None, metric=None)
    return replace(expected, fingerprints=replace(expected.fingerprints, test_ids=None, test=None))


def member_oof_stack(
    cfg_or_workspace: KitConfig | Workspace, members: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Each member's OOF probabilities [n, M, C] (views averaged, fitted temperature, the member's space) and
    the member names. `members=None` takes every trained member whose OOF rows fit the current train table and
    folds; named members that do not fit are an error naming the fix (`kit train NAME`). Config changes of a
    member do not matter here (its OOF rows are still predictions of the current rows)."""
    import numpy as np

    from kit.artifacts.member import MemberArtifact, list_members, load_member
    from kit.blend.candidates import fit_temperature, mean_logits
    from kit.metrics.multilabel import sigmoid
    from kit.metrics.scores import softmax
    from kit.workspace import Workspace, open_workspace

    ws = (
        cfg_or_workspace
        if isinstance(cfg_or_workspace, Workspace)
        else open_workspace(cfg_or_workspace, need_test=False, write=False)
    )
    expected = oof_expected(ws)
    arts: list[MemberArtifact] = []
    if members is None:
        skipped = []
        for name in list_members(ws.workdir):
            try:
                arts.append(load_member(ws.workdir, name, expected, mmap=True))
            except KitError as e:
                skipped.append(f"{name}: {str(e).splitlines()[0]}")
        if not arts:
            raise KitError(
                f"no trained member in {ws.workdir / 'members'} fits the current train table; run `kit train`",
                problems=skipped,
            )
    else:
        problems = []
        for name in members:
            try:
                arts.append(load_member(ws.workdir, name, expected, mmap=True))
            except KitError as e:
                problems.append(str(e).replace("\n", "\n    "))
        if problems:
            raise KitError(f"{len(problems)} member(s) cannot be read for label issues:", problems=problems)
    assert ws.train.labels is not None
    y = ws.train.labels
    # one scalar per member, fitted on evenly spaced rows (about TEMPERATURE_CELLS logits, at least 2,000
    # rows): the grid search costs seconds, not minutes, on 100k rows of 1,000 classes
    n_fit = min(len(y), max(2_000, TEMPERATURE_CELLS // max(1, len(ws.classes))))
    fit = np.unique(np.linspace(0, len(y) - 1, n_fit).astype(np.int64))
    cols = []
    for art in arts:
        logits = mean_logits(art.oof, art.views, tuple(art.views))
        if y.ndim == 2:
            from kit.blend.multilabel import fit_temperature as fit_multilabel

            cols.append(sigmoid(logits / fit_multilabel(logits[fit], y[fit])).astype(np.float32))
        else:
            cols.append(softmax(logits / fit_temperature(logits[fit], y[fit])).astype(np.float32))
    return np.stack(cols, axis=1), [a.name for a in arts]


def member_oof_probs(
    cfg_or_workspace: KitConfig | Workspace, members: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """The members' pooled OOF probabilities [n, C] (the mean of `member_oof_stack` over members) and the
    member names. Pass `member_oof_stack`'s [n, M, C] to `rank_label_issues` instead to get members_agree."""
    import numpy as np

    stack, names = member_oof_stack(cfg_or_workspace, members)
    return stack.mean(axis=1, dtype=np.float64), names


def rank_label_issues(
    probs: np.ndarray,
    y: np.ndarray,
    ids: Sequence[str],
    classes: Sequence[str],
    limit: int | None = 100,
    *,
    separator: str = " ",
) -> list[LabelIssue]:
    """The train rows whose OOF prediction is not the given label, most suspicious (lowest label quality)
    first, at most `limit`; `flagged` marks those cleanlab's confident learning counts as label errors.

    probs: pooled OOF probabilities [n, C], or per member [n, M, C] (pooled here by the mean; then each issue
    counts the members whose own prediction is the suggestion). y: class indices [n], or a 0/1 label matrix
    [n, L] (multilabel; labels joined by `separator` in `given`/`suggested`). The suggestion is the most
    probable class other than the given one (multilabel: the labels at probability >= 0.5)."""
    import numpy as np

    p = np.asarray(probs, dtype=np.float64)
    per_member = p if p.ndim == 3 else None
    pooled = p.mean(axis=1) if p.ndim == 3 else p
    y = np.asarray(y)
    if pooled.ndim != 2 or len(pooled) != len(y) or len(ids) != len(y) or pooled.shape[1] != len(classes):
        raise KitError(
            f"label issues: probabilities {p.shape}, labels {y.shape}, {len(ids)} ids and {len(classes)} classes "
            "do not line up; the OOF rows must follow the train table"
        )
    if len(y) == 0:
        return []
    if y.ndim == 2:
        return _multilabel_issues(pooled, per_member, y, ids, classes, limit, separator)
    return _multiclass_issues(pooled, per_member, y, ids, classes, limit)


def _multiclass_issues(
    pooled: np.ndarray,
    per_member: np.ndarray | None,
    y: np.ndarray,
    ids: Sequence[str],
    classes: Sequence[str],
    limit: int | None,
) -> list[LabelIssue]:
    import numpy as np
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    pooled = pooled / pooled.sum(axis=1, keepdims=True)  # cleanlab checks that rows sum to 1
    labels = y.astype(np.int64)
    if len(np.unique(labels)) < 2:
        return []
    # n_jobs=1: no worker processes forked from a process that may hold torch and open files. A long tail's
    # small classes make cleanlab warn once per class that it may miss issues there: the ranking still covers them
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*too few examples", category=UserWarning)
        ranked = find_label_issues(
            labels, pooled, filter_by="predicted_neq_given", return_indices_ranked_by=QUALITY_METHOD, n_jobs=1
        )
        flagged = find_label_issues(labels, pooled, n_jobs=1)
    quality = get_label_quality_scores(labels, pooled, method=QUALITY_METHOD)
    other = pooled.copy()
    other[np.arange(len(labels)), labels] = -1.0
    suggested = other.argmax(axis=1)
    votes = per_member.argmax(axis=2) if per_member is not None else None
    out = []
    for i in ranked[: limit if limit is not None else len(ranked)].tolist():
        s = int(suggested[i])
        out.append(
            LabelIssue(
                row=i,
                id=ids[i],
                given=classes[int(labels[i])],
                suggested=classes[s],
                quality=float(quality[i]),
                suggested_prob=float(pooled[i, s]),
                members_agree=None if votes is None else int((votes[i] == s).sum()),
                n_members=None if votes is None else int(votes.shape[1]),
                flagged=bool(flagged[i]),
            )
        )
    return out


def _multilabel_issues(
    pooled: np.ndarray,
    per_member: np.ndarray | None,
    y: np.ndarray,
    ids: Sequence[str],
    classes: Sequence[str],
    limit: int | None,
    separator: str,
) -> list[LabelIssue]:
    import numpy as np
    from cleanlab.multilabel_classification.filter import find_label_issues
    from cleanlab.multilabel_classification.rank import get_label_quality_scores

    Y = y.astype(bool)
    labels = [np.flatnonzero(row).tolist() for row in Y]
    with warnings.catch_warnings():  # as in _multiclass_issues
        warnings.filterwarnings("ignore", message=".*too few examples", category=UserWarning)
        ranked = find_label_issues(
            labels, pooled, filter_by="predicted_neq_given", return_indices_ranked_by=QUALITY_METHOD, n_jobs=1
        )
        flagged = find_label_issues(labels, pooled, n_jobs=1)
    quality = get_label_quality_scores(labels, pooled, method=QUALITY_METHOD)
    pred = pooled >= 0.5
    set_prob = np.where(pred, pooled, 1.0 - pooled).prod(axis=1)  # P(exactly the predicted set)
    votes = per_member >= 0.5 if per_member is not None else None

    def names(row: np.ndarray) -> str:
        return separator.join(classes[int(j)] for j in np.flatnonzero(row))

    out = []
    for i in ranked[: limit if limit is not None else len(ranked)].tolist():
        out.append(
            LabelIssue(
                row=i,
                id=ids[i],
                given=names(Y[i]),
                suggested=names(pred[i]),
                quality=float(quality[i]),
                suggested_prob=float(set_prob[i]),
                members_agree=None if votes is None else int((votes[i] == pred[i]).all(axis=1).sum()),
                n_members=None if votes is None else int(votes.shape[1]),
                flagged=bool(flagged[i]),
            )
        )
    return out


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sidecar_meta(sidecar: Path) -> dict[str, Any] | None:
    """The sidecar's record when this module wrote it."""
    try:
        meta = json.loads(sidecar.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("written_by") == WRITTEN_BY else None


def _written_by_kit(path: Path) -> bool:
    """Whether `path` is a suggestions file this module wrote and nobody edited since (its sidecar records
    the file's digest)."""
    meta = _sidecar_meta(_sidecar(path))
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return meta is not None and meta.get("sha256") == _digest(data)


def write_override_suggestions(path: Path, issues: Sequence[LabelIssue]) -> Path:
    """Write `issues` as a competition.label_overrides file: `id,label` (label: the suggestion) plus review
    columns that the overrides reader ignores (given, quality, suggested_prob, members_agree, flagged). Written
    atomically, with a sidecar `NAME.csv.json` recording its digest; an existing file is replaced only when
    this function wrote it and it was not edited since (a reviewed copy is never overwritten). Multilabel
    issues whose suggestion is no label at all are left out (an empty label would drop the row)."""
    from kit.artifacts.atomic import atomic_write_bytes, atomic_write_json

    path = Path(path)
    if path.is_dir():
        raise KitError(
            f"{path} is a folder; give a file name for the label suggestions, e.g. {path / 'labels.csv'}"
        )
    if path.exists() and not _written_by_kit(path):
        raise KitError(
            f"refusing to write {path}: the file exists and kit did not write it, or it was edited since (its "
            f"sidecar {_sidecar(path).name} does not match it); a reviewed overrides file is never replaced. "
            "Rename it, or write the suggestions elsewhere"
        )
    if not path.exists() and _sidecar(path).exists() and _sidecar_meta(_sidecar(path)) is None:
        raise KitError(
            f"refusing to write {_sidecar(path)}: the file exists and kit did not write it (kit keeps the label "
            "suggestions' digest there). Rename it, or write the suggestions elsewhere"
        )
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SUGGESTION_COLUMNS)
    rows = [i for i in issues if i.suggested != ""]
    for i in rows:
        agree = "" if i.members_agree is None else f"{i.members_agree}/{i.n_members}"
        flag = "yes" if i.flagged else ""
        w.writerow([i.id, i.suggested, i.given, f"{i.quality:.4f}", f"{i.suggested_prob:.4f}", agree, flag])
    data = buf.getvalue().encode("utf-8-sig")  # with a BOM: spreadsheets then show non-ASCII class names
    meta: dict[str, Any] = {
        "written_by": WRITTEN_BY,
        "file": path.name,
        "rows": len(rows),
        "sha256": _digest(data),
    }
    atomic_write_json(_sidecar(path), meta)
    atomic_write_bytes(path, data)
    return path
