"""Which selection rule picks blends that win on the hidden test? Simulated competitions with known test answers.

Each simulated competition draws what competitors meet: N train rows log-uniform in [500, 20000], 5-50 classes,
an imbalance ratio up to 100, groups of 1-5 rows (with a shared group effect, and in half of the competitions
one label per group), 2-12 members of different strength, prior bias and calibration whose errors are
correlated (a shared per-row difficulty and a shared noise term), 5 group-aware stratified folds, out-of-fold
logits from the fold models and test logits averaged over the 5 fold models (as `kit train` does), and a test set
drawn from the same process. kit's own engine then judges every row of a blend table by nested CV
(`evaluate_blender`), and each selection rule picks a row. Every row is also scored on the test answers, so
each rule's pick can be compared with the best row in hindsight and with the best single member.

Reported per rule: mean test regret against the best row in hindsight, the share of competitions where the pick
loses to the best single member (the best_single row, what `kit submit --member` of the CV-best member gives) by
more than 0.005, and the bias of the reported estimate (estimate minus the test score of the pick, with the test
predictions of a single fold model, and of the fold-averaged models). The reported estimate is the rule applied
inside each outer fold (selection-aware); for max_nested the raw maximum is reported too (what kit printed
before).

Run: `python bench/bench_selection.py [--competitions 500] [--seed 0] [--demo DIR]` (bench/README.md has a run
of 500 on 2 cores). `--jobs` worker processes run one competition at a time each, with one BLAS thread.
`--stack-C 1.0` fixes the stack's C instead of kit's nested choice (faster, less faithful). The largest competitions start first. `--demo DIR` adds the demo competition: DIR is a
folder where `kit demo` ran (kit.yaml, trained members and the held-back answers). The small version in
tests/test_selection.py runs a few competitions.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kit.blend.nested import Candidate, baseline_row, evaluate_blender
from kit.blend.postprocess import variants
from kit.blend.selection import (
    BootstrapScorer,
    Resampler,
    average,
    compare,
    fold_comparisons,
    group_codes,
    select,
    selection_aware,
)
from kit.config.ensemble import EnsembleSpec
from kit.cv.folds import FoldWarning, assign_folds
from kit.metrics.scores import score, softmax

K = 5
# (label, rule, confidence)
RULES = [
    ("max_nested", "max_nested", 0.0),
    ("average_1se", "average_1se", 0.0),
    ("one_se", "one_se", 0.0),
    ("beat_single@0.80", "beat_single", 0.80),
    ("beat_single@0.90", "beat_single", 0.90),
    ("beat_single@0.95", "beat_single", 0.95),
    ("stepwise@0.80", "stepwise", 0.80),
    ("stepwise@0.90", "stepwise", 0.90),
]

# The benchmark's table: every blender kind and both post-processing steps, with grids coarser than
# ensembles/all.yaml's defaults so that 500 competitions take under 10 minutes on 2 cores (528-556 s).
BENCH_SPEC = {
    "members": "all",
    "blenders": [
        {"kind": "best_single"},
        {"kind": "uniform"},
        {"kind": "greedy", "rounds": 25, "init": 1},
        {"kind": "hill_climb", "grid": [0.1, 0.2, 0.3, 0.5], "max_steps": 8},
        {"kind": "subsets", "max_size": 2},
        # kit's nested choice of C between two values: with fits run to their minimum, the inner CV chose
        # C = 1.0 in 176 and 0.1 in 4 of 180 choices (30 competitions sampled from the 500) and never 0.01
        {"kind": "stack", "C_grid": [0.1, 1.0], "max_iter": 100},
    ],
    "postprocess": {
        "logit_adjust": {"enabled": True, "taus": [0.0, 0.25, 0.5, 0.75, 1.0]},
        "class_bias": {"enabled": True, "grid": [-0.6, -0.3, 0.0, 0.3, 0.6], "passes": 1},
    },
}


@dataclass
class Sim:
    y: np.ndarray
    groups: list[str]
    fold: np.ndarray
    P: np.ndarray  # [n, M, C] OOF probabilities
    y_test: np.ndarray
    T_avg: np.ndarray  # [t, M, C] test probabilities of the fold-averaged logits
    T_one: np.ndarray  # [t, M, C] test probabilities of fold model 0 alone
    info: dict = field(default_factory=dict)


def _shape(
    rng: np.random.Generator, small: bool, max_n: int, max_classes: int
) -> tuple[int, int, float, int]:
    """A competition's first draws: train rows, classes, imbalance ratio, members."""
    lo, hi = (300, 1500) if small else (500, max_n)
    N = int(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    C = round(float(np.exp(rng.uniform(np.log(5), np.log(max_classes if not small else 12)))))
    ratio = float(np.exp(rng.uniform(0, np.log(100))))
    M = int(rng.integers(2, 13 if not small else 6))
    return N, C, ratio, M


def expected_cost(seed: int, max_n: int = 20000, max_classes: int = 50) -> float:
    """A competition's relative cost before simulating it (the stack's fits grow as N * M * C^2): the pool
    starts the largest first, so no long one is left running alone at the end."""
    N, C, _, M = _shape(np.random.default_rng(seed), False, max_n, max_classes)
    return N * M * C * (C + 20.0)


def simulate(
    seed: int, n_test: int = 4000, small: bool = False, max_n: int = 20000, max_classes: int = 50
) -> Sim:
    rng = np.random.default_rng(seed)
    N, C, ratio, M = _shape(rng, small, max_n, max_classes)
    gmax = int(rng.integers(1, 6))
    same_label = bool(rng.random() < 0.5)
    prior = ratio ** (-np.arange(C) / max(C - 1, 1))
    prior /= prior.sum()

    def rows(n: int, start: int) -> tuple[np.ndarray, np.ndarray]:
        sizes = rng.integers(1, gmax + 1, size=n)  # more than enough groups
        gid = np.repeat(np.arange(n), sizes)[:n]
        y = rng.choice(C, size=n, p=prior)
        if same_label:
            y = rng.choice(C, size=n, p=prior)[gid]
        return y, gid + start

    y, gid = rows(N, 0)
    counts = np.bincount(y, minlength=C)
    for c in np.flatnonzero(counts < 3):  # every class has at least 3 train images, as in real competitions
        extra = 3 - counts[c]
        y = np.concatenate([y, np.full(extra, c)])
        gid = np.concatenate([gid, gid.max() + 1 + np.arange(extra)])
    N = len(y)
    y_test, gid_test = rows(n_test, int(gid.max()) + 1)

    base = rng.uniform(1.0, 4.5)
    # members of near-equal strength (fine-tunes of similar backbones) up to very unequal ones
    strength = base * np.exp(rng.normal(0, rng.uniform(0.03, 0.4), M))
    # how much of a member's own error is shared with the others (the same data, augmentations, backbones)
    rho = rng.uniform(0.0, 0.9)
    prior_bias = rng.uniform(0, 1.2, M)
    temp = np.exp(rng.uniform(-0.7, 0.7, M))
    s_shared, s_group, s_fold = rng.uniform(0.3, 1.2), rng.uniform(0, 0.9), rng.uniform(0.2, 0.8)
    n_groups = int(max(gid.max(), gid_test.max())) + 1
    u = rng.normal(0, 1, (n_groups, C)).astype(np.float32)  # group effect shared by every member
    logp = np.log(prior).astype(np.float32)

    def base_logits(yy: np.ndarray, gg: np.ndarray) -> np.ndarray:
        """[n, M, C] everything but the fold models' own noise."""
        n = len(yy)
        ease = np.exp(rng.normal(0, 0.5, n)).astype(np.float32)  # shared per-row difficulty
        shared = rng.normal(0, s_shared, (n, C)).astype(np.float32) + s_group * u[gg]
        z = rng.normal(0, np.sqrt(1 - rho), (n, M, C)).astype(np.float32)  # each member's own errors
        z += rng.normal(0, np.sqrt(rho), (n, 1, C)).astype(np.float32)  # errors every member shares
        z += shared[:, None, :]
        z += prior_bias[None, :, None].astype(np.float32) * logp[None, None, :]
        z[np.arange(n), :, yy] += strength[None, :].astype(np.float32) * ease[:, None]
        return z

    z_train = base_logits(y, gid)
    oof = z_train + rng.normal(0, s_fold, z_train.shape).astype(np.float32)
    z_test = base_logits(y_test, gid_test)
    fold_models = [z_test + rng.normal(0, s_fold, z_test.shape).astype(np.float32) for _ in range(K)]
    avg = np.mean(fold_models, axis=0)

    def probs(z: np.ndarray) -> np.ndarray:
        return softmax(z / temp[None, :, None].astype(np.float32), axis=-1).astype(np.float32)

    groups = [str(g) for g in gid]
    with warnings.catch_warnings():  # tiny classes are part of the design here
        warnings.simplefilter("ignore", FoldWarning)
        fold = assign_folds(y, K, seed, groups)
    metric = "weighted_f1" if rng.random() < 0.7 else "macro_f1"
    info = {
        "N": N,
        "C": C,
        "M": M,
        "ratio": ratio,
        "rho": rho,
        "gmax": gmax,
        "same_label": same_label,
        "metric": metric,
    }
    return Sim(y, groups, fold, probs(oof), y_test, probs(avg), probs(fold_models[0]), info)


@dataclass
class Outcome:
    info: dict
    test_avg: np.ndarray  # [R] every row's test score (fold-averaged members)
    test_one: np.ndarray  # [R] with fold model 0's test predictions
    nested: np.ndarray  # [R]
    labels: list[str]
    baseline: int
    picks: dict[str, list[int]]  # rule -> the rows it picks (average_1se: several, averaged)
    pick_test_avg: dict[str, float]  # rule -> its pick's test score (fold-averaged members)
    pick_test_one: dict[str, float]  # with fold model 0's test predictions
    pick_nested: dict[str, float]  # the pick's own nested estimate
    reported: dict[str, float]  # selection-aware estimate per rule
    seconds: float

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        for k in ("test_avg", "test_one", "nested"):
            d[k] = d[k].tolist()
        d["picks"] = {k: [int(i) for i in v] for k, v in self.picks.items()}
        return d

    @classmethod
    def from_json(cls, line: str) -> Outcome:
        import json

        d = json.loads(line)
        for k in ("test_avg", "test_one", "nested"):
            d[k] = np.asarray(d[k])
        return cls(**d)


def table_rows(sim: Sim, spec: EnsembleSpec, metric: str) -> list[Candidate]:
    pp = variants(spec.postprocess)
    rows: list[Candidate] = []
    for b in spec.blenders:
        rows.extend(evaluate_blender(b, pp, spec.postprocess, sim.P, sim.y, sim.fold, metric, spec.space))
    return rows


def judge_rules(
    rows: list[Candidate],
    y: np.ndarray,
    fold: np.ndarray,
    codes: np.ndarray,
    metric: str,
    resamples: int,
    seed: int = 0,
) -> tuple[dict[str, int], dict[str, float]]:
    preds = [r.nested_oof for r in rows]
    comp = [r.complexity for r in rows]
    base = baseline_row(rows)
    rs = Resampler.make(codes, resamples, seed)
    bs = BootstrapScorer(metric, y, preds[0].shape[1], rs)
    cmp = compare(bs, preds, comp, base)
    per_fold = fold_comparisons(metric, y, preds, comp, base, fold, rs, seed)
    picks, reported, nested = {}, {}, {}
    for label, rule, conf in RULES:
        picks[label] = select(cmp, rule, conf)
        nested[label] = bs.point(average(preds, picks[label]))
        reported[label] = selection_aware(bs, preds, fold, per_fold, rule, conf).score
    return picks, reported, nested


def run_one(
    seed: int,
    spec: EnsembleSpec,
    resamples: int,
    small: bool = False,
    max_n: int = 20000,
    max_classes: int = 50,
) -> Outcome:
    t0 = time.perf_counter()
    sim = simulate(seed, small=small, max_n=max_n, max_classes=max_classes)
    metric = sim.info["metric"]
    rows = table_rows(sim, spec, metric)

    # a blender's test predictions, shared by the rows of its post-processing chains
    blended: dict[tuple[int, int], np.ndarray] = {}

    def test_probs(r: Candidate, T: np.ndarray) -> np.ndarray:
        key = (id(r.blender), id(T))
        if key not in blended:
            blended[key] = r.blender.predict(T)
        return r.chain.transform(blended[key])

    probs_avg = [test_probs(r, sim.T_avg) for r in rows]
    probs_one = [test_probs(r, sim.T_one) for r in rows]

    def test_score(probs: list[np.ndarray], picked: list[int]) -> float:
        return score(metric, sim.y_test, average(probs, picked), logits=False)

    picks, reported, nested = judge_rules(
        rows, sim.y, sim.fold, group_codes(sim.groups, len(sim.y)), metric, resamples
    )
    return Outcome(
        info=sim.info,
        test_avg=np.array([test_score(probs_avg, [i]) for i in range(len(rows))]),
        test_one=np.array([test_score(probs_one, [i]) for i in range(len(rows))]),
        nested=np.array([r.nested for r in rows]),
        labels=[r.label for r in rows],
        baseline=baseline_row(rows),
        picks=picks,
        pick_test_avg={k: test_score(probs_avg, v) for k, v in picks.items()},
        pick_test_one={k: test_score(probs_one, v) for k, v in picks.items()},
        pick_nested=nested,
        reported=reported,
        seconds=time.perf_counter() - t0,
    )


def summarise(outcomes: list[Outcome]) -> dict[str, dict[str, float]]:
    out = {}
    for label, _, _ in RULES:
        regret, lose, bias_one, bias_avg, raw_one, gain = [], [], [], [], [], []
        for o in outcomes:
            t_avg, t_one = o.pick_test_avg[label], o.pick_test_one[label]
            regret.append(o.test_avg.max() - t_avg)
            gain.append(t_avg - o.test_avg[o.baseline])
            lose.append(t_avg < o.test_avg[o.baseline] - 0.005)
            bias_one.append(o.reported[label] - t_one)
            bias_avg.append(o.reported[label] - t_avg)
            raw_one.append(o.pick_nested[label] - t_one)
        out[label] = {
            "regret": float(np.mean(regret)),
            "gain_vs_single": float(np.mean(gain)),
            "loses_share": float(np.mean(lose)),
            "bias_single_fold": float(np.mean(bias_one)),
            "bias_fold_avg": float(np.mean(bias_avg)),
            "raw_nested_bias_single_fold": float(np.mean(raw_one)),
        }
    return out


def floor_regret(outcomes: list[Outcome]) -> float:
    """Regret of an oracle that sees every row's test score with one fold model (a second test set, in effect)
    and picks the best: what no rule that sees only train rows can beat, on average."""
    return float(np.mean([o.test_avg.max() - o.test_avg[int(np.argmax(o.test_one))] for o in outcomes]))


def print_regimes(outcomes: list[Outcome]) -> None:
    """Mean regret per rule inside regimes of the draw: shared member errors (rho), train size, members."""
    cuts = {
        "all": lambda i: True,
        "rho < 0.45": lambda i: i.get("rho", 0.0) < 0.45,
        "rho >= 0.45": lambda i: i.get("rho", 0.0) >= 0.45,
        "N < 2000": lambda i: i["N"] < 2000,
        "N >= 2000": lambda i: i["N"] >= 2000,
        "M <= 4": lambda i: i["M"] <= 4,
        "M > 4": lambda i: i["M"] > 4,
    }
    labels = [label for label, _, _ in RULES]
    head = "".join(f"{lab:>18}" for lab in labels) + f"{'oracle floor':>14}"
    print(f"\nmean regret by regime\n{'regime':<14}{'n':>5}" + head)
    for name, keep in cuts.items():
        sub = [o for o in outcomes if keep(o.info)]
        if not sub:
            continue
        res = summarise(sub)
        row = "".join(f"{res[lab]['regret']:>18.4f}" for lab in labels) + f"{floor_regret(sub):>14.4f}"
        print(f"{name:<14}{len(sub):>5}" + row)


def print_summary(res: dict[str, dict[str, float]], n: int, seconds: float) -> None:
    load = Path("/proc/loadavg").read_text().split()[:3] if os.path.exists("/proc/loadavg") else ["?"] * 3
    base = res["max_nested"]["regret"]
    print(f"\n{n} competitions in {seconds:.0f} s (load average {' '.join(load)})")
    head = f"{'rule':<18}{'regret':>9}{'vs today':>10}{'gain vs single':>16}{'loses>0.005':>13}"
    print(head + f"{'bias 1-fold':>13}{'bias avg':>10}{'raw nested bias 1-fold':>24}")
    for label, r in res.items():
        ratio = 1 - r["regret"] / base if base > 0 else 0.0
        print(
            f"{label:<18}{r['regret']:>9.4f}{ratio:>+10.0%}{r['gain_vs_single']:>+16.4f}{r['loses_share']:>13.1%}"
            f"{r['bias_single_fold']:>+13.4f}{r['bias_fold_avg']:>+10.4f}{r['raw_nested_bias_single_fold']:>+24.4f}"
        )


def bench_spec(stack_C: float | None = None) -> EnsembleSpec:
    """BENCH_SPEC; `stack_C` fixes the stack's C (no inner CV: faster, but not the stack kit fits by default)."""
    raw = dict(BENCH_SPEC)
    if stack_C is not None:
        fixed = {"C": stack_C, "C_grid": [stack_C]}
        raw["blenders"] = [dict(b, **fixed) if b["kind"] == "stack" else b for b in BENCH_SPEC["blenders"]]
    return EnsembleSpec.model_validate(raw)


def _work(args: tuple[int, int, int, int, float | None]) -> Outcome:
    seed, resamples, max_n, max_classes, stack_C = args
    return run_one(seed, bench_spec(stack_C), resamples, False, max_n, max_classes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--competitions", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resamples", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (1 thread each)")
    ap.add_argument("--log", type=Path, default=None, help="append each competition's outcome (JSON lines)")
    ap.add_argument("--summarise", type=Path, default=None, help="only summarise a --log file")
    ap.add_argument("--demo", type=Path, default=None)
    ap.add_argument(
        "--max-n", type=int, default=20000, help="largest train size drawn (log-uniform from 500)"
    )
    ap.add_argument("--max-classes", type=int, default=50, help="most classes drawn (log-uniform from 5)")
    ap.add_argument(
        "--stack-C",
        type=float,
        default=None,
        help="fix the stack's C instead of kit's nested choice from its grid (faster, less faithful)",
    )
    a = ap.parse_args()
    if a.summarise is not None:
        outcomes = [Outcome.from_json(line) for line in a.summarise.read_text().splitlines() if line.strip()]
        print_summary(summarise(outcomes), len(outcomes), sum(o.seconds for o in outcomes) / max(a.jobs, 1))
        print_regimes(outcomes)
        return
    import json
    from concurrent.futures import ProcessPoolExecutor, as_completed

    t0 = time.perf_counter()
    outcomes = []
    seeds = [
        (a.seed * 100003 + i, a.resamples, a.max_n, a.max_classes, a.stack_C) for i in range(a.competitions)
    ]
    seeds.sort(key=lambda w: -expected_cost(w[0], a.max_n, a.max_classes))  # longest first (same results)
    with ProcessPoolExecutor(a.jobs, initializer=_one_thread) as pool:
        futures = [pool.submit(_work, s) for s in seeds]
        for i, fut in enumerate(as_completed(futures)):
            o = fut.result()
            outcomes.append(o)
            if a.log is not None:
                with a.log.open("a") as f:
                    f.write(json.dumps(o.to_json()) + "\n")
            if (i + 1) % 25 == 0:
                print(f"  {i + 1} competitions, {time.perf_counter() - t0:.0f} s", flush=True)
    if a.stack_C is not None:
        print(f"\nthe table's stack: C fixed at {a.stack_C} (not chosen by kit's inner CV)")
    print_summary(summarise(outcomes), len(outcomes), time.perf_counter() - t0)
    print_regimes(outcomes)
    if a.demo is not None:
        demo_report(a.demo, a.resamples)


def _one_thread() -> None:
    """Each worker uses one BLAS thread (no oversubscription of the cores)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def demo_report(demo: Path, resamples: int) -> None:
    """Every rule on the demo competition: its blend table (ensembles/all.yaml) scored on the held-back answers."""
    import csv

    from kit.blend.candidates import build_candidates, load_members, resolve_members
    from kit.blend.run import load_spec, with_baseline
    from kit.config.load import load_config
    from kit.workspace import open_workspace

    cfg_path = demo / "kit.yaml"
    ws = open_workspace(load_config(cfg_path), write=False)
    spec = load_spec(demo / "ensembles" / "all.yaml")
    metric = spec.metric or ws.cfg.competition.metric
    y = ws.train.labels
    assert y is not None and ws.test is not None
    choices = resolve_members(spec, ws.workdir)
    cands = build_candidates(spec, choices, load_members(list(choices), ws.workdir, ws.expected()), y)
    pp = variants(spec.postprocess)
    rows: list[Candidate] = []
    for b in with_baseline(spec.blenders):
        rows.extend(
            evaluate_blender(b, pp, spec.postprocess, cands.oof, y, ws.folds.fold, metric, spec.space)
        )
    answers = next(demo.rglob("*answers.csv"))
    with answers.open(encoding="utf-8") as f:
        truth = {r["id"]: r["label"] for r in csv.DictReader(f)}
    index = {c: i for i, c in enumerate(ws.classes)}
    y_test = np.array([index[truth[i]] for i in ws.test.ids])
    probs = [r.chain.transform(r.blender.predict(cands.test)) for r in rows]
    test = np.array([score(metric, y_test, q) for q in probs])
    picks, reported, nested = judge_rules(
        rows, y, ws.folds.fold, group_codes(ws.train.groups, len(y)), metric, resamples
    )
    best = int(np.argmax(test))
    base = baseline_row(rows)
    print(f"\ndemo competition ({len(y)} train, {len(y_test)} test answers, {metric}):")
    print(f"  best row in hindsight {rows[best].label} {test[best]:.4f}; best_single {test[base]:.4f}")
    for label, _, _ in RULES:
        p = picks[label]
        t = score(metric, y_test, average(probs, p))
        what = rows[p[0]].label if len(p) == 1 else f"the mean of {len(p)} rows"
        print(
            f"  {label:<18} picks {what:<32} test {t:.4f} (regret {test[best] - t:.4f}, "
            f"vs best single {t - test[base]:+.4f}); nested {nested[label]:.4f}, "
            f"selection-aware {reported[label]:.4f}"
        )


if __name__ == "__main__":
    main()
