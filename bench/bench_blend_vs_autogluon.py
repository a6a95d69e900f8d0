#!/usr/bin/env python
"""Greedy ensemble selection speed, side by side: kit's blender against AutoGluon's EnsembleSelection.

(From ../shared/bench/blend_vs_autogluon.py, made a project benchmark for issue 17: a `realistic` regime, the
scikit-learn-scored search as the baseline when no AutoGluon interpreter is given, `--busy K` competing
processes.)

Both run the same search: Caruana selection with replacement, 25 rounds over M = 10 members, weighted F1 on
the argmax of the blended probabilities, keep the best prefix, weights = pick counts / prefix length.

- AutoGluon: autogluon.core.models.greedy_ensemble.ensemble_selection.EnsembleSelection(ensemble_size=25,
  problem_type='multiclass', metric=make_scorer(sklearn f1_score, average='weighted'), fixed random_state),
  fit on a list of M [N, C] probability arrays.
- kit: make_blender(GreedySpec(kind='greedy', rounds=25, bags=1), 'weighted_f1', 'probs').fit(P, y), P the
  [N, M, C] float32 stack that kit.blend.candidates builds.

Data (synthetic, as bench/bench_blend.py makes it): long-tailed labels (class prior 0.85**c), member m's
logits N(0, 1 + 0.15 m) plus a boost `signal` on the true class, softmax. Regimes: strong (signal 4.0, member
accuracy ~0.45-0.97) and weak (signal 1.5, ~0.14-0.38); realistic (make_realistic): members like real
out-of-fold predictions, accuracy 0.60-0.96 with errors correlated through a per-row difficulty shared by every
member. Both libraries get the same float32 arrays, read from .npy files in a scratch folder.

Each library runs in its own subprocess and interpreter (its own virtual environment): the import, and a
first (warm-up) fit that pays one-off costs (lazy imports, first-touch allocations), are timed and reported
apart from the median of `--repeats` further fits. The kit worker imports only kit's public blender; the
environment (PYTHONPATH included) reaches it, so `PYTHONPATH=OLD_CHECKOUT` times an older kit with the same
interpreter, and each row records the kit package it imported (kit_path).

Output: one JSON line per (N, regime) on stdout, e.g.
  {"regime": "strong", "n": 200000, "ag_s": 24.1, "kit_s": 0.9, "ratio": 26.8, "weights_equal": true, ...}
and a readable table on stderr. Exit status 1 when any ratio (AutoGluon time / kit time) is below --min-ratio.

Run with any Python that has numpy (the parent only makes data and compares), e.g.
  python bench/bench_blend_vs_autogluon.py --ag-python AG_VENV/bin/python --kit-python KIT_VENV/bin/python \
      --n 2000 20000 200000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

REGIMES = {"strong": 4.0, "weak": 1.5, "realistic": 0.0}  # true-class logit boost (bench_blend.py's `signal`)
DEFAULT_AG_PYTHON = os.environ.get("AG_PYTHON", "")
DEFAULT_KIT_PYTHON = os.environ.get("KIT_PYTHON", sys.executable)


# ---------------------------------------------------------------------------------------------- data


def make_realistic(n: int, n_classes: int, n_members: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Members like real out-of-fold predictions: accuracy about 0.6-0.95 and correlated errors. Each row has a
    difficulty shared by every member (a lognormal scale on the true class's boost) and a noise term shared by
    every member; each member adds its own noise and has its own strength (the boost on the true class rises
    from 2.4 to 7.5 over the members: with 20 classes and 10 members their accuracy spans 0.60-0.96)."""
    rng = np.random.default_rng(seed)
    prior = 0.85 ** np.arange(n_classes)
    y = rng.choice(n_classes, size=n, p=prior / prior.sum())
    ease = np.exp(rng.normal(0, 0.6, n)).astype(np.float32)
    shared = rng.normal(0, 1.0, size=(n_classes, n)).astype(np.float32)
    P = np.empty((n_members, n, n_classes), dtype=np.float32)
    for m in range(n_members):
        z = 0.8 * shared + rng.normal(0, 0.8, size=(n_classes, n)).astype(np.float32)
        z[y, np.arange(n)] += (2.4 + 5.1 * m / max(1, n_members - 1)) * ease  # 10 members: 0.60-0.96
        z -= z.max(axis=0)
        np.exp(z, out=z)
        z /= z.sum(axis=0)
        P[m] = z.T
    return y, P


