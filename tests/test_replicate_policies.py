"""The allocation bar across training seeds: each seed's policies fit on its own validation
samples, scored like the allocation-policy section, and pooled by the two-level bootstrap.

The world is the allocation-policy section's planted one (half the problems only DFS solves,
half only BFS; the standard model collapses onto DFS), drawn once per training seed."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from modc_data.evaluation.bootstrap import resample_indices
from modc_data.evaluation.comparisons import ArmSpec
from modc_data.evaluation.policy_sections import policy_sections
from modc_data.evaluation.replicate_policies import (
    CLAIM,
    pooled_bar,
    replicate_policy_rows,
    replicate_policy_section,
)
from modc_data.evaluation.replicates import ReplicateSet

N = 16
KS = [1, 2, 4, 8, 16]
MODES = ("dfs", "bfs")
PAIRS = {"test_adversarial": "validation_adversarial"}


def world(std: str, pre: str, split: str, n_problems: int, seed: int, p_mode: float) -> list[tuple]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_problems):
        side = MODES[i % 2]
        pid = f"{split}-{i:03d}"
        for j in range(N):  # the standard model: always DFS, solves the DFS half at 0.9
            out.append((pid, split, std, "standard", "", "dfs", bool(side == "dfs" and rng.random() < 0.9), j))
        for mode in MODES:
            for j in range(N):
                out.append((pid, split, pre, "prefix", mode, mode, bool(mode == side and rng.random() < p_mode), j))
    return out


def replicates(seeds: int, p_mode: float = 0.6) -> tuple[pl.DataFrame, ReplicateSet]:
    rows, groups = [], []
    for s in range(seeds):
        tag = None if s == 0 else f"seed{s}"
        std, pre = (f"a{'' if tag is None else '-' + tag}-{v}" for v in ("standard", "prefix"))
        groups.append(ArmSpec("search_algorithm", "skewed", std, MODES, None, pre, tag))
        rows += world(std, pre, "validation_adversarial", 60, 10 * s + 1, p_mode)
        rows += world(std, pre, "test_adversarial", 60, 10 * s + 2, p_mode)
    df = pl.DataFrame(rows, schema=["problem_id", "split", "model", "variant", "mode", "detected_mode",
                                    "correct", "sample_idx"], orient="row")
    return df, ReplicateSet("a", tuple(range(seeds)), tuple(groups))


@pytest.fixture(scope="module")
def three() -> tuple[pl.DataFrame, ReplicateSet]:
    return replicates(3)


def test_each_seed_is_scored_as_the_policy_section_scores_it_and_the_bar_holds_pooled(three):
    samples, rs = three
    (row,) = replicate_policy_rows(samples, [rs], PAIRS, KS, n_resamples=200)
    assert row["seeds"] == [0, 1, 2] and row["n_problems"] == 60 and row["k"] == KS
    for s, g in zip(row["per_seed"], rs.groups, strict=True):
        _, (alone,) = policy_sections(samples, {"a": (g.prefix, g.standard, list(MODES))}, PAIRS, KS,
                                      n_resamples=200)
        chosen = alone["policies"]["chosen"]
        assert s["diff"]["standard"]["estimate"] == pytest.approx(chosen["vs_standard"]["diff"], abs=1e-6)
        assert s["diff"]["uniform"]["low"] == pytest.approx(chosen["vs_uniform"]["ci_low"], abs=1e-6)
        assert s["chosen"] == alone["chosen"]
    # mixing the standard model's samples with forced BFS beats both, for every seed
    pooled = row["pooled"]
    assert pooled["holds"] and pooled["holds_vs_both"]
    assert pooled["diff"]["standard"]["low"][-1] > 0 and pooled["strictly_better_at"]
    assert row["claim"][CLAIM].startswith("holds pooled over 3 seeds (for 3 of 3 seeds alone)")
    text = replicate_policy_section([row])
    assert "### Allocation across training seeds" in text and "| **pooled** | standard |" in text


def test_one_seed_pooled_is_that_seeds_paired_interval():
    samples, rs = replicates(1)
    (row,) = replicate_policy_rows(samples, [rs], PAIRS, KS, n_resamples=200)
    (s,) = row["per_seed"]
    for ref in ("standard", "uniform"):
        assert row["pooled"]["diff"][ref] == s["diff"][ref]


def test_a_chosen_policy_below_the_better_reference_misses_the_bar():
    rng = np.random.default_rng(0)
    standard = rng.uniform(0.3, 0.7, (3, 80, 2))
    uniform = standard - 0.2
    idx = resample_indices(80, 200, 0)
    bar = pooled_bar(standard - 0.05, {"standard": standard, "uniform": uniform}, [1, 2], idx, 0.95, 0)
    assert bar["better"] == ["standard", "standard"] and not bar["holds"]
    assert bar["worst_ci_low"] < -0.01 and bar["strictly_better_at"] == []
    # against the worse reference alone it would hold: the bar reads the better one
    assert pooled_bar(standard - 0.05, {"uniform": uniform}, [1, 2], idx, 0.95, 0)["holds"]


def test_a_pair_without_samples_and_a_set_without_prefix_models_give_no_row(three):
    samples, rs = three
    assert replicate_policy_rows(samples, [rs], {"test_other": "validation_adversarial"}, KS,
                                 n_resamples=50) == []
    no_prefix = ReplicateSet(rs.arm, rs.seeds, tuple(
        ArmSpec(g.label_source, g.mix, g.standard, g.modes, g.prefix, None, g.tag) for g in rs.groups))
    assert replicate_policy_rows(samples, [no_prefix], PAIRS, KS, n_resamples=50) == []
