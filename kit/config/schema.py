"""The kit.yaml model tree. Every model forbids unknown keys; cross-field rules name the YAML key and the fix."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

Metric = Literal[
    "weighted_f1",
    "macro_f1",
    "accuracy",
    "log_loss",
    "roc_auc",
    "qwk",
    "map_at_k",
    "top_k_accuracy",
    "f1_samples",
    "f1_micro",
    "f1_macro",
    "accuracy_cells",
]
# multi-label metrics (competition.task: multilabel); roc_auc and log_loss serve both tasks (kit.metrics.multilabel)
MULTILABEL_ONLY_METRICS = ("f1_samples", "f1_micro", "f1_macro", "accuracy_cells")
MULTILABEL_METRICS = (*MULTILABEL_ONLY_METRICS, "roc_auc", "log_loss")
K_METRICS = ("map_at_k", "top_k_accuracy")  # metrics that need competition.metric_k
TABLE_SUFFIXES = (".csv", ".tsv", ".txt")
COCO_SUFFIXES = (".json",)  # COCO-style annotations: images, annotations, categories
MEMBER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
TTA_VIEWS = ("plain", "hflip", "vflip", "rot90", "rot180", "rot270", "hvflip")


# a path a user writes in kit.yaml: `~` and `~user` are expanded as a shell would (never a folder named '~')
UserPath = Annotated[Path, AfterValidator(lambda p: p.expanduser())]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _label_text(v: object, key: str) -> object:
    """Labels are strings in kit: YAML reads `classes: [0, 1]` as integers; take them as '0', '1'."""
    if isinstance(v, bool):  # YAML 1.1 reads yes/no/on/off as booleans
        raise ValueError(f"{key}: YAML read {v!r} as true/false, not a class name; quote it, e.g. 'yes'")
    return str(v) if isinstance(v, (int, float)) else v


# ---------------------------------------------------------------- submission (kit submit; docs/submit.md)


# what `kit submit` writes (kit.submit.sample); competition.submission.kind is one of these or auto
SubmissionKind = Literal[
    "label",
    "label_code",
    "proba",
    "binary_proba",
    "topk",
    "multilabel_binary",
    "multilabel_proba",
    "multilabel_labels",
]


class SubmissionConfig(StrictModel):
    """How `kit submit` fills sample_submission.csv; `auto` reads the kind from the sample and the classes."""

    kind: Literal["auto"] | SubmissionKind = "auto"
    k: int = Field(3, ge=1, description="topk: labels per row (default: as many as the sample shows)")
    positive_class: str | None = Field(None, description="binary_proba: the class the column holds")
    id_column: str | None = Field(None, description="the sample's id column; default competition.id_column")

    @field_validator("positive_class", mode="before")
    @classmethod
    def _positive_as_text(cls, v: object) -> object:
        return _label_text(v, "competition.submission.positive_class")


# ---------------------------------------------------------------- competition


class Competition(StrictModel):
    """Where the competition's files are and how to read them. Paths are relative to `root`."""

    name: str = "competition"
    task: Literal["multiclass", "multilabel"] = Field(
        "multiclass", description="multilabel: each image has any number of labels (sigmoid outputs)"
    )
    root: UserPath = Field(description="competition folder; relative to the kit.yaml that names it")
    train: UserPath = Field(description="train table (.csv) or a folder with one sub-folder per class")
    train_images: UserPath | None = Field(
        None, description="folder the train table's image paths/ids live in"
    )
    test: UserPath | None = Field(None, description="test table (.csv) or a folder of test images")
    test_images: UserPath | None = Field(None, description="folder the test table's image paths/ids live in")
    sample_submission: UserPath | None = None
    submission: SubmissionConfig | None = Field(None, description="overrides for `kit submit`")
    id_column: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    label_columns: list[str] | None = Field(
        None, description="one-hot label columns (one 1 a row): the class is the column holding the 1"
    )
    label_separator: str = Field(
        " ", min_length=1, description="multilabel: what separates the labels of one label_column cell"
    )
    at_least_one_label: bool = Field(
        False, description="multilabel: keep the most probable label when none passes its threshold"
    )
    group_column: str | None = None
    groups_file: UserPath | None = Field(
        None,
        description="CSV with columns id,group (relative to the kit.yaml; `kit init` writes one of near-duplicate "
        "image clusters): rows sharing a group stay in one fold, train rows it does not list are each their "
        "own group; instead of group_column",
    )
    classes: list[str] | None = Field(
        None, description="class order; default: sorted labels of train (label_columns: their order)"
    )
    metric: Metric = "weighted_f1"
    metric_k: int | None = Field(None, ge=1, le=100, description="k of map_at_k and top_k_accuracy")
    blank_groups: Literal["own", "error"] = Field(
        "own", description="rows with an empty group_column cell: each its own group, or an error"
    )
    label_overrides: UserPath | None = Field(
        None,
        description="CSV with columns id,label (relative to the kit.yaml): each row corrects a train row's "
        "label, or drops the row when label is empty (multilabel: labels joined by label_separator)",
    )
    extra_train: list[ExtraTrain] = Field(
        default_factory=list, description="external labelled data: training side of every fold only"
    )
    attributes: dict[str, dict[str, str]] | None = Field(
        None,
        description="class -> its attribute values, e.g. {mask: wear, gender: male}: timm members train a "
        "head per attribute (kit.config.attributes)",
    )

    @property
    def train_is_table(self) -> bool:
        return self.train.suffix.lower() in TABLE_SUFFIXES

    @property
    def test_is_table(self) -> bool:
        return self.test is not None and self.test.suffix.lower() in TABLE_SUFFIXES

    @property
    def train_is_coco(self) -> bool:
        return self.train.suffix.lower() in COCO_SUFFIXES

    @property
    def groups_source(self) -> str | None:
        """Where the train rows' groups come from, as messages name it (None: no groups)."""
        if self.groups_file is not None:
            return f"competition.groups_file ({self.groups_file.name})"
        return f"competition.group_column '{self.group_column}'" if self.group_column is not None else None

    @property
    def scored_by(self) -> str:
        """The metric as kit's scorers name it: `map_at_k@5` carries its k; other metrics are their name."""
        return f"{self.metric}@{self.metric_k}" if self.metric in K_METRICS else self.metric

    @field_validator("classes", mode="before")
    @classmethod
    def _classes_as_text(cls, v: object) -> object:
        return (
            [_label_text(c, f"competition.classes[{i}]") for i, c in enumerate(v)]
            if isinstance(v, list)
            else v
        )

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        dupes = sorted({c for c in v if v.count(c) > 1})
        if dupes:
            raise ValueError(f"class names repeat: {dupes}; list each class once")
        if len(v) < 2:
            raise ValueError("a classification needs at least 2 classes")
        return v

    @field_validator("attributes", mode="before")
    @classmethod
    def _attributes_as_text(cls, v: object) -> object:
        # YAML reads integer class labels and values (0: {age: 1}) as ints; labels are strings in kit
        if not isinstance(v, dict):
            return v
        return {
            _label_text(c, f"competition.attributes.{c}"): (
                {str(a): _label_text(x, f"competition.attributes.{c}.{a}") for a, x in vals.items()}
                if isinstance(vals, dict)
                else vals
            )
            for c, vals in v.items()
        }

    @field_validator("attributes")
    @classmethod
    def _attributes_shape(cls, v: dict[str, dict[str, str]] | None) -> dict[str, dict[str, str]] | None:
        from kit.config.attributes import shape_problems

        if v is not None and (problems := shape_problems(v)):
            raise ValueError("; ".join(problems))
        return v

    @model_validator(mode="after")
    def _metric_has_k(self) -> Competition:
        if self.metric in K_METRICS and self.metric_k is None:
            raise ValueError(
                f"competition.metric: {self.metric} needs k; set competition.metric_k (e.g. metric_k: 5 for "
                "MAP@5 or top-5 accuracy)"
            )
        if self.metric not in K_METRICS and self.metric_k is not None:
            raise ValueError(
                f"competition.metric_k is set but competition.metric is {self.metric}, which has no k; remove "
                f"metric_k or use one of {list(K_METRICS)}"
            )
        return self

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"

    @model_validator(mode="after")
    def _metric_fits_task(self) -> Competition:
        if self.multilabel and self.metric not in MULTILABEL_METRICS:
            raise ValueError(
                f"competition.metric: {self.metric} scores one label per image, but competition.task is "
                f"multilabel; choose one of {list(MULTILABEL_METRICS)}"
            )
        if not self.multilabel and self.metric in MULTILABEL_ONLY_METRICS:
            raise ValueError(
                f"competition.metric: {self.metric} scores several labels per image; set competition.task: "
                "multilabel, or choose a single-label metric (weighted_f1, macro_f1, accuracy, ...)"
            )
        if self.multilabel and self.attributes is not None:
            raise ValueError(
                "competition.attributes: attribute heads score one class per image, but competition.task is "
                "multilabel; remove competition.attributes"
            )
        if self.multilabel and (self.train_is_coco or not self.train_is_table):
            raise ValueError(
                f"competition.task: multilabel reads labels from a table (label_column with separated labels, "
                f"or 0/1 label_columns); competition.train ({self.train}) is not a table"
            )
        return self

    @model_validator(mode="after")
    def _columns_fit_layout(self) -> Competition:
        if self.label_column is not None and self.label_columns is not None:
            raise ValueError(
                "set competition.label_column (one column of labels) or competition.label_columns (one-hot "
                "columns), not both"
            )
        if self.group_column is not None and self.groups_file is not None:
            raise ValueError(
                "set competition.group_column (a column of the train table) or competition.groups_file (a CSV "
                "id,group), not both; to keep both relations, add the file's groups as a column"
            )
        if self.train_is_coco:
            if self.label_column is not None or self.label_columns is not None:
                raise ValueError(
                    f"competition.train ({self.train}) is COCO-style JSON, whose labels are its annotations' "
                    "category_id; remove competition.label_column / label_columns"
                )
            return self
        if self.train_is_table:
            if self.label_column is None and self.label_columns is None:
                raise ValueError(
                    f"competition.label_column is required when competition.train is a table ({self.train}) "
                    "(or label_columns for one-hot columns)"
                )
            if self.id_column is None and self.image_column is None:
                raise ValueError(
                    "set competition.id_column or competition.image_column: kit needs one of them to find "
                    "each train image"
                )
        elif self.label_column is not None or self.label_columns is not None:
            raise ValueError(
                f"competition.label_column is set but competition.train ({self.train}) is a class-folder "
                "layout, where labels are the folder names; remove label_column or point train at the table"
            )
        return self


