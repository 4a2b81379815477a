"""Countdown task: generator, DFS/BFS solvers, verifier, trace parsing and mode detection."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modc_data.tasks import get_task
from modc_data.tasks.countdown import (
    CountdownTask,
    detect_mode,
    format_prompt,
    format_trace,
    parse_trace,
    verify,
)
from modc_data.tasks.countdown_search import bfs, dfs, draw_problem, search

CAP = 50
RULES = {"max_intermediate": CAP}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def problems(draw, n_numbers=None):
    """(nums, target) from the real generator, seeded by hypothesis."""
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(n_numbers if n_numbers is not None else st.integers(2, 4))
    vmax = draw(st.sampled_from([10, 20]))
    return draw_problem(random.Random(seed), n, 1, vmax, max_intermediate=CAP)


budgets = st.integers(1, 14)


@SETTINGS
@given(problems(), budgets, st.sampled_from(["dfs", "bfs"]))
def test_solver_answers_verify_and_traces_are_word_level(problem, budget, algo):
    nums, target = problem
    r = search(nums, target, algo, budget, **RULES)
    assert 1 <= r.nodes <= budget
    assert "\n" not in r.trace and "  " not in r.trace and r.trace == r.trace.strip()
    if r.solved:
        assert r.trace.endswith("ANS " + r.answer)
        assert verify(nums, target, r.answer, **RULES)
    else:
        assert r.trace.endswith("FAIL") and r.answer == ""


@SETTINGS
@given(problems(n_numbers=st.just(3)), budgets)
def test_generated_target_is_reachable_and_not_an_input(problem, budget):
    nums, target = problem
    assert target not in nums and 0 < target <= CAP
    # An unbounded search solves every generated problem (the target came from an expression).
    assert dfs(nums, target, 10**6, **RULES).solved
    assert bfs(nums, target, 10**6, **RULES).solved


@SETTINGS
@given(problems(n_numbers=st.just(3)), st.integers(2, 12))
def test_bigger_budget_extends_the_same_search(problem, budget):
    # The search does not depend on the budget until it runs out: traces are prefixes.
    nums, target = problem
    for algo in ("dfs", "bfs"):
        small = parse_trace(search(nums, target, algo, budget, **RULES).trace).steps
        big = parse_trace(search(nums, target, algo, budget + 5, **RULES).trace).steps
        assert big[: len(small)] == small


@SETTINGS
@given(problems(), budgets, st.sampled_from(["dfs", "bfs"]))
def test_parse_format_round_trip(problem, budget, algo):
    r = search(*problem, algo, budget, **RULES)
    parsed = parse_trace(r.trace)
    assert parsed.malformed == 0
    assert len(parsed.steps) == r.nodes
    assert parsed.failed == (not r.solved)
    assert parsed.answer == (r.answer if r.solved else None)
    assert format_trace(parsed.steps, parsed.answer, parsed.failed) == r.trace


def test_traces_are_deterministic_and_short():
    rng = random.Random(0)
    lengths = []
    for _ in range(300):
        nums, target = draw_problem(rng, 3, 1, 20, max_intermediate=CAP)
        for algo in ("dfs", "bfs"):
            a = search(nums, target, algo, 8, **RULES)
            search.__globals__["explore"].cache_clear()  # recompute, not just re-read the cache
            assert search(nums, target, algo, 8, **RULES) == a
            lengths.append(len(a.trace.split()))
    assert sum(lengths) / len(lengths) < 65  # ~50 expected; a model's context is 160 positions
    assert max(lengths) <= 90


def test_same_seed_same_problems():
    a = [draw_problem(random.Random(5), 3, 1, 20, max_intermediate=CAP) for _ in range(3)]
    b = [draw_problem(random.Random(5), 3, 1, 20, max_intermediate=CAP) for _ in range(3)]
    assert a == b


def test_dfs_backtracks_and_bfs_goes_level_by_level():
    nums = (3, 7, 9)
    d = parse_trace(dfs(nums, 1000, 12, **RULES).trace).steps  # unreachable target: full budget
    b = parse_trace(bfs(nums, 1000, 40, **RULES).trace).steps
    d_depth = [len(nums) - len(s.remaining) for s in d]
    b_depth = [len(nums) - len(s.remaining) for s in b]
    assert d_depth[:2] == [1, 2] and any(x > y for x, y in zip(d_depth, d_depth[1:], strict=False))
    assert b_depth == sorted(b_depth) and b_depth[0] == 1 and b_depth[-1] == 2


def test_detect_mode_recovers_reference_algorithm():
    rng = random.Random(1)
    n_none = n = 0
    for _ in range(2000):
        nums, target = draw_problem(rng, rng.choice([3, 4]), 1, 20, max_intermediate=CAP)
        budget = rng.randint(1, 12)
        for algo in ("dfs", "bfs"):
            got = detect_mode(search(nums, target, algo, budget, **RULES).trace)
            n += 1
            if got is None:
                n_none += 1
            else:
                assert got == algo, (nums, target, budget, algo)
    # None only for traces too short to tell (one explored node).
    assert n_none / n < 0.2


@SETTINGS
@given(problems(n_numbers=st.integers(3, 4)), st.integers(2, 12), st.sampled_from(["dfs", "bfs"]))
def test_detect_mode_is_none_only_for_single_node_traces(problem, budget, algo):
    r = search(*problem, algo, budget, **RULES)
    got = detect_mode(r.trace)
    assert got == algo or (got is None and r.nodes == 1)


def test_detect_mode_on_garbage():
    for text in ["", "FAIL", "ANS 3 + 4 = 7", "hello world ; ; 3 +", "3 + 4 = 7 | 7 9"]:
        assert detect_mode(text) is None


# --------------------------------------------------------------------------- verifier negatives
@pytest.mark.parametrize(
    "answer",
    [
        "7 * 3 = 21 , 21 + 1 = 22",  # 1 is not an input
        "7 * 7 = 49 , 49 - 27 = 22",  # 7 used twice, 27 not an input
        "7 + 9 = 16 , 16 + 3 = 19",  # wrong final value
        "7 + 9 = 17 , 17 + 3 = 20",  # wrong arithmetic
        "9 / 7 = 1 , 3 + 1 = 4",  # inexact division
        "3 + 7 = 10 , 10 + 10 = 20",  # an intermediate reused
        "",
        "ANS",
        "22",
        "3 + 7",
        "3 + 7 = 10 ,",
        "__import__('os') = 22",
        "3 ** 7 = 2187",
        "1_0 + 3 = 13",
        "٣ + 7 = 10",
    ],
)
def test_verify_rejects(answer):
    assert not verify((3, 7, 9), 22, answer, **RULES)


def test_verify_accepts_valid_and_enforces_rules():
    nums = (3, 7, 9)
    assert verify(nums, 12, "9 - 7 = 2 , 2 * 3 = 6 , 6 + 6 = 12") is False  # 6 reused
    assert verify(nums, 19, "9 + 7 = 16 , 16 + 3 = 19")
    assert verify(nums, 19, " 9 + 7 = 16 ,16 + 3 = 19 ")  # whitespace is not significant
    assert verify(nums, 3, "9 / 3 = 3", max_intermediate=10)
    # Sign rule: a nonpositive intermediate only when allowed.
    assert not verify(nums, 5, "3 - 7 = -4 , 9 + -4 = 5")
    assert verify(nums, 5, "3 - 7 = -4 , 9 + -4 = 5", allow_nonpositive=True)
    assert not verify(nums, 0, "3 - 3 = 0", allow_nonpositive=True)  # only one 3
    # Cap on intermediates.
    assert verify(nums, 70, "7 * 9 = 63 , 63 + 7 = 70") is False  # 7 reused
    assert verify(nums, 66, "7 * 9 = 63 , 63 + 3 = 66")
    assert not verify(nums, 66, "7 * 9 = 63 , 63 + 3 = 66", max_intermediate=50)
    # use_all_numbers.
    assert verify(nums, 16, "9 + 7 = 16")
    assert not verify(nums, 16, "9 + 7 = 16", use_all_numbers=True)
    assert verify(nums, 48, "9 + 7 = 16 , 16 * 3 = 48", use_all_numbers=True)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.lists(st.integers(-5, 60), min_size=2, max_size=5), st.integers())
def test_verify_never_raises(answer, nums, target):
    assert verify(nums, target, answer) in (True, False)
    parse_trace(answer)
    detect_mode(answer)


@SETTINGS
@given(problems(n_numbers=st.just(3)), st.sampled_from(["dfs", "bfs"]))
def test_verify_rejects_tampered_solutions(problem, algo):
    nums, target = problem
    r = search(nums, target, algo, 10**6, **RULES)
    steps = r.answer.split(" , ")
    a, op, b, _, c = steps[-1].split()
    wrong_value = " , ".join(steps[:-1] + [f"{a} {op} {b} = {int(c) + 1}"])
    assert not verify(nums, target, wrong_value, **RULES)
    assert not verify(nums, target + 1, r.answer, **RULES)
    outsider = max(nums) + CAP + 1  # a number that is neither an input nor a result
    assert not verify(nums, target, f"{outsider} + {a} = {outsider + int(a)}", **RULES)


# --------------------------------------------------------------------------- task protocol
def test_task_scores_problem_rows():
    task = get_task(
        "countdown", use_all_numbers=False, allow_nonpositive=False, max_intermediate=CAP
    )
    assert isinstance(task, CountdownTask) and task.name == "countdown"
    nums, target = (3, 7, 9), 19
    row = {
        "prompt": format_prompt(nums, target),
        "meta": json.dumps({"nums": list(nums), "target": target}),
    }
    assert row["prompt"] == "nums 3 7 9 target 19"
    good = dfs(nums, target, 20, **RULES)
    assert good.solved
    assert task.score(row, good.trace) == (good.answer, True)
    assert task.score(row, good.trace.replace("ANS", "")) == ("", False)
    assert task.score(row, "garbage") == ("", False)
    assert task.detect_mode(good.trace) == "dfs"
    with pytest.raises(ValueError, match="meta"):
        task.score({"meta": "{}"}, good.trace)
