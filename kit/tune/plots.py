"""optuna's optimization history and parameter importances as PNG (matplotlib, offline)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.artifacts.atomic import atomic_file

if TYPE_CHECKING:
    import optuna


def _save(ax: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = ax.figure
    fig.set_size_inches(8, 5)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def write_plots(study: optuna.Study, out: Path) -> tuple[list[Path], list[str]]:
    """out/history.png and out/importance.png; notes say why a plot is missing instead of failing."""
    import matplotlib

    matplotlib.use("Agg")
    import optuna
    from optuna.visualization import matplotlib as vis

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return [], ["no completed trial yet: no plots"]
    paths, notes = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        _save(vis.plot_optimization_history(study), out / "history.png")
        paths.append(out / "history.png")
        if len(complete) < 2:
            notes.append(
                f"parameter importance needs at least 2 completed trials ({len(complete)} so far): no plot"
            )
        else:
            try:
                _save(vis.plot_param_importances(study), out / "importance.png")
                paths.append(out / "importance.png")
            except (ValueError, RuntimeError, ZeroDivisionError) as e:
                notes.append(f"parameter importance could not be computed ({e}): no plot")
    return paths, notes
