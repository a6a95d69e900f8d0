"""A config opened against its data: train/test tables, folds and the fingerprints artifacts are checked by."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from kit.artifacts.atomic import clean_and_report
from kit.artifacts.fingerprints import Fingerprints
from kit.artifacts.member import Expected
from kit.artifacts.workdir import claim_workdir, is_kit_workdir, workdir_problem
from kit.config.schema import KitConfig
from kit.cv.folds import Folds, folds_table_path, make_folds, write_folds
from kit.data.fingerprint import HASH_CACHE_FILE, FileHashes, TableFingerprints, table_fingerprints
from kit.data.table import Table, load_test, load_train
from kit.errors import KitError

if TYPE_CHECKING:
    from kit.data.extra import ExtraSource


@dataclass
class Workspace:
    cfg: KitConfig
    train: Table
    test: Table | None
    folds: Folds

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    @property
    def workdir(self) -> Path:
        return self.cfg.workdir

    @property
    def cache_dir(self) -> Path:
        return self.cfg.workdir / "cache"

    @cached_property
    def file_hashes(self) -> FileHashes:
        # cached on disk only in a workdir kit has claimed (a read-only open never creates or litters one)
        return FileHashes(self.cache_dir / HASH_CACHE_FILE if is_kit_workdir(self.workdir) else None)

    @cached_property
    def train_fingerprints(self) -> TableFingerprints:
        return table_fingerprints(self.train, self.cfg.competition.root, self.file_hashes)

    @cached_property
    def test_fingerprints(self) -> TableFingerprints | None:
        if self.test is None:
            return None
        return table_fingerprints(self.test, self.cfg.competition.root, self.file_hashes)

    @cached_property
    def extra(self) -> list[ExtraSource]:
        """competition.extra_train, read, mapped onto the classes and cleared of duplicates (kit.data.extra)."""
        from kit.data.extra import load_extra

        return load_extra(self.cfg.competition, self.train, self.test, self.cache_dir, self.file_hashes)

    @property
    def data_fingerprint(self) -> str:
        """The train table's content: labels, groups and image bytes."""
        return self.train_fingerprints.combined

    @property
    def test_fingerprint(self) -> str:
        """The test table's content: ids, paths and image bytes ('' without a test table)."""
        return self.test_fingerprints.combined if self.test_fingerprints is not None else ""

    @property
    def train_images_fingerprint(self) -> str:
        """Ids, paths and bytes of the train images (no labels): what the image and embedding caches key on,
        so a corrected label retrains without decoding every image again."""
        return self.train_fingerprints.images

    @property
    def test_images_fingerprint(self) -> str:
        return self.test_fingerprints.images if self.test_fingerprints is not None else ""

    def fingerprint_parts(self) -> dict[str, str]:
        """What changed, by part: stored with every member and blend so a refusal can name it."""
        parts = {
            "train_labels": self.train_fingerprints.labels,
            "train_images": self.train_fingerprints.images,
        }
        if self.test_fingerprints is not None:
            parts["test_images"] = self.test_fingerprints.images
        return parts

    def fingerprints(self) -> Fingerprints:
        """What an artifact made from this workspace records (member meta.json, winner.json)."""
        return Fingerprints(
            train_ids=self.train.ids_fingerprint(),
            folds=self.folds.fingerprint,
            test_ids=self.test.ids_fingerprint() if self.test is not None else "",
            data=self.data_fingerprint,
            test=self.test_fingerprint,
            parts=self.fingerprint_parts(),
        )

    def expected(self, *, allow_stale: bool = False) -> Expected:
        """What artifacts must match to be used with this config and data (kit.artifacts.member.Expected)."""
        return Expected(
            classes=self.classes,
            fingerprints=Fingerprints(
                train_ids=self.train.ids_fingerprint(),
                folds=self.folds.fingerprint,
                test_ids=self.test.ids_fingerprint() if self.test is not None else None,
                data=self.data_fingerprint,
                test=self.test_fingerprint if self.test is not None else None,
                parts=self.fingerprint_parts(),
            ),
            member_configs={n: m.model_dump(mode="json") for n, m in self.cfg.members.items()},
            metric=self.cfg.competition.scored_by,
            allow_stale=allow_stale,
        )


def open_workspace(cfg: KitConfig, *, need_test: bool = True, write: bool = True) -> Workspace:
    problem = workdir_problem(cfg.workdir)  # before anything is read or written: the workdir must be kit's
    if problem is not None:
        raise KitError(problem)
    train = load_train(cfg.competition)
    test = load_test(cfg.competition, train.classes) if (need_test and cfg.competition.test) else None
    folds = make_folds(cfg, train)
    if write:
        claim_workdir(cfg.workdir)
        clean_and_report(cfg.workdir)
        path = folds_table_path(cfg)
        fp_file = path.with_suffix(".fingerprint")
        if not (fp_file.exists() and fp_file.read_text().strip() == folds.fingerprint):
            write_folds(folds, path)
    return Workspace(cfg=cfg, train=train, test=test, folds=folds)
