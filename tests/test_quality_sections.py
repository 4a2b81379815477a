"""The diversity and maj@k sections of results.md (evaluation/quality_sections)."""

from __future__ import annotations

import polars as pl
import pytest

from modc_data.evaluation.diversity import diversity_table
from modc_data.evaluation.quality_sections import diversity_section, majority_section
from tests.test_majority import _samples


@pytest.fixture(scope="module")
def samples():
    standard = _samples("arm/standard", {"p1": {"": ["r", "r", "x", "y"]}, "p2": {"": ["x", "x", "x", "r"]}})
    prefix = _samples("arm/prefix", {"p1": {"dfs": ["r", "x"], "bfs": ["r", "r"]},
                                     "p2": {"dfs": ["x", "x"], "bfs": ["r", "r"]}})
    return pl.concat([standard, prefix])


def test_diversity_section_is_the_table(samples):
    text, rows = diversity_section(samples)
    assert text.startswith("## Diversity of the samples") and "k = 2 samples" in text
    table = diversity_table(samples)
    assert rows == table.to_dicts()
    std = next(r for r in rows if r["model"] == "arm/standard")
    # p1: answers r r x y -> 3 distinct among 4; at k = 2 the expectation is below 2
    assert f"| arm/standard | test | 2 | – | {std['distinct_answers']:.3f} |" in text
    assert 1 < std["distinct_answers"] < 2


def test_majority_section_for_a_final_answer_task(samples):
    text, rows = majority_section(samples, task="math", ks=[1, 2, 4], n_resamples=200)
    assert text.startswith("## Majority vote (maj@k)") and "| k=1 | k=2 | k=4 |" in text
    pre = sorted((r for r in rows if r["model"] == "arm/prefix"), key=lambda r: r["k"])
    assert pre[-1]["maj_at_k"] == pytest.approx((1 + 0.5) / 2) and pre[-1]["scheme"] == "modc"
    assert "| arm/prefix | test | modc | " in text and "0.750 [" in text


def test_majority_section_says_why_not_for_countdown(samples):
    text, rows = majority_section(samples, task="countdown", ks=[1, 2], n_resamples=10)
    assert rows == [] and "Not computed for task `countdown`" in text and "split the vote" in text
