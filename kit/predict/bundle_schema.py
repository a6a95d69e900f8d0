"""What the JSON files of a `kit export` bundle may hold, checked before anything in them is used.

A bundle comes from outside (a Kaggle dataset, a colleague's upload, a hand edit): every key must have the type
and range `kit export` writes, every path must be a plain relative path (no absolute path, no `..`), and the
recipe must fit the members (their classes, views and count). bundle.py then checks that each path stays
inside the bundle once symlinks are resolved and is listed, with its sha256, in manifest.json.
"""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from kit.config.load import bounded
from kit.config.schema import MEMBER_KINDS, MEMBER_NAME, TTA_VIEWS, Metric, SubmissionConfig
from kit.data.cache import RESAMPLE
from kit.predict.kinds import MemberPredictor, predictor_of

MAX_PATH = 1024
HEX64 = re.compile(r"^[0-9a-f]{64}$")
# timm.create_model keywords that load weights or configs from files or the hub: never from a bundle
WEIGHT_KWARGS = frozenset(
    {
        "pretrained",
        "pretrained_cfg",
        "pretrained_cfg_overlay",
        "checkpoint_path",
        "cache_dir",
        "pretrained_strict",
    }
)
BLENDER_KINDS = ("best_single", "uniform", "greedy", "hill_climb", "subsets", "stack", "average")
POSTPROCESS_STEPS = ("logit_adjust", "class_bias", "ordinal_thresholds")
MAX_PARAM = (
    1e6  # fitted coefficients, offsets and temperatures are far below this; above it, float32 overflows
)


def relative_path(value: str) -> str:
    """A path inside the bundle as the manifest writes it: relative, '/'-separated, no '.', '..' or empty part."""
    if not value or len(value) > MAX_PATH or "\x00" in value:
        raise ValueError("not a path inside the bundle (empty, too long or with a NUL byte)")
    if value.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", value) or "\\" in value:
        raise ValueError(f"{value[:200]!r} is not a path inside the bundle (absolute, '~' or '\\')")
    if any(part in ("", ".", "..") for part in value.split("/")):
        raise ValueError(f"{value[:200]!r} is not a path inside the bundle (an empty, '.' or '..' part)")
    return value


def looks_like_path(value: str) -> bool:
    """A string a library could read as a file or folder (rather than a name): absolute, '~', './', '..'."""
    return (
        value.startswith(("/", "~", "./", "\\"))
        or ".." in re.split(r"[/\\]", value)
        or bool(re.match(r"^[A-Za-z]:", value))
    )


def refuse_paths(value: Any, where: str = "") -> None:
    if isinstance(value, str) and looks_like_path(value):
        raise ValueError(
            f"{where or 'a value'} {value[:200]!r} is a file path; a bundle reads only its own files"
        )
    if isinstance(value, dict):
        for k, v in value.items():
            refuse_paths(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            refuse_paths(v, f"{where}.{i}" if where else str(i))


def _metric(value: str | None) -> str | None:
    if value is None:
        return value
    name, _, k = value.partition("@")
    if name not in get_args(Metric) or (k and not (k.isdigit() and 1 <= int(k) <= 100)):
        raise ValueError(f"unknown metric {value[:100]!r}; kit scores {', '.join(get_args(Metric))}")
    return value


RelPath = Annotated[str, AfterValidator(relative_path)]
Name = Annotated[str, Field(pattern=MEMBER_NAME.pattern, max_length=100)]
View = Literal[TTA_VIEWS]  # type: ignore[valid-type]
Views = Annotated[list[View], Field(min_length=1, max_length=len(TTA_VIEWS))]
Classes = Annotated[list[Annotated[str, Field(max_length=1000)]], Field(min_length=2)]
Real = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_PARAM, le=MAX_PARAM)]
MetricName = Annotated[str | None, AfterValidator(_metric)]


