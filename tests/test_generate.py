"""Problems table: splits, leakage, adversarial balance, determinism, errors, breakdown."""

from __future__ import annotations

import json

import polars as pl
import pytest

from modc_data.generate import (
    PROBLEM_COLUMNS,
    GenerationError,
    category,
    generate_problems,
    solvability_breakdown,
    space_size,
)
from modc_data.params_blocks import CountdownParams, SplitSizes
from modc_data.schema import problem_id
from modc_data.tasks.countdown import detect_mode, format_prompt, problem_key, verify
from modc_data.tasks.countdown_search import search

SMALL = CountdownParams(
    problems=SplitSizes(train=600, validation=100, test=100),
    adversarial_per_side=40,
    heldout_targets=[17, 23],
    workers=1,
)


@pytest.fixture(scope="module")
def table() -> pl.DataFrame:
    return generate_problems(SMALL, seed=3)


def test_columns_and_sizes(table):
    assert dict(table.schema) == PROBLEM_COLUMNS
    sizes = table.group_by("split").len().sort("split").rows()
    assert dict(sizes) == {
        "train": 600,
        "validation": 100,
        "test": 100,
        "test_adversarial": 80,
        "validation_adversarial": 40,
    }
    assert set(table["task"]) == {"countdown"}


def test_no_leakage_between_or_within_splits(table):
    assert table["problem_id"].n_unique() == table.height
    assert table.select("prompt").n_unique() == table.height


def test_heldout_targets_never_in_train(table):
    targets = table.with_columns(
        pl.col("meta")
        .map_elements(lambda m: json.loads(m)["target"], return_dtype=pl.Int64)
        .alias("t")
    )
    assert targets.filter(pl.col("split") == "train")["t"].is_in([17, 23]).sum() == 0
    # ... but they do occur elsewhere (otherwise holding them out would test nothing).
    assert targets.filter(pl.col("split") != "train")["t"].is_in([17, 23]).sum() > 0


def test_rows_agree_with_the_solvers_and_verifier(table):
    rules = {"max_intermediate": SMALL.max_intermediate}
    for row in table.iter_rows(named=True):
        meta = json.loads(row["meta"])
        assert row["meta"] == json.dumps(meta, sort_keys=True)
        nums, target = tuple(meta["nums"]), meta["target"]
        assert row["problem_id"] == problem_id("countdown", problem_key(nums, target))
        assert row["prompt"] == format_prompt(nums, target)
        for algo in ("dfs", "bfs"):
            r = search(nums, target, algo, SMALL.budget, **rules)
            assert (row[f"{algo}_trace"], row[f"{algo}_solved"]) == (r.trace, r.solved)
            assert (row[f"{algo}_nodes"], row[f"{algo}_answer"]) == (r.nodes, r.answer)
            assert detect_mode(r.trace) in (algo, None)
        assert row["category"] == category(row["dfs_solved"], row["bfs_solved"])
        solved = row["dfs_solved"] or row["bfs_solved"]
        assert verify(nums, target, row["answer"], **rules) == solved
        assert (row["answer"] == "") == (not solved)


def test_adversarial_is_balanced_and_one_sided(table):
    bd = solvability_breakdown(table)
    assert bd["test_adversarial"]["count"] == {
        "both": 0,
        "only_dfs": 40,
        "only_bfs": 40,
        "neither": 0,
    }
    assert bd["validation_adversarial"]["count"]["only_dfs"] == 20
    assert bd["validation_adversarial"]["count"]["only_bfs"] == 20
    # The natural splits carry every category, in substantial shares for the default rules.
    for split in ("train", "test"):
        share = bd[split]["share"]
        assert abs(sum(share.values()) - 1) < 1e-3
        assert share["only_dfs"] > 0.1 and share["only_bfs"] > 0.1, share


def test_deterministic_and_independent_of_workers(table):
    again = generate_problems(SMALL.model_copy(update={"workers": 2}), seed=3)
    assert again.equals(table)
    other = generate_problems(SMALL, seed=4)
    assert not other.equals(table)


def test_impossible_sizes_raise_naming_the_split():
    tiny = CountdownParams(
        value_max=4, problems=SplitSizes(train=10_000, validation=10, test=10), workers=1
    )
    space = space_size(tiny)
    assert space is not None and space < 10_000
    with pytest.raises(GenerationError, match=r"countdown\.problems\.train"):
        generate_problems(tiny, seed=0)
    test_too_big = tiny.model_copy(
        update={"problems": SplitSizes(train=1, validation=1, test=space + 1)}
    )
    with pytest.raises(GenerationError, match=r"countdown\.problems\.test"):
        generate_problems(test_too_big, seed=0)


def test_whole_space_can_be_drawn_and_missing_adversarials_raise():
    # Every problem of a small space can be drawn: the natural splits ask for all of it, so only
    # the adversarial split fails (there is nothing left to draw, and nothing one-sided anyway).
    cfg = CountdownParams(
        n_numbers=2,
        value_max=4,
        max_intermediate=20,
        adversarial_per_side=1,
        workers=1,
        problems=SplitSizes(train=1, validation=1, test=1),
    )
    space = space_size(cfg)
    full = cfg.model_copy(update={"problems": SplitSizes(train=space - 2, validation=1, test=1)})
    # Two numbers: DFS and BFS explore the same single level, so no adversarial problem exists.
    with pytest.raises(GenerationError, match="test_adversarial"):
        generate_problems(full, seed=0)


def test_breakdown_counts_match_frame(table):
    bd = solvability_breakdown(table)
    for split, info in bd.items():
        part = table.filter(pl.col("split") == split)
        assert info["n"] == part.height == sum(info["count"].values())
        for cat, n in info["count"].items():
            assert n == (part["category"] == cat).sum()


def test_validation_adversarial_size_is_its_own_setting():
    # Unset: half of test_adversarial per side (SMALL: 40 -> 20, above). Set: exactly that many
    # per side, one-sided like the test split, and the test split keeps its own size.
    cfg = SMALL.model_copy(update={"adversarial_per_side": 10, "validation_adversarial_per_side": 15,
                                   "problems": SplitSizes(train=50, validation=10, test=10)})
    t = generate_problems(cfg, seed=5)
    bd = solvability_breakdown(t)
    assert bd["validation_adversarial"]["count"] == {"both": 0, "only_dfs": 15, "only_bfs": 15,
                                                     "neither": 0}
    assert bd["test_adversarial"]["count"] == {"both": 0, "only_dfs": 10, "only_bfs": 10,
                                               "neither": 0}
    with pytest.raises(ValueError, match="validation_adversarial_per_side"):
        CountdownParams(validation_adversarial_per_side=0)
