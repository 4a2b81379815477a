"""evaluate_policies on synthetic per-arm counts: fit on validation, score on test, report.

Two planted worlds: a collapsed model (free sampling = one mode; uniform should win) and an
informed model (free sampling beats forcing at k = 1; static should pick free there)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from matplotlib.image import imread

from modc_data.evaluation.allocation import (
    FREE,
    Allocation,
    ArmCounts,
    allocation_pass_at_k,
)
from modc_data.evaluation.allocation_counts import arm_counts
from modc_data.evaluation.allocation_report import (
    policies_markdown,
    shipped_policy,
    write_policies_figure,
)
from modc_data.evaluation.allocation_scores import POLICY_ORDER, evaluate_policies
from modc_data.evaluation.allocation_selection import (
    CV_FOLDS,
    SHIPPABLE,
    fit_static,
    out_of_fold,
    select_policies,
)
from modc_data.evaluation.bootstrap import resample_indices
from modc_data.modeling.modc_json import ModcInfo
from modc_data.sampler import shipped_budget

KS = [1, 2, 4, 8, 16]
N = 32  # samples per arm and problem


def world(kind: str, n_problems: int, seed: int) -> tuple[ArmCounts, tuple[np.ndarray, np.ndarray]]:
    """Per-arm counts drawn from planted success rates; the standard model samples like the free
    arm (same rates, its own draws), q is the model's planted mode preference."""
    rng = np.random.default_rng(seed)
    side = rng.integers(0, 2, n_problems)  # which mode can solve problem x
    p_modes = np.where(side[:, None] == np.arange(2), 0.6, 0.0)
    if kind == "collapsed":
        q = np.tile([0.95, 0.05], (n_problems, 1))  # collapses onto dfs everywhere
        p_free = (q * p_modes).sum(axis=1)
    else:  # informed: the model picks the right mode 90% of the time, and is a bit stronger
        q = np.where(side[:, None] == np.arange(2), 0.9, 0.1)
        p_free = np.full(n_problems, 0.6)
    p = np.column_stack([p_free, p_modes])
    c = rng.binomial(N, p)
    standard = rng.binomial(N, p_free)
    data = ArmCounts((FREE, "dfs", "bfs"), np.full_like(c, N), c, q)
    return data, (np.full(n_problems, N), standard)


@pytest.mark.parametrize("kind", ["collapsed", "informed"])
def test_chosen_policy_is_never_worse_than_standard_or_uniform(kind):
    val, val_std = world(kind, 300, seed=1)
    test, test_std = world(kind, 300, seed=2)
    ev = evaluate_policies(val, test, KS, *test_std, standard_validation=val_std, n_resamples=400)
    assert set(ev.policies) == set(POLICY_ORDER) and not ev.skipped
    pol = ev.policies
    # On the data it was fit on, chosen >= uniform exactly and >= free, the standard model's twin.
    for j in range(len(KS)):
        assert pol["chosen"].validation[j] >= pol["uniform"].validation[j] - 1e-12
        assert pol["chosen"].validation[j] >= pol["free"].validation[j] - 1e-12
        assert (
            pol["static"].validation[j]
            >= max(pol["uniform"].validation[j], pol["free"].validation[j]) - 1e-12
        )
        assert (
            pol["oracle"].mean[j]
            >= max(pol[n].mean[j] for n in POLICY_ORDER if n != "oracle") - 1e-12
        )
    # On fresh test problems: the paired CI against the better reference reaches above -0.01.
    for j in range(len(KS)):
        better = "standard" if pol["standard"].mean[j] >= pol["uniform"].mean[j] else "uniform"
        d = pol["chosen"].vs_standard if better == "standard" else pol["chosen"].vs_uniform
        assert d["ci_high"][j] > -0.01, (kind, KS[j], better, d)
    if kind == "collapsed":
        # uniform wins by a mile at k >= 2, and chosen follows it (or beats it)
        j = KS.index(8)
        assert ev.chosen[8] != "free"
        assert pol["chosen"].vs_standard["ci_low"][j] > 0.1
    else:
        assert ev.static[1] == {FREE: 1, "dfs": 0, "bfs": 0}
        assert ev.chosen[1] in ("free", "static", "preference")
        assert pol["chosen"].vs_uniform["ci_low"][0] > 0.1


