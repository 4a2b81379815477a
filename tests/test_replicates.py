"""Replicates: train jobs repeated with other training seeds are found in params, pooled by the
two-level bootstrap, and stated across seeds; a single-seed profile has none and no section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from modc_data.config import ParamsError
from modc_data.evaluation.bootstrap import paired_diff_interval, resample_indices
from modc_data.evaluation.comparisons import ArmSpec
from modc_data.evaluation.replicates import (
    ReplicateSet,
    replicate_rows,
    replicate_section,
    replicate_sets,
)
from modc_data.profiles import load_profile

ROOT = Path(__file__).resolve().parents[1]
MODES = ("dfs", "bfs")


def test_the_smoke_profile_has_three_seeds_of_the_skewed_group():
    params = load_profile(ROOT / "profiles" / "smoke.yaml", pipeline=True)
    assert params.replicates() == {"search_algorithm-skewed": {0: None, 1: "seed1", 2: "seed2"}}
    # each replicate trains with its own seed, its other settings the untagged job's
    job = params.train_jobs["search_algorithm-skewed-seed2-prefix"]
    assert job.train_params(params.train).seed == 2 and job.free_share == 0.25


@pytest.mark.parametrize("profile", sorted(p.name for p in (ROOT / "profiles").glob("*.yaml")
                                           if p.name not in {"smoke.yaml", "replicates.yaml"}))
def test_single_seed_profiles_have_no_replicates(profile):
    # tagged groups on another objective (pass4, RL) are not replicates
    assert load_profile(ROOT / "profiles" / profile, pipeline=True).replicates() == {}
    assert replicate_section([]) == ""


def test_a_replicate_with_a_taken_seed_is_refused(tmp_path):
    text = (ROOT / "profiles" / "smoke.yaml").read_text().replace(
        "tag: seed2, seed: 2}", "tag: seed2, seed: 1}")
    (tmp_path / "p.yaml").write_text(text.replace("base: params.yaml", f"base: {ROOT / 'params.yaml'}"))
    with pytest.raises(ParamsError, match=r"train_jobs.search_algorithm-skewed-seed2-prefix.seed: 1 is "
                       r"also the training seed of search_algorithm-skewed-seed1-prefix"):
        load_profile(tmp_path / "p.yaml", pipeline=True)


def _samples(effect: float, seeds: int, problems: int = 60, n: int = 32, seed_sd: float = 0.0,
             rng_seed: int = 0) -> tuple[pl.DataFrame, list[ArmSpec]]:
    """Samples of S groups (standard, prefix): each problem's success probability p for the
    standard model, p + effect (+ a per-seed shift) in each mode of the prefix model."""
    rng = np.random.default_rng(rng_seed)
    p = rng.uniform(0.01, 0.1, problems)
    rows, specs = [], []
    for s in range(seeds):
        tag = None if s == 0 else f"seed{s}"
        std, pre = (f"a{'' if tag is None else '-' + tag}-{v}" for v in ("standard", "prefix"))
        specs.append(ArmSpec("search_algorithm", "skewed", std, MODES, None, pre, tag))
        shift = rng.normal(0, seed_sd)
        for i, q in enumerate(p):
            for model, variant, modes, prob in ((std, "standard", ("",), q),
                                                (pre, "prefix", MODES, q + effect + shift)):
                for mode in modes:
                    correct = rng.random(n) < np.clip(prob, 0, 1)
                    rows += [{"model": model, "variant": variant, "split": "test", "problem_id": f"p{i}",
                              "mode": mode, "correct": bool(c), "detected_mode": None} for c in correct]
    return pl.DataFrame(rows), specs


def _clear_gain() -> tuple[pl.DataFrame, list[ArmSpec], list[ReplicateSet], list[dict]]:
    samples, specs = _samples(effect=0.15, seeds=3)
    sets = replicate_sets({"a": {0: None, 1: "seed1", 2: "seed2"}},
                          {("a" if s.tag is None else f"a-{s.tag}"): s for s in specs})
    rows = replicate_rows(samples, sets, [1, 2, 4, 8, 16], n_resamples=200, seed=0, min_k=8)
    return samples, specs, sets, rows


def test_a_clear_gain_holds_pooled_and_each_seed_row_is_its_paired_bootstrap():
    samples, specs, sets, rows = _clear_gain()
    assert [rs.seeds for rs in sets] == [(0, 1, 2)]
    (row,) = rows
    assert row["variant"] == "prefix" and row["n_problems"] == 60 and row["k"] == [1, 2, 4, 8, 16]
    assert row["claims"]["prefix above standard at every k ≥ 8"] == \
        "holds pooled over 3 seeds (for 3 of 3 seeds alone)"
    assert all(lo > 0 for lo in row["pooled"]["low"])
    assert all(d > 0 for d in row["detectable"])
    # the per-seed row is the paired bootstrap of that seed's models over the same problems
    from modc_data.evaluation.counts import count_table
    from modc_data.evaluation.replicates import _values  # noqa: PLC0415 (test of a helper)
    counts = count_table(samples, "bfs").filter(pl.col("split") == "test")
    pids = sorted(counts["problem_id"].unique().to_list())
    ks = row["k"]
    iv = paired_diff_interval(_values(counts, specs[1], "prefix", pids, ks),
                              _values(counts, specs[1], "standard", pids, ks),
                              resample_indices(len(pids), 200, 0), 0.95)
    assert row["per_seed"][1]["estimate"] == [round(float(x), 6) for x in iv.estimate]
    assert row["per_seed"][1]["low"] == [round(float(x), 6) for x in iv.low]
    text = replicate_section(rows)
    assert "## Across training seeds" in text and "| **pooled** |" in text and "| detectable |" in text


def test_the_figure_shows_each_seed_and_the_pooled_band_and_is_linked(tmp_path):
    from matplotlib.image import imread

    from modc_data.evaluation.figures import write_replicates_figures
    rows = _clear_gain()[3]
    figures = write_replicates_figures(rows, tmp_path)
    assert figures == {("a", "test"): "replicates_a_test.png"}
    assert imread(tmp_path / "replicates_a_test.png").shape[1] > 400
    assert "![across seeds a test](figures/replicates_a_test.png)" in replicate_section(rows, 0.95, figures)


def test_one_seed_pooled_is_that_seeds_paired_interval():
    samples, specs = _samples(effect=0.05, seeds=1)
    (row,) = replicate_rows(samples, [ReplicateSet("a", (0,), (specs[0],))], [1, 4, 16],
                            n_resamples=200)
    assert row["pooled"] == {k: row["per_seed"][0][k] for k in ("estimate", "low", "high")}


def test_no_gain_does_not_hold_pooled():
    samples, specs = _samples(effect=0.0, seeds=3, seed_sd=0.0, rng_seed=5)
    sets = [ReplicateSet("a", (0, 1, 2), tuple(specs))]
    (row,) = replicate_rows(samples, sets, [1, 8, 16], n_resamples=200, min_k=8)
    assert row["claims"]["prefix above standard at every k ≥ 8"].endswith("not pooled")


def test_a_claim_without_its_budgets_is_not_tested():
    samples, specs = _samples(effect=0.0, seeds=2, n=2)
    (row,) = replicate_rows(samples, [ReplicateSet("a", (0, 1), tuple(specs))], [1, 2, 4, 8],
                            n_resamples=50, min_k=8)
    assert row["k"] == [1, 2]
    assert row["claims"]["prefix above standard at every k ≥ 8"].startswith("not tested")