class _Strict(BaseModel):
    """extra keys refused, no coercion ("32" is not 32, 1.0 is not an int, true is not a number)."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _unique(values: list[Any], what: str) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} repeat: {values[:20]}")


# ---------------------------------------------------------------- manifest.json


class FileEntry(_Strict):
    sha256: Annotated[str, Field(pattern=HEX64.pattern)]
    size: Annotated[int, Field(ge=0)]


class Manifest(_Strict):
    format: Literal[1]
    half: bool
    versions: dict[str, Annotated[str | None, Field(max_length=200)]]
    members: Annotated[list[Name], Field(min_length=1)]
    files: dict[RelPath, FileEntry]
    wheels: dict[RelPath, FileEntry] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _members_once(self) -> Manifest:
        _unique(self.members, "members")
        return self


# ---------------------------------------------------------------- members/NAME/member.json


class TimmAttributes(_Strict):
    """Attribute heads (kit.train.heads): names, each one's values, each class's value index per attribute."""

    names: Annotated[list[Annotated[str, Field(max_length=200)]], Field(min_length=1, max_length=64)]
    values: list[Annotated[list[Annotated[str, Field(max_length=1000)]], Field(min_length=1)]]
    codes: list[list[Annotated[int, Field(ge=0)]]]

    @model_validator(mode="after")
    def _codes_fit(self) -> TimmAttributes:
        if len(self.values) != len(self.names):
            raise ValueError(f"attributes: {len(self.names)} names but {len(self.values)} value lists")
        n = [len(v) for v in self.values]
        if any(len(c) != len(n) or any(i >= k for i, k in zip(c, n, strict=True)) for c in self.codes):
            raise ValueError(f"attributes.codes: each class needs one index per attribute below {n}")
        return self


class TimmHead(_Strict):
    hidden: Annotated[list[Annotated[int, Field(ge=1, le=1 << 20)]], Field(max_length=16)]
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)]
    activation: Literal["gelu", "relu", "silu", "tanh"] = "gelu"
    attributes: TimmAttributes | None


class TimmModel(_Strict):
    # a timm architecture name, not hf-hub:ID or local-dir:DIR (whose config.json kit export copies to model_dir)
    model: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=200)]
    model_kwargs: dict[str, Any]
    model_dir: RelPath | None = None  # a folder of the bundle holding the model's timm config.json
    mean: Annotated[
        list[Annotated[float, Field(allow_inf_nan=False, ge=-1.0, le=2.0)]], Field(min_length=3, max_length=3)
    ]
    std: Annotated[
        list[Annotated[float, Field(allow_inf_nan=False, ge=1e-3, le=100.0)]],
        Field(min_length=3, max_length=3),
    ]
    head: TimmHead | None = None  # kit's own classifier (kit.train.heads); absent: timm's linear one

    @model_validator(mode="after")
    def _no_weight_files(self) -> TimmModel:
        loads = sorted(WEIGHT_KWARGS & set(self.model_kwargs))
        if loads:
            raise ValueError(
                f"model_kwargs {loads} would make timm load weights or a config from elsewhere; a bundle's "
                "weights are its fold files"
            )
        refuse_paths(self.model_kwargs, "model_kwargs")
        return self


class ClipModel(_Strict):
    encoder_dir: RelPath
    img_size: Annotated[int, Field(ge=1, le=8192)] | None


class MemberFile(_Strict):
    name: Name
    kind: Literal[MEMBER_KINDS]  # type: ignore[valid-type]
    classes: Classes
    views: Views
    size: Annotated[int, Field(ge=1, le=8192)]
    resample: Literal[tuple(RESAMPLE)]  # type: ignore[valid-type]
    batch_size: Annotated[int, Field(ge=1, le=65536)]
    folds: Annotated[list[RelPath], Field(min_length=1, max_length=100)]
    model: dict[str, Any]
    amp: bool
    channels_last: bool
    # how training stored the images (kit.data.cache.Geometry); absent: squashed straight to `size`
    resize: Literal["squash", "shorter_side", "pad"] = "squash"
    cache_size: Annotated[int, Field(ge=1, le=8192)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> MemberFile:
        _unique(self.classes, "classes")
        _unique(self.views, "views")
        _unique(self.folds, "folds")
        if self.views[0] != "plain":
            raise ValueError(f"views must start with 'plain' (got {self.views})")
        if self.cache_size is not None and self.cache_size < self.size:
            raise ValueError(f"cache_size {self.cache_size} is below size {self.size}")
        bad = [f for f in self.folds if not f.endswith(".safetensors")]
        if bad:
            raise ValueError(f"folds must be .safetensors files (got {bad[0][:200]!r})")
        self.predictor.check_member_file(self)
        return self

    @property
    def predictor(self) -> MemberPredictor:
        return predictor_of(self.kind, self.name)

    def model_config_of_kind(self) -> BaseModel:
        """`model`, checked by the kind's schema (TimmModel, ClipModel)."""
        return self.predictor.bundle_model.model_validate(self.model)