def test_report_without_free_arm_skips_free_and_renders(tmp_path):
    val, val_std = world("collapsed", 80, seed=3)
    test, test_std = world("collapsed", 60, seed=4)
    forced = lambda d: ArmCounts(d.arms[1:], d.n[:, 1:], d.c[:, 1:], d.q)  # noqa: E731
    ev = evaluate_policies(forced(val), forced(test), KS, *test_std, n_resamples=200)
    assert "free" in ev.skipped and "free" not in ev.policies
    assert all(v == 0 for k in KS for a, v in ev.static[k].items() if a == FREE)
    md = policies_markdown(ev, "search_algorithm/skewed — test_adversarial")
    assert "| k | standard | uniform | static | preference | chosen | oracle (upper bound) |" in md
    assert md.count("\n| 16 |") == 2 and "free not scored" in md
    # the cells are the numbers of the evaluation
    assert f"{ev.policies['uniform'].mean[0]:.3f} [" in md
    json.dumps(ev.to_dict())  # JSON-safe for summary files
    with pytest.raises(ValueError, match=r"k=64 exceeds the 32 samples of arm 'dfs'"):
        evaluate_policies(forced(val), forced(test), [1, 64], *test_std)
    path = write_policies_figure(ev, "skewed / test_adversarial", tmp_path / "f" / "policies.png")
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_arm_counts_round_trip_from_sample_rows():
    rng = np.random.default_rng(0)
    pids = [f"p{i}" for i in range(5)]
    recs, want_n, want_c, want_q = [], [], [], []
    for pid in pids:
        row_n, row_c = [], []
        for model, mode in (("pre", ""), ("pre", "dfs"), ("pre", "bfs")):
            n = int(rng.integers(1, 6))
            flags = rng.random(n) < 0.5
            detected = rng.choice(["dfs", "bfs", None], n)
            recs += [
                {
                    "problem_id": pid,
                    "split": "test",
                    "model": model,
                    "mode": mode,
                    "correct": bool(f),
                    "detected_mode": d,
                }
                for f, d in zip(flags, detected, strict=True)
            ]
            row_n.append(n)
            row_c.append(int(flags.sum()))
            if mode == "":
                hits = np.array([(detected == m).sum() for m in ("dfs", "bfs")], dtype=float)
                want_q.append(hits / hits.sum() if hits.sum() else np.full(2, 0.5))
        want_n.append(row_n)
        want_c.append(row_c)
    recs.append(
        {
            "problem_id": "p0",
            "split": "validation",
            "model": "pre",
            "mode": "dfs",
            "correct": True,
            "detected_mode": None,
        }
    )  # another split: ignored
    samples = pl.DataFrame(recs)
    data, got_pids = arm_counts(samples, "test", "pre", ["dfs", "bfs"], free_model="pre")
    assert got_pids == pids and data.arms == (FREE, "dfs", "bfs")
    np.testing.assert_array_equal(data.n, want_n)
    np.testing.assert_array_equal(data.c, want_c)
    np.testing.assert_allclose(data.q, want_q)
    with pytest.raises(ValueError, match="arm 'bfs'"):
        arm_counts(
            samples.filter(~((pl.col("problem_id") == "p3") & (pl.col("mode") == "bfs"))),
            "test",
            "pre",
            ["dfs", "bfs"],
        )


@pytest.mark.parametrize("kind", ["collapsed", "informed"])
def test_shipped_policy_round_trips_into_the_sampler(kind):
    val, val_std = world(kind, 200, seed=5)
    test, test_std = world(kind, 100, seed=6)
    ev = evaluate_policies(val, test, KS, *test_std, n_resamples=100)
    shipped = shipped_policy(ev, ["dfs", "bfs"])
    info = ModcInfo(variant="prefix", label_source="search_algorithm", modes=["dfs", "bfs"],
                    free_sampling=True, allocation=json.loads(json.dumps(shipped)))
    for j, k in enumerate(KS):
        entry = shipped[str(k)]
        assert entry["policy"] == ev.shippable[k] and entry["policy"] in SHIPPABLE
        if entry["policy"] != "static":  # else static's out-of-fold gain was significant
            own = ("free", "uniform")  # one model's safe policies (no standard arm here)
            safe = max(own, key=lambda n: (ev.policies[n].validation[j], -own.index(n)))
            assert entry["policy"] == safe
        assert shipped_budget(info, k) == entry["counts"] and sum(entry["counts"].values()) == k
    if kind == "informed":
        assert shipped["1"]["counts"] == {FREE: 1, "dfs": 0, "bfs": 0}
    else:
        assert shipped["8"]["counts"] == {FREE: 0, "dfs": 4, "bfs": 4}


def test_out_of_fold_scores_each_problem_with_a_policy_fit_without_it():
    """Each fold is scored by the policy fit on the other folds: here a validation split whose
    halves want opposite static allocations, so in-sample fitting (best of both) beats the
    out-of-fold score, which pays for the fold's own problems being unseen."""
    val, _ = world("informed", 120, seed=3)
    oof = out_of_fold(fit_static, val, KS, CV_FOLDS, seed=0)
    assert oof.shape == (120, len(KS)) and np.all((oof >= 0) & (oof <= 1))
    # by hand: fold by fold with the same seeded split
    parts = np.array_split(np.random.default_rng(0).permutation(120), CV_FOLDS)
    for held in parts:
        rest = np.setdiff1d(np.arange(120), held)
        policy = fit_static(val.take(rest), KS)
        alloc = policy.allocate(val.take(held), 8)
        np.testing.assert_allclose(oof[held, KS.index(8)], allocation_pass_at_k(val.take(held), alloc))
    in_sample = np.stack(
        [allocation_pass_at_k(val, fit_static(val, KS).allocate(val, k)) for k in KS], axis=1
    )
    assert np.all(in_sample.mean(axis=0) >= oof.mean(axis=0) - 1e-12)
    with pytest.raises(ValueError, match="at least 2 validation problems"):
        out_of_fold(fit_static, val.take(np.array([0])), KS, CV_FOLDS, seed=0)