class ExtraTrain(StrictModel):
    """External labelled images (competition.extra_train[i]): used on the training side of every fold only,
    never validated on or scored (docs/train.md, "Pseudo-labels and external data")."""

    train: UserPath = Field(
        description="a table (.csv) or a folder with one sub-folder per class; relative to root"
    )
    images: UserPath | None = Field(None, description="folder the table's image paths/ids live in")
    id_column: str | None = Field(None, description="default: competition.id_column")
    image_column: str | None = Field(None, description="default: competition.image_column")
    label_column: str | None = Field(None, description="tables: the label column (default competition's)")
    class_map: dict[str, str | None] = Field(
        default_factory=dict,
        description="label in this source -> competition class (null drops that label's rows)",
    )

    @field_validator("class_map", mode="before")
    @classmethod
    def _map_as_text(cls, v: object) -> object:
        if not isinstance(v, dict):
            return v
        return {
            str(k): (None if val is None else _label_text(val, "competition.extra_train[].class_map"))
            for k, val in v.items()
        }


class Folds(StrictModel):
    k: int = Field(5, ge=2, le=50)
    seed: int = 42
    use_groups: bool = Field(
        True,
        description="split by competition.group_column or groups_file (StratifiedGroupKFold) when one is set",
    )


# ---------------------------------------------------------------- members