# ---------------------------------------------------------------- recipe.json


class Candidate(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=300)]
    member: Name
    views: Views
    temperature: Annotated[float, Field(allow_inf_nan=False, gt=0, le=MAX_PARAM)]
    weight: Annotated[float, Field(allow_inf_nan=False, ge=0, le=MAX_PARAM)]


class StackParams(_Strict):
    C: Annotated[float, Field(allow_inf_nan=False, gt=0)]
    C_choice: str | None = None
    C_grid: list[float] | None = None
    C_inner_log_loss: list[float] | None = None
    features: Literal["probs", "log_probs"]
    classes_seen: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]
    coef: Annotated[list[Annotated[list[Real], Field(min_length=1)]], Field(min_length=1)]
    intercept: Annotated[list[Real], Field(min_length=1)]
    dtype: Literal["float32", "float64"]


class LogitAdjustParams(_Strict):
    tau: Annotated[float, Field(allow_inf_nan=False, ge=-100, le=100)]
    prior: list[Annotated[float, Field(allow_inf_nan=False, gt=0, le=1)]]


class ClassBiasParams(_Strict):
    offsets: list[Annotated[float, Field(allow_inf_nan=False, ge=-100, le=100)]]


class OrdinalParams(_Strict):
    cuts: list[Annotated[float, Field(allow_inf_nan=False, ge=-MAX_PARAM, le=MAX_PARAM)]]
    fit_qwk: Annotated[float, Field(allow_inf_nan=False)] | None = None


STEP_PARAMS: dict[str, type[_Strict]] = {
    "logit_adjust": LogitAdjustParams,
    "class_bias": ClassBiasParams,
    "ordinal_thresholds": OrdinalParams,
}


