"""pass@k estimators: brute force over subsets, unbiasedness, ModC split and the Jensen gap."""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modc_data.budget import uniform_allocations, uniform_split
from modc_data.evaluation.passk import (
    default_ks,
    pass_at_k,
    pass_at_k_curve,
    pass_at_k_from_p,
    pass_at_k_modc,
    pass_at_k_split,
    pass_at_k_split_from_p,
)


def binomial_pmf(n: int, p: float) -> np.ndarray:
    """P(c) for c = 0..n, exactly summed in floats (scipy's binom.pmf overflows for subnormal p)."""
    return np.array([comb(n, c) * p**c * (1 - p) ** (n - c) for c in range(n + 1)], dtype=float)

@st.composite
def nck(draw, max_n: int = 9):
    n = draw(st.integers(1, max_n))
    return n, draw(st.integers(0, n)), draw(st.integers(1, n))


def brute_pass(n: int, c: int, k: int) -> float:
    """Share of size-k subsets of n samples (the first c correct) that hold a correct one."""
    subsets = list(combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@given(nck())
def test_pass_at_k_equals_subset_enumeration(t):
    n, c, k = t
    assert pass_at_k(n, c, k) == pytest.approx(brute_pass(n, c, k), abs=1e-12)


@given(nck(6), nck(6))
def test_split_equals_enumeration_over_per_mode_subsets(a, b):
    (n1, c1, k1), (n2, c2, k2) = a, b
    hits = total = 0
    for s1 in combinations(range(n1), k1):
        for s2 in combinations(range(n2), k2):
            total += 1
            hits += any(i < c1 for i in s1) or any(i < c2 for i in s2)
    got = pass_at_k_split([n1, n2], [c1, c2], [k1, k2])
    assert got == pytest.approx(hits / total, abs=1e-12)


@given(st.integers(1, 300), st.floats(0, 1), st.integers(1, 16))
@settings(max_examples=40)
def test_estimator_is_unbiased(n, p, k):
    """E over c ~ Binomial(n, p) of the estimator is exactly 1 - (1-p)^k."""
    k = min(k, n)
    c = np.arange(n + 1)
    expected = float(np.sum(binomial_pmf(n, p) * pass_at_k(n, c, k)))
    assert expected == pytest.approx(float(pass_at_k_from_p(p, k)), abs=1e-9)


@given(st.lists(nck(40), min_size=1, max_size=20))
def test_split_with_one_mode_is_plain(rows):
    n, c, k = (np.array(x)[:, None] for x in zip(*rows, strict=True))
    np.testing.assert_allclose(pass_at_k_split(n, c, k), pass_at_k(n, c, k)[:, 0], atol=1e-12)
    ks = np.array([1, 2])
    ok = n[:, 0] >= 2
    np.testing.assert_allclose(
        pass_at_k_modc(n[ok], c[ok], ks), pass_at_k_curve(n[ok, 0], c[ok, 0], ks), atol=1e-12
    )


@given(st.integers(0, 200), st.integers(1, 6))
def test_uniform_split_spreads_the_remainder(k, m):
    a = uniform_split(k, m)
    assert a.sum() == k and a.max() - a.min() <= 1
    allocs = uniform_allocations(k, m)
    assert len(allocs) == comb(m, k % m)
    assert (allocs.sum(axis=1) == k).all()
    # every mode gets the extra sample equally often: the average allocation is exactly k / M
    np.testing.assert_allclose(allocs.mean(axis=0), k / m)


@given(st.integers(1, 12), st.lists(st.integers(0, 12), min_size=2, max_size=3), st.integers(1, 12))
def test_modc_averages_over_remainder_allocations(n, cs, k):
    m = len(cs)
    cs = [min(c, n) for c in cs]
    k = min(k, n)
    got = pass_at_k_modc(np.array([[n] * m]), np.array([cs]), [k])[0, 0]
    want = np.mean([pass_at_k_split([n] * m, cs, a) for a in uniform_allocations(k, m)])
    assert got == pytest.approx(want, abs=1e-12)
    if k % m == 0:
        assert got == pytest.approx(float(pass_at_k_split([n] * m, cs, uniform_split(k, m))))


@given(
    st.floats(0, 1),
    st.floats(0, 1),
    st.integers(1, 32),
)
def test_modc_beats_mixture_jensen(p1, p2, half):
    """1 - ((1-p1)(1-p2))^{k/2} >= 1 - (1 - (p1+p2)/2)^k, strictly when p1 != p2 (away from 0/1)."""
    k = 2 * half
    modc = float(pass_at_k_split_from_p([p1, p2], [half, half]))
    mixture = float(pass_at_k_from_p((p1 + p2) / 2, k))
    assert modc >= mixture - 1e-12
    if abs(p1 - p2) > 0.05 and max(p1, p2) < 0.9 and half <= 4:
        assert modc > mixture


@given(st.floats(0, 1), st.floats(0, 1), st.integers(1, 40), st.integers(1, 8))
@settings(max_examples=30)
def test_split_estimator_is_unbiased_for_modc(p1, p2, n, half):
    """E of the split estimator over independent Binomial(n, p_m) counts is the ModC formula."""
    half = min(half, n)
    c = np.arange(n + 1)
    c1, c2 = np.meshgrid(c, c, indexing="ij")
    w = binomial_pmf(n, p1)[c1] * binomial_pmf(n, p2)[c2]
    est = pass_at_k_split(
        np.stack([np.full_like(c1, n), np.full_like(c2, n)], -1),
        np.stack([c1, c2], -1),
        [half, half],
    )
    assert float((w * est).sum()) == pytest.approx(
        float(pass_at_k_split_from_p([p1, p2], [half, half])), abs=1e-9
    )


@given(st.integers(1, 2048), st.data())
@settings(max_examples=30)
def test_large_n_is_finite_and_monotone(n, data):
    c = data.draw(st.integers(0, n))
    ks = np.array(default_ks(n))
    v = pass_at_k(n, c, ks)
    assert np.isfinite(v).all() and (v >= 0).all() and (v <= 1).all()
    assert (np.diff(v) >= -1e-12).all()  # more samples never hurt
    if c < n:
        assert (pass_at_k(n, c + 1, ks) >= v - 1e-12).all()


def test_bad_counts_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="k > n"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="c > n"):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="whole numbers"):
        pass_at_k(4.5, 1, 1)
    with pytest.raises(ValueError, match=">= 0"):
        pass_at_k(4, -1, 1)


def test_default_ks():
    assert default_ks(1) == [1]
    assert default_ks(64) == [1, 2, 4, 8, 16, 32, 64]
    assert default_ks(100) == [1, 2, 4, 8, 16, 32, 64, 100]
