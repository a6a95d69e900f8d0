"""tracking.kind: tensorboard: event files under DIR/RUN (read with `tensorboard --logdir DIR`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kit.track import markdown_table, safe_key


class TensorBoardTracker:
    def __init__(self, folder: Path, run_name: str) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.dir = folder / safe_key(run_name).replace(" ", "_").replace("/", "_")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._writer = EventFileWriter(str(self.dir))

    def _add(self, summary: Any, step: int | None) -> None:
        from tensorboard.compat.proto import event_pb2

        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=step or 0, summary=summary))

    def scalars(self, values: dict[str, float], step: int | None = None) -> None:
        from tensorboard.compat.proto import summary_pb2

        if values:
            v = [summary_pb2.Summary.Value(tag=safe_key(k), simple_value=float(x)) for k, x in values.items()]
            self._add(summary_pb2.Summary(value=v), step)

    def table(self, name: str, rows: list[dict[str, Any]]) -> None:
        self.text(name, markdown_table(rows))

    def text(self, name: str, value: str) -> None:
        from tensorboard.plugins.text.summary_v2 import text_pb

        self._add(text_pb(safe_key(name), value), 0)

    def close(self) -> None:
        self._writer.close()