class BlendPart(_Strict):
    """One fitted row of a blend: candidates in their order, the blender, its post-processing."""

    kind: Literal["blend"]
    name: Name
    classes: Classes
    metric: MetricName
    space: Literal["probs", "logits"]
    blender: Annotated[str, Field(max_length=300)] | None
    blender_kind: Literal[BLENDER_KINDS]  # type: ignore[valid-type]
    candidates: Annotated[list[Candidate], Field(min_length=1)]
    stack: StackParams | None
    postprocess: dict[Literal[POSTPROCESS_STEPS], dict[str, Any]]  # type: ignore[valid-type]
    cv_score: Annotated[float, Field(allow_inf_nan=False)] | None
    score_kind: Annotated[str, Field(max_length=100)] | None

    @model_validator(mode="after")
    def _fits(self) -> BlendPart:
        C, M = len(self.classes), len(self.candidates)
        _unique(self.classes, "classes")
        _unique([c.name for c in self.candidates], "candidate names")
        for step, params in self.postprocess.items():
            p = STEP_PARAMS[step].model_validate(params)
            n = {"logit_adjust": "prior", "class_bias": "offsets", "ordinal_thresholds": "cuts"}[step]
            values = getattr(p, n)
            want = C - 1 if step == "ordinal_thresholds" else C
            if len(values) != want:
                raise ValueError(f"postprocess.{step}.{n} has {len(values)} values; {want} for {C} classes")
            if step == "ordinal_thresholds" and any(b <= a for a, b in itertools.pairwise(values)):
                raise ValueError(f"postprocess.{step}.cuts must increase (got {values[:10]})")
        if self.blender_kind == "stack":
            st = self.stack
            if st is None:
                raise ValueError("stack: a stack blend needs its coefficients (stack: null)")
            seen = st.classes_seen
            _unique(seen, "stack.classes_seen")
            if max(seen) >= C:
                raise ValueError(f"stack.classes_seen names class {max(seen)}; there are {C} classes")
            if len(st.coef) != len(seen) or any(len(row) != M * C for row in st.coef):
                shape = f"[{len(st.coef)}, {sorted({len(r) for r in st.coef})}]"
                raise ValueError(
                    f"stack.coef has shape {shape}; [{len(seen)}, {M * C}] for {len(seen)} classes seen and "
                    f"{M} candidates x {C} classes"
                )
            if len(st.intercept) != len(seen):
                raise ValueError(
                    f"stack.intercept has {len(st.intercept)} values; {len(seen)} classes are seen"
                )
        elif self.blender_kind != "average" and not sum(c.weight for c in self.candidates) > 0:
            raise ValueError("candidates: every weight is 0; the blend would give no probabilities")
        return self


class BlendRecipe(BlendPart):
    parts: Annotated[list[BlendPart], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _parts_fit(self) -> BlendRecipe:
        if self.blender_kind == "average" and not self.parts:
            raise ValueError("parts: an average of rows needs its rows")
        for i, part in enumerate(self.parts or []):
            if part.classes != self.classes:
                raise ValueError(f"parts.{i}.classes differ from the recipe's classes")
        return self


class MemberRecipe(_Strict):
    kind: Literal["member"]
    name: Name
    classes: Classes
    views: Views
    cv_score: Annotated[float, Field(allow_inf_nan=False)] | None
    score_kind: Annotated[str, Field(max_length=100)] | None


class CompetitionInfo(_Strict):
    submission: dict[str, Any] | None
    id_column: Annotated[str, Field(max_length=1000)] | None
    image_column: Annotated[str, Field(max_length=1000)] | None
    metric: MetricName

    @model_validator(mode="after")
    def _submission(self) -> CompetitionInfo:
        if self.submission is not None:
            SubmissionConfig.model_validate(self.submission)
        return self


class RecipeFile(_Strict):
    recipe: Annotated[BlendRecipe | MemberRecipe, Field(discriminator="kind")]
    competition: CompetitionInfo


# ---------------------------------------------------------------- errors


def problems_of(err: ValidationError, file: str, prefix: str = "") -> list[str]:
    """One line per error: `FILE: key.path: what is wrong (got VALUE)`, values cut to 80 characters."""
    lines = []
    for e in err.errors(include_url=False):
        parts = [str(p) for p in e["loc"] if p != "[key]"]
        if parts[:1] == ["recipe"] and parts[1:2] in (["blend"], ["member"]):
            del parts[1]  # the union's tag (the recipe's kind), not a key
        loc = ".".join(parts)
        key = ".".join(k for k in (prefix, loc) if k) or "(the whole file)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (kit export does not write it)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e and e["type"] not in ("value_error", "model_attributes_type"):
            msg = f"{msg} (got {bounded(e['input'])})"
        elif e["type"] == "model_attributes_type":
            msg = f"{msg} (got {type(e.get('input')).__name__})"
        lines.append(f"{file}: {key}: {msg}")
    return lines[:20] + ([f"{file}: ... and {len(lines) - 20} more"] if len(lines) > 20 else [])
