"""Blend search speed at N = 200,000 OOF rows, C = 20 classes, M = 10 candidates (synthetic, long-tailed).

1. One candidate evaluation (add a candidate to the running blend, argmax, weighted F1) against a memory
   bandwidth floor. Floor = bytes the evaluation must read (running sum S and candidate P, float32 [N, C]
   each: 2*N*C*4 bytes) / read bandwidth, where read bandwidth = bytes read by a numpy copy of one [N, C]
   float32 array / its time, measured in this run (reported; numpy's argmax takes one pass per class).
2. Greedy selection, 25 rounds: kit (kit.blend.scoring: class-major numpy, rescoring only the rows a
   candidate can still flip) against the same search scoring each candidate with sklearn.metrics.f1_score, in
   this run; the chosen weights must match. Goal: >= 10x faster.
3. hill_climb and subsets: kit against the same search code scored with scikit-learn's f1_score per candidate
   (SklearnScorer). Goal: >= 10x faster, the same weights.
4. Greedy under ROC AUC (C = 2) and quadratic weighted kappa (C = 5), 25 rounds: kit against the same search
   scored with scikit-learn's roc_auc_score / cohen_kappa_score. Goal: >= 10x faster, the same weights.

Run: `.venv/bin/python bench/bench_blend.py`
"""

from __future__ import annotations

import os
import time

import numpy as np

from kit.blend.blenders import greedy_counts
from kit.blend.scoring import FastScorer

N, C, M, ROUNDS = 200_000, 20, 10, 25


def make_data(
    seed: int = 0, signal: float = 1.5, C: int = C, n: int = N, members: int = M
) -> tuple[np.ndarray, np.ndarray]:
    """Long-tailed labels and noisy members' probabilities, class-major [members, C, n] float32.

    `signal` is the true class's logit boost: 1.5 gives weak members (accuracy ~0.3-0.5), 4.0 members like
    a fine-tuned backbone's (accuracy ~0.8-0.95).
    """
    rng = np.random.default_rng(seed)
    prior = 0.85 ** np.arange(C)
    y = rng.choice(C, size=n, p=prior / prior.sum())
    Pt = np.empty((members, C, n), dtype=np.float32)
    for m in range(members):
        z = rng.normal(0, 1.0 + 0.15 * m, size=(C, n)).astype(np.float32)
        z[y, np.arange(n)] += signal
        z -= z.max(axis=0)
        np.exp(z, out=z)
        z /= z.sum(axis=0)
        Pt[m] = z
    return y, Pt


