"""Diversity metrics (evaluation/diversity) on hand-made sample sets, and distinct counts by brute force."""

from __future__ import annotations

import itertools
import math

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modc_data.evaluation.diversity import (
    diversity_per_problem,
    diversity_table,
    expected_distinct,
    mode_entropy,
    pairwise_ngram_distinct,
)
from modc_data.sampling.run import SAMPLES_SCHEMA


def _samples(model: str, problems: dict[str, dict[str, list[tuple[str, str, str | None]]]]) -> pl.DataFrame:
    """{problem: {mode: [(completion, answer, detected_mode), ...]}} -> a samples table."""
    rows = []
    for pid, modes in problems.items():
        for mode, samples in modes.items():
            for i, (completion, answer, detected) in enumerate(samples):
                rows.append({
                    "problem_id": pid, "split": "test", "model": model, "arm": "arm",
                    "variant": "standard" if mode == "" else "prefix", "mode": mode, "sample_idx": i,
                    "completion": completion, "answer": answer, "correct": False,
                    "detected_mode": detected, "n_tokens": len(completion.split()),
                })
    return pl.DataFrame(rows, schema=SAMPLES_SCHEMA)


HAND = {
    # two modes half and half; answers 1, 1, 2 and one with no answer; 3 distinct completions
    "p1": {"": [("a b c", "1", "dfs"), ("a b c", "1", "dfs"), ("a b d", "2", "bfs"), ("x", "", "bfs")]},
    # collapsed: four identical samples
    "p2": {"": [("a b c", "7", "dfs")] * 4},
}


def test_hand_made_standard_model():
    per = diversity_per_problem(_samples("arm/standard", HAND)).sort("problem_id")
    p1, p2 = per.row(0, named=True), per.row(1, named=True)
    assert p1["n_samples"] == 4 and p1["k"] == 4
    assert p1["mode_entropy_nats"] == pytest.approx(math.log(2))
    assert p1["distinct_answers"] == pytest.approx(2) and p1["distinct_completions"] == pytest.approx(3)
    # bigram sets {ab, bc}, {ab, bc}, {ab, bd}, {}: pair distances 0, 2/3, 2/3, 1, 1, 1
    assert p1["pairwise_ngram_distinct"] == pytest.approx((0 + 2 / 3 + 2 / 3 + 3) / 6)
    assert (p2["mode_entropy_nats"], p2["distinct_answers"], p2["distinct_completions"]) == (0, 1, 1)
    assert p2["pairwise_ngram_distinct"] == 0
    table = diversity_table(_samples("arm/standard", HAND))
    assert table.height == 1 and table["n_problems"][0] == 2 and table["ngram"][0] == 2
    assert table["mode_entropy_nats"][0] == pytest.approx(math.log(2) / 2)
    assert table["distinct_answers"][0] == pytest.approx(1.5)


def test_unigrams_and_budget_below_n():
    per = diversity_per_problem(_samples("m", {"p": HAND["p1"]}), k=2, ngram=1).row(0, named=True)
    # answers 1, 1, 2, "": E distinct among 2 of 4 = (1 - C(2,2)/6) + (1 - C(3,2)/6) = 5/6 + 1/2
    assert per["k"] == 2 and per["distinct_answers"] == pytest.approx(5 / 6 + 1 / 2)
    # unigram sets {a,b,c}, {a,b,c}, {a,b,d}, {x}: distances 0, 1/2, 1/2, 1, 1, 1
    assert per["pairwise_ngram_distinct"] == pytest.approx((0 + 0.5 + 0.5 + 3) / 6)


def test_prefix_model_pools_its_modes():
    """Two modes that each repeat one trace: no diversity within a mode, all of it across."""
    problems = {"p": {"dfs": [("d f s", "1", "dfs")] * 3, "bfs": [("b g t", "2", "bfs")] * 3}}
    per = diversity_per_problem(_samples("arm/prefix", problems)).row(0, named=True)
    assert per["n_samples"] == 6 and per["k"] == 3
    assert per["mode_entropy_nats"] == pytest.approx(math.log(2))
    # k = 3 split 2 + 1 or 1 + 2: both modes always drawn
    assert per["distinct_answers"] == pytest.approx(2) and per["distinct_completions"] == pytest.approx(2)
    # 15 pairs, 9 across modes with disjoint bigrams
    assert per["pairwise_ngram_distinct"] == pytest.approx(9 / 15)


def test_entropy_is_in_nats_and_skips_unknown_modes():
    assert mode_entropy(["dfs", "bfs", "bfs", None]) == pytest.approx(
        -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))
    )
    assert math.isnan(mode_entropy([None, None]))
    table = diversity_table(_samples("m", {"p": {"": [("a", "1", None)] * 2}, "q": {"": [("a", "1", "dfs")] * 2}}))
    assert table["mode_entropy_nats"][0] == 0.0  # the NaN problem is left out of the mean


def test_short_completions_and_single_samples():
    assert pairwise_ngram_distinct(["a", "b"], ngram=3) == 0.0  # no trigram at all: identical
    assert math.isnan(pairwise_ngram_distinct(["a b c"]))
    with pytest.raises(ValueError, match="empty"):
        diversity_table(_samples("m", {}))


VALUES = st.sampled_from(["x", "y", "z", "w", ""])


@settings(max_examples=100, deadline=None)
@given(modes=st.lists(st.lists(VALUES, min_size=1, max_size=6), min_size=1, max_size=2), data=st.data())
def test_expected_distinct_equals_enumeration(modes, data):
    """E[# distinct] over every draw of the uniform split (remainder to either mode, averaged)."""
    m = len(modes)
    k = data.draw(st.integers(1, m * min(len(v) for v in modes)))
    q, r = divmod(k, m)
    allocations = [[q + (i in extra) for i in range(m)] for extra in itertools.combinations(range(m), r)]
    means = []
    for alloc in allocations:
        draws = itertools.product(*[itertools.combinations(v, a) for v, a in zip(modes, alloc, strict=True)])
        sizes = [len({x for part in d for x in part if x}) for d in draws]
        means.append(sum(sizes) / len(sizes))
    assert expected_distinct(modes, k) == pytest.approx(sum(means) / len(means), abs=1e-12)