def test_select_keeps_the_safe_policy_unless_a_fitted_one_wins_out_of_fold():
    rng = np.random.default_rng(0)
    p, b = 200, 500
    idx = resample_indices(p, b, 1)
    free = rng.uniform(0.2, 0.6, (p, 2))
    uniform = free + np.array([0.05, -0.05])  # uniform better at k=1, free better at k=2
    # static: in-sample it looks best at both k, out-of-fold it wins only at k=2 (clearly)
    static_in = np.maximum(free, uniform) + 0.02
    static_oof = np.column_stack([uniform[:, 0] - 0.01 + rng.normal(0, 0.01, p), free[:, 1] + 0.1])
    noisy = np.column_stack([uniform[:, 0] + rng.normal(0.001, 0.2, p), free[:, 1]])
    val = {"free": free, "uniform": uniform, "static": static_in, "preference": static_in}
    oof = {"static": static_oof, "preference": noisy}
    chosen, evidence = select_policies(val, oof, [1, 2], ("free", "uniform", "static",
                                                          "preference"), idx, 0.95)
    assert chosen == {1: "uniform", 2: "static"}
    assert evidence[1]["baseline"] == "uniform" and evidence[2]["baseline"] == "free"
    # preference's tiny mean gain at k=1 is noise: its CI straddles zero, so it is not taken
    assert evidence[1]["fitted"]["preference"]["ci_low"] < 0 < evidence[1]["fitted"]["preference"]["ci_high"]
    assert evidence[2]["fitted"]["static"]["ci_low"] > 0
    assert abs(evidence[2]["fitted"]["static"]["oof_gain"] - 0.1) < 1e-9
    # without a free arm the safe baseline is uniform alone
    chosen, evidence = select_policies({"uniform": uniform, "static": static_in},
                                       {"static": static_oof}, [1, 2],
                                       ("free", "uniform", "static"), idx, 0.95)
    assert evidence[1]["baseline"] == evidence[2]["baseline"] == "uniform"
    assert chosen[2] == "static"  # static out-of-fold beats uniform at k=2 by 0.15


def test_the_standard_arm_is_a_candidate_and_ships_only_beside_the_one_model_counts():
    """With the standard model's samples as an arm, chosen can pick (or mix in) the standard
    model; what ships as ``counts`` stays on the prefix model's own arms, and the two-model
    choice rides along as ``with_standard`` where it uses the standard model."""
    def with_standard(seed):
        # a standard model that collapses onto DFS but is strong there (0.95 on the DFS half)
        data, (n_std, _) = world("collapsed", 200, seed)
        dfs_half = data.c[:, 1] > 0  # forced DFS solves only that half (at 0.6)
        c_std = np.random.default_rng(seed + 100).binomial(N, np.where(dfs_half, 0.95, 0.0))
        arms = (FREE, "standard", "dfs", "bfs")
        n = np.column_stack([data.n[:, 0], n_std, data.n[:, 1:]])
        c = np.column_stack([data.c[:, 0], c_std, data.c[:, 1:]])
        return ArmCounts(arms, n, c, data.q), (n_std, c_std)

    val, val_std = with_standard(7)
    test, test_std = with_standard(8)
    ev = evaluate_policies(val, test, KS, *test_std, standard_validation=val_std, n_resamples=200)
    assert set(ev.chosen.values()) <= {"free", "uniform", "standard", "static", "preference"}
    assert any(ev.static[k]["standard"] > 0 for k in KS) or "standard" in ev.chosen.values()
    shipped = shipped_policy(ev, ["dfs", "bfs"])
    for k in KS:
        entry = shipped[str(k)]
        assert "standard" not in entry["counts"] and sum(entry["counts"].values()) == k
        uses = ev.chosen[k] == "standard" or (ev.chosen[k] == "static"
                                              and ev.static[k]["standard"] > 0)
        assert ("with_standard" in entry) == uses
        if uses:
            assert sum(entry["with_standard"]["counts"].values()) == k
    # the standard arm's own row is the standard model: the same numbers as the reference
    std_arm = allocation_pass_at_k(test, Allocation.fixed(np.tile([0, 8, 0, 0], (200, 1))))
    assert ev.policies["standard"].mean[KS.index(8)] == pytest.approx(std_arm.mean())
