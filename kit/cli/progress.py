"""Progress bars for `kit train` and `kit demo`: a rich implementation of kit.progress.Reporter."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from kit.progress import Task


class _RichTask:
    def __init__(self, progress: Progress, task_id: TaskID) -> None:
        self.progress, self.task_id = progress, task_id

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task_id, n)

    def describe(self, text: str) -> None:
        self.progress.update(self.task_id, description=text)


class RichReporter:
    """rich progress bars (description, bar, n/total, elapsed, ETA); finished inner bars disappear."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self._progress: Progress | None = None
        self._depth = 0

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Task]:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
        progress = self._progress
        task_id = progress.add_task(description, total=total)
        self._depth += 1
        try:
            yield _RichTask(progress, task_id)
        finally:
            self._depth -= 1
            progress.remove_task(task_id)
            if self._depth == 0:
                progress.stop()
                self._progress = None

    def line(self, text: str) -> None:
        self.console.print(text, highlight=False)
