"""Allocation over free sampling + forced modes: exact scoring against brute force, the policies'
invariants, static fitting, the oracle bound, and the fact that feedback-only sequential policies
are fixed schedules under a binary verifier with stop-at-first-success."""

from __future__ import annotations

from fractions import Fraction
from itertools import permutations, product

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modc_data.evaluation.allocation import (
    FREE,
    Allocation,
    ArmCounts,
    FreePolicy,
    OraclePolicy,
    PreferencePolicy,
    StaticPolicy,
    UniformPolicy,
    allocation_pass_at_k,
    concat_arm_counts,
    mean_pass,
    preference_counts,
)
from modc_data.evaluation.allocation_selection import fit_preference, fit_static
from modc_data.evaluation.passk import pass_at_k_modc

SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def arm_data(draw, max_problems=12, n_modes=None, n=None, free=True, with_q=True):
    """Random ArmCounts: free arm (optional) + M forced modes, equal n per arm (pipeline-like)."""
    m = n_modes or draw(st.integers(1, 3))
    p = draw(st.integers(1, max_problems))
    n_ = n or draw(st.integers(1, 8))
    arms = ((FREE,) if free else ()) + tuple(f"m{i}" for i in range(m))
    c = np.array(
        draw(
            st.lists(
                st.lists(st.integers(0, n_), min_size=len(arms), max_size=len(arms)),
                min_size=p,
                max_size=p,
            )
        )
    )
    q = None
    if with_q:
        raw = (
            np.array(
                draw(
                    st.lists(
                        st.lists(st.integers(0, 5), min_size=m, max_size=m), min_size=p, max_size=p
                    )
                ),
                dtype=float,
            )
            + 1e-9
        )
        q = raw / raw.sum(axis=1, keepdims=True)
    return ArmCounts(arms, np.full_like(c, n_), c, q)


def brute_force_pass(pools: list[list[bool]], counts: list[int]) -> Fraction:
    """P(some correct sample) when ``counts[a]`` samples are drawn without replacement from arm
    ``a``'s pool, by enumerating every ordering of every pool (each equally likely)."""
    hits = total = 0
    for orders in product(*(permutations(pool) for pool in pools)):
        total += 1
        hits += any(any(order[:k]) for order, k in zip(orders, counts, strict=True))
    return Fraction(hits, total)


@st.composite
def tiny_pools(draw):
    a = draw(st.integers(1, 3))
    pools = [draw(st.lists(st.booleans(), min_size=1, max_size=3)) for _ in range(a)]
    counts = [draw(st.integers(0, len(pool))) for pool in pools]
    return pools, counts


def as_counts(pools):
    n = np.array([[len(p) for p in pools]])
    c = np.array([[sum(p) for p in pools]])
    return ArmCounts(tuple(f"a{i}" for i in range(len(pools))), n, c)


# --------------------------------------------------------------------------- exact scoring
@SLOW
@given(tiny_pools())
def test_exact_pass_equals_brute_force_over_orderings(case):
    pools, counts = case
    got = allocation_pass_at_k(as_counts(pools), Allocation.fixed(np.array([counts])))[0]
    assert got == pytest.approx(float(brute_force_pass(pools, counts)), abs=1e-12)


@st.composite
def sequential_policy(draw, n_arms):
    """A deterministic policy: next arm = a hash of (seed, full history of (arm, outcome))."""
    seed = draw(st.integers(0, 2**31))
    return lambda history: hash((seed, history)) % n_arms


def run_sequential(policy, orders, k):
    """Play ``policy`` for up to k draws, stopping at the first success; exhausted arms are
    skipped (next arm in order), so the choice stays a function of the history."""
    pos = [0] * len(orders)
    history: tuple = ()
    for _ in range(k):
        arm = policy(history)
        while pos[arm] >= len(orders[arm]):
            arm = (arm + 1) % len(orders)
        outcome = orders[arm][pos[arm]]
        pos[arm] += 1
        if outcome:
            return True
        history += ((arm, outcome),)
    return False


@SLOW
@given(data=st.data())
def test_feedback_only_sequential_policy_equals_its_all_failure_schedule(data):
    pools = [
        data.draw(st.lists(st.booleans(), min_size=1, max_size=3))
        for _ in range(data.draw(st.integers(1, 3)))
    ]
    k = data.draw(st.integers(1, sum(map(len, pools))))
    policy = data.draw(sequential_policy(len(pools)))
    # The schedule: the arms the policy plays when every draw so far failed.
    all_fail = [[False] * len(p) for p in pools]
    counts = [0] * len(pools)
    pos = [0] * len(pools)
    history: tuple = ()
    for _ in range(k):
        arm = policy(history)
        while pos[arm] >= len(pools[arm]):
            arm = (arm + 1) % len(pools)
        pos[arm] += 1
        counts[arm] += 1
        history += ((arm, all_fail[arm][0]),)
    wins = total = 0
    for orders in product(*(permutations(p) for p in pools)):
        total += 1
        wins += run_sequential(policy, orders, k)
    exact = allocation_pass_at_k(as_counts(pools), Allocation.fixed(np.array([counts])))[0]
    assert float(Fraction(wins, total)) == pytest.approx(exact, abs=1e-12)