Loss = Literal[
    "ce", "label_smoothing", "weighted_ce", "focal", "logit_adjusted", "balanced_softmax", "bce", "asl"
]
# the losses of multi-label members (sigmoid outputs): ce means bce there (kit.train.losses)
MULTILABEL_LOSSES = ("ce", "bce", "focal", "asl")


class LossConfig(StrictModel):
    kind: Loss = "ce"
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="used by kind: label_smoothing")
    gamma: float = Field(2.0, ge=0, description="focal: focusing exponent")
    alpha: Literal["none", "balanced"] | float = Field(
        "none", description="focal: 'balanced' weights classes by inverse frequency"
    )
    tau: float = Field(1.0, ge=0, description="logit_adjusted: tau * log(prior) is added to the logits")
    class_weight_power: float = Field(
        1.0, ge=0, le=2, description="weighted_ce / focal alpha=balanced: (1/freq)^power"
    )
    gamma_neg: float = Field(4.0, ge=0, description="asl: focusing exponent of the negatives")
    gamma_pos: float = Field(0.0, ge=0, description="asl: focusing exponent of the positives")
    clip: float = Field(0.05, ge=0, lt=1, description="asl: probability margin shifted off the negatives")


class SamplerConfig(StrictModel):
    kind: Literal["none", "weighted"] = "none"
    power: float = Field(0.5, ge=0, le=1, description="weight per image = (1/class count)^power")


