"""Bootstrap CIs and the evaluation report on synthetic samples with planted per-mode success."""

from __future__ import annotations

import json
from math import comb

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modc_data.config import parse_params
from modc_data.evaluation.bootstrap import (
    bootstrap_ci,
    bootstrap_means,
    paired_bootstrap_diff,
    resample_indices,
)
from modc_data.evaluation.comparisons import ArmSpec
from modc_data.evaluation.estimates import evaluate
from modc_data.evaluation.figures import write_figures
from modc_data.evaluation.report import write_reports

# --------------------------------------------------------------------------- bootstrap


@given(
    st.lists(st.floats(0, 1), min_size=2, max_size=60),
    st.integers(0, 2**32 - 1),
)
@settings(max_examples=40, deadline=None)
def test_bootstrap_ci_contains_estimate_and_is_seeded(values, seed):
    v = np.array(values)
    a = bootstrap_ci(v, n_resamples=500, ci=0.95, seed=seed)
    assert a.estimate == pytest.approx(v.mean())
    assert a.low <= a.estimate + 1e-12 and a.estimate <= a.high + 1e-12
    b = bootstrap_ci(v, n_resamples=500, ci=0.95, seed=seed)
    assert (a.low, a.high) == (b.low, b.high)


def test_bootstrap_seed_changes_resamples_and_means_match_naive():
    v = np.random.default_rng(0).random((200, 3))
    idx = resample_indices(200, 300, seed=1)
    np.testing.assert_allclose(bootstrap_means(v, idx), v[idx].mean(axis=1), atol=1e-12)
    assert not np.array_equal(idx, resample_indices(200, 300, seed=2))
    lo1 = bootstrap_ci(v, n_resamples=300, seed=1).low
    lo2 = bootstrap_ci(v, n_resamples=300, seed=2).low
    assert not np.allclose(lo1, lo2)


def test_paired_diff_is_tighter_than_unpaired_for_correlated_arms():
    rng = np.random.default_rng(3)
    base = rng.random(300)
    arm = np.clip(base + 0.02 + 0.01 * rng.standard_normal(300), 0, 1)
    d = paired_bootstrap_diff(arm, base, n_resamples=1000, seed=0)
    assert d.estimate == pytest.approx(arm.mean() - base.mean())
    assert d.low > 0  # a small but consistent gain is detected when paired
    a = bootstrap_ci(arm, n_resamples=1000, seed=0)
    b = bootstrap_ci(base, n_resamples=1000, seed=5)
    assert (d.high - d.low) < 0.5 * ((a.high - a.low) + (b.high - b.low))
    with pytest.raises(ValueError, match="same problems"):
        paired_bootstrap_diff(arm[:10], base, n_resamples=10)


# --------------------------------------------------------------------------- synthetic samples
N = 16  # samples per (problem, model, mode)
MODES = ("dfs", "bfs")


