"""Tests for modc_data.labeling: search-algorithm rows, training mixes, random partition."""

from __future__ import annotations

import json
from functools import cache

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modc_data.labeling.mixes import (
    MIXED_SPLITS,
    REJECTION,
    apply_mix,
    declared_shares,
    mix_seeds,
    mode_shares,
)
from modc_data.labeling.random_partition import random_rows, uniform_shares
from modc_data.labeling.search_algorithm import PROBLEM_COLUMNS, search_algorithm_rows
from modc_data.schema import ROW_SCHEMA, check_schema, problem_id, row_id

CATEGORIES = ("both", "only_dfs", "only_bfs", "neither")


def make_problems(specs: list[tuple[str, str, int, int]]) -> pl.DataFrame:
    """Problems table from (split, category, dfs_nodes, bfs_nodes) tuples, one per problem.

    A trace solves iff its algorithm is named by the category; a solving trace ends ``ANS``.
    """
    recs = []
    for i, (split, cat, dn, bn) in enumerate(specs):
        key = f"{i % 10} {i // 10} -> {i}"
        rec = {
            "problem_id": problem_id("countdown", key),
            "task": "countdown",
            "split": split,
            "prompt": f"Use {key}",
            "answer": f"{i}",
            "category": cat,
            "meta": json.dumps({"nums": [i % 10, i // 10], "target": i}),
        }
        for algo, nodes in (("dfs", dn), ("bfs", bn)):
            solved = cat in ("both", f"only_{algo}")
            rec[f"{algo}_trace"] = f"{algo} step {i} ; " + (f"ANS {i}={i}" if solved else "FAIL")
            rec[f"{algo}_solved"] = solved
            rec[f"{algo}_nodes"] = nodes
            rec[f"{algo}_answer"] = f"{i}={i}" if solved else ""
        recs.append(rec)
    return pl.DataFrame(recs)


problem_specs = st.lists(
    st.tuples(
        st.sampled_from(("train", "validation", "test", "test_adversarial")),
        st.sampled_from(CATEGORIES),
        st.integers(1, 12),
        st.integers(1, 12),
    ),
    min_size=1,
    max_size=30,
)


# --------------------------------------------------------------------------- search_algorithm_rows
@settings(max_examples=40, deadline=None)
@given(specs=problem_specs, budget=st.integers(1, 12))
def test_search_algorithm_rows_are_exactly_the_solving_traces(specs, budget):
    problems = make_problems(specs)
    rows = search_algorithm_rows(problems, budget)

    check_schema(rows, "rows")
    assert rows.columns == list(ROW_SCHEMA)
    expected = {
        (p["problem_id"], algo)
        for p in problems.iter_rows(named=True)
        for algo in ("dfs", "bfs")
        if p[f"{algo}_solved"] and p[f"{algo}_nodes"] <= budget
    }
    assert set(zip(rows["problem_id"], rows["mode"], strict=True)) == expected
    assert rows.height == len(expected)
    by_pid = {p["problem_id"]: p for p in problems.iter_rows(named=True)}
    for r in rows.iter_rows(named=True):
        p, algo = by_pid[r["problem_id"]], r["mode"]
        assert r["completion"] == p[f"{algo}_trace"]
        assert r["answer"] == p[f"{algo}_answer"]
        assert (r["split"], r["prompt"], r["task"]) == (p["split"], p["prompt"], p["task"])
        assert r["correct"] is True and r["label_source"] == "search_algorithm"
        assert r["id"] == row_id(r["task"], r["prompt"], r["completion"])
        assert json.loads(r["meta"]) == {
            "budget": budget,
            "nodes_expanded": p[f"{algo}_nodes"],
            "category": p["category"],
            "same_trace_both_modes": False,
        }


def test_identical_traces_give_one_row_with_a_stable_label():
    """When DFS and BFS write the same trace, one row (one id) carries a problem-keyed label."""
    problems = make_problems([("train", "both", 1, 1), ("test", "both", 1, 1)])
    problems = problems.with_columns(pl.col("dfs_trace").alias("bfs_trace"))
    rows = search_algorithm_rows(problems, 8)
    assert rows.height == problems.height
    assert rows["id"].n_unique() == rows.height
    assert all(json.loads(m)["same_trace_both_modes"] for m in rows["meta"])
    again = search_algorithm_rows(problems.reverse(), 8)
    assert rows.equals(again)


def test_search_algorithm_rows_ignore_input_order():
    specs = [(s, c, 3, 5) for s in ("train", "test") for c in CATEGORIES] * 3
    problems = make_problems(specs)
    shuffled = problems.sample(fraction=1.0, shuffle=True, seed=3)
    assert search_algorithm_rows(problems, 8).equals(search_algorithm_rows(shuffled, 8))


def test_search_algorithm_rows_reject_bad_input():
    problems = make_problems([("train", "both", 1, 1)])
    with pytest.raises(ValueError, match="bfs_nodes"):
        search_algorithm_rows(problems.drop("bfs_nodes"), 8)
    with pytest.raises(ValueError, match="budget"):
        search_algorithm_rows(problems, 0)
    with pytest.raises(ValueError, match="appears 2 times"):
        search_algorithm_rows(pl.concat([problems, problems]), 8)
    lying = problems.with_columns(pl.lit("dfs step\nFAIL").alias("dfs_trace"))
    with pytest.raises(ValueError, match="dfs_solved=true.*FAIL"):
        search_algorithm_rows(lying, 8)
    assert set(PROBLEM_COLUMNS) <= set(problems.columns)


# --------------------------------------------------------------------------- apply_mix
@cache
def both_rows(n_train: int = 3000, n_val: int = 300, n_test: int = 50) -> pl.DataFrame:
    """Every problem solved by both algorithms: two rows per problem in every split."""
    specs = (
        [("train", "both", 2, 2)] * n_train
        + [("validation", "both", 2, 2)] * n_val
        + [("test", "both", 2, 2)] * n_test
    )
    return search_algorithm_rows(make_problems(specs), 8)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p_dfs=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1))
def test_apply_mix_realised_shares_track_declared(p_dfs, seed):
    rows = both_rows()
    mixed = apply_mix(rows, {"dfs": p_dfs, "bfs": 1.0 - p_dfs}, seed)
    train = mode_shares(mixed)["train"]
    # 3000 Bernoulli draws: sd <= 0.0092, so 0.05 is > 5 sd.
    assert abs(train["shares"].get("dfs", 0.0) - p_dfs) < 0.05
    if p_dfs == 0.0:
        assert "dfs" not in train["counts"]
    # one row per train/validation problem (every problem has both modes), tests untouched
    for split in MIXED_SPLITS:
        part = mixed.filter(pl.col("split") == split)
        assert part["problem_id"].n_unique() == part.height
        assert part.height == rows.filter(pl.col("split") == split)["problem_id"].n_unique()
    assert mixed.filter(pl.col("split") == "test").equals(rows.filter(pl.col("split") == "test"))
    assert set(mixed["id"]) <= set(rows["id"])
    check_schema(mixed, "mixed")


def test_apply_mix_with_unequal_availability_follows_the_documented_formula():
    # dfs solves 3/4 of the problems, bfs 1/4: realised share = s a / sum_j s_j a_j, not s.
    specs = [("train", "both", 1, 1)] * 1000 + [("train", "only_dfs", 1, 1)] * 2000
    specs += [("train", "neither", 1, 1)] * 1000
    rows = search_algorithm_rows(make_problems(specs), 8)
    a, s = {"dfs": 0.75, "bfs": 0.25}, {"dfs": 0.4, "bfs": 0.6}
    mixed = apply_mix(rows, s, seed=11)
    realised = mode_shares(mixed)["train"]["shares"]["dfs"]
    expected = s["dfs"] * a["dfs"] / (s["dfs"] * a["dfs"] + s["bfs"] * a["bfs"])  # 2/3
    assert abs(realised - expected) < 0.04
    kept = s["dfs"] * a["dfs"] + s["bfs"] * a["bfs"]  # fraction of problems that keep a row
    assert abs(mixed.height / 4000 - kept) < 0.04
    assert mixed["correct"].all()


def test_apply_mix_is_deterministic_and_order_free():
    rows = both_rows()
    shares = {"dfs": 0.3, "bfs": 0.7}
    a = apply_mix(rows, shares, seed=5)
    assert a.equals(apply_mix(rows, shares, seed=5))
    shuffled = rows.sample(fraction=1.0, shuffle=True, seed=1)
    assert set(apply_mix(shuffled, dict(reversed(shares.items())), seed=5)["id"]) == set(a["id"])
    assert set(apply_mix(rows, shares, seed=6)["id"]) != set(a["id"])


def test_apply_mix_rejects_bad_mixes():
    rows = both_rows()
    with pytest.raises(ValueError, match="sum to"):
        apply_mix(rows, {"dfs": 0.5, "bfs": 0.6}, 0)
    with pytest.raises(ValueError, match=r"\['teacher:a'\].*positive share"):
        apply_mix(rows, {"dfs": 0.5, "teacher:a": 0.5}, 0)
    with pytest.raises(ValueError, match="no modes"):
        apply_mix(rows, {}, 0)
    with pytest.raises(ValueError, match="missing column 'meta'"):
        apply_mix(rows.drop("meta"), {"dfs": 1.0}, 0)


# --------------------------------------------------------------------------- random_rows
def test_random_rows_relabel_uniformly_and_keep_content():
    rows = apply_mix(both_rows(), {"dfs": 0.5, "bfs": 0.5}, 0)
    n_modes = 3
    out = random_rows(rows, n_modes, seed=7)
    check_schema(out, "random rows")
    assert out.height == rows.height
    assert out["id"].to_list() == rows["id"].to_list()
    assert out["id"].to_list() == [
        row_id(t, p, c)
        for t, p, c in zip(out["task"], out["prompt"], out["completion"], strict=True)
    ]
    keep = ["problem_id", "task", "prompt", "completion", "answer", "split", "correct"]
    assert out.select(keep).equals(rows.select(keep))
    assert set(out["label_source"]) == {"random"}
    assert set(out["mode"]) == set(uniform_shares(n_modes))
    metas = [json.loads(m) for m in out["meta"]]
    assert [m["original_mode"] for m in metas] == rows["mode"].to_list()
    assert all(m["original_label_source"] == "search_algorithm" for m in metas)
    assert all(m["budget"] == 8 for m in metas)
    # ~3300 rows, 3 modes: each share within 0.05 (> 5 sd) of 1/3
    shares = mode_shares(out, ("train",))["train"]["shares"]
    assert all(abs(s - 1 / n_modes) < 0.05 for s in shares.values())
    # a random label must not track the original mode
    joint = out.group_by("mode", pl.col("meta").str.json_path_match("$.original_mode")).len()
    assert joint.height == 2 * n_modes


def test_random_rows_are_deterministic_and_order_free():
    rows = both_rows().head(500)
    a = random_rows(rows, 2, seed=1)
    assert a.equals(random_rows(rows, 2, seed=1))
    assert not a["mode"].equals(random_rows(rows, 2, seed=2)["mode"])
    shuffled = random_rows(rows.reverse(), 2, seed=1)
    assert dict(zip(shuffled["id"], shuffled["mode"], strict=True)) == dict(
        zip(a["id"], a["mode"], strict=True)
    )


def test_random_rows_reject_bad_input():
    rows = both_rows().head(4)
    with pytest.raises(ValueError, match="n_modes"):
        random_rows(rows, 1, seed=0)
    with pytest.raises(ValueError, match="column 'correct' has type"):
        random_rows(rows.with_columns(pl.col("correct").cast(pl.Int8)), 2, seed=0)


def test_empty_inputs_give_empty_schema_frames():
    problems = make_problems([("train", "neither", 1, 1)])
    rows = search_algorithm_rows(problems, 8)
    assert rows.height == 0 and rows.schema == pl.Schema(ROW_SCHEMA)
    assert apply_mix(rows, {"dfs": 1.0}, 0).height == 0
    assert random_rows(rows, 2, 0).schema == pl.Schema(ROW_SCHEMA)


# --------------------------------------------------------------------------- rejection mix
def solving_modes(rows: pl.DataFrame) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for split, pid, mode in rows.filter(pl.col("correct")).select("split", "problem_id", "mode").iter_rows():
        out.setdefault((split, pid), set()).add(mode)
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=problem_specs, seed=st.integers(0, 2**32 - 1))
def test_rejection_mix_keeps_one_solving_trace_per_problem(specs, seed):
    rows = search_algorithm_rows(make_problems(specs), 8)
    mixed = apply_mix(rows, REJECTION, seed)
    check_schema(mixed, "rejection mix")
    solving = solving_modes(rows)
    for split in MIXED_SPLITS:
        part = mixed.filter(pl.col("split") == split)
        assert part["problem_id"].n_unique() == part.height
        assert part["correct"].all()
        want = {pid for (s, pid) in solving if s == split}
        assert set(part["problem_id"]) == want  # every solvable problem keeps a trace
        for pid, mode in part.select("problem_id", "mode").iter_rows():
            assert mode in solving[(split, pid)]
    for split in ("test", "test_adversarial"):
        assert mixed.filter(pl.col("split") == split).equals(rows.filter(pl.col("split") == split))
    assert set(mixed["id"]) <= set(rows["id"])


