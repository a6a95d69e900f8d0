"""The optuna study behind `kit tune`: storage, study, objective, results.

One trial samples the space (TPE), validates the member config, trains it on the chosen folds into a scratch
folder workdir/tune/MEMBER/STUDY/trialN (never workdir/runs or workdir/members), and returns the pooled score of
those folds' held-out rows (plain view) under the competition metric; log-loss-like metrics are minimised.
Every finished epoch goes to the study (step = position of the fold x epochs + epoch) through the epoch hook of
kit.progress, and MedianPruner stops trials that trail the median there (optuna.TrialPruned).

The study lives in its storage, so an interrupted `kit tune` resumes and several processes or machines can
share one: `--trials N` is the study's total of finished (complete or pruned) trials, and each process stops
once the study holds N (processes that run at once can overshoot by one trial each). A trial whose process was
killed stays `running` in the study and does not count; the rerun trains a new one in its place.
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from kit.errors import KitError
from kit.progress import ForwardingReporter
from kit.tune.space import Param, member_with, search_space, suggest

if TYPE_CHECKING:
    import optuna

    from kit.config.schema import KitConfig
    from kit.progress import EpochEvent, Reporter
    from kit.workspace import Workspace

FINISHED = ("COMPLETE", "PRUNED")
RACES = (
    "locked",
    "UNIQUE constraint",
    "already exists",
    "Duplicate",
)  # schema creation raced another process
SQLITE_TIMEOUT_S = 60  # processes sharing one SQLite file wait this long for its lock


def tune_dir(workdir: Path, name: str) -> Path:
    return workdir / "tune" / name


def default_storage(workdir: Path) -> str:
    return f"sqlite:///{(workdir / 'tune' / 'tune.db').resolve()}"


def sqlite_file(url: str) -> Path | None:
    """The database file of a sqlite:/// URL (relative to the current folder, as SQLAlchemy reads it), or
    None for another database or an in-memory one."""
    if not url.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    try:
        database = make_url(url).database
    except Exception:  # a malformed URL: open_storage says so
        return None
    return Path(database) if database and database != ":memory:" else None


def storage_folder(url: str, workdir: Path, *, create: bool) -> None:
    """A SQLite --storage's folder that does not exist yet: made (`create`) when it is the workdir or inside it,
    kit's own folders; refused elsewhere, naming URLs that work. Checked before the workspace opens, made after
    (opening it creates and marks the workdir)."""
    path = sqlite_file(url)
    if path is None or path.parent.is_dir():
        return
    folder = Path(os.path.abspath(path.parent))
    wd = Path(os.path.abspath(workdir))
    if folder == wd or wd in folder.parents:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        return
    raise KitError(
        f"--storage {url}: the folder {path.parent} does not exist ({folder}); kit creates folders only inside "
        f"its workdir ({workdir}). Create it (`mkdir -p {folder}`), or keep the study in the workdir: "
        f"{default_storage(workdir)} (the default when --storage is left out)"
    )


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The optuna RDB storage at `url` (SQLite waits for a busy file instead of failing); a KitError naming
    --storage when it cannot be opened."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials show in kit's table
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
        path = sqlite_file(url)
        if path is not None and not path.parent.is_dir():
            raise KitError(
                f"--storage {url}: the folder {path.parent} does not exist; create it or point --storage "
                "at an existing folder (leave --storage out for the workdir's tune/tune.db)"
            )
    last: Exception | None = None
    for _ in range(5):  # processes creating the tables of a new database at once: the losers retry
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except Exception as e:  # sqlalchemy: bad URL, missing driver, unreachable server, locked file
            last = e
            if not any(m in str(e) for m in RACES):
                break
            time.sleep(1.0)
    raise KitError(
        f"--storage {url}: cannot open it ({type(last).__name__}: {str(last).splitlines()[0] if last else ''}); "
        "use an optuna RDB URL such as sqlite:////ABSOLUTE/PATH/tune.db (a file in an existing folder) or "
        "postgresql://USER@HOST/DB"
    ) from None


def parse_folds(folds: list[int] | None, k: int) -> list[int]:
    if not folds:
        return list(range(k))
    bad = [f for f in folds if not 0 <= f < k]
    if bad:
        raise KitError(f"--folds {bad}: folds are numbered 0..{k - 1} (folds.k is {k})")
    return sorted(set(folds))


def study_name(ws: Workspace, name: str, params: list[Param], folds: list[int]) -> str:
    """MEMBER-HASH: the same member, data, folds, metric and space give the same study (so a rerun resumes)."""
    from kit.train.fold_loop import run_hash

    member = ws.cfg.members[name]
    space = [[p.key, p.describe()] for p in params]
    base = run_hash(ws, member, {"tune_space": space, "tune_folds": folds})
    return f"{name}-{hashlib.sha256(base.encode()).hexdigest()[:8]}"


@dataclass
class TuneSetup:
    """Everything a `kit tune` needs, checked before any training: the space, folds, storage and study."""

    ws: Workspace
    name: str
    params: list[Param]
    folds: list[int]
    storage_url: str
    study: optuna.Study

    @property
    def direction(self) -> str:
        return self.study.direction.name.lower()


def setup_study(cfg: KitConfig, name: str, folds: list[int] | None, storage: str | None) -> TuneSetup:
    """Check the space (before opening anything), open the workspace and the storage, create or load the study."""
    import optuna

    from kit.metrics.scores import greater_is_better
    from kit.train.run import select_members
    from kit.workspace import open_workspace

    if (bag := select_members(cfg.members, [name])) != [name]:  # a seed bag (kit.config.seeds)
        raise KitError(
            f"'{name}' is a seed bag of members {bag}; `kit tune` tunes one member: name one, e.g. "
            f"`kit tune {bag[0]}`"
        )
    params = search_space(cfg, name)
    url = storage or default_storage(cfg.workdir)
    storage_folder(url, cfg.workdir, create=False)
    ws = open_workspace(cfg)  # creates (and marks) the workdir
    storage_folder(url, cfg.workdir, create=True)
    st = open_storage(url)
    chosen = parse_folds(folds, ws.folds.k)
    sname = study_name(ws, name, params, chosen)
    direction: Literal["maximize", "minimize"] = (
        "maximize" if greater_is_better(cfg.competition.scored_by) else "minimize"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            storage=st,
            study_name=sname,
            direction=direction,
            sampler=optuna.samplers.TPESampler(),
            pruner=optuna.pruners.MedianPruner(),
            load_if_exists=True,
        )
    study.set_user_attr("member", name)
    study.set_user_attr("folds", chosen)
    study.set_user_attr("k", ws.folds.k)
    study.set_user_attr("metric", cfg.competition.scored_by)
    return TuneSetup(ws, name, params, chosen, url, study)


class FirstTrialsFail(Exception):
    """A trial failed before any trial of the study completed: stop and show the error."""

    def __init__(self, error: KitError) -> None:
        self.error = error


class PruningReporter(ForwardingReporter):
    """A Reporter that reports every finished epoch to the optuna trial and raises optuna.TrialPruned when the
    pruner says so; tasks, lines and the epoch event itself go on to `inner`."""

    def __init__(self, inner: Reporter, trial: optuna.Trial, epochs: int) -> None:
        super().__init__(inner)
        self.trial, self.epochs = trial, epochs
        self.position = 0  # index of the current fold among the trial's folds

    def epoch(self, event: EpochEvent) -> None:
        import optuna

        super().epoch(event)
        self.trial.report(event.score, self.position * self.epochs + event.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"fold {event.fold} epoch {event.epoch + 1}: {event.metric} {event.score:.4f} trails the median"
            )


def run_trial(ts: TuneSetup, trial: optuna.Trial, reporter: Reporter) -> float:
    """One trial: sample, validate, train the chosen folds in a scratch folder, return their pooled score."""
    from kit.metrics.scores import score
    from kit.train.fold_loop import PreparedRun, train_fold
    from kit.train.kinds import get_kind

    ws, name = ts.ws, ts.name
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("host", platform.node())
    try:
        values = suggest(trial, ts.params)
        member = member_with(ws.cfg, name, values)
        root = tune_dir(ws.workdir, name) / ts.study.study_name / f"trial{trial.number}"
        rep = PruningReporter(reporter, trial, int(getattr(member, "epochs", 1)))
        t0 = time.perf_counter()
        kind = get_kind(member.kind).prepare(ws, name, member, rep)
        run = PreparedRun(ws, name, member, kind, root, time.perf_counter() - t0)
        for i, f in enumerate(ts.folds):
            rep.position = i
            try:
                train_fold(run, f)
            finally:
                for ck in ("best.pt", "last.pt"):  # the scratch folder keeps the logits, not the weights
                    (root / f"fold{f}" / ck).unlink(missing_ok=True)
    except KitError as e:
        trial.set_user_attr("error", str(e))
        if not any(t.state.name == "COMPLETE" for t in ts.study.trials):
            raise FirstTrialsFail(e) from None  # no trial has ever worked: the config, not the sample
        raise  # this sample failed (e.g. diverged at a high lr): the study goes on
    y = ws.train.labels
    assert y is not None  # train tables always carry labels
    rows = np.concatenate([ws.folds.valid_idx(f) for f in ts.folds])
    logits = np.concatenate([np.load(root / f"fold{f}" / "oof.npy")[:, 0] for f in ts.folds])
    value = float(score(ws.cfg.competition.scored_by, y[rows], logits))
    reporter.line(f"{name} trial {trial.number}: {ws.cfg.competition.scored_by} {value:.4f}  {values}")
    return value


def finished(study: optuna.Study) -> int:
    return sum(t.state.name in FINISHED for t in study.trials)


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    seconds: float | None
    pid: int | None
    note: str = ""


@dataclass
class TuneResult:
    """What `kit tune` found (kit.cli.tune prints it): the study's trials, the best, plots and notes."""

    member: str
    study: str
    storage: str
    metric: str
    direction: str
    folds: list[int]
    k: int
    trials: list[TrialRow]
    best: TrialRow | None
    ran: int  # trials this call finished
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def trial_rows(study: optuna.Study) -> list[TrialRow]:
    rows = []
    for t in study.trials:
        secs = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        rows.append(
            TrialRow(
                t.number,
                t.state.name,
                t.value,
                dict(t.params),
                secs,
                t.user_attrs.get("pid"),
                str(t.user_attrs.get("error", "")),
            )
        )
    return rows


