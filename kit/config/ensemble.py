"""The ensemble spec (ensembles/NAME.yaml): which members and views, the metric, the blenders to try, post-processing.

Every model forbids unknown keys; blenders are a discriminated union on `kind`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from kit.config.schema import TTA_VIEWS, Metric, StrictModel

MEMBER_PATTERN = re.compile(r"^[A-Za-z0-9_.*?\[\]-]+$")
Views = Literal["plain", "all", "search"] | list[str]


def _check_views(v: Views) -> Views:
    if isinstance(v, list):
        bad = [x for x in v if x not in TTA_VIEWS]
        if bad:
            raise ValueError(f"unknown view(s) {bad}; choose from {list(TTA_VIEWS)}, or plain / all / search")
        if not v:
            raise ValueError("an empty list of views; use plain, all, search or a list of views")
        if len(set(v)) != len(v):
            raise ValueError(f"views repeat in {v}; list each once")
    return v


class MemberChoice(StrictModel):
    """How one member enters the blend."""

    views: Views | None = Field(
        None,
        description="plain: view 0 only; all: mean over the member's views; a list: mean over those; "
        "search: each view and the mean become separate candidates (default: the spec's `views`)",
    )
    temperature: float | Literal["fit"] | None = Field(
        None, description="divide logits by T before softmax; 'fit' minimises OOF log loss (default 1)"
    )

    @field_validator("views")
    @classmethod
    def _views(cls, v: Views | None) -> Views | None:
        return v if v is None else _check_views(v)

    @field_validator("temperature")
    @classmethod
    def _positive(cls, v: float | str | None) -> float | str | None:
        if isinstance(v, float) and v <= 0:
            raise ValueError(f"temperature must be > 0 or 'fit' (got {v})")
        return v


class BlenderBase(StrictModel):
    name: str | None = Field(None, description="label in the report (default: the kind)")

    @property
    def label(self) -> str:
        return self.name or self.kind  # type: ignore[attr-defined,no-any-return]


class BestSingleSpec(BlenderBase):
    """The single best candidate by the metric (the baseline every blend must beat)."""

    kind: Literal["best_single"]


class UniformSpec(BlenderBase):
    """The plain mean of every candidate."""

    kind: Literal["uniform"]


class GreedySpec(BlenderBase):
    """Caruana ensemble selection with replacement on the metric itself; keeps the best prefix."""

    kind: Literal["greedy"]
    rounds: int = Field(50, ge=1, le=2000, description="additions (with replacement)")
    init: int = Field(0, ge=0, description="sorted initialisation: start from the best `init` candidates")
    bags: int = Field(1, ge=1, le=200, description="bagging: average the weights of this many runs")
    bag_fraction: float = Field(0.5, gt=0, le=1, description="share of candidates each bag may pick")
    seed: int = 0


class HillClimbSpec(BlenderBase):
    """Start from the best candidate; add the (candidate, weight) that improves the metric most, until none does."""

    kind: Literal["hill_climb"]
    grid: list[float] = Field(
        default_factory=lambda: [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5],
        description="weights w tried for a new candidate: blend = (1 - w) * blend + w * candidate",
    )
    max_steps: int = Field(20, ge=1)
    tol: float = Field(1e-6, ge=0, description="stop when the best step improves by less")

    @field_validator("grid")
    @classmethod
    def _in_unit(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < w < 1 for w in v):
            raise ValueError(f"grid weights must lie strictly between 0 and 1 (got {v})")
        return v


class SubsetsSpec(BlenderBase):
    """Every subset of candidates up to `max_size`, each with uniform or greedy weights; keeps the best."""

    kind: Literal["subsets"]
    max_size: int = Field(3, ge=1, le=8)
    weights: Literal["uniform", "greedy"] = "uniform"
    rounds: int = Field(20, ge=1, description="greedy rounds inside each subset (weights: greedy)")
    max_subsets: int = Field(20000, ge=1, description="refuse to search more subsets than this")


class StackSpec(BlenderBase):
    """L2-regularised multinomial logistic regression on the stacked OOF probabilities."""

    kind: Literal["stack"]
    C: float | Literal["auto"] = Field(
        "auto",
        description="inverse L2 strength (scikit-learn's C); auto: chosen from C_grid by an inner CV over the "
        "fit rows' folds (nested inside kit's nested CV)",
    )
    C_grid: list[float] = Field(
        default_factory=lambda: [0.003, 0.01, 0.03, 0.1, 0.3, 1.0], description="values C: auto chooses from"
    )
    features: Literal["probs", "log_probs"] = "probs"
    max_iter: int = Field(1000, ge=10)

    @field_validator("C", mode="before")
    @classmethod
    def _positive_C(cls, v: object) -> object:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0:
            raise ValueError(f"C must be > 0 or 'auto' (got {v})")
        return v

    @field_validator("C_grid")
    @classmethod
    def _grid(cls, v: list[float]) -> list[float]:
        if not v or any(c <= 0 for c in v):
            raise ValueError(f"C_grid needs positive values (got {v})")
        return v


BlenderSpec = Annotated[
    BestSingleSpec | UniformSpec | GreedySpec | HillClimbSpec | SubsetsSpec | StackSpec,
    Field(discriminator="kind"),
]


class LogitAdjustSpec(StrictModel):
    """scores = log p - tau * log(class prior), tau tuned on the fit rows."""

    enabled: bool = False
    taus: list[float] = Field(default_factory=lambda: [round(0.1 * i, 2) for i in range(21)])


class ClassBiasSpec(StrictModel):
    """Per-class offsets added to log p, tuned by coordinate ascent (overfits small data: judged by nested CV)."""

    enabled: bool = False
    grid: list[float] = Field(default_factory=lambda: [round(-1.0 + 0.1 * i, 2) for i in range(21)])
    passes: int = Field(2, ge=1, le=10)


class OrdinalThresholdsSpec(StrictModel):
    """QWK: the grade is the expected class index cut at thresholds tuned on the fit rows (ordered classes)."""

    enabled: bool = False
    candidates: int = Field(
        40, ge=4, le=1000, description="values tried per cut point, between its neighbours"
    )
    passes: int = Field(3, ge=1, le=10)


class ThresholdsSpec(StrictModel):
    """Multi-label label metrics: one decision threshold per label, tuned on the fit rows (kit.blend.thresholds)."""

    enabled: bool = True
    grid: list[float] = Field(
        default_factory=lambda: [round(0.05 * i, 2) for i in range(1, 20)],
        description="thresholds tried per label (0.5 is always among them)",
    )
    passes: int = Field(2, ge=1, le=10)
    at_least_one: bool | None = Field(
        None, description="keep each image's most probable label; default competition.at_least_one_label"
    )

    @field_validator("grid")
    @classmethod
    def _in_unit_interval(cls, v: list[float]) -> list[float]:
        bad = [g for g in v if not 0 < g < 1]
        if bad or not v:
            raise ValueError(f"thresholds.grid needs values strictly between 0 and 1, got {bad or v}")
        return v


class PostprocessSpec(StrictModel):
    logit_adjust: LogitAdjustSpec = Field(default_factory=LogitAdjustSpec)
    class_bias: ClassBiasSpec = Field(default_factory=ClassBiasSpec)
    ordinal_thresholds: OrdinalThresholdsSpec = Field(default_factory=OrdinalThresholdsSpec)
    thresholds: ThresholdsSpec = Field(default_factory=ThresholdsSpec)


class SelectionSpec(StrictModel):
    """How the winner is picked from the table: rows compared on the same held-out rows, resampled by group."""

    rule: Literal["average_1se", "max_nested", "one_se", "beat_single", "stepwise"] = Field(
        "average_1se",
        description="average_1se: the mean of the rows within one paired standard error (group bootstrap) of "
        "the best nested row (their probabilities averaged); "
        "one_se: the simplest row within one paired standard error (group bootstrap) of the best "
        "nested row; stepwise: from best_single, walk the rows from simple to complex and move to a row only "
        "when it beats the current pick in >= `confidence` of the resamples; beat_single: the best nested row "
        "among those that beat best_single in >= `confidence` of the resamples (else best_single); max_nested: "
        "the best nested estimate (no uncertainty). bench/README.md has the benchmark that chose average_1se",
    )
    confidence: float = Field(0.8, ge=0.5, lt=1.0, description="the share of resamples a row must win")
    resamples: int = Field(1000, ge=100, le=100000, description="group-bootstrap resamples")
    seed: int = 0
    level: float = Field(0.95, gt=0.5, lt=1.0, description="confidence level of the reported intervals")


class EnsembleSpec(StrictModel):
    """ensembles/NAME.yaml. The blend lands in workdir/blends/NAME/."""

    description: str | None = None
    members: Literal["all", "*"] | list[str] | dict[str, MemberChoice | None] = Field(
        description="`all` (every trained member), a list of names (globs allowed), or name -> choices"
    )
    views: Views = Field("plain", description="default views for members that do not set their own")
    temperature: float | Literal["fit"] | None = Field(None, description="default per-member temperature")
    metric: Metric | None = Field(None, description="default: the competition's metric")
    space: Literal["probs", "logits"] = Field(
        "probs", description="blend probabilities (arithmetic mean) or log-probabilities (geometric mean)"
    )
    blenders: list[BlenderSpec] = Field(min_length=1)
    postprocess: PostprocessSpec = Field(default_factory=PostprocessSpec)
    selection: SelectionSpec = Field(default_factory=SelectionSpec)

    @field_validator("views")
    @classmethod
    def _views(cls, v: Views) -> Views:
        return _check_views(v)

    @field_validator("members")
    @classmethod
    def _member_names(
        cls, v: str | list[str] | dict[str, MemberChoice | None]
    ) -> str | list[str] | dict[str, MemberChoice | None]:
        if isinstance(v, str):
            return v
        names = list(v)
        if not names:
            raise ValueError("no members listed; name some, or write `members: all`")
        bad = [n for n in names if not MEMBER_PATTERN.match(n)]
        if bad:
            raise ValueError(f"member names {bad} must use letters, digits, '_', '.', '-' (or glob * ? [])")
        if isinstance(v, list) and len(set(v)) != len(v):
            raise ValueError(f"members repeat in {v}; list each once")
        return v

    @model_validator(mode="after")
    def _unique_labels(self) -> EnsembleSpec:
        labels = [b.label for b in self.blenders]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(
                f"blenders: {dupes} appear more than once; give each a distinct `name:` (e.g. name: greedy_bagged)"
            )
        if isinstance(self.temperature, float) and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 or 'fit' (got {self.temperature})")
        return self

    def member_choices(self) -> dict[str, MemberChoice]:
        """Names or patterns -> choices with the spec's defaults filled in (`all` expands later, at load)."""
        if isinstance(self.members, str):
            items: dict[str, MemberChoice | None] = {"*": None}
        elif isinstance(self.members, list):
            items = dict.fromkeys(self.members)
        else:
            items = dict(self.members)
        out = {}
        for name, choice in items.items():
            c = choice or MemberChoice()
            out[name] = MemberChoice(
                views=c.views if c.views is not None else self.views,
                temperature=c.temperature if c.temperature is not None else self.temperature,
            )
        return out