# --------------------------------------------------------------------------- policies
@SLOW
@given(d=arm_data(n=6), k=st.integers(1, 6))
def test_uniform_reproduces_pass_at_k_modc(d, k):
    got = allocation_pass_at_k(d, UniformPolicy().allocate(d, k))
    want = pass_at_k_modc(d.n[:, d.forced], d.c[:, d.forced], [k])[:, 0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-14)  # equal up to summation order


def test_uniform_averages_over_which_modes_get_the_extra_sample():
    # k = 1 over two modes with p = 1 and 0: ModC pass@1 is the mixture's, 0.5, not 1 or 0.
    d = ArmCounts((FREE, "dfs", "bfs"), np.full((1, 3), 4), np.array([[0, 4, 0]]))
    alloc = UniformPolicy().allocate(d, 1)
    assert alloc.counts.shape == (1, 2, 3)
    assert allocation_pass_at_k(d, alloc)[0] == 0.5
    np.testing.assert_allclose(alloc.mean_counts(), [[0, 0.5, 0.5]])


def fitted(d, ks):
    out = [FreePolicy(), UniformPolicy(), OraclePolicy(), fit_static(d, ks)]
    if d.q is not None:
        out.append(fit_preference(d, ks))
    return out


@SLOW
@given(d=arm_data(n=6), ks=st.lists(st.integers(1, 6), min_size=1, max_size=3, unique=True))
def test_every_policy_gives_nonnegative_counts_summing_to_k(d, ks):
    for policy in fitted(d, ks):
        for k in ks:
            alloc = policy.allocate(d, k)
            assert alloc.counts.shape[0] == d.n_problems and alloc.counts.shape[2] == len(d.arms)
            assert alloc.counts.dtype.kind == "i" and (alloc.counts >= 0).all()
            assert (alloc.counts.sum(axis=2) == k).all()
            np.testing.assert_allclose(alloc.weights.sum(axis=1), 1.0)
            assert (alloc.counts <= d.n[:, None, :]).all()


@SLOW
@given(
    d=arm_data(n=8, with_q=False),
    ks=st.lists(st.integers(1, 8), min_size=1, max_size=3, unique=True),
    limit=st.sampled_from([0, 10**6]),  # hill climbing / exhaustive
)
def test_static_fit_is_never_below_free_or_uniform_on_its_data(d, ks, limit):
    static = fit_static(d, ks, exhaustive_limit=limit)
    for k in ks:
        s = mean_pass(d, static.allocate(d, k))
        assert s >= mean_pass(d, FreePolicy().allocate(d, k)) - 1e-12
        assert s >= mean_pass(d, UniformPolicy().allocate(d, k)) - 1e-12


@settings(max_examples=25, deadline=None)
@given(d=arm_data(n=5, n_modes=2, max_problems=6, with_q=False), k=st.integers(1, 5))
def test_static_fit_is_the_best_of_all_allocations_on_three_arms(d, k):
    best = max(
        mean_pass(
            d, Allocation.fixed(np.broadcast_to(np.array([i, j, k - i - j]), (d.n_problems, 3)))
        )
        for i in range(k + 1)
        for j in range(k + 1 - i)
    )
    assert mean_pass(d, fit_static(d, [k]).allocate(d, k)) == pytest.approx(best, abs=1e-12)


@SLOW
@given(d=arm_data(n=6), ks=st.lists(st.integers(1, 6), min_size=1, max_size=3, unique=True))
def test_oracle_is_at_least_every_policy_on_every_problem(d, ks):
    oracle = OraclePolicy()
    assert oracle.upper_bound and not any(
        p.upper_bound for p in fitted(d, ks) if p.name != "oracle"
    )
    for k in ks:
        top = allocation_pass_at_k(d, oracle.allocate(d, k))
        for policy in fitted(d, ks):
            assert (allocation_pass_at_k(d, policy.allocate(d, k)) <= top + 1e-12).all(), (
                policy.name
            )
        # ... and every fixed allocation at all, not only the listed policies
        for split in product(range(k + 1), repeat=len(d.arms)):
            if sum(split) == k:
                alloc = Allocation.fixed(
                    np.broadcast_to(np.array(split), (d.n_problems, len(split)))
                )
                assert (allocation_pass_at_k(d, alloc) <= top + 1e-12).all()


