"""Progress reporting shared by every trainer: nested tasks (folds, epochs, batches) and summary lines.

Trainers take a `Reporter`; the CLI passes kit.cli.progress.RichReporter (progress bars with ETA), library
callers and tests get `NullReporter` (silent) or their own implementation (a test can raise KeyboardInterrupt
from `advance`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol


class Task(Protocol):
    def advance(self, n: int = 1) -> None: ...

    def describe(self, text: str) -> None: ...


class Reporter(Protocol):
    """`task` opens a (nested) progress task; `line` prints one summary line above the bars."""

    def task(self, description: str, total: int | None = None) -> AbstractContextManager[Task]: ...

    def line(self, text: str) -> None: ...


class _NullTask:
    def advance(self, n: int = 1) -> None:
        pass

    def describe(self, text: str) -> None:
        pass


class NullReporter:
    """Silent; keeps the summary lines in `lines` (handy in notebooks and tests)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Task]:
        yield _NullTask()

    def line(self, text: str) -> None:
        self.lines.append(text)


@dataclass(frozen=True)
class EpochEvent:
    """One finished epoch of one fold: what experiment tracking logs and what `kit tune` prunes on."""

    member: str
    fold: int
    epoch: int  # 0-based
    loss: float
    score: float  # the competition metric on the fold's held-out rows
    metric: str
    lr: float
    images_per_s: float


def epoch_done(reporter: Reporter, event: EpochEvent) -> None:
    """The epoch hook: a reporter with an `epoch(event)` method gets every finished epoch (kit.track's
    TrackingReporter logs it, kit.tune's pruning reporter may raise optuna.TrialPruned); others ignore it."""
    hook = getattr(reporter, "epoch", None)
    if hook is not None:
        hook(event)


class ForwardingReporter:
    """A Reporter that passes tasks, lines and finished epochs on to `inner`; a subclass adds its own use of
    each epoch (kit.track logs it, kit.tune prunes on it) and calls `super().epoch(event)`."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner

    def task(self, description: str, total: int | None = None) -> AbstractContextManager[Task]:
        return self.inner.task(description, total)

    def line(self, text: str) -> None:
        self.inner.line(text)

    def epoch(self, event: EpochEvent) -> None:
        epoch_done(self.inner, event)