def test_rejection_mix_draws_uniformly_among_solving_modes():
    specs = [("train", "both", 2, 2)] * 3000 + [("train", "only_dfs", 2, 2)] * 1000
    specs += [("train", "only_bfs", 2, 2)] * 500 + [("train", "neither", 2, 2)] * 500
    rows = search_algorithm_rows(make_problems(specs), 8)
    mixed = apply_mix(rows, REJECTION, seed=3)
    cats = dict(zip(rows["problem_id"], rows["meta"].str.json_path_match("$.category"), strict=False))
    by_cat = mixed.with_columns(pl.col("problem_id").replace_strict(cats).alias("cat"))
    both = by_cat.filter(pl.col("cat") == "both")
    assert both.height == 3000
    # 3000 fair coins: sd 0.0091, so 0.04 is > 4 sd.
    assert abs((both["mode"] == "dfs").mean() - 0.5) < 0.04
    assert set(by_cat.filter(pl.col("cat") == "only_dfs")["mode"]) == {"dfs"}
    assert set(by_cat.filter(pl.col("cat") == "only_bfs")["mode"]) == {"bfs"}
    assert mixed.height == 4500  # the 500 unsolved problems are dropped
    # realised, not declared: dfs = (1500 + 1000) / 4500 in expectation
    assert abs(mode_shares(mixed)["train"]["shares"]["dfs"] - 2500 / 4500) < 0.03


