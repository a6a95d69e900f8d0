"""`kit train --ray auto|ADDRESS`: a member's folds as Ray tasks, on as many machines as the cluster has.

The driver (the `kit train` process) prepares the member once (`fold_loop.prepare_run`: the decoded image
cache, the model spec) and puts it into Ray's object store. Each fold is one task asking for one GPU (or a
share of the CPUs when the cluster has no GPU); the task fits the fold into a scratch folder on its node
(`fold_loop.train_fold(run, f, scratch)`) and returns the folder's files (best weights, OOF and test logits)
as bytes. The driver writes them into workdir/runs/NAME/HASH/fold{f} atomically, marks the fold done
(`finish_fold`) and assembles the member as the serial path does: no shared filesystem is needed.

The driver holds each submitted fold's lock (fold{f}.lock) until the fold's files are written, so a local
`kit train` never trains a fold a Ray task is training, and the reverse. A task whose worker dies (a killed
process, a lost node) is retried by Ray up to MAX_RETRIES times; a fold that raises a KitError is not.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import KitError, describe_os_error
from kit.progress import NullReporter, Reporter
from kit.train.fold_loop import (
    PreparedRun,
    claim_fold,
    collect_done,
    finish_fold,
    train_fold,
)
from kit.train.kinds import RESUME_FILE

if TYPE_CHECKING:
    from kit.config.schema import MemberConfig
    from kit.workspace import Workspace

CONNECT_TIMEOUT_S = 10.0  # an address that does not answer within this fails with its name
DEFAULT_GCS_PORT = 6379  # `ray start --head`'s port
MAX_RETRIES = 3  # a fold's task is rerun this often when its worker process or node dies
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
SCRATCH_PREFIX = (
    "kit-ray-"  # a task's scratch folder: kit-ray-NAME-HASH-fold{f}-pid{PID}-XXXX in the node's temp dir
)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise KitError(
            "--ray needs the ray package; install it with `pip install 'kit[ray]'` (or `pip install "
            "'ray[default]'`), or train without --ray"
        ) from None
    return ray


def split_address(address: str) -> tuple[str, int]:
    """'HOST[:PORT]' or 'ray://HOST[:PORT]' -> (host, port); the GCS port 6379 when none is given."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep:
        return rest, DEFAULT_GCS_PORT
    if not port.isdigit() or not host:
        raise KitError(f"--ray {address}: not an address; pass HOST:PORT (e.g. 10.0.0.5:6379) or auto")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within `timeout` seconds, naming the address, when nothing listens there (ray.init would hang)."""
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise KitError(
            f"--ray {address}: no Ray cluster answers at {host}:{port} within {timeout:.0f} s ({e}); start one "
            "with `ray start --head` on that machine, check the address and port, or use --ray auto"
        ) from None


def connect(address: str) -> Any:
    """The ray module, connected: an already initialised Ray is kept; `auto` is Ray's own default (RAY_ADDRESS,
    else the cluster `ray start` started on this machine, else a new local one); anything else is an address
    that must answer within CONNECT_TIMEOUT_S."""
    ray = _import_ray()
    if address != "auto":
        check_reachable(address)
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=None if address == "auto" else address, logging_level="ERROR", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise KitError(
            f"--ray {address}: could not join the Ray cluster ({str(e).splitlines()[0]}); check the address "
            "(`ray status` on the head node prints it) or use --ray auto"
        ) from None
    return ray


def task_options(ray: Any, member: MemberConfig, n_tasks: int) -> dict[str, Any]:
    """One GPU per fold when the cluster has GPUs (and the member may use one), else an equal share of the
    CPUs, never more than one node has; the task's threads are pinned to its CPU count."""
    total = ray.cluster_resources()
    node_cpus = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=1)
    gpus, cpus = total.get("GPU", 0), total.get("CPU", 1)
    if member.device == "cuda" and gpus < 1:
        raise KitError(
            "members.*.device is 'cuda' but the Ray cluster has no GPU; set the member's device: auto (or cpu) "
            "or add GPU nodes"
        )
    if gpus >= 1 and member.device != "cpu":
        num_gpus, num_cpus = 1, max(1, int(cpus // gpus))
    else:
        num_gpus, num_cpus = 0, max(1, min(int(node_cpus), int(cpus // max(n_tasks, 1))))
    threads = str(num_cpus)
    env = {**OFFLINE_ENV, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    return {
        "num_cpus": num_cpus,
        "num_gpus": num_gpus,
        "max_retries": MAX_RETRIES,
        "retry_exceptions": False,
        "runtime_env": {"env_vars": env},
    }


def portable(run: PreparedRun) -> PreparedRun:
    """The prepared run as shipped: caches as plain arrays (not memory maps of driver files), no console."""
    kind = run.kind
    changes: dict[str, Any] = {
        f.name: np.asarray(v)
        for f in dataclasses.fields(kind)  # type: ignore[arg-type]  # kinds are dataclasses
        if isinstance(v := getattr(kind, f.name), np.memmap)
    }
    if hasattr(kind, "reporter"):
        changes["reporter"] = NullReporter()
    return dataclasses.replace(run, kind=dataclasses.replace(kind, **changes))  # type: ignore[type-var]


def on_worker(run: PreparedRun) -> PreparedRun:
    """The shipped run on this node: the device chosen here (the driver may have none), a fresh reporter."""
    from kit.train.device import DeviceSetup, select_device

    kind, m = run.kind, run.member
    changes: dict[str, Any] = {"reporter": NullReporter()} if hasattr(kind, "reporter") else {}
    if isinstance(getattr(kind, "setup", None), DeviceSetup):
        amp, cl = getattr(m, "amp", True), getattr(m, "channels_last", True)
        changes["setup"] = select_device(run.name, m.device, amp=amp, channels_last=cl)
    elif isinstance(getattr(kind, "device", None), str):
        changes["device"] = select_device(run.name, m.device, amp=False).device.type
    return dataclasses.replace(run, kind=dataclasses.replace(kind, **changes))  # type: ignore[type-var]


def fit_remote(
    run: PreparedRun, f: int, last: bytes | None, threads: int
) -> tuple[dict, dict[str, bytes], list]:
    """A Ray task: fit fold f in a scratch folder (resuming from the driver's last.pt when sent); returns the
    fold's info, its files as bytes (all but last.pt) and the report lines."""
    import torch

    torch.set_num_threads(threads)
    run = on_worker(run)
    prefix = f"{SCRATCH_PREFIX}{run.name}-{run.root.name}-fold{f}-pid{os.getpid()}-"
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        scratch = Path(tmp)
        if last is not None:
            (scratch / RESUME_FILE).write_bytes(last)
        info = train_fold(run, f, scratch)
        files = {
            p.name: p.read_bytes() for p in sorted(scratch.iterdir()) if p.is_file() and p.name != RESUME_FILE
        }
    lines = getattr(run.kind, "reporter", NullReporter()).lines
    return (
        info,
        files,
        [*lines, f"{run.name} fold {f}: trained on {socket.gethostname()} (pid {os.getpid()})"],
    )


def write_fold(root: Path, f: int, files: dict[str, bytes]) -> None:
    """A remote fold's files into root/fold{f}, each atomically (done.json comes after, from finish_fold)."""
    from kit.artifacts.atomic import atomic_file

    d = root / f"fold{f}"
    for name, data in files.items():
        if Path(name).name != name or name.startswith("."):
            raise RuntimeError(f"a Ray task returned an unsafe file name {name!r}")
        with atomic_file(d / name) as tmp:
            tmp.write_bytes(data)


def _result(ray: Any, ref: Any, name: str, f: int) -> tuple[dict, dict[str, bytes], list]:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, KitError):
            raise KitError(str(e.cause)) from None
        if isinstance(e.cause, OSError):  # the worker's disk: full, read-only, ... (the path and the fix)
            raise KitError(
                f"member '{name}' fold {f}, on its Ray worker: {describe_os_error(e.cause)}; finished folds are "
                "kept: run the same command again once that is fixed"
            ) from None
        raise
    except (
        ray.exceptions.WorkerCrashedError,
        ray.exceptions.NodeDiedError,
        ray.exceptions.TaskCancelledError,
    ) as e:
        raise KitError(
            f"member '{name}' fold {f}: its Ray worker died {MAX_RETRIES + 1} times ({type(e).__name__}); "
            "finished folds are kept: check the nodes (`ray status`) and run the same command again"
        ) from None


def ray_folds(
    run: PreparedRun, reporter: Reporter, address: str, folds: list[int] | None = None
) -> list[dict[str, Any]] | None:
    """Train every fold of `run` (or of `folds`) not done yet and not held by another process as Ray tasks; the
    fold infos once all k are done, else None (as `fold_loop.run_locked_folds`)."""
    ray = connect(address)
    root, name, k = run.root, run.name, run.ws.folds.k
    infos: dict[int, dict[str, Any]] = {}
    locks: dict[int, Any] = {}
    try:
        chosen = list(range(k)) if folds is None else folds
        for f in chosen:
            info, lock = claim_fold(root, name, f, reporter)
            if info is not None:
                infos[f] = info
            elif lock is not None:
                locks[f] = lock
        if locks:
            _run_tasks(ray, run, reporter, locks, infos)
    finally:
        for lock in locks.values():
            lock.release()
    return collect_done(root, name, k, infos, reporter, chosen)


def _run_tasks(
    ray: Any, run: PreparedRun, reporter: Reporter, locks: dict[int, Any], infos: dict[int, dict[str, Any]]
) -> None:
    opts = task_options(ray, run.member, len(locks))
    remote = ray.remote(fit_remote).options(name=f"kit-{run.name}-fold", **opts)
    t0 = time.perf_counter()
    shipped = ray.put(portable(run))
    refs = {}
    for f in locks:
        last = run.root / f"fold{f}" / RESUME_FILE
        refs[remote.remote(shipped, f, last.read_bytes() if last.exists() else None, opts["num_cpus"])] = f
    where = f"{opts['num_gpus']} GPU" if opts["num_gpus"] else f"{opts['num_cpus']} CPU(s)"
    reporter.line(
        f"{run.name}: {len(refs)} fold(s) sent to Ray, {where} each ({time.perf_counter() - t0:.1f} s)"
    )
    pending = list(refs)
    try:
        with reporter.task(f"{run.name} folds on Ray", total=len(refs)) as task:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                f = refs[done[0]]
                info, files, lines = _result(ray, done[0], run.name, f)
                for line in lines:
                    reporter.line(line)
                write_fold(run.root, f, files)
                finish_fold(run.root, f, info)
                locks.pop(f).release()
                infos[f] = info
                task.advance()
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def train_member_ray(
    ws: Workspace,
    name: str,
    member: MemberConfig,
    reporter: Reporter,
    address: str,
    folds: list[int] | None = None,
) -> Path | None:
    """`fold_loop.train_member` with the folds (all, or `folds`) run as Ray tasks."""
    from kit.train.fold_loop import train_member

    return train_member(
        ws, name, member, reporter, runner=lambda run: ray_folds(run, reporter, address, folds)
    )
