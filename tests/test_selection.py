"""Selection under uncertainty: the group bootstrap, the rules, the selection-aware estimate, the nested stack C,
and the small fixed-seed version of bench/bench_selection.py."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import bench_selection

from kit.blend.blenders import Stack
from kit.blend.selection import (
    BootstrapScorer,
    Comparison,
    Resampler,
    complexity,
    fold_comparisons,
    group_codes,
    select,
    selection_aware,
)
from kit.metrics.scores import score


@pytest.mark.parametrize("metric", ["weighted_f1", "macro_f1", "accuracy", "log_loss"])
def test_bootstrap_scores_equal_scoring_each_resampled_table(metric: str) -> None:
    rng = np.random.default_rng(3)
    n, C = 240, 6
    y = rng.integers(0, C, n)
    Q = rng.dirichlet(np.ones(C), n)
    groups = [f"g{g}" for g in rng.integers(0, 70, n)]
    rs = Resampler(group_codes(groups, n), resamples=40, seed=1, chunk_bytes=4096)  # several chunks
    # a table's rows: mostly the same predictions (label metrics count corrections to their consensus)
    preds = [Q] + [
        np.where(rng.random((n, 1)) < share, rng.dirichlet(np.ones(C), n), Q) for share in (0.1, 0.5)
    ]
    bs = BootstrapScorer(metric, y, C, rs)
    fast = bs.scores_many(preds)
    rows = np.arange(n)
    for k, P in enumerate(preds):
        expected = []
        for counts in rs.chunks():
            for b in range(len(counts)):
                idx = np.repeat(rows, counts[b, rs.codes].astype(int))
                expected.append(score(metric, y[idx], P[idx], logits=False))
        assert fast.shape == (3, 40)
        np.testing.assert_allclose(fast[k], expected, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(fast[k], bs.scores(P))  # alone: no consensus, the same scores
    if metric != "log_loss":  # class predictions scored once are remembered, not recounted
        assert bs.scores(preds[1].copy()) is bs.scores(preds[1]) is not bs.scores(preds[2])


def test_resamples_draw_whole_groups_and_are_paired_across_calls() -> None:
    groups = ["a", "a", "a", "b", "c", "c", "", ""]  # blank groups are each their own group
    codes = group_codes(groups, len(groups))
    assert codes[0] == codes[1] == codes[2] and codes[4] == codes[5] and codes[6] != codes[7]
    rs = Resampler.make(codes, 200, seed=7)
    assert rs.n_groups == 5
    chunks = np.concatenate(list(rs.chunks()))
    assert chunks.shape == (200, 5) and np.all(chunks.sum(axis=1) == 5)  # G draws of G groups
    per_row = chunks[:, rs.codes]
    assert np.all(per_row[:, 0] == per_row[:, 2])  # rows of one group are drawn together
    np.testing.assert_array_equal(chunks, np.concatenate(list(rs.chunks())))  # same resamples every time
    assert np.array_equal(group_codes(None, 4), np.arange(4))


def _cmp(point: list[float], boot: np.ndarray, comp: list[int]) -> Comparison:
    return Comparison(
        metric="weighted_f1", point=np.array(point), boot=boot, complexity=np.array(comp), baseline=0
    )


def test_rules_prefer_the_simple_row_unless_a_complex_one_reliably_wins() -> None:
    rng = np.random.default_rng(0)
    base = 0.80 + 0.02 * rng.standard_normal(1000)
    # row 1 (a stack) is 0.004 better on average but noisy against the baseline: wins ~55% of resamples
    noisy = base + 0.004 + 0.03 * rng.standard_normal(1000)
    # row 2 (greedy) is 0.01 better in 97% of resamples
    steady = base + 0.01 + 0.005 * rng.standard_normal(1000)
    boot = np.stack([base, noisy, steady])
    point = [0.800, 0.815, 0.810]  # the raw maximum is the noisy stack
    cmp = _cmp(point, boot, [0, 4, 2])
    assert select(cmp, "max_nested", 0.9) == [1]
    assert select(cmp, "beat_single", 0.9) == [2]
    assert select(cmp, "stepwise", 0.9) == [2]
    p = cmp.p_beats(0)
    assert p[0] == 0.0 and 0.4 < p[1] < 0.7 and p[2] > 0.9
    # nothing reliably better: best_single stays
    cmp2 = _cmp(point, np.stack([base, noisy, base + 0.02 * rng.standard_normal(1000)]), [0, 4, 2])
    assert select(cmp2, "beat_single", 0.9) == [0]
    assert select(cmp2, "stepwise", 0.9) == [0]
    # one_se: rows within one paired SE of the best -> the simplest of them
    assert select(cmp2, "one_se", 0.9) == [0]
    lo, hi = cmp.interval(0.95)[2]
    assert lo < np.mean(steady) < hi


def test_log_loss_rules_use_lower_is_better() -> None:
    rng = np.random.default_rng(1)
    base = 0.9 + 0.02 * rng.standard_normal(500)
    better = base - 0.05 + 0.001 * rng.standard_normal(500)
    cmp = Comparison(
        metric="log_loss",
        point=np.array([0.9, 0.85]),
        boot=np.stack([base, better]),
        complexity=np.array([0, 2]),
        baseline=0,
    )
    assert cmp.p_beats(0)[1] == 1.0
    assert select(cmp, "beat_single", 0.9) == [1]
    assert complexity("greedy", ("logit_adjust", "class_bias")) == 4 > complexity("uniform", ()) == 1


def test_selection_aware_uses_each_folds_own_pick() -> None:
    rng = np.random.default_rng(2)
    n, C = 400, 4
    y = rng.integers(0, C, n)
    fold = np.arange(n) % 4
    perfect = np.eye(C)[y] * 0.9 + 0.025
    weak = rng.dirichlet(np.ones(C), n)
    preds = [weak, perfect]
    rs = Resampler.make(np.arange(n), 200, 0)
    bs = BootstrapScorer("accuracy", y, C, rs)
    per_fold = fold_comparisons("accuracy", y, preds, [0, 2], 0, fold, rs, 0)
    aware = selection_aware(bs, preds, fold, per_fold, "beat_single", 0.9)
    assert aware.picks == {0: [1], 1: [1], 2: [1], 3: [1]}
    assert aware.score == 1.0 and aware.interval[0] <= 1.0
    # when the 'better' row is better only on fold 0's rows, the other folds' picks see it and fold 0's do not
    mixed = weak.copy()
    mixed[fold != 0] = perfect[fold != 0]
    per_fold = fold_comparisons("accuracy", y, [weak, mixed], [0, 2], 0, fold, rs, 0)
    aware = selection_aware(bs, [weak, mixed], fold, per_fold, "beat_single", 0.9)
    assert aware.picks[1] == aware.picks[2] == aware.picks[3] == [1]


def test_average_1se_averages_the_rows_within_one_paired_se_of_the_best() -> None:
    rng = np.random.default_rng(3)
    base = 0.80 + 0.02 * rng.standard_normal(1000)
    best = base + 0.015 + 0.03 * rng.standard_normal(1000)  # the best point; noisy against base (SE ~0.03)
    close = best - 0.001 + 0.005 * rng.standard_normal(1000)  # 0.001 behind, paired SE ~0.005: within
    far = base - 0.05 + 0.001 * rng.standard_normal(1000)  # 0.065 behind, paired SE ~0.03: out
    cmp = _cmp([0.800, 0.815, 0.814, 0.750], np.stack([base, best, close, far]), [0, 4, 2, 1])
    assert select(cmp, "average_1se", 0.9) == [0, 1, 2]
    # inside each outer fold the same rule averages the rows it picks there
    n, C = 400, 3
    y = rng.integers(0, C, n)
    fold = np.arange(n) % 4
    a = rng.dirichlet(np.ones(C), n)
    b = 0.5 * a + 0.5 * rng.dirichlet(np.ones(C), n)
    preds = [a, b]
    rs = Resampler.make(np.arange(n), 200, 0)
    bs = BootstrapScorer("accuracy", y, C, rs)
    per_fold = fold_comparisons("accuracy", y, preds, [0, 1], 0, fold, rs, 0)
    aware = selection_aware(bs, preds, fold, per_fold, "average_1se", 0.9)
    for f, rows in aware.picks.items():
        held = fold == f
        np.testing.assert_allclose(aware.oof[held], np.mean([preds[r][held] for r in rows], axis=0))
    assert any(
        len(rows) == 2 for rows in aware.picks.values()
    )  # two random rows: within one SE of each other


def test_stack_chooses_C_inside_the_fit_rows_by_their_folds() -> None:
    rng = np.random.default_rng(4)
    n, M, C = 300, 3, 4
    y = rng.integers(0, C, n)
    fold = np.arange(n) % 3
    noise = rng.dirichlet(np.ones(C), (n, M))
    P_noise = noise.astype(np.float32)  # pure noise: the inner CV prefers strong regularisation
    s = Stack(C="auto", C_grid=(0.001, 0.1, 10.0)).fit(P_noise, y, fold=fold)
    assert s.C_ == 0.001 and len(s.C_losses_) == 3
    clean = 0.2 * noise + 0.8 * np.eye(C)[y][:, None, :]  # informative: weak regularisation wins
    s2 = Stack(C="auto", C_grid=(0.001, 0.1, 10.0)).fit(clean.astype(np.float32), y, fold=fold)
    assert s2.C_ == 10.0 and s2.C_losses_[2] < s2.C_losses_[0]
    assert s2.fitted_params()["C_choice"].startswith("inner CV")
    fixed = Stack(C=0.5).fit(clean.astype(np.float32), y)
    assert fixed.C_ == 0.5 and fixed.fitted_params()["C_grid"] is None


def test_small_selection_benchmark_runs_with_a_fixed_seed() -> None:
    bench = bench_selection()
    from kit.config.ensemble import EnsembleSpec

    spec = EnsembleSpec.model_validate(bench.BENCH_SPEC)
    outcomes = [bench.run_one(11, spec, resamples=100, small=True)]
    for o in outcomes:
        R = len(o.labels)
        assert R == 24 and o.test_avg.shape == o.test_one.shape == o.nested.shape == (R,)
        assert set(o.picks) == {label for label, _, _ in bench.RULES}
        assert all(len(ps) >= 1 and all(0 <= p < R for p in ps) for ps in o.picks.values())
        for label, ps in o.picks.items():
            if len(ps) == 1:  # one row: its own test score; several: their averaged probabilities'
                assert o.pick_test_avg[label] == o.test_avg[ps[0]]
        assert o.labels[o.baseline] == "best_single"
        assert all(0.0 <= v <= 1.0 for v in o.reported.values())
    res = bench.summarise(outcomes)
    for label, r in res.items():
        assert 0 <= r["loses_share"] <= 1 and np.isfinite(r["bias_single_fold"])
        if label != "average_1se":  # a single row never beats the best row in hindsight; an average can
            assert r["regret"] >= 0
    again = bench.run_one(11, spec, resamples=100, small=True)
    np.testing.assert_array_equal(again.test_avg, outcomes[0].test_avg)  # fixed seed, same competition
    assert again.picks == outcomes[0].picks


def _plain_class_bias(L: np.ndarray, y: np.ndarray, metric: str, grid, passes: int) -> np.ndarray:
    """The coordinate ascent as written first: one full argmax over the classes per grid value."""
    C = L.shape[0]
    S, b = L.copy(), np.zeros(C)
    from kit.blend.scoring import FastScorer

    fs = FastScorer(metric, y, C, "logits")
    cur = fs.gain(fs.score(S))
    for _ in range(passes):
        changed = False
        for c in range(C):
            best_v, best_gain = b[c], cur
            for v in grid:
                S[c] = L[c] + np.float32(v)
                g = fs.gain(fs.score(S))
                if g > best_gain:
                    best_v, best_gain = v, g
            changed |= best_v != b[c]
            b[c], cur = best_v, best_gain
            S[c] = L[c] + np.float32(b[c])
        if not changed:
            break
    return b


@pytest.mark.parametrize("metric", ["weighted_f1", "macro_f1", "accuracy", "qwk"])
@pytest.mark.parametrize("C", [2, 9, 31])
@pytest.mark.parametrize("grid", [(-0.6, -0.3, 0.0, 0.3, 0.6), (0.3, -0.6, 0.0, 0.6, -0.3, 0.3)])
def test_class_bias_top_two_searches_equal_the_plain_search(
    metric: str, C: int, grid: tuple[float, ...]
) -> None:
    """class_bias's fast search (the best other class per class, found once) chooses exactly the plain search's
    top two across the ascent) choose exactly the plain search's offsets, exact ties included."""
    from kit.blend.postprocess import ClassBias, _coordinate_ascent, _log, _TopTwoTrial
    from kit.blend.scoring import FastScorer

    rng = np.random.default_rng(7 + C)
    n = 900
    y = rng.choice(C, n, p=np.linspace(3, 0.2, C) / np.linspace(3, 0.2, C).sum())
    logits = rng.normal(0, 1, (n, C)) + 1.2 * np.eye(C)[y]
    Q = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    Q[:40] = 1.0 / C  # exact ties: the lowest class must win, as numpy's argmax
    Q[40:80, 1] = Q[40:80, C - 1] = Q[40:80].max(1)
    L = np.ascontiguousarray(_log(Q).T, dtype=np.float32)
    plain = _plain_class_bias(L, y, metric, grid, 3)
    for trial in (_TopTwoTrial,):
        got = _coordinate_ascent(trial(L, FastScorer(metric, y, C, "logits")), C, grid, 3)
        np.testing.assert_array_equal(got, plain, err_msg=trial.__name__)
    np.testing.assert_array_equal(ClassBias(metric, grid, passes=3).fit(Q, y).offsets_, plain)
    assert np.count_nonzero(plain) > 0  # the search moved something, so the comparison means something
