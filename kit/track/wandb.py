"""tracking.kind: wandb: a wandb run in offline mode under DIR (upload later with `wandb sync DIR/wandb/...`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kit.track import safe_key


class WandbTracker:
    def __init__(self, folder: Path, project: str, run_name: str) -> None:
        import wandb

        self.run = wandb.init(
            mode="offline",
            dir=str(folder),
            project=project,
            name=run_name,
            settings=wandb.Settings(silent=True),
        )

    def scalars(self, values: dict[str, float], step: int | None = None) -> None:
        # wandb's own step only grows; per-fold epochs restart, so the epoch is logged as a value beside them
        if values:
            self.run.log(
                {safe_key(k): float(v) for k, v in values.items()}
                | ({"epoch": step} if step is not None else {})
            )

    def table(self, name: str, rows: list[dict[str, Any]]) -> None:
        import wandb

        cols: list[str | int] = list(rows[0]) if rows else []
        self.run.log(
            {safe_key(name): wandb.Table(columns=cols, data=[[r.get(str(c)) for c in cols] for r in rows])}
        )

    def text(self, name: str, value: str) -> None:
        self.run.summary[safe_key(name)] = value

    def close(self) -> None:
        self.run.finish()