def best_row(study: optuna.Study) -> TrialRow | None:
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not done:
        return None
    return next(r for r in trial_rows(study) if r.number == study.best_trial.number)


def tune(
    cfg: KitConfig,
    name: str,
    trials: int,
    *,
    folds: list[int] | None = None,
    storage: str | None = None,
    jobs: int = 1,
    reporter: Reporter | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> TuneResult:
    """What `kit tune MEMBER --trials N` runs: bring the study to N finished trials, then plot and summarise."""

    from kit.progress import NullReporter
    from kit.tune.plots import write_plots

    if trials < 1:
        raise KitError(
            f"--trials {trials}: give the number of trials the study should hold, e.g. --trials 20"
        )
    if jobs < 1:
        raise KitError(f"--jobs {jobs}: give the number of trials to run at once here (1 or more)")
    ts = setup_study(cfg, name, folds, storage)
    if pruner is not None:
        ts.study.pruner = pruner
    rep = reporter or NullReporter()
    before = finished(ts.study)
    earlier = {t.number for t in ts.study.trials}
    todo = trials - before
    if todo > 0:
        from optuna.study import MaxTrialsCallback
        from optuna.trial import TrialState

        stop = MaxTrialsCallback(trials, states=(TrialState.COMPLETE, TrialState.PRUNED))
        try:
            ts.study.optimize(
                lambda t: run_trial(ts, t, rep),
                n_trials=todo,
                n_jobs=jobs,
                callbacks=[stop],
                catch=(KitError,),
                gc_after_trial=True,
            )
        except FirstTrialsFail as e:
            raise KitError(
                f"kit tune {name}: the first trial failed, so the study stops: {e.error}"
            ) from None
    mine = [r for r in trial_rows(ts.study) if r.pid == os.getpid() and r.number not in earlier]
    result = TuneResult(
        member=name,
        study=ts.study.study_name,
        storage=ts.storage_url,
        metric=cfg.competition.scored_by,
        direction=ts.direction,
        folds=ts.folds,
        k=ts.ws.folds.k,
        trials=trial_rows(ts.study),
        best=best_row(ts.study),
        ran=len([r for r in mine if r.state in FINISHED]),
    )
    if todo <= 0:
        result.notes.append(
            f"the study already holds {before} finished trial(s) (--trials {trials}); nothing to run"
        )
    result.plots, notes = write_plots(ts.study, tune_dir(cfg.workdir, name))
    result.notes += notes
    if ts.folds == list(range(ts.ws.folds.k)):
        result.notes.append(
            "tuned on every fold: the OOF score of a member trained with these values is optimistic (its folds "
            "chose them); `--folds 0` and full k-fold training is the recommended path (docs/tune.md)"
        )
    return result


def load_study(cfg: KitConfig, name: str, folds: list[int] | None, storage: str | None) -> TuneSetup:
    """The existing study of `kit tune NAME` with these folds and storage (for --apply and --show)."""
    ts = setup_study(cfg, name, folds, storage)
    if not ts.study.trials:
        raise KitError(
            f"no trials in study {ts.study.study_name} ({ts.storage_url}); run `kit tune {name} --trials 20` "
            "first (with the same --folds and --storage)"
        )
    return ts
