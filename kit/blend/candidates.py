"""From an ensemble spec and the workdir's member artifacts to candidate arrays [n, M, C].

A candidate is one member seen through a set of views (logits averaged over those views), with a temperature,
mapped to probabilities (space='probs') or log-probabilities (space='logits'). With `views: search` each view
and the mean over all views become separate candidates: `swin@plain`, `swin@hflip`, `swin@mean`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit.artifacts.member import Expected, MemberArtifact, list_members, load_member, members_dir
from kit.blend.space import Space, as_space
from kit.config.ensemble import EnsembleSpec, MemberChoice
from kit.errors import KitError
from kit.metrics.scores import log_softmax

TEMPERATURES = tuple(float(t) for t in np.round(np.logspace(-1, 1, 41), 4))


@dataclass(frozen=True)
class CandidateSpec:
    name: str
    member: str
    views: tuple[str, ...]
    temperature: float


@dataclass
class Candidates:
    specs: list[CandidateSpec]
    oof: np.ndarray  # [n_train, M, C] float32 in `space`
    test: np.ndarray  # [n_test, M, C] float32 in `space`
    space: Space


def resolve_members(
    spec: EnsembleSpec, workdir: Path, bags: dict[str, list[str]] | None = None
) -> dict[str, MemberChoice]:
    """Expand `all` and glob patterns over the trained members and a seed bag's name into its seed members
    (`bags`: kit.config.seeds.seed_bags of kit.yaml); keep other plain names (missing ones fail at load)."""
    trained = list_members(workdir)
    out: dict[str, MemberChoice] = {}
    for pattern, choice in spec.member_choices().items():
        if pattern not in trained and pattern in (bags or {}):
            for seeded in (bags or {})[pattern]:
                out.setdefault(seeded, choice)
            continue
        if any(ch in pattern for ch in "*?["):
            hits = fnmatch.filter(trained, pattern)
            if not hits:
                where = members_dir(workdir)
                raise KitError(
                    f"members: '{pattern}' matches no trained member in {where}"
                    + (f" (trained: {trained})" if trained else "")
                    + "; run `kit train NAME` first"
                )
            for h in hits:
                out.setdefault(h, choice)
        else:
            out[pattern] = choice
    return out


def load_members(names: list[str], workdir: Path, expected: Expected) -> dict[str, MemberArtifact]:
    """Load every member, reporting all that cannot be used at once."""
    arts, problems = {}, []
    for name in names:
        try:
            arts[name] = load_member(workdir, name, expected)
        except KitError as e:
            problems.append(str(e).replace("\n", "\n    "))
    if problems:
        raise KitError(f"{len(problems)} member(s) cannot be blended:", problems=problems)
    return arts


def _view_sets(art: MemberArtifact, choice: MemberChoice) -> list[tuple[str, tuple[str, ...]]]:
    """(candidate suffix, views) pairs for one member; suffix '' means the candidate is named as the member."""
    views = choice.views
    if views == "plain":
        return [("", ("plain",))]
    if views == "all":
        return [("", tuple(art.views))]
    if views == "search":
        sets: list[tuple[str, tuple[str, ...]]] = [(f"@{v}", (v,)) for v in art.views]
        if len(art.views) > 1:
            sets.append(("@mean", tuple(art.views)))
        return sets
    assert isinstance(views, list)
    missing = [v for v in views if v not in art.views]
    if missing:
        raise KitError(
            f"member '{art.name}' has no view(s) {missing} (it has {art.views}); pick from those, "
            f"or retrain with `tta:` listing them"
        )
    return [("", tuple(views))]


def mean_logits(arr: np.ndarray, have: list[str], views: tuple[str, ...]) -> np.ndarray:
    """The mean over `views` of a member's logits arr [n, V, C] whose views are `have` (float64 [n, C])."""
    idx = [have.index(v) for v in views]
    return np.asarray(arr[:, idx, :], dtype=np.float64).mean(axis=1)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature on a log-spaced grid that minimises OOF log loss (one scalar per candidate)."""
    rows = np.arange(len(y))
    losses = [-log_softmax(logits / t)[rows, y].mean() for t in TEMPERATURES]
    return TEMPERATURES[int(np.argmin(losses))]


def to_space(logits: np.ndarray, t: float, space: Space) -> np.ndarray:
    """A candidate's logits [n, C] at temperature t, encoded in the blending space (float32)."""
    return space.encode(log_softmax(logits / t)).astype(np.float32)


def build_candidates(
    spec: EnsembleSpec, choices: dict[str, MemberChoice], arts: dict[str, MemberArtifact], y: np.ndarray
) -> Candidates:
    """Candidates in the spec's space. Labels y [n]: softmax log-probabilities (kit.blend.space); a label
    matrix y [n, L]: per-label sigmoid probabilities or logits (kit.blend.multilabel)."""
    if np.ndim(y) == 2:
        from kit.blend import multilabel as ml

        ml_space = ml.multilabel_space(spec.space)
        return _candidates(
            choices,
            arts,
            lambda oof: ml.fit_temperature(oof, y),
            lambda logits, t: ml_space.encode(logits / t).astype(np.float32),
            ml_space,  # type: ignore[arg-type]
        )
    space = as_space(spec.space)
    return _candidates(
        choices,
        arts,
        lambda oof: fit_temperature(oof, y),
        lambda logits, t: to_space(logits, t, space),
        space,
    )


def _candidates(
    choices: dict[str, MemberChoice],
    arts: dict[str, MemberArtifact],
    fit_t: Callable[[np.ndarray], float],
    to_space: Callable[[np.ndarray, float], np.ndarray],
    space: Space,
) -> Candidates:
    specs: list[CandidateSpec] = []
    oof_cols, test_cols = [], []
    for name, choice in choices.items():
        art = arts[name]
        for suffix, views in _view_sets(art, choice):
            oof = mean_logits(art.oof, art.views, views)
            test = mean_logits(art.test, art.views, views)
            t = choice.temperature
            temp = fit_t(oof) if t == "fit" else float(t or 1.0)
            specs.append(CandidateSpec(f"{name}{suffix}", name, views, temp))
            oof_cols.append(to_space(oof, temp))
            test_cols.append(to_space(test, temp))
    return Candidates(
        specs=specs, oof=np.stack(oof_cols, axis=1), test=np.stack(test_cols, axis=1), space=space
    )
