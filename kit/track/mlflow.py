"""tracking.kind: mlflow: one MLflow run per command in a file store at DIR (`mlflow ui --backend-store-uri
file:DIR`); the experiment is tracking.project. Nothing leaves the machine.

MLflow 3.x keeps its file store in maintenance mode and refuses it unless MLFLOW_ALLOW_FILE_STORE=true; kit
sets that (when unset) for its own client, since a folder of files is what works offline and on shared disks."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from kit.track import safe_key


class MlflowTracker:
    def __init__(self, folder: Path, project: str, run_name: str) -> None:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.tracking import MlflowClient

        self.uri = folder.resolve().as_uri()
        self.client = MlflowClient(tracking_uri=self.uri)
        exp = self.client.get_experiment_by_name(project)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(project)
        self.run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id

    def scalars(self, values: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(safe_key(k), float(v), now, step or 0) for k, v in values.items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def table(self, name: str, rows: list[dict[str, Any]]) -> None:
        # the rows as a JSON list (log_dict writes any JSON value; its hint says dict)
        self.client.log_dict(self.run_id, rows, f"{safe_key(name).replace('/', '_')}.json")  # type: ignore[arg-type]

    def text(self, name: str, value: str) -> None:
        self.client.set_tag(self.run_id, safe_key(name), value)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
