"""`kit validate`: check configs (kit.yaml, ensemble specs) and the data they name, without running anything.

It sits above kit.config: besides the schemas it reads the tables, the fold plan and the sample submission
(kit.data, kit.cv, kit.submit), so kit.config itself imports nothing but kit.errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from kit.config.load import apply_overrides, read_yaml, resolve_paths, validate_data
from kit.config.schema import KitConfig
from kit.errors import KitError

if TYPE_CHECKING:
    from kit.cv.folds import Folds
    from kit.data.table import Table

T = TypeVar("T")


@dataclass
class Checked:
    path: Path
    kind: str
    problems: list[str] = field(
        default_factory=list
    )  # invalid config, or data train/submit would refuse: exit 1
    warnings: list[str] = field(default_factory=list)  # valid, but worth a look
    notes: list[str] = field(default_factory=list)  # what the config expands to (seed bags)


def config_kind(path: Path, data: dict[str, Any]) -> str:
    if "competition" in data:
        return "kit.yaml"
    if "blenders" in data or path.parent.name == "ensembles":
        return "ensemble"
    return "unknown"


def check_paths(cfg: KitConfig) -> list[str]:
    """Files the config names that are not there, and the ones `kit submit` needs that it does not name."""
    comp = cfg.competition
    if not comp.root.is_dir():
        return [
            f"competition.root: folder {comp.root} does not exist; point it at the competition's data folder"
        ]
    problems = []
    for key in ("train", "train_images", "test", "test_images", "sample_submission"):
        p = getattr(comp, key)
        if p is not None and not p.exists():
            problems.append(
                f"competition.{key}: {p} does not exist; fix the path (relative to competition.root)"
            )
    from kit.artifacts.workdir import workdir_problem
    from kit.data.extra import check_extra_paths

    problems += check_extra_paths(comp)
    if (wd := workdir_problem(cfg.workdir)) is not None:
        problems.append(wd)
    if comp.test is None:
        problems.append("competition.test is not set; `kit submit` needs the test table or test image folder")
    if comp.sample_submission is None:
        problems.append(
            "competition.sample_submission is not set; `kit submit` copies the submission's shape from it"
        )
    return problems


def check_data(cfg: KitConfig, warns: list[str] | None = None) -> list[str]:
    """What `kit train` and `kit submit` would refuse: the config's files, tables, fold plan and sample, and
    train's preflight (check_training); its warnings go to `warns`.

    Reads tables, file names and a few image headers only (no image is decoded, nothing heavy is imported)."""
    from kit.cv.folds import check_fold_plan
    from kit.data.table import load_test, load_train
    from kit.submit.format import match_ids
    from kit.submit.sample import detect_layout, read_csv_exact

    problems = check_paths(cfg)
    if problems:
        return problems
    comp = cfg.competition

    def attempt(step: Callable[[], T]) -> T | None:
        try:
            return step()
        except KitError as e:
            problems.append(str(e))
            return None

    train = attempt(lambda: load_train(comp))
    plan_ok = False  # train's preflight needs the fold plan
    if train is not None:
        n = len(problems)
        attempt(lambda: check_fold_plan(cfg, train))
        plan_ok = len(problems) == n
    if train is not None and comp.extra_train:  # labels mapped onto the classes (no image is decoded)
        from kit.data.extra import load_extra_tables

        attempt(lambda: load_extra_tables(comp, train.classes))
    # the test table and the sample are checked even when the train table failed: every problem at once
    test = attempt(lambda: load_test(comp, train.classes if train is not None else []))
    assert comp.sample_submission is not None  # check_paths reports it unset
    sample = attempt(lambda: read_csv_exact(comp.sample_submission, "sample submission"))  # type: ignore[arg-type]
    if sample is not None and not sample.rows:
        problems.append(f"{comp.sample_submission}: the sample submission has a header but no rows")
    elif sample is not None and train is not None:
        layout = attempt(
            lambda: detect_layout(sample, train.classes, comp.submission, comp.id_column, comp.scored_by)
        )
        if layout is not None and test is not None:
            attempt(lambda: match_ids(sample.column(layout.id_col), test.ids, lines=sample.lines))
    if plan_ok and train is not None and (test is not None or comp.test is None):
        refused, warned = check_training(cfg, train, test)
        problems += refused
        if warns is not None:
            warns += warned
    return problems


def check_training(cfg: KitConfig, train: Table, test: Table | None) -> tuple[list[str], list[str]]:
    """(problems, warnings) `kit train` gives before it trains anything: pretrained weights it cannot get
    (kit.train.models.pretrained_problem) and its preflight (kit.train.preflight: caches that do not fit on the
    disk, a batch that does not fit in memory, an img_size far above the images'). Builds no model and decodes
    no image; torch is imported only to search a non-empty hub cache or measure a GPU. After a `kit train`, the
    images are fingerprinted (through workdir/cache/file_hashes.json) to tell which caches exist."""
    from kit.config.schema import TimmMember
    from kit.train.models import pretrained_problem
    from kit.train.preflight import Inputs, attribute_findings, findings

    problems, attr_warns = attribute_findings(cfg.competition.attributes, train.classes, dict(cfg.members))
    for name, m in cfg.members.items():
        try:
            if isinstance(m, TimmMember) and (p := pretrained_problem(name, m)) is not None:
                problems.append(p)
        except KitError as e:
            problems.append(str(e))
    if not cfg.members:
        return problems, attr_warns
    fps: dict[str, str] = {}

    def images_fingerprint(split: str) -> str:  # only when a cache of that size exists: after a train
        if split not in fps:
            from kit.data.fingerprint import HASH_CACHE_FILE, FileHashes, table_fingerprints

            # the digests kit train cached, read but never written (validate writes nothing)
            hashes = FileHashes(cfg.workdir / "cache" / HASH_CACHE_FILE, save=False)
            table = train if split == "train" else test
            fps[split] = (
                "" if table is None else table_fingerprints(table, cfg.competition.root, hashes).images
            )
        return fps[split]

    n, k = len(train), cfg.folds.k
    rows = n - n // k  # the largest fold's train rows are at least this many
    if any(m.batch_size > rows for m in cfg.members.values()):  # the exact number matters: split
        folds = _folds(cfg, train)
        rows = max(len(folds.train_idx(f)) for f in range(folds.k))
    fewest = None  # gradient accumulation needs the smallest fold's rows (kit.train.preflight)
    if any(getattr(m, "accumulate", 1) > 1 for m in cfg.members.values()):
        folds = _folds(cfg, train)
        fewest = min(len(folds.train_idx(f)) for f in range(folds.k))
    inputs = Inputs(train, test, cfg.workdir / "cache", rows, images_fingerprint, fewest)
    try:
        refused, warned = findings(inputs, dict(cfg.members))
    except KitError as e:
        return [*problems, str(e)], attr_warns
    return problems + [f"`kit train` would not start: {p}" for p in refused], attr_warns + warned


def _folds(cfg: KitConfig, train: Table) -> Folds:
    import warnings

    from kit.cv.folds import make_folds

    with warnings.catch_warnings():  # check_fold_plan reported what matters already
        warnings.simplefilter("ignore")
        return make_folds(cfg, train)


def check_tune_and_tracking(cfg: KitConfig) -> list[str]:
    """Every member's `tune:` search space (kit.tune.space) and the tracking backend's package."""
    from kit.track import check_tracking
    from kit.tune.space import search_space

    problems = []
    for step in [lambda: check_tracking(cfg)] + [
        (lambda n=name: search_space(cfg, n)) for name, m in cfg.members.items() if m.tune
    ]:
        try:
            step()
        except KitError as e:
            problems += e.problems or [str(e)]
    return problems


def validate_file(path: Path, overrides: list[str] | None = None) -> Checked:
    try:
        data = read_yaml(path)
    except KitError as e:
        return Checked(path, "unreadable", [str(e)])
    kind = config_kind(path, data)
    try:
        if kind == "kit.yaml":
            cfg = resolve_paths(
                validate_data(apply_overrides(data, overrides), KitConfig, str(path)), path.parent.resolve()
            )
            warns: list[str] = []
            problems = check_data(cfg, warns) + check_tune_and_tracking(cfg)
            from kit.config.seeds import seed_bags

            bags = [f"seed bag {b}: members {', '.join(ns)}" for b, ns in seed_bags(cfg.members).items()]
            if cfg.competition.label_overrides is not None and not problems:
                bags.append(_overrides_note(cfg.competition.label_overrides))
            return Checked(path, kind, problems, warns, bags)
        if kind == "ensemble":
            from kit.config.ensemble import EnsembleSpec

            validate_data(data, EnsembleSpec, str(path))
            return Checked(path, kind)
    except KitError as e:
        return Checked(path, kind, e.problems or [str(e)])
    return Checked(
        path, kind, ["neither a kit.yaml (no `competition:` key) nor an ensemble spec (no `blenders:` key)"]
    )


def _overrides_note(path: Path) -> str:
    from kit.data.overrides import read_label_overrides

    rows = read_label_overrides(path)
    dropped = sum(o.label is None for o in rows)
    return f"competition.label_overrides: {len(rows) - dropped} row(s) relabelled, {dropped} dropped ({path})"


def validate_files(paths: list[Path], overrides: list[str] | None = None) -> list[Checked]:
    return [validate_file(p, overrides) for p in paths]