def best_of(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def greedy_sklearn(Pt: np.ndarray, y: np.ndarray, rounds: int, metric: str = "weighted_f1") -> np.ndarray:
    """The same Caruana search (same float32 sums, best prefix, ties to the first candidate) scored with
    scikit-learn: f1_score(average='weighted') or cohen_kappa_score(weights='quadratic') on the argmax, or
    roc_auc_score on class 1's summed probability (the order of the blend's P(class 1))."""
    from sklearn.metrics import cohen_kappa_score, f1_score, roc_auc_score

    labels = np.arange(Pt.shape[1])

    def value(S: np.ndarray) -> float:
        if metric == "roc_auc":
            return float(roc_auc_score(y, S[1]))
        if metric == "qwk":
            return float(cohen_kappa_score(y, S.argmax(axis=0), weights="quadratic"))
        return float(f1_score(y, S.argmax(axis=0), average="weighted", labels=labels, zero_division=0))

    counts = np.zeros(len(Pt), dtype=np.int64)
    S = np.zeros(Pt.shape[1:], dtype=np.float32)
    best_gain, best_counts = -np.inf, counts.copy()
    for _ in range(rounds):
        gains = [value(S + Pt[m]) for m in range(len(Pt))]
        j = int(np.argmax(gains))
        S += Pt[j]
        counts[j] += 1
        if gains[j] > best_gain:
            best_gain, best_counts = gains[j], counts.copy()
    return best_counts


class SklearnScorer(FastScorer):
    """FastScorer's searches scored with scikit-learn: the same float32 sums (class-major layout), then
    sklearn's f1_score(average='weighted') on the argmax, one call per candidate."""

    def score(self, s: np.ndarray, total: float = 1.0) -> float:
        from sklearn.metrics import f1_score

        labels = np.arange(self.n_classes)
        return float(f1_score(self.y, s.argmax(axis=0), average="weighted", labels=labels, zero_division=0))

    def score_added(self, s: np.ndarray, p: np.ndarray, total: float = 1.0, scale: float = 1.0) -> float:
        return self.score(s + p if scale == 1.0 else s + np.float32(scale) * p, total)


def other_searches() -> None:
    """hill_climb and subsets: kit against the very same search code scored by SklearnScorer, same weights."""
    from kit.blend.blenders import HillClimb, Subsets

    y, Pt = make_data(signal=1.5)
    P = np.ascontiguousarray(np.transpose(Pt, (2, 0, 1)))  # [N, M, C], as kit.blend.candidates stacks members
    params = {
        "hill_climb": (HillClimb, {"grid": (0.1, 0.2, 0.3, 0.5), "max_steps": 5}),
        "subsets": (Subsets, {"max_size": 2}),
    }
    for name, (cls, kw) in params.items():
        fast = cls("weighted_f1", "probs", **kw)
        fast.fit(P[:2000], y[:2000])  # lazy imports
        t = time.perf_counter()
        fast.fit(P, y)
        t_first = time.perf_counter() - t  # includes the first touch of this size's buffers (page faults)
        t_fast = best_of(lambda f=fast: f.fit(P, y), 3)  # median of 3 more fits

        slow = cls("weighted_f1", "probs", **kw)
        slow._scorer = lambda P_, y_: ((sc := SklearnScorer("weighted_f1", y_, C, "probs")), sc.layout(P_))
        t = time.perf_counter()
        slow.fit(P, y)
        t_slow = time.perf_counter() - t
        assert np.array_equal(fast.weights_, slow.weights_), (name, fast.weights_, slow.weights_)
        print(
            f"{name} ({kw}), N={N:,}, C={C}, M={M}: kit {t_fast:.2f} s (median of 3 fits; the first fit "
            f"{t_first:.2f} s: {t_slow / t_first:.1f}x), the same search scored with scikit-learn {t_slow:.2f} s "
            f"-> {t_slow / t_fast:.1f}x faster (goal >= 10x); same weights "
            f"{fast.weights_.round(4).tolist()}; loadavg {loadavg()}"
        )


def metric_searches() -> None:
    """Greedy under ROC AUC (C = 2) and QWK (C = 5): kit against the sklearn-scored search, same weights."""
    for metric, classes in (("roc_auc", 2), ("qwk", 5)):
        y, Pt = make_data(signal=1.0, C=classes)
        t = time.perf_counter()
        fast_counts, _, _ = greedy_counts(Pt, FastScorer(metric, y, classes), ROUNDS)
        t_fast = time.perf_counter() - t
        t = time.perf_counter()
        slow_counts = greedy_sklearn(Pt, y, ROUNDS, metric)
        t_slow = time.perf_counter() - t
        assert fast_counts.tolist() == slow_counts.tolist(), (metric, fast_counts, slow_counts)
        print(
            f"greedy under {metric}, C={classes}, {ROUNDS} rounds x {M} candidates, N={N:,}: kit "
            f"{t_fast:.2f} s, scikit-learn per candidate {t_slow:.2f} s -> {t_slow / t_fast:.1f}x faster "
            f"(goal >= 10x); same weights: {(fast_counts / fast_counts.sum()).round(4).tolist()}; "
            f"loadavg {loadavg()}"
        )


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def main() -> None:
    print(f"N={N:,} C={C} M={M}; numpy {np.__version__}; {os.cpu_count()} CPUs; loadavg {loadavg()}")
    y, Pt = make_data()
    fast = FastScorer("weighted_f1", y, C)
    S = Pt[0] + Pt[1]
    fast.score_added(S, Pt[3], 3.0)  # first touch of the scorer's buffers

    src, dst = Pt[2].copy(), np.empty_like(Pt[2])
    t_copy = best_of(lambda: np.copyto(dst, src), 30)
    read_bw = src.nbytes / t_copy  # bytes read by the copy per second (it also writes as many)
    read = S.nbytes + Pt[3].nbytes
    floor = read / read_bw
    t_eval = best_of(lambda: fast.score_added(S, Pt[3], 3.0), 30)
    print(
        f"numpy copy of one [N, C] float32 array ({src.nbytes / 1e6:.1f} MB): {t_copy * 1e3:.2f} ms -> read "
        f"bandwidth {read_bw / 1e9:.2f} GB/s"
    )
    print(f"floor = S + P = {read / 1e6:.1f} MB read / {read_bw / 1e9:.2f} GB/s = {floor * 1e3:.2f} ms")
    print(
        f"candidate evaluation (add + argmax + confusion matrix + weighted F1), median of 30: kit "
        f"{t_eval * 1e3:.2f} ms -> {t_eval / floor:.2f}x the floor; loadavg {loadavg()}"
    )
    print(
        f"greedy memory floor, {ROUNDS} rounds: float32 candidates {ROUNDS * (M + 1) * S.nbytes / 1e9:.1f} GB "
        f"-> {ROUNDS * (M + 1) * S.nbytes / read_bw:.2f} s"
    )
    for label, signal in (("weak members", 1.5), ("strong members", 4.0)):
        y, Pt = make_data(signal=signal)
        accs = [float((Pt[m].argmax(axis=0) == y).mean()) for m in range(M)]
        t = time.perf_counter()
        fast_counts, _, _ = greedy_counts(Pt, FastScorer("weighted_f1", y, C), ROUNDS)
        t_fast = time.perf_counter() - t
        t = time.perf_counter()
        slow_counts = greedy_sklearn(Pt, y, ROUNDS)
        t_slow = time.perf_counter() - t
        assert fast_counts.tolist() == slow_counts.tolist(), (fast_counts, slow_counts)
        print(
            f"greedy, {ROUNDS} rounds x {M} candidates, {label} (accuracy {min(accs):.2f}-{max(accs):.2f}): "
            f"kit {t_fast:.3f} s, sklearn f1_score per candidate {t_slow:.2f} s -> {t_slow / t_fast:.1f}x "
            f"faster (goal >= 10x); same weights: {(fast_counts / fast_counts.sum()).round(4).tolist()}; "
            f"loadavg {loadavg()}"
        )
    other_searches()
    metric_searches()
    print(f"loadavg at end {loadavg()}")


if __name__ == "__main__":
    main()