def test_rejection_mix_is_deterministic_and_order_free():
    rows = both_rows()
    a = apply_mix(rows, REJECTION, seed=5)
    assert a.equals(apply_mix(rows, REJECTION, seed=5))
    shuffled = rows.sample(fraction=1.0, shuffle=True, seed=1)
    assert set(apply_mix(shuffled, REJECTION, seed=5)["id"]) == set(a["id"])
    assert set(apply_mix(rows, REJECTION, seed=6)["id"]) != set(a["id"])


def test_mix_kinds_and_declared_shares():
    assert declared_shares(REJECTION) is None
    assert declared_shares({"dfs": 0.9, "bfs": 0.1}) == {"dfs": 0.9, "bfs": 0.1}
    with pytest.raises(ValueError, match="unknown mix 'rejekt'"):
        declared_shares("rejekt")
    with pytest.raises(ValueError, match="unknown mix 'rejekt'"):
        apply_mix(both_rows(), "rejekt", 0)


@given(
    names=st.lists(st.text("abcdefgh", min_size=1, max_size=6), min_size=1, max_size=6, unique=True),
    n_rejection=st.integers(0, 3),
    seed=st.integers(0, 10**6),
)
def test_mix_seeds_of_share_mixes_do_not_move_when_rejection_mixes_join(names, n_rejection, seed):
    shares = {n: {"dfs": 0.5, "bfs": 0.5} for n in names}
    # Before the rejection mix existed the label stage seeded mix i (sorted) with seed + i.
    before = {m: seed + i for i, m in enumerate(sorted(shares))}
    assert mix_seeds(shares, seed) == before
    with_rejection = {**shares, **{f"zz{j}" if j % 2 else f"0{j}": REJECTION for j in range(n_rejection)}}
    seeds = mix_seeds(with_rejection, seed)
    assert {m: seeds[m] for m in shares} == before
    assert len(set(seeds.values())) == len(seeds)  # every mix draws with its own seed
