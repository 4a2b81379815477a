"""Majority-vote scoring (evaluation/majority): exact maj@k against brute force, ModC split, CIs."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modc_data.evaluation.majority import (
    answer_groups,
    maj_at_k,
    maj_at_k_allocations,
    maj_at_k_split,
    majority_curves,
    smallest_k,
)
from modc_data.sampling.run import SAMPLES_SCHEMA

# "a" and "A" are both correct (two spellings of the gold answer); "" and None carry no answer.
ANSWER = st.sampled_from(["a", "A", "b", "c", "d", "", None])
RIGHT = {"a", "A"}


def _brute(answers: list[list], alloc: list[int]) -> float:
    """Mean vote score over every per-mode subset of the allocated sizes (ties split evenly)."""
    total, count = Fraction(0), 0
    per_mode = [itertools.combinations(range(len(a)), k) for a, k in zip(answers, alloc, strict=True)]
    for combo in itertools.product(*per_mode):
        votes: dict[str, int] = {}
        for m, chosen in enumerate(combo):
            for i in chosen:
                a = answers[m][i]
                if a:
                    key = "right" if a in RIGHT else a
                    votes[key] = votes.get(key, 0) + 1
        count += 1
        if votes:
            top = max(votes.values())
            tied = [a for a, v in votes.items() if v == top]
            total += Fraction(tied.count("right"), len(tied))
    return float(total / count)


def _groups(answers: list[list]):
    return answer_groups(answers, [[a in RIGHT for a in mode] for mode in answers])


@settings(max_examples=150, deadline=None)
@given(answers=st.lists(ANSWER, min_size=1, max_size=9))
def test_maj_at_k_equals_brute_force_enumeration(answers):
    ks = list(range(1, len(answers) + 1))
    got = maj_at_k(_groups([answers]), ks)
    want = [_brute([answers], [k]) for k in ks]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    answers=st.lists(st.lists(ANSWER, min_size=1, max_size=5), min_size=2, max_size=3),
    data=st.data(),
)
def test_split_maj_at_k_equals_brute_force_enumeration(answers, data):
    alloc = [data.draw(st.integers(0, len(a))) for a in answers]
    got = maj_at_k_allocations(_groups(answers), [alloc])[0]
    assert got == pytest.approx(_brute(answers, alloc), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(answers=st.lists(ANSWER, min_size=1, max_size=30))
def test_one_mode_split_is_plain_maj_at_k(answers):
    groups = _groups([answers])
    ks = list(range(1, len(answers) + 1))
    np.testing.assert_allclose(maj_at_k_split(groups, ks), maj_at_k(groups, ks), rtol=1e-12)


@settings(max_examples=100, deadline=None)
@given(answers=st.lists(ANSWER, min_size=2, max_size=60))
def test_k_one_is_the_fraction_correct_and_k_two_ties_it(answers):
    """One sample votes alone; two voting samples agree or tie 1/2, so without silent samples
    maj@2 = maj@1 exactly."""
    got = maj_at_k(_groups([answers]), [1, 2])
    frac = sum(a in RIGHT for a in answers) / len(answers)
    assert got[0] == pytest.approx(frac, abs=1e-12)
    if all(answers):
        assert got[1] == pytest.approx(frac, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(8, 64), data=st.data())
def test_two_equal_camps_split_evenly_at_every_k(n, data):
    """n/2 right and n/2 wrong (plus a few silent): by symmetry maj@k = 1/2 whenever a vote is
    cast, also at n = 64 where enumeration is out of reach."""
    half = n // 2
    silent = data.draw(st.integers(0, 4))
    answers = ["a"] * half + ["b"] * half + [""] * silent
    ks = np.arange(1, len(answers) + 1)
    got = maj_at_k(_groups([answers]), ks)
    all_silent = np.array([math.comb(silent, k) / math.comb(len(answers), k) for k in ks])
    np.testing.assert_allclose(got, 0.5 * (1 - all_silent), atol=1e-12)


def test_counts_past_int64_stay_float():
    """68 samples: C(68, 34) passes int64; maj@k stays a float64 array (it was an object array,
    which numpy's isnan refused), at the value symmetry gives."""
    answers = ["a"] * 32 + ["b"] * 32 + [""] * 4
    ks = np.arange(1, 69)
    got = maj_at_k(_groups([answers]), ks)
    assert got.dtype == np.float64
    all_silent = np.array([math.comb(4, k) / math.comb(68, k) for k in ks])
    np.testing.assert_allclose(got, 0.5 * (1 - all_silent), atol=1e-12)


def test_unanimous_and_plurality_cases_at_n_64():
    ks = [1, 2, 4, 8, 16, 32, 64]
    assert np.allclose(maj_at_k(_groups([["a"] * 64]), ks), 1.0)
    assert np.allclose(maj_at_k(_groups([["b"] * 64]), ks), 0.0)
    # 30 right against 17 + 17 wrong: the plurality wins more often as k grows, and always at k = n
    curve = maj_at_k(_groups([["a"] * 30 + ["b"] * 17 + ["c"] * 17]), ks)
    assert curve[0] == pytest.approx(30 / 64) and curve[-1] == pytest.approx(1.0)
    assert np.all(np.diff(curve[1:]) > 0)


def test_correct_spellings_vote_together():
    """"a" and "A" both equal the gold answer, so 2 + 2 right beat 3 wrong at k = n."""
    groups = _groups([["a", "a", "A", "A", "b", "b", "b"]])
    assert groups.counts.ravel().tolist() == [4, 3] and groups.correct.tolist() == [True, False]
    assert maj_at_k(groups, [7])[0] == pytest.approx(1.0)


def test_bad_budgets_are_refused():
    groups = _groups([["a", "b"], ["a"]])
    with pytest.raises(ValueError, match="k_m must be in 0..n_m"):
        maj_at_k_allocations(groups, [[3, 0]])
    with pytest.raises(ValueError, match="use maj_at_k_split"):
        maj_at_k(groups, [1])
    with pytest.raises(ValueError, match="one answers list and one correct list"):
        answer_groups([["a"]], [])


def test_smallest_k_reaching_a_target():
    ks, acc = [1, 2, 4, 8], [0.1, 0.3, 0.5, 0.7]
    assert smallest_k(ks, acc, 0.5) == 4
    assert smallest_k(ks, acc, 0.05) == 1
    assert smallest_k(ks, acc, 0.9) is None
    with pytest.raises(ValueError, match="ascend"):
        smallest_k([2, 1], [0.1, 0.2], 0.1)


def _samples(model: str, mode_answers: dict[str, dict[str, list[str]]]) -> pl.DataFrame:
    """A samples table: {problem: {mode: answers}}; 'r' is the right answer."""
    rows = []
    for pid, modes in mode_answers.items():
        for mode, answers in modes.items():
            for i, a in enumerate(answers):
                rows.append({
                    "problem_id": pid, "split": "test", "model": model, "arm": "arm",
                    "variant": "standard" if mode == "" else "prefix", "mode": mode, "sample_idx": i,
                    "completion": f"... {a}", "answer": a, "correct": a == "r", "detected_mode": None,
                    "n_tokens": 3,
                })
    return pl.DataFrame(rows, schema=SAMPLES_SCHEMA)


def test_majority_curves_from_a_samples_table():
    standard = _samples("arm/standard", {"p1": {"": ["r", "r", "x", "y"]}, "p2": {"": ["x", "x", "x", "r"]}})
    prefix = _samples("arm/prefix", {"p1": {"dfs": ["r", "x"], "bfs": ["r", "r"]}, "p2": {"dfs": ["x", "x"], "bfs": ["r", "r"]}})
    curves = majority_curves(pl.concat([standard, prefix]), [1, 2, 4], task="math", n_resamples=200, targets=[0.5, 0.9])
    std = curves.filter(pl.col("model") == "arm/standard").sort("k")
    assert std["scheme"].unique().to_list() == ["plain"] and std["n_problems"].to_list() == [2, 2, 2]
    # k = 1: mean fraction correct over problems; k = 4: p1 "r" 2 of 4 wins, p2 loses
    assert std["maj_at_k"].to_list() == pytest.approx([(2 / 4 + 1 / 4) / 2, (2 / 4 + 1 / 4) / 2, 0.5])
    assert (std["low"] <= std["maj_at_k"]).all() and (std["maj_at_k"] <= std["high"]).all()
    assert std["k_to_0.5"].to_list() == [4, 4, 4] and std["k_to_0.9"].to_list() == [None] * 3
    pre = curves.filter(pl.col("model") == "arm/prefix").sort("k")
    assert pre["scheme"].unique().to_list() == ["modc"]
    # k = 4 draws every sample: p1 has r 3 : x 1, p2 ties r 2 : x 2
    assert pre["maj_at_k"][-1] == pytest.approx((1 + 0.5) / 2)


def test_majority_is_refused_for_countdown():
    with pytest.raises(ValueError, match="does not apply to task 'countdown'.*split the vote"):
        majority_curves(_samples("m", {"p": {"": ["r"]}}), [1], task="countdown")