# preset -> (crop area range, crop aspect range, brightness/contrast jitter): the shorthand for scale, ratio and
# color_jitter when they are not set
AUGMENT_PRESETS: dict[str, tuple[tuple[float, float], tuple[float, float], float]] = {
    "none": ((1.0, 1.0), (1.0, 1.0), 0.0),
    "light": ((0.7, 1.0), (3 / 4, 4 / 3), 0.1),
    "strong": ((0.35, 1.0), (3 / 4, 4 / 3), 0.3),
}
# timm's auto-augment grammar (timm.data.auto_augment): policy, then dash-separated KEYvalue sections
AUTO_AUGMENT_KEYS: dict[str, dict[str, type[int] | type[float]]] = {
    "rand": {"m": int, "n": int, "p": float, "mstd": float, "mmax": int, "inc": int},
    "augmix": {"m": int, "w": int, "d": int, "a": float, "b": int, "mstd": float},
    **{p: {"mstd": float} for p in ("original", "originalr", "v0", "v0r", "3a")},
}
RAND_AUGMENT_SETS = ("weights", "3aw", "3a")  # rand-...-tNAME
AUTO_AUGMENT_FORMS = (
    "rand-m9-mstd0.5-inc1 (RandAugment: m magnitude, n ops, p prob, mstd, mmax, inc, tweights|t3aw|t3a), "
    "augmix-m5-w4-d2 (AugMix: m, w, d, a, b, mstd), original|originalr|v0|v0r|3a[-mstdX] (AutoAugment), "
    "trivial (TrivialAugmentWide)"
)


def auto_augment_problem(text: str) -> str | None:
    """What is wrong with a timm auto-augment string, or None; pure, so `kit validate` needs no torch."""
    if text == "trivial":
        return None
    policy, *sections = text.split("-")
    keys = AUTO_AUGMENT_KEYS.get(policy)
    if keys is None:
        return f"unknown policy {policy!r}"
    for s in sections:
        if policy == "rand" and s.startswith("t") and not s[1:2].isdigit():
            if s[1:] not in RAND_AUGMENT_SETS:
                return f"unknown transform set {s!r} (t{', t'.join(RAND_AUGMENT_SETS)})"
            continue
        key, value = (m.group(1), m.group(2)) if (m := re.fullmatch(r"([a-z]+)(\d.*)", s)) else (s, "")
        if key not in keys or not value:
            return f"unknown section {s!r} for {policy!r} (KEYvalue with KEY one of {', '.join(keys)})"
        try:
            keys[key](value)
        except ValueError:
            return f"section {s!r}: {value!r} is not a number of type {keys[key].__name__}"
    return None


def _range(v: tuple[float, float], key: str, upper: float | None) -> tuple[float, float]:
    lo, hi = v
    if not 0 < lo <= hi or (upper is not None and hi > upper):
        bound = f" <= {upper:g}" if upper is not None else ""
        raise ValueError(f"{key} must be [min, max] with 0 < min <= max{bound}")
    return v


