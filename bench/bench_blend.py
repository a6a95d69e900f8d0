"""Blend search speed at N = 200,000 OOF rows, C = 20 classes, M = 10 candidates (synthetic, long-tailed).

1. One candidate evaluation (add a candidate to the running blend, argmax, weighted F1) against a memory
   bandwidth floor: the bytes it must read (running sum + candidate, float32) at numpy's copy bandwidth
   measured in this run.
2. Greedy selection, 25 rounds: kit's vectorised scorer against the same search scoring each candidate with
   sklearn.metrics.f1_score; the chosen weights must match.

Run: `.venv/bin/python bench/bench_blend.py`
"""

from __future__ import annotations

import time

import numpy as np

from kit.blend.blenders import greedy_counts
from kit.blend.scoring import FastScorer

N, C, M, ROUNDS = 200_000, 20, 10, 25


def make_data(seed: int = 0, signal: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Long-tailed labels and M noisy members' probabilities, class-major [M, C, N] float32.

    `signal` is the true class's logit boost: 1.5 gives weak members (accuracy ~0.3-0.5), 4.0 members like
    a fine-tuned backbone's (accuracy ~0.8-0.95).
    """
    rng = np.random.default_rng(seed)
    prior = 0.85 ** np.arange(C)
    y = rng.choice(C, size=N, p=prior / prior.sum())
    Pt = np.empty((M, C, N), dtype=np.float32)
    for m in range(M):
        z = rng.normal(0, 1.0 + 0.15 * m, size=(C, N)).astype(np.float32)
        z[y, np.arange(N)] += signal
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


def greedy_sklearn(Pt: np.ndarray, y: np.ndarray, rounds: int) -> np.ndarray:
    """The same Caruana search (same sums, same argmax, best prefix) scoring with sklearn's f1_score."""
    from sklearn.metrics import f1_score

    counts = np.zeros(M, dtype=np.int64)
    S = np.zeros((C, N), dtype=np.float32)
    best_gain, best_counts = -np.inf, counts.copy()
    labels = np.arange(C)
    for _ in range(rounds):
        gains = [
            f1_score(y, (S + Pt[m]).argmax(axis=0), average="weighted", labels=labels, zero_division=0)
            for m in range(M)
        ]
        j = int(np.argmax(gains))
        S += Pt[j]
        counts[j] += 1
        if gains[j] > best_gain:
            best_gain, best_counts = gains[j], counts.copy()
    return best_counts


def main() -> None:
    y, Pt = make_data()
    scorer = FastScorer("weighted_f1", y, C)
    S = Pt[0] + Pt[1]

    # memory bandwidth floor: numpy copy of one [C, N] float32 array in this run
    src, dst = Pt[2].copy(), np.empty_like(Pt[2])
    t_copy = best_of(lambda: np.copyto(dst, src), 30)
    nbytes = src.nbytes
    bw_moved = 2 * nbytes / t_copy  # bytes read + written per second
    bw_copied = nbytes / t_copy  # bytes copied per second
    read = S.nbytes + Pt[3].nbytes
    t_eval = best_of(lambda: scorer.score_added(S, Pt[3], 3.0), 30)
    floor_moved, floor_copied = read / bw_moved, read / bw_copied
    print(f"N={N:,} C={C} M={M}; numpy {np.__version__}")
    print(
        f"copy of {nbytes / 1e6:.1f} MB: {t_copy * 1e3:.2f} ms -> {bw_moved / 1e9:.1f} GB/s moved "
        f"(read+write), {bw_copied / 1e9:.1f} GB/s copied"
    )
    print(f"candidate evaluation (add + argmax + bincount weighted F1): {t_eval * 1e3:.2f} ms median")
    print(
        f"  floor = {read / 1e6:.1f} MB read / copy bandwidth: {floor_moved * 1e3:.2f} ms (read+write "
        f"bandwidth) -> ratio {t_eval / floor_moved:.2f}x; {floor_copied * 1e3:.2f} ms (copied-bytes "
        f"bandwidth) -> ratio {t_eval / floor_copied:.2f}x   (goal: within 3x)"
    )

    for label, signal in (("weak members", 1.5), ("strong members", 4.0)):
        y, Pt = make_data(signal=signal)
        scorer = FastScorer("weighted_f1", y, C)
        accs = [float((Pt[m].argmax(axis=0) == y).mean()) for m in range(M)]
        t = time.perf_counter()
        fast_counts, _, _ = greedy_counts(Pt, scorer, ROUNDS)
        t_fast = time.perf_counter() - t
        t = time.perf_counter()
        slow_counts = greedy_sklearn(Pt, y, ROUNDS)
        t_slow = time.perf_counter() - t
        assert fast_counts.tolist() == slow_counts.tolist(), (fast_counts, slow_counts)
        print(
            f"greedy, {ROUNDS} rounds x {M} candidates, {label} (accuracy {min(accs):.2f}-{max(accs):.2f}): "
            f"kit {t_fast:.2f} s, sklearn f1_score per candidate {t_slow:.2f} s -> {t_slow / t_fast:.1f}x "
            f"faster (goal >= 20x); same weights: {(fast_counts / fast_counts.sum()).round(4).tolist()}"
        )


if __name__ == "__main__":
    main()