def test_preference_follows_or_inverts_q():
    q = np.array([[0.9, 0.1], [0.2, 0.8]])
    d = ArmCounts((FREE, "dfs", "bfs"), np.full((2, 3), 8), np.zeros((2, 3), dtype=int), q)
    follow = preference_counts(d, 8, 0.0, 1.0)
    invert = preference_counts(d, 8, 0.0, -1.0)
    even = preference_counts(d, 8, 0.25, 0.0)
    assert (follow[:, 0] == 0).all() and follow[0, 1] > follow[0, 2] and follow[1, 2] > follow[1, 1]
    assert invert[0, 2] > invert[0, 1] and invert[1, 1] > invert[1, 2]
    np.testing.assert_array_equal(even, [[2, 3, 3], [2, 3, 3]])
    policy = PreferencePolicy({8: (0.0, -1.0)})
    np.testing.assert_array_equal(policy.allocate(d, 8).counts[:, 0], invert)


def test_preference_fit_picks_inversion_when_the_model_under_samples_the_winning_mode():
    # The model prefers the mode that fails: following q loses, inverting it wins.
    rng = np.random.default_rng(0)
    p = 200
    good = rng.integers(0, 2, p)  # which forced mode solves problem x
    q = np.where(good[:, None] == np.arange(2), 0.1, 0.9)
    c = np.zeros((p, 3), dtype=int)
    c[np.arange(p), 1 + good] = 8
    d = ArmCounts((FREE, "dfs", "bfs"), np.full((p, 3), 16), c, q)
    policy = fit_preference(d, [1, 4])
    assert policy.params[1][1] < 0 and policy.params[1][0] == 0.0
    assert mean_pass(d, policy.allocate(d, 1)) > mean_pass(d, UniformPolicy().allocate(d, 1)) + 0.2


def test_static_picks_free_where_free_is_better():
    # Free sampling solves 60% of samples everywhere; each forced mode 100% on half the problems.
    p = 100
    c = np.zeros((p, 3), dtype=int)
    c[:, 0] = 6
    c[: p // 2, 1] = 10
    c[p // 2 :, 2] = 10
    d = ArmCounts((FREE, "dfs", "bfs"), np.full((p, 3), 10), c)
    static = fit_static(d, [1, 2])
    assert static.table[1] == {FREE: 1, "dfs": 0, "bfs": 0}  # 0.6 > uniform's 0.5
    assert static.table[2] == {FREE: 0, "dfs": 1, "bfs": 1}  # 1.0 > free's 0.87


def test_bad_inputs_fail_clearly():
    n = np.full((2, 3), 4)
    with pytest.raises(ValueError, match="c <= n"):
        ArmCounts((FREE, "a", "b"), n, n + 1)
    with pytest.raises(ValueError, match=r"\(problems, 3\)"):
        ArmCounts((FREE, "a", "b"), n[:, :2], n[:, :2])
    with pytest.raises(ValueError, match="sum to 1"):
        ArmCounts((FREE, "a", "b"), n, n, np.full((2, 2), 0.3))
    no_free = ArmCounts(("a", "b"), n[:, :2], n[:, :2])
    with pytest.raises(ValueError, match="no 'free' arm"):
        FreePolicy().allocate(no_free, 2)
    with pytest.raises(ValueError, match="needs q"):
        preference_counts(no_free, 2, 0.0, 1.0)
    with pytest.raises(ValueError, match="not k=3"):
        StaticPolicy({2: {"a": 2}}).allocate(no_free, 3)
    with pytest.raises(ValueError, match="k > n"):
        allocation_pass_at_k(no_free, Allocation.fixed(np.array([[5, 0], [5, 0]])))


def test_concat_arm_counts_stacks_problems():
    a = ArmCounts((FREE, "x"), np.full((2, 2), 4), np.ones((2, 2), dtype=int), np.ones((2, 1)))
    b = ArmCounts((FREE, "x"), np.full((3, 2), 4), np.zeros((3, 2), dtype=int), np.ones((3, 1)))
    both = concat_arm_counts([a, b])
    assert both.n_problems == 5 and both.c.sum() == 4 and both.q.shape == (5, 1)
    with pytest.raises(ValueError, match="same arms"):
        concat_arm_counts([a, ArmCounts(("x",), a.n[:, 1:], a.c[:, 1:])])
    with pytest.raises(ValueError, match="some parts but not all"):
        concat_arm_counts([a, ArmCounts(a.arms, a.n, a.c)])