class AugmentConfig(StrictModel):
    """Per-image training augmentation (kit.train.transforms) and batch Mixup/CutMix; `preset` is the shorthand
    for `scale`, `ratio` and `color_jitter`. Flips and rotations are opt-in (orientation can be the label)."""

    preset: Literal["none", "light", "strong"] = "light"
    hflip: bool = False
    vflip: bool = False
    rot90: bool = False
    scale: tuple[float, float] | None = Field(
        None, description="random resized crop: [min, max] share of the image's area; unset = the preset's"
    )
    ratio: tuple[float, float] | None = Field(
        None, description="random resized crop: [min, max] aspect ratio (w/h); unset = the preset's"
    )
    color_jitter: float | list[float] | None = Field(
        None,
        description="torchvision ColorJitter: one strength for brightness/contrast/saturation, or "
        "[brightness, contrast, saturation(, hue)]; unset = the preset's brightness/contrast, off with auto_augment",
    )
    auto_augment: str | None = Field(
        None,
        description="timm's auto-augment string, e.g. rand-m9-mstd0.5-inc1, augmix-m5-w4-d2, original; trivial",
    )
    blur_prob: float = Field(0.0, ge=0, le=1, description="probability of a Gaussian blur")
    blur_sigma: tuple[float, float] = Field((0.1, 2.0), description="Gaussian blur sigma range in pixels")
    re_prob: float = Field(0.0, ge=0, le=1, description="timm RandomErasing probability; 0 = off")
    re_mode: Literal["const", "rand", "pixel"] = Field(
        "const", description="erased pixels: 0, per-channel or per-pixel noise"
    )
    re_count: int = Field(1, ge=1, le=16, description="random erasing: at most this many boxes per image")
    albumentations: list[dict[str, Any]] | None = Field(
        None,
        description="a declared albumentations pipeline, [{name: HorizontalFlip, p: 0.5}, ...], run on the crop "
        "(needs `pip install 'kit[albumentations]'`)",
    )
    mixup: float = Field(0.0, ge=0, description="timm Mixup alpha; 0 = off")
    cutmix: float = Field(0.0, ge=0, description="timm CutMix alpha; 0 = off")
    mixup_prob: float = Field(1.0, ge=0, le=1, description="probability of mixing a batch (or element)")
    switch_prob: float = Field(
        0.5, ge=0, le=1, description="with both alphas: probability of CutMix over Mixup"
    )
    mixup_mode: Literal["batch", "pair", "elem"] = Field(
        "batch", description="one mix per batch, pair or image"
    )
    mixup_off_epoch: int | None = Field(
        None,
        ge=1,
        description="no Mixup/CutMix from this epoch on (counted from 0, as timm's --mixup-off-epoch)",
    )

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        return None if v is None else _range(v, "scale", 1.0)

    @field_validator("ratio")
    @classmethod
    def _ratio(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        return None if v is None else _range(v, "ratio", None)

    @field_validator("blur_sigma")
    @classmethod
    def _sigma(cls, v: tuple[float, float]) -> tuple[float, float]:
        return _range(v, "blur_sigma", None)

    @field_validator("color_jitter")
    @classmethod
    def _jitter(cls, v: float | list[float] | None) -> float | list[float] | None:
        values = [v] if isinstance(v, (int, float)) else v or []
        if isinstance(v, list) and len(v) not in (3, 4):
            raise ValueError(
                f"give one strength or [brightness, contrast, saturation(, hue)], not {len(v)} values"
            )
        if any(x < 0 for x in values) or (isinstance(v, list) and len(v) == 4 and v[3] > 0.5):
            raise ValueError("strengths must be >= 0 and hue <= 0.5")
        return v

    @field_validator("auto_augment")
    @classmethod
    def _auto_augment(cls, v: str | None) -> str | None:
        if v is not None and (problem := auto_augment_problem(v)):
            raise ValueError(f"{problem}; valid forms: {AUTO_AUGMENT_FORMS}")
        return v

    @field_validator("albumentations")
    @classmethod
    def _albumentations(cls, v: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for i, step in enumerate(v or []):
            if not isinstance(step.get("name"), str):
                raise ValueError(
                    f"step {i} needs `name:` an albumentations transform, e.g. {{name: HorizontalFlip, p: 0.5}}"
                )
        return v

    @property
    def crop_scale(self) -> tuple[float, float]:
        return self.scale or AUGMENT_PRESETS[self.preset][0]

    @property
    def crop_ratio(self) -> tuple[float, float]:
        return self.ratio or AUGMENT_PRESETS[self.preset][1]

    @property
    def jitter(self) -> tuple[float, ...]:
        """ColorJitter's (brightness, contrast, saturation, hue); all 0 = off."""
        v = self.color_jitter
        if v is None:
            j = 0.0 if self.auto_augment else AUGMENT_PRESETS[self.preset][2]
            return (j, j, 0.0, 0.0)
        if isinstance(v, (int, float)):
            return (float(v),) * 3 + (0.0,)
        return (*map(float, v), 0.0)[:4]


class TuneRange(StrictModel):
    """A numeric search range of `kit tune` (members.NAME.tune): integers when low and high both are."""

    low: float | int
    high: float | int
    log: bool = False
    step: float | int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> TuneRange:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("log and step do not combine; drop one")
        return self

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.step, float)


class HeadConfig(StrictModel):
    """A timm member's classifier (kit.train.heads): hidden layers (Linear, activation) with dropout before each
    Linear, in place of timm's linear classifier."""

    hidden: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=list, description="widths of hidden layers, e.g. [512]; [] = one Linear"
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout before each Linear of the head")
    activation: Literal["gelu", "relu", "silu", "tanh"] = Field(
        "gelu", description="the nonlinearity after each hidden Linear"
    )
    attributes: bool = Field(
        True,
        description="with competition.attributes: one head per attribute; false = one head over the classes",
    )


class PseudoConfig(StrictModel):
    """Pseudo-labels: confident test rows of a member or blend join the training side of every fold."""

    source: str = Field(
        description="a member (workdir/members/NAME) or blend (workdir/blends/NAME); "
        "`member:NAME` or `blend:NAME` when both exist"
    )
    min_confidence: float = Field(
        0.95, gt=0, le=1, description="a test row joins when its top probability reaches this"
    )
    max_per_class: int | None = Field(
        None, ge=1, description="keep at most this many rows per class (the most confident)"
    )
    soft: bool = Field(False, description="train on the source's probabilities instead of its top class")
    weight: float = Field(1.0, gt=0, description="loss weight of each pseudo row (labelled rows weigh 1)")


class MemberBase(StrictModel):
    _seed_bag: str | None = PrivateAttr(None)  # the bag NAME of a seed member NAME-sK (kit.config.seeds)
    img_size: int = Field(224, ge=16, le=2048)
    batch_size: int = Field(32, ge=1)
    epochs: int = Field(10, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    early_stopping: int | None = Field(None, ge=1, description="patience in epochs on the fold's metric")
    loss: LossConfig = Field(default_factory=LossConfig)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    # plain only: a mirrored or rotated view changes the label where orientation carries it (b/d, p/q)
    tta: list[str] = Field(default_factory=lambda: ["plain"])
    seed: int = 0
    seeds: list[int] | None = Field(
        None, description="a seed bag: members NAME-s0, NAME-s1, ... (kit.config.seeds), each with that seed"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: int = Field(0, ge=0)
    # `kit tune`'s search space (docs/tune.md): dotted member keys -> a range or a list of choices; checked by
    # kit.tune.space; excluded from every dump, so it is in no run hash, meta.json or staleness check
    tune: dict[str, TuneRange | list[Any]] | None = Field(None, exclude=True)

    @field_validator("tune", mode="before")
    @classmethod
    def _tune_space(cls, v: object) -> object:
        """Each key a range {low, high[, log, step]} or a list of choices, with one clear message per key."""
        if v is None or not isinstance(v, dict):
            return v
        out: dict[str, object] = {}
        problems = []
        for key, spec in v.items():
            if isinstance(spec, dict):
                try:
                    out[key] = TuneRange.model_validate(spec)
                except ValidationError as e:
                    why = "; ".join(
                        f"{'.'.join(map(str, x['loc'])) or 'range'}: {x['msg'].removeprefix('Value error, ')}"
                        for x in e.errors()
                    )
                    problems.append(f"{key}: {why} (a range is {{low: A, high: B, log: false, step: null}})")
            elif isinstance(spec, list):
                out[key] = spec
            else:
                problems.append(
                    f"{key}: {spec!r} is neither a range {{low: A, high: B}} nor a list of choices [a, b]"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return out

    pseudo: PseudoConfig | None = Field(None, description="pseudo-labels from a member or blend's test rows")

    @field_validator("seeds")
    @classmethod
    def _seed_list(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and not v:
            raise ValueError("an empty seed bag; list seeds, e.g. seeds: [0, 1, 2], or drop the key")
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"seeds repeat in {v}; list each once")
        return v

    @model_validator(mode="after")
    def _seed_or_seeds(self) -> MemberBase:
        if self.seeds is not None and "seed" in self.model_fields_set:
            raise ValueError(
                f"set seed ({self.seed}) or seeds ({self.seeds}), not both: seeds gives each member its seed"
            )
        return self

    @field_validator("tta")
    @classmethod
    def _known_views(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in TTA_VIEWS]
        if bad:
            raise ValueError(f"unknown TTA view(s) {bad}; choose from {list(TTA_VIEWS)}")
        if len(set(v)) != len(v):
            raise ValueError("TTA views repeat; list each once")
        if not v or v[0] != "plain":
            v = ["plain", *[x for x in v if x != "plain"]]
        return v


class TimmMember(MemberBase):
    """A timm backbone fine-tuned end to end over the folds."""

    kind: Literal["timm"]
    model: str = Field(description="any timm model name, e.g. convnext_tiny, swin_tiny_patch4_window7_224")
    pretrained: bool = False
    weights: UserPath | None = Field(
        None, description="local .pth/.bin/.safetensors loaded with a fresh head"
    )
    model_kwargs: dict[str, object] = Field(default_factory=dict, description="passed to timm.create_model")
    warmup_epochs: float = Field(1.0, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    ema: float | None = Field(
        None, gt=0, lt=1, description="EMA decay, e.g. 0.999; evaluated with EMA weights"
    )
    freeze_epochs: int = Field(0, ge=0, description="train only the head for this many epochs first")
    head: HeadConfig | None = Field(
        None, description="an MLP head ({hidden: [512], dropout: 0.2}); default timm's linear classifier"
    )
    drop_path: float | None = Field(None, ge=0, lt=1)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    # the image pipeline (kit.data.cache.Geometry; docs/train.md "Image pipeline")
    resize: Literal["squash", "shorter_side", "pad"] = Field(
        "shorter_side",
        description="how images are stored: squashed square, shorter side at cache_size (aspect kept), or padded",
    )
    crop_pct: float | None = Field(
        None, gt=0, le=1, description="eval centre crop = img_size / cache_size; default the model's (timm)"
    )
    cache_size: int | None = Field(
        None, ge=16, le=4096, description="stored image size; default ceil(img_size / crop_pct)"
    )
    amp: bool = Field(True, description="bf16/fp16 autocast on CUDA; CPU stays fp32")
    channels_last: bool = True
    sync_bn: bool = Field(
        False,
        description="under --ddp, BatchNorm statistics over the global batch (SyncBatchNorm; CUDA only)",
    )
    # the fine-tuning recipe (kit.train.recipe; docs/train.md "Fine-tuning recipe")
    layer_decay: float | None = Field(
        None, gt=0, le=1, description="layer-wise LR decay (timm's param_groups_layer_decay), e.g. 0.75"
    )
    head_lr: float = Field(1.0, gt=0, description="the classifier's LR is lr x head_lr")
    accumulate: int = Field(
        1, ge=1, description="optimizer step every N batches: an effective batch of batch_size x N"
    )
    compile: bool = Field(False, description="torch.compile the training model (the first step is slow)")
    average: Literal["none", "swa", "top_k"] = Field(
        "none", description="the fold's best.pt: the best epoch, SWA over the last epochs, or the top-k mean"
    )
    average_k: int = Field(3, ge=2, description="average: top_k: how many of the best epochs")
    swa_start: int | None = Field(
        None, ge=0, description="average: swa: the first averaged epoch (0-based; default the last quarter)"
    )
    unfreeze: Literal["all", "gradual"] = Field(
        "all", description="after freeze_epochs: the whole backbone, or one stage more per epoch from the top"
    )

    @field_validator("cache_size")
    @classmethod
    def _cache_holds_the_crop(cls, v: int | None, info: ValidationInfo) -> int | None:
        size = info.data.get("img_size")
        if v is not None and isinstance(size, int) and v < size:
            raise ValueError(
                f"{v} is below img_size ({size}): crops of img_size are taken from images stored at "
                f"cache_size; set cache_size >= {size} or drop it"
            )
        return v

    @model_validator(mode="after")
    def _weights_xor_pretrained(self) -> TimmMember:
        if self.weights is not None and self.pretrained:
            raise ValueError(
                "set either weights: PATH (a local file) or pretrained: true (timm's hub), not both"
            )
        if self.freeze_epochs >= self.epochs:
            raise ValueError(f"freeze_epochs ({self.freeze_epochs}) must be below epochs ({self.epochs})")
        if self.average != "swa" and self.swa_start is not None:
            raise ValueError(
                f"swa_start is set but average is {self.average}; set average: swa or drop swa_start"
            )
        if self.average == "swa" and self.swa_start is not None and self.swa_start >= self.epochs:
            raise ValueError(
                f"swa_start ({self.swa_start}) must be below epochs ({self.epochs}): it is the first averaged epoch"
            )
        if self.average == "top_k" and self.average_k > self.epochs:
            raise ValueError(
                f"average_k ({self.average_k}) is more than epochs ({self.epochs}); lower average_k or raise epochs"
            )
        kw_size = self.model_kwargs.get("img_size")
        if kw_size is not None and kw_size != self.img_size:
            raise ValueError(
                f"model_kwargs.img_size ({kw_size}) differs from img_size ({self.img_size}); images are cached "
                "at img_size: set img_size only (kit passes it on to fixed-size models such as Swin)"
            )
        return self


class ClipProbeMember(MemberBase):
    """A frozen open_clip image encoder with a linear head trained per fold on cached embeddings."""

    kind: Literal["clip_probe"]
    model: str = Field(description="open_clip architecture, e.g. ViT-B-32, or local-dir:PATH")
    pretrained: str | None = Field(None, description="open_clip pretrained tag, e.g. laion2b_s34b_b79k")
    cache_dir: UserPath | None = Field(None, description="hub cache folder for pretrained tags offline")
    prompt: str | None = Field(None, description="zero-shot head init template, e.g. 'a photo of a {}.'")
    class_names: dict[str, str] | None = Field(None, description="label -> English words for the prompt")
    epochs: int = Field(100, ge=0, description="head epochs; 0 = pure zero-shot (needs prompt)")
    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-2, gt=0, description="AdamW on standardised embeddings")
    weight_decay: float = Field(1e-4, ge=0)
    early_stopping: int | None = Field(20, ge=1, description="patience in epochs on the fold's metric")
    loss: LossConfig = Field(default_factory=lambda: LossConfig(kind="focal"))
    sampler: SamplerConfig = Field(default_factory=lambda: SamplerConfig(kind="weighted"))
    img_size: int | None = Field(  # type: ignore[assignment]
        None, ge=16, le=2048, description="default: the model's own input size"
    )
    train_views: bool = Field(
        True, description="train the head on every TTA view's embedding, not only plain"
    )

    @field_validator("class_names", mode="before")
    @classmethod
    def _label_keys_as_text(cls, v: object) -> object:
        # YAML reads integer labels (0: zero) as ints; labels are strings in kit
        return {str(k): val for k, val in v.items()} if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _prompt_fits(self) -> ClipProbeMember:
        if self.prompt is not None and "{}" not in self.prompt:
            raise ValueError(f"prompt {self.prompt!r} needs a '{{}}' where the class name goes")
        if self.epochs == 0 and self.prompt is None:
            raise ValueError("epochs: 0 means a pure zero-shot head; set prompt: 'a photo of a {}.' too")
        if self.class_names is not None and self.prompt is None:
            raise ValueError("class_names is only used with prompt; set prompt: 'a photo of a {}.'")
        return self

    def with_base(self, base: Path) -> ClipProbeMember:
        """Relative `local-dir:` and cache_dir paths made absolute against `base` (the kit.yaml's folder)."""
        updates: dict[str, object] = {}
        prefix = "local-dir:"
        if self.model.startswith(prefix):
            p = Path(self.model[len(prefix) :]).expanduser()
            updates["model"] = prefix + str(p if p.is_absolute() else (base / p).resolve())
        if self.cache_dir is not None and not self.cache_dir.is_absolute():
            updates["cache_dir"] = (base / self.cache_dir).resolve()
        return self.model_copy(update=updates) if updates else self


MemberConfig = TimmMember | ClipProbeMember  # every member kind; its trainer is kit.train.kinds.KIND
Member = Annotated[MemberConfig, Field(discriminator="kind")]
MEMBER_KINDS: tuple[str, ...] = tuple(
    get_args(m.model_fields["kind"].annotation)[0] for m in get_args(MemberConfig)
)


class TrackingConfig(StrictModel):
    """Experiment tracking (docs/tracking.md): files on disk only (TensorBoard events, an MLflow file store,
    wandb in offline mode)."""

    kind: Literal["none", "tensorboard", "mlflow", "wandb"] = "none"
    dir: UserPath | None = Field(None, description="where the files go; default WORKDIR/tracking/KIND")
    project: str = Field("kit", min_length=1, description="MLflow experiment / wandb project")


class KitConfig(StrictModel):
    competition: Competition
    folds: Folds = Field(default_factory=Folds)
    members: dict[str, Member] = Field(default_factory=dict)
    workdir: UserPath = Path("work")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @field_validator("members", mode="before")
    @classmethod
    def _empty_members(cls, v: object) -> object:
        return {} if v is None else v

    @field_validator("members")
    @classmethod
    def _member_names(cls, v: dict[str, object]) -> dict[str, object]:
        bad = [name for name in v if not MEMBER_NAME.match(name)]
        if bad:
            raise ValueError(f"member names {bad} must use letters, digits, '_', '.', '-' only")
        from kit.config.seeds import expand_seed_bags

        return expand_seed_bags(v)  # type: ignore[type-var]

    @model_validator(mode="after")
    def _members_fit_task(self) -> KitConfig:
        problems = []
        for name, m in self.members.items():
            if m.pseudo is not None and self.competition.multilabel:
                problems.append(
                    f"members.{name}.pseudo: pseudo-labels are for single-label competitions; a multilabel "
                    "competition (competition.task: multilabel) cannot use them yet: remove pseudo"
                )
            if m.pseudo is not None and m.pseudo.source in (name, f"member:{name}"):
                problems.append(
                    f"members.{name}.pseudo.source: '{m.pseudo.source}' is this member itself, which is "
                    "circular (its own test predictions would train it); name another member or a blend"
                )
            if self.competition.multilabel:
                if m.loss.kind not in MULTILABEL_LOSSES:
                    problems.append(
                        f"members.{name}.loss.kind: {m.loss.kind} is a softmax loss; a multilabel "
                        f"competition trains sigmoid outputs with one of {list(MULTILABEL_LOSSES)}"
                    )
                aug = getattr(m, "augment", None)
                if aug is not None and (aug.mixup > 0 or aug.cutmix > 0):
                    problems.append(
                        f"members.{name}.augment: mixup/cutmix are not supported for multilabel yet; set "
                        "them to 0"
                    )
            elif m.loss.kind in ("bce", "asl"):
                problems.append(
                    f"members.{name}.loss.kind: {m.loss.kind} is a multi-label loss; set competition.task: "
                    "multilabel or choose ce, focal, ..."
                )
        if self.competition.extra_train and self.competition.multilabel:
            problems.append(
                "competition.extra_train: external data is for single-label competitions; a multilabel "
                "competition (competition.task: multilabel) cannot use it yet: remove extra_train"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self
