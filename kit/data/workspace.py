"""A config opened against its data: train/test tables, folds and the fingerprints artifacts are checked by."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from kit.artifacts.member import Expected
from kit.config.schema import KitConfig
from kit.cv.folds import Folds, folds_table_path, make_folds, write_folds
from kit.data.table import Table, load_test, load_train


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
    def data_fingerprint(self) -> str:
        return self.train.fingerprint(self.cfg.competition.root)

    @cached_property
    def test_fingerprint(self) -> str:
        return self.test.fingerprint(self.cfg.competition.root) if self.test is not None else ""

    def expected(self) -> Expected:
        return Expected(
            classes=self.classes,
            train_ids_fingerprint=self.train.ids_fingerprint(),
            folds_fingerprint=self.folds.fingerprint,
            test_ids_fingerprint=self.test.ids_fingerprint() if self.test is not None else None,
        )


def open_workspace(cfg: KitConfig, *, need_test: bool = True, write: bool = True) -> Workspace:
    train = load_train(cfg.competition)
    test = load_test(cfg.competition, train.classes) if (need_test and cfg.competition.test) else None
    folds = make_folds(cfg, train)
    if write:
        path = folds_table_path(cfg)
        fp_file = path.with_suffix(".fingerprint")
        if not (fp_file.exists() and fp_file.read_text().strip() == folds.fingerprint):
            write_folds(folds, path)
    return Workspace(cfg=cfg, train=train, test=test, folds=folds)