def make_data(
    n: int, n_classes: int, n_members: int, signal: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Labels y [n] and member probabilities P [M, n, C] float32 (member-major: each member contiguous): the
    draws of bench/bench_blend.py's make_data (class-major there), transposed."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_blend import make_data as class_major_data

    y, Pt = class_major_data(seed, signal, n_classes, n, n_members)
    return y, np.ascontiguousarray(Pt.transpose(0, 2, 1))


def weighted_f1(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    cm = np.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float((f1 * support).sum() / support.sum())


def blend_wf1(P: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Weighted F1 of argmax(sum_m w_m P_m), the same float64 arithmetic for both libraries' weights."""
    S = np.zeros(P.shape[1:], dtype=np.float64)
    for m in np.flatnonzero(w):
        S += w[m] * P[m]
    return weighted_f1(y, S.argmax(axis=1), P.shape[2])


# ---------------------------------------------------------------------------------------------- workers


def _timed_fits(fit: Any, repeats: int) -> tuple[Any, float, list[float]]:
    t = time.perf_counter()
    result = fit()
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        result = fit()
        times.append(time.perf_counter() - t)
    return result, first, times


def worker_ag(args: argparse.Namespace) -> dict[str, Any]:
    import warnings

    t = time.perf_counter()
    from functools import partial

    import autogluon.core
    import sklearn
    from autogluon.core.metrics import make_scorer
    from autogluon.core.models.greedy_ensemble.ensemble_selection import EnsembleSelection
    from sklearn.metrics import f1_score

    import_s = time.perf_counter() - t
    warnings.filterwarnings("ignore")  # sklearn's UndefinedMetricWarning for never-predicted classes
    P = np.load(os.path.join(args.data, "P.npy")).astype(args.ag_dtype, copy=False)
    y = np.load(os.path.join(args.data, "y.npy"))
    preds = [P[m] for m in range(P.shape[0])]
    scorer = make_scorer(
        "f1_weighted",
        partial(f1_score, average="weighted"),
        optimum=1,
        greater_is_better=True,
        needs_class=True,
    )

    def fit() -> Any:
        es = EnsembleSelection(
            ensemble_size=args.rounds,
            problem_type="multiclass",
            metric=scorer,
            random_state=np.random.RandomState(args.seed),
        )
        return es.fit(predictions=preds, labels=y)

    es, first, times = _timed_fits(fit, args.repeats)
    return {
        "import_s": import_s,
        "first_s": first,
        "times": times,
        "weights": np.asarray(es.weights_, dtype=np.float64).tolist(),
        "order": [int(i) for i in es.indices_],
        "best": 1.0 - float(es.train_score_),  # train_score_ is the error (optimum - score)
        "versions": {
            "autogluon.core": autogluon.core.__version__,
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
        },
    }


def worker_sk(args: argparse.Namespace) -> dict[str, Any]:
    """The baseline when no AutoGluon interpreter is given: the same Caruana search (same float32 sums, best
    prefix, ties to the first candidate) scoring every candidate with scikit-learn's f1_score."""
    import warnings

    t = time.perf_counter()
    import sklearn
    from sklearn.metrics import f1_score

    import_s = time.perf_counter() - t
    warnings.filterwarnings("ignore")
    P = np.load(os.path.join(args.data, "P.npy"))
    y = np.load(os.path.join(args.data, "y.npy"))
    labels = np.arange(P.shape[2])

    def fit() -> Any:
        M = P.shape[0]
        counts = np.zeros(M, dtype=np.int64)
        S = np.zeros(P.shape[1:], dtype=np.float32)
        best, best_counts, order = -np.inf, counts.copy(), []
        for _ in range(args.rounds):
            gains = [
                f1_score(y, (S + P[m]).argmax(axis=1), average="weighted", labels=labels, zero_division=0)
                for m in range(M)
            ]
            j = int(np.argmax(gains))
            S += P[j]
            counts[j] += 1
            order.append(j)
            if gains[j] > best:
                best, best_counts = gains[j], counts.copy()
        return best_counts, best, order[: int(best_counts.sum())]

    (counts, best, order), first, times = _timed_fits(fit, args.repeats)
    return {
        "import_s": import_s,
        "first_s": first,
        "times": times,
        "weights": (counts / counts.sum()).tolist(),
        "order": order,
        "best": float(best),
        "versions": {"autogluon.core": "none (scikit-learn baseline)", "sklearn": sklearn.__version__},
    }


def worker_kit(args: argparse.Namespace) -> dict[str, Any]:
    t = time.perf_counter()
    import importlib.metadata

    import kit
    from kit.blend.blenders import make_blender
    from kit.config.ensemble import GreedySpec

    import_s = time.perf_counter() - t
    spec = GreedySpec(kind="greedy", rounds=args.rounds, bags=1)
    versions = {
        "kit": importlib.metadata.version("kit"),
        "kit_path": os.path.dirname(os.path.abspath(kit.__file__)),
        "numpy": np.__version__,
    }
    P = np.load(os.path.join(args.data, "P.npy"))
    y = np.load(os.path.join(args.data, "y.npy"))
    X = np.ascontiguousarray(P.transpose(1, 0, 2))  # [N, M, C], as kit.blend.candidates stacks members
    del P

    def fit() -> Any:
        return make_blender(spec, "weighted_f1", "probs").fit(X, y)

    b, first, times = _timed_fits(fit, args.repeats)
    return {
        "import_s": import_s,
        "first_s": first,
        "times": times,
        "weights": np.asarray(b.weights_, dtype=np.float64).tolist(),
        "prefix": int(b.counts_.sum()),
        "best": float(max(b.history_[: int(b.counts_.sum())])),
        "versions": versions,
    }


def run_worker(python: str, kind: str, args: argparse.Namespace, env: dict[str, str], **extra: Any) -> dict:
    cmd = [python, os.path.abspath(__file__), "--worker", kind, "--rounds", str(args.rounds)]
    cmd += ["--repeats", str(extra.get("repeats", args.repeats)), "--seed", str(args.seed)]
    cmd += ["--ag-dtype", args.ag_dtype]
    if extra.get("data"):
        cmd += ["--data", extra["data"]]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{kind} worker failed (exit {proc.returncode}): {' '.join(cmd)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- parent


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def compare(regime: str, n: int, P: np.ndarray, y: np.ndarray, ag: dict, kit: dict, load0: str) -> dict:
    ag_s, kit_s = statistics.median(ag["times"]), statistics.median(kit["times"])
    wa, wk = np.asarray(ag["weights"]), np.asarray(kit["weights"])
    top_a, top_k = set(np.flatnonzero(wa == wa.max())), set(np.flatnonzero(wk == wk.max()))
    return {
        "regime": regime,
        "n": n,
        "ag_s": round(ag_s, 4),
        "kit_s": round(kit_s, 4),
        "ratio": round(ag_s / kit_s, 2),
        "weights_equal": bool(np.allclose(wa, wk, rtol=0, atol=1e-9)),
        "ag_version": ag["versions"]["autogluon.core"],
        "top_pick_agree": top_a == top_k,
        "support_equal": set(np.flatnonzero(wa)) == set(np.flatnonzero(wk)),
        "weights_l1": round(float(np.abs(wa - wk).sum()), 6),
        "ag_weights": [round(v, 4) for v in wa.tolist()],
        "kit_weights": [round(v, 4) for v in wk.tolist()],
        "ag_prefix": len(ag["order"]),
        "kit_prefix": kit["prefix"],
        "ag_best_wf1": round(ag["best"], 6),
        "kit_best_wf1": round(kit["best"], 6),
        "ag_blend_wf1": round(blend_wf1(P, y, wa), 6),
        "kit_blend_wf1": round(blend_wf1(P, y, wk), 6),
        "ag_times": [round(t, 4) for t in ag["times"]],
        "kit_times": [round(t, 4) for t in kit["times"]],
        "ag_first_s": round(ag["first_s"], 4),
        "kit_first_s": round(kit["first_s"], 4),
        "ag_import_s": round(ag["import_s"], 3),
        "kit_import_s": round(kit["import_s"], 3),
        "member_acc": [round(float((P[m].argmax(axis=1) == y).mean()), 3) for m in range(P.shape[0])],
        "kit_version": kit["versions"]["kit"],
        "kit_path": kit["versions"]["kit_path"],
        "numpy_version": kit["versions"]["numpy"],
        "sklearn_version": ag["versions"]["sklearn"],
        "ag_dtype": None,  # filled by the caller
        "loadavg": [load0, loadavg()],
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ag-python", default=DEFAULT_AG_PYTHON, help="interpreter with autogluon.core")
    p.add_argument("--kit-python", default=DEFAULT_KIT_PYTHON, help="interpreter with kit")
    p.add_argument("--n", type=int, nargs="+", default=[200_000], help="row counts (default 200000)")
    p.add_argument("--regimes", nargs="+", choices=sorted(REGIMES), default=["realistic", "strong", "weak"])
    p.add_argument(
        "--busy",
        type=int,
        default=0,
        help="start this many busy-looping processes for the timed runs (a machine where other work runs)",
    )
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--rounds", type=int, default=25, help="greedy rounds (AutoGluon's ensemble_size)")
    p.add_argument("--repeats", type=int, default=3, help="timed fits after one warm-up fit; median")
    p.add_argument("--seed", type=int, default=0, help="data seed and AutoGluon's tie-breaking random_state")
    p.add_argument(
        "--min-ratio", type=float, default=10.0, help="exit 1 when AutoGluon time / kit time is below"
    )
    p.add_argument(
        "--ag-dtype", choices=["float32", "float64"], default="float32", help="dtype AutoGluon gets"
    )
    p.add_argument(
        "--kit-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for kit's processes, e.g. OMP_WAIT_POLICY=passive (repeatable)",
    )
    p.add_argument(
        "--workdir", default=None, help="scratch folder for the .npy files (default: a new temp dir)"
    )
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    # worker mode (internal)
    p.add_argument("--worker", choices=["ag", "sk", "kit"], help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.worker:
        out = {"ag": worker_ag, "sk": worker_sk, "kit": worker_kit}[args.worker](args)
        print(json.dumps(out))
        return 0

    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # nothing written beside either library's sources
    kit_env = dict(env)
    for item in args.kit_env:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--kit-env wants KEY=VALUE, got {item!r}")
        kit_env[key] = value
    workdir = args.workdir or tempfile.mkdtemp(prefix="blend_vs_ag_")
    os.makedirs(workdir, exist_ok=True)
    print(f"scratch {workdir}; loadavg {loadavg()}; {os.cpu_count()} CPUs", file=sys.stderr)
    rows = []
    busy = [
        subprocess.Popen(
            [sys.executable, "-c", "import time\nend = time.time() + 3600\nwhile time.time() < end: pass"]
        )
        for _ in range(args.busy)
    ]
    if busy:
        print(f"{len(busy)} busy-looping processes started (stopped at the end)", file=sys.stderr)
    try:
        for n in args.n:
            for regime in args.regimes:
                if regime == "realistic":
                    y, P = make_realistic(n, args.classes, args.members, args.seed)
                else:
                    y, P = make_data(n, args.classes, args.members, REGIMES[regime], args.seed)
                data = os.path.join(workdir, f"{regime}_{n}")
                os.makedirs(data, exist_ok=True)
                np.save(os.path.join(data, "P.npy"), P)
                np.save(os.path.join(data, "y.npy"), y)
                load0 = loadavg()
                if args.ag_python:
                    ag = run_worker(args.ag_python, "ag", args, env, data=data)
                else:  # no AutoGluon interpreter: the scikit-learn-scored search is the baseline
                    ag = run_worker(args.kit_python, "sk", args, env, data=data)
                kit = run_worker(args.kit_python, "kit", args, kit_env, data=data)
                row = compare(regime, n, P, y, ag, kit, load0)
                row["ag_dtype"] = args.ag_dtype
                row["kit_env"] = args.kit_env
                rows.append(row)
                print(json.dumps(row), flush=True)
                print(
                    f"N={n:>7,} {regime:9s} baseline {row['ag_s']:8.3f} s  kit {row['kit_s']:7.3f} s  "
                    f"ratio {row['ratio']:7.1f}x  weights equal {row['weights_equal']}  "
                    f"(kit first fit {row['kit_first_s']:.3f} s, AG first fit {row['ag_first_s']:.3f} s)",
                    file=sys.stderr,
                )
                del P, y
    finally:
        for b in busy:
            b.kill()
            b.wait()
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    low = [r for r in rows if r["ratio"] < args.min_ratio]
    for r in low:
        print(
            f"FAIL: N={r['n']} {r['regime']}: ratio {r['ratio']} < --min-ratio {args.min_ratio}",
            file=sys.stderr,
        )
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