def _planted(n_per_cat: int = 12) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Problems solvable by only one mode; experts/prefix hit their mode's problems half the time,
    the standard model commits to one mode per problem (right mode on even problems, c=2)."""
    rows, probs, truth = [], [], {}
    for split in ("test", "test_adversarial"):
        for i in range(2 * n_per_cat):
            pid = f"{split}-{i:03d}"
            good = "dfs" if i < n_per_cat else "bfs"
            probs.append(
                {"problem_id": pid, "split": split, "category": f"only_{good}", "meta": "{}"}
            )
            chosen = good if i % 2 == 0 else ("bfs" if good == "dfs" else "dfs")
            std_c = 2 if chosen == good else 0
            plan = [("std", "standard", "", std_c, lambda j, ch=chosen: ch)]
            for mode in MODES:
                plan.append(("exp", "experts", mode, 8 if mode == good else 0, lambda j, m=mode: m))
                plan.append(
                    (
                        "pre",
                        "prefix",
                        mode,
                        6 if mode == good else 0,
                        lambda j, m=mode: m if j % 4 else None,
                    )
                )  # 1 in 4 undetected
            for model, variant, mode, c, det in plan:
                truth[(split, pid, variant, mode)] = c
                for j in range(N):
                    rows.append(
                        {
                            "problem_id": pid,
                            "split": split,
                            "model": model,
                            "arm": "sa-bal",
                            "variant": variant,
                            "mode": mode,
                            "sample_idx": j,
                            "completion": "…",
                            "answer": "",
                            "correct": j < c,
                            "detected_mode": det(j),
                            "n_tokens": 10,
                        }
                    )
    return pl.DataFrame(rows), pl.DataFrame(probs), truth


def _ref_pass(n: int, c: int, k: int) -> float:
    return 1.0 - comb(n - c, k) / comb(n, k)


SPEC = {
    "sa-bal": ArmSpec(
        "search_algorithm", "balanced", standard="std", modes=MODES, experts="exp", prefix="pre"
    )
}


@pytest.fixture(scope="module")
def planted():
    samples, problems, truth = _planted()
    result = evaluate(samples, problems, SPEC, bootstrap=400, ci=0.95, seed=0)
    return samples, problems, truth, result


def test_evaluate_matches_reference_and_modc_wins(planted):
    _, _, truth, result = planted
    ev = result.keys["search_algorithm/balanced"]["test_adversarial"]
    assert ev.n == N and ev.n_problems == 24 and ev.dropped_problems == 0
    pids = sorted({p for (s, p, _, _) in truth if s == "test_adversarial"})
    ks = [1, 2, 4, 8, 16]
    assert ev.curves["standard"].k == ks
    for variant in ("standard", "experts", "prefix"):
        ref = []
        for k in ks:
            per = []
            for p in pids:
                if variant == "standard":
                    per.append(_ref_pass(N, truth[("test_adversarial", p, variant, "")], k))
                else:  # even split over the two modes; odd k averages who gets the extra one
                    allocs = [(k // 2, k - k // 2), (k - k // 2, k // 2)]
                    per.append(
                        np.mean(
                            [
                                1
                                - np.prod(
                                    [
                                        1
                                        - _ref_pass(
                                            N, truth[("test_adversarial", p, variant, m)], a
                                        )
                                        for m, a in zip(MODES, al, strict=True)
                                    ]
                                )
                                for al in allocs
                            ]
                        )
                    )
            ref.append(np.mean(per))
        np.testing.assert_allclose(ev.curves[variant].pass_at_k, ref, atol=1e-6)

    std = ev.curves["standard"].pass_at_k
    target = std[-1]
    for variant in ("experts", "prefix"):
        cur = ev.curves[variant]
        # ModC beats the collapsed standard model at every k >= 2, with the paired CI above 0
        assert all(m > s for m, s, k in zip(cur.pass_at_k, std, ks, strict=True) if k >= 2)
        assert all(lo > 0 for lo, k in zip(cur.diff_ci_low, ks, strict=True) if k >= 2)
        k_match = next(k for k, v in zip(ks, cur.pass_at_k, strict=True) if v >= target - 1e-9)
        assert cur.k_to_match == k_match and cur.efficiency_ratio == N / k_match
    assert ev.curves["experts"].efficiency_ratio == 8.0  # 0.5 reached at k=2 (one sample per mode)
    # single modes at full budget: each mode solves exactly its half of the problems
    assert ev.single_modes["experts"]["dfs"].pass_at_k[-1] == pytest.approx(0.5)
    assert ev.categories["only_dfs"]["n_problems"] == 12
    assert ev.categories["only_dfs"]["experts:dfs"] == pytest.approx(1.0)
    assert ev.categories["only_dfs"]["experts:bfs"] == pytest.approx(0.0)
    assert "beats standard" in result.verdicts["search_algorithm/balanced"]


def test_collapse_statistics(planted):
    _, _, _, result = planted
    col = result.keys["search_algorithm/balanced"]["test"].collapse
    assert col["standard"]["collapsed_fraction"] == 1.0  # one mode per problem
    assert col["standard"]["mean_share"] == pytest.approx(0.5)
    assert col["experts"]["collapsed_fraction"] == 0.0 and col["experts"]["mean_share"] == 0.5
    assert col["prefix"]["follows_mode"] == 1.0  # undetected samples do not count against it
    assert col["prefix"]["n_problems"] == 24


def test_verdict_reports_a_loss_honestly():
    samples, problems, _ = _planted(4)
    # Make the standard model as good as ModC: it never collapses onto the wrong mode.
    samples = samples.with_columns(
        correct=pl.when(pl.col("variant") == "standard")
        .then(pl.col("sample_idx") < 8)
        .otherwise(pl.col("correct"))
    )
    result = evaluate(samples, problems, SPEC, bootstrap=200, seed=0)
    assert "does not beat standard" in result.verdicts["search_algorithm/balanced"]


def test_unequal_compute_gets_no_verdict_no_delta_no_efficiency(planted, tmp_path):
    """A prefix model trained 200 steps against a 2,400-step standard: pass@k is reported, but
    no Δ, verdict or efficiency; the experts at equal compute keep theirs."""
    samples, problems, _, _ = planted
    compute = {"std": {"steps": 2400, "tokens": 1_000_000}, "exp": {"steps": 2400, "tokens": 990_000},
               "pre": {"steps": 200, "tokens": 83_000}}
    result = evaluate(samples, problems, SPEC, bootstrap=100, seed=0, compute=compute)
    verdict = result.verdicts["search_algorithm/balanced"]
    assert "prefix is not compared with standard (trained 200 vs the standard model's 2,400 steps" in verdict
    assert "experts beats standard" in verdict
    assert not any(w in verdict.split("prefix", 1)[1] for w in ("better", "worse", "beats", "tied", "Δ"))
    write_reports(result, tmp_path)
    md = (tmp_path / "results.md").read_text()
    assert "Training compute: standard 2,400 optimizer steps" in md and "prefix 200 optimizer steps" in md
    table = [line for line in md.splitlines() if line.startswith("| 1 |")]
    assert table and all(line.rstrip(" |").endswith("not comparable") for line in table)
    assert "Efficiency (prefix)" not in md and "Efficiency (experts)" in md
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert not any(k.endswith("prefix/efficiency_ratio") for k in metrics)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["search_algorithm/balanced"]["test"]["prefix"]["not_comparable"].startswith("trained 200")


def test_bad_inputs_fail_early_naming_the_field(planted):
    samples, problems, _, _ = planted
    bad = {"a": ArmSpec("random", "balanced", standard="std", modes=MODES, experts="nope")}
    with pytest.raises(ValueError, match=r"arms\.a\.experts.*'nope'"):
        evaluate(samples, problems, bad)
    bad_modes = {
        "a": ArmSpec("random", "balanced", standard="std", modes=("dfs", "x"), prefix="pre")
    }
    with pytest.raises(ValueError, match=r"arms\.a\.prefix.*\['x'\]"):
        evaluate(samples, problems, bad_modes)
    with pytest.raises(ValueError, match=r"evaluate\.ks"):
        evaluate(samples, problems, SPEC, ks=[1, 32])
    with pytest.raises(ValueError, match="'correct'"):
        evaluate(samples.drop("correct"), problems, SPEC)


def test_missing_samples_drop_the_problem_from_every_arm(planted):
    samples, problems, _, _ = planted
    gone = samples.filter(
        ~(
            (pl.col("problem_id") == "test-000")
            & (pl.col("mode") == "bfs")
            & (pl.col("variant") == "prefix")
        )
    )
    ev = evaluate(gone, problems, SPEC, bootstrap=50).keys["search_algorithm/balanced"]["test"]
    assert ev.n_problems == 23 and ev.dropped_problems == 1


def test_params_block_feeds_evaluate(planted):
    samples, problems, _, _ = planted
    p = parse_params(
        {"evaluate": {"ks": [4, 1, 16], "bootstrap": 100, "collapse_mode": "dfs"}}
    ).evaluate
    result = evaluate(
        samples,
        problems,
        SPEC,
        ks=p.ks,
        bootstrap=p.bootstrap,
        ci=p.ci,
        seed=p.seed,
        collapse_mode=p.collapse_mode,
        verdict_min_k=p.verdict_min_k,
    )
    ev = result.keys["search_algorithm/balanced"]["test"]
    assert ev.curves["standard"].k == [1, 4, 16]
    assert ev.collapse["mode"] == "dfs"


def test_reports_are_written_and_parse(planted, tmp_path):
    _, _, _, result = planted
    paths = write_reports(result, tmp_path)
    paths.update({f"figures/{p.name}": p for p in write_figures(result, tmp_path / "figures")})
    summary = json.loads((tmp_path / "summary.json").read_text())
    entry = summary["search_algorithm/balanced"]["test_adversarial"]
    assert set(entry) == {"standard", "experts", "prefix"}
    assert set(entry["standard"]) == {"k", "pass_at_k", "ci_low", "ci_high"}
    assert {"diff_ci_low", "diff_ci_high", "efficiency_ratio"} <= set(entry["experts"])
    assert entry["experts"]["efficiency_ratio"] == 8.0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["search_algorithm/balanced/test/standard/pass@16"] == pytest.approx(0.5)
    assert all(isinstance(v, float) for v in metrics.values())
    details = json.loads((tmp_path / "details.json").read_text())
    assert details["keys"]["search_algorithm/balanced"]["test_adversarial"]["categories"][
        "only_bfs"
    ]
    plot = pl.read_csv(tmp_path / "plots" / "passk_test.csv")
    assert {"k", "pass_at_k", "arm", "key"} <= set(plot.columns) and plot.height == 15
    md = (tmp_path / "results.md").read_text()
    assert "| k | standard | experts | Δ experts | prefix | Δ prefix |" in md
    assert "**Verdict:** search_algorithm/balanced:" in md
    assert "Efficiency (experts): reaches standard's pass@16" in md
    assert "| only_dfs | 12 |" in md
    pngs = [p for name, p in paths.items() if name.endswith(".png")]
    assert len(pngs) == 4  # passk + collapse for two splits
    assert all(p.stat().st_size > 10_000 for p in pngs)
    assert not list(tmp_path.rglob("*.tmp*"))  # atomic writes leave no temp files
