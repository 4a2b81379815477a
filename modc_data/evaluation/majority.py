"""Majority-vote accuracy maj@k from n samples per problem: unbiased, exact, plain and ModC split.

    groups = answer_groups([answers], [correct])          # one problem, one sampler
    maj_at_k(groups, [1, 4, 16, 64])                      # -> (4,) floats in [0, 1]
    curves = majority_curves(samples, ks=[1, 4, 16, 64], task="math")

Definition. Draw a uniformly random size-k subset of the n samples (without replacement); the
subset's most frequent final answer is its prediction. It scores 1 when that answer is correct,
and a tie between t answers of which r are correct scores r / t (the tie is broken uniformly at
random). Samples with no final answer (``""`` or null) are drawn but do not vote; a subset with
no vote scores 0. maj@k is the expectation of that score over all C(n, k) subsets, the unbiased
estimate of the majority-vote accuracy of k fresh samples, as ``pass_at_k`` is for pass@k.
ModC split (``maj_at_k_split``): k_m samples from each mode m's n_m samples, the answers pooled
across modes before the vote; k_m is the uniform split k/M with the remainder averaged over
which modes get the extra sample, exactly as ``passk.pass_at_k_modc``. With one mode it is maj@k.

Answers. Samples vote by their extracted answer string, except that every correct answer is one
group: all of them equal the gold answer, so they equal each other (math-verify counts
``1/2`` and ``\\frac{1}{2}`` as the same answer, string equality would split their vote). Wrong
answers are grouped by string, which can only split wrong votes, never correct ones.

Why not Countdown: its target is given, and the "answer" is the whole expression; distinct correct
expressions (``3 + 4 = 7`` and ``4 + 3 = 7``) are different answers, so a majority over
expressions splits the correct vote among rewritings, and a vote over "target reached" is pass@k
again. ``majority_curves`` refuses ``task="countdown"`` with that reason.

Computation (written here: no library computes majority-vote expectations). Enumerating subsets is
C(64, 32) ~ 1.8e18 at n = 64; instead, by linearity, maj@k = Σ over correct groups a, over its
vote count m >= 1, of the number of subsets where a gets m votes, every other group at most m,
and τ of them exactly m, weighted 1/(τ + 1), divided by C(n, k). Those counts are coefficients of
a product of generating polynomials, one factor per answer group: a group with fewer than m
samples can never reach m, so all of them (and the non-voting samples) fold into one binomial
``(1 + z)^s``; a group with c >= m contributes ``Σ_{x<m} C(c,x) z^x + C(c,m) z^m y`` (y counts the
ties). One pass gives the coefficients for every k at once, and over all m costs O(n) factor
products per correct group. With M modes z becomes (z_1..z_M), one variable per mode, so a
pass gives every allocation (k_1..k_M) at once. Counts are float64 sums of positive terms
(relative error ~1e-14); C(n, k) must stay below ~1e300, which holds for n <= 1000 per mode.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import ArrayLike

from modc_data.budget import uniform_allocations
from modc_data.evaluation.bootstrap import percentile_interval, resample_indices

NOT_APPLICABLE = {
    "countdown": "Countdown answers are expressions for a given target: distinct correct "
    "expressions would split the vote (see modc_data.evaluation.majority)",
}
_MAX_LOG10_COUNT = 300.0  # float64 holds subset counts up to ~1e308


@dataclass(frozen=True)
class AnswerGroups:
    """One problem's samples grouped by final answer.

    counts: (G, M) samples of answer g drawn in mode m; correct: (G,) whether answer g is right;
    abstain: (M,) samples per mode without a final answer (they are drawn but do not vote).
    """

    counts: np.ndarray
    correct: np.ndarray
    abstain: np.ndarray

    @property
    def n(self) -> np.ndarray:
        """(M,) samples per mode."""
        return self.counts.sum(axis=0) + self.abstain


def answer_groups(
    answers: Sequence[Sequence[str | None]], correct: Sequence[Sequence[bool]]
) -> AnswerGroups:
    """Group one problem's samples: ``answers[m][i]``, ``correct[m][i]`` for sample i of mode m.

    Pass one list per mode (one list for a plain sampler). All correct samples form one group
    (see the module docstring); ``""`` and None abstain.
    """
    if len(answers) != len(correct) or not answers:
        raise ValueError("answer_groups: need one answers list and one correct list per mode")
    keys: dict[tuple[bool, str], int] = {}
    rows: list[list[int]] = []
    abstain = np.zeros(len(answers), dtype=np.int64)
    for m, (ans_m, cor_m) in enumerate(zip(answers, correct, strict=True)):
        if len(ans_m) != len(cor_m):
            raise ValueError(f"answer_groups: mode {m} has {len(ans_m)} answers, {len(cor_m)} verdicts")
        for a, ok in zip(ans_m, cor_m, strict=True):
            if not ok and (a is None or a == ""):
                abstain[m] += 1
                continue
            key = (True, "") if ok else (False, a)
            if key not in keys:
                keys[key] = len(rows)
                rows.append([0] * len(answers))
            rows[keys[key]][m] += 1
    counts = np.array(rows, dtype=np.int64).reshape(len(rows), len(answers))
    flags = np.array([ok for ok, _ in keys], dtype=bool)
    return AnswerGroups(counts, flags, abstain)


# --------------------------------------------------------------------------- exact counts
def _binom(n: int, kmax: int) -> np.ndarray:
    """C(n, j) for j = 0..kmax as float64 (exact integers, rounded once)."""
    return np.array([float(math.comb(n, j)) for j in range(kmax + 1)])


def _terms(c: np.ndarray, kmax: np.ndarray, m: int):
    """(x, C(c, x) product, sum(x)) for every per-mode draw x <= c, x <= kmax with sum(x) <= m."""
    tables = [_binom(int(ci), int(min(ci, ki))) for ci, ki in zip(c, kmax, strict=True)]
    for x in itertools.product(*(range(len(t)) for t in tables)):
        s = sum(x)
        if s <= m:
            yield x, math.prod(t[xi] for t, xi in zip(tables, x, strict=True)), s


def _shifted(x: Sequence[int]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Index pairs (dst, src) that add a source tensor shifted by x along the mode axes."""
    dst = tuple(slice(xi, None) for xi in x)
    src = tuple(slice(None, -xi) if xi else slice(None) for xi in x)
    return dst, src


def _capped_factor(state: np.ndarray, c: np.ndarray, kmax: np.ndarray, m: int) -> np.ndarray:
    """Multiply ``state`` (mode axes..., ties) by one group's polynomial with votes capped at m."""
    out = np.zeros_like(state)
    for x, w, s in _terms(c, kmax, m):
        dst, src = _shifted(x)
        if s < m:
            out[dst] += w * state[src]
        else:  # exactly m votes: one more tie
            out[dst + (slice(1, None),)] += w * state[src + (slice(None, -1),)]
    return out


def _win_counts(groups: AnswerGroups, kmax: np.ndarray) -> np.ndarray:
    """Σ over size-(k_1..k_M) draws of the vote score, for every k_m <= kmax[m]: shape kmax + 1."""
    counts, abstain = groups.counts, groups.abstain
    total = counts.sum(axis=1)
    shape = tuple(int(k) + 1 for k in kmax)
    wins = np.zeros(shape)
    for a in np.flatnonzero(groups.correct):
        others = [g for g in range(len(counts)) if g != a]
        for m in range(1, int(min(total[a], kmax.sum())) + 1):
            capped = [g for g in others if total[g] >= m]
            free = abstain + sum((counts[g] for g in others if total[g] < m), np.zeros_like(abstain))
            state = np.zeros(shape + (len(capped) + 1,))
            binoms = [_binom(int(f), int(k)) for f, k in zip(free, kmax, strict=True)]
            state[..., 0] = functools.reduce(np.multiply.outer, binoms)
            for g in capped:
                state = _capped_factor(state, counts[g], kmax, m)
            rest = state @ (1.0 / np.arange(1, len(capped) + 2))  # ties split evenly
            for x, w, s in _terms(counts[a], kmax, m):
                if s == m:
                    dst, src = _shifted(x)
                    wins[dst] += w * rest[src]
    return wins


def maj_at_k_allocations(groups: AnswerGroups, allocations: ArrayLike) -> np.ndarray:
    """maj@k for each row of ``allocations`` (A, M): k_m samples drawn from mode m -> (A,)."""
    alloc = np.atleast_2d(np.asarray(allocations, dtype=np.int64))
    n = groups.n
    if alloc.shape[1] != len(n):
        raise ValueError(f"maj@k: allocations have {alloc.shape[1]} modes, the samples {len(n)}")
    if np.any(alloc < 0) or np.any(alloc > n):
        raise ValueError(f"maj@k: every k_m must be in 0..n_m = {n.tolist()}, got {alloc.tolist()}")
    log10_max = sum(math.log10(math.comb(int(nm), int(nm) // 2)) for nm in n)
    if log10_max > _MAX_LOG10_COUNT:
        raise ValueError(f"maj@k: n = {n.tolist()} samples per mode is too many for float64 counts")
    wins = _win_counts(groups, alloc.max(axis=0))
    # float64 like the win counts: C(n, k) passes int64 from n = 67 on (an object array then)
    denom = np.array([float(math.prod(math.comb(int(nm), int(k)) for nm, k in zip(n, row, strict=True)))
                      for row in alloc], dtype=np.float64)
    return np.asarray(wins[tuple(alloc.T)], dtype=np.float64) / denom


def maj_at_k(groups: AnswerGroups, ks: ArrayLike) -> np.ndarray:
    """Plain maj@k of a one-mode ``groups`` for every k in ``ks`` -> (K,)."""
    if groups.counts.shape[1] != 1:
        raise ValueError("maj_at_k: groups have several modes; use maj_at_k_split")
    return maj_at_k_allocations(groups, np.asarray(ks, dtype=np.int64).reshape(-1, 1))


def maj_at_k_split(groups: AnswerGroups, ks: ArrayLike) -> np.ndarray:
    """ModC maj@k: the uniform split of each total k over the modes (remainder averaged) -> (K,)."""
    m = groups.counts.shape[1]
    allocs = [uniform_allocations(int(k), m) for k in np.asarray(ks, dtype=np.int64).ravel()]
    values = maj_at_k_allocations(groups, np.concatenate(allocs))  # one pass for every k
    ends = np.cumsum([len(a) for a in allocs])
    return np.array([v.mean() for v in np.split(values, ends[:-1])])


def smallest_k(ks: Sequence[int], values: Sequence[float], target: float) -> int | None:
    """Smallest budget in ``ks`` whose curve value reaches ``target`` (ADAPT's "N to reach an
    accuracy"); None when no k does. ``ks`` ascending, one value per k."""
    if len(ks) != len(values):
        raise ValueError(f"smallest_k: {len(ks)} budgets but {len(values)} values")
    if list(ks) != sorted(ks):
        raise ValueError(f"smallest_k: ks must ascend, got {list(ks)}")
    return next((int(k) for k, v in zip(ks, values, strict=True) if v >= target), None)


# --------------------------------------------------------------------------- samples table
def majority_per_problem(samples: pl.DataFrame, ks: Sequence[int]) -> dict[tuple[str, str], tuple[list[str], np.ndarray]]:
    """{(model, split): (problem ids sorted, maj@k (P, K))} from a samples table.

    A model whose rows carry no mode (standard) is scored by plain maj@k over its n samples; one
    with modes (prefix, experts) by the ModC split over its modes (sorted), k/M from each.
    """
    out = {}
    for (model, split), rows in sorted(samples.group_by(["model", "split"]), key=lambda kv: kv[0]):
        modes = sorted(rows["mode"].unique().to_list())
        pids, values = [], []
        for (pid,), prob in sorted(rows.group_by(["problem_id"]), key=lambda kv: kv[0]):
            per_mode = [prob.filter(pl.col("mode") == m) for m in modes]
            groups = answer_groups([r["answer"].to_list() for r in per_mode], [r["correct"].to_list() for r in per_mode])
            pids.append(pid)
            values.append(maj_at_k_split(groups, ks) if len(modes) > 1 else maj_at_k(groups, ks))
        out[(model, split)] = (pids, np.stack(values))
    return out


def majority_curves(
    samples: pl.DataFrame,
    ks: Sequence[int],
    *,
    task: str,
    n_resamples: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    targets: Sequence[float] = (),
) -> pl.DataFrame:
    """maj@k curves with percentile bootstrap CIs over problems, one row per (model, split, k).

    Columns: model, split, scheme ("plain" | "modc"), k, maj_at_k, low, high, n_problems, and
    ``k_to_<target>`` (smallest k reaching each of ``targets``, null if none; same on every row
    of a curve). Raises ValueError for tasks where majority voting does not apply.
    """
    if task in NOT_APPLICABLE:
        raise ValueError(f"maj@k does not apply to task {task!r}: {NOT_APPLICABLE[task]}")
    ks = sorted(set(int(k) for k in ks))
    records = []
    for (model, split), (pids, values) in majority_per_problem(samples, ks).items():
        rows = samples.filter((pl.col("model") == model) & (pl.col("split") == split))
        scheme = "modc" if rows["mode"].n_unique() > 1 else "plain"
        iv = percentile_interval(values, resample_indices(len(pids), n_resamples, seed), ci)
        reach = {f"k_to_{t:g}": smallest_k(ks, iv.estimate.tolist(), t) for t in targets}
        for i, k in enumerate(ks):
            records.append({
                "model": model, "split": split, "scheme": scheme, "k": k,
                "maj_at_k": float(iv.estimate[i]), "low": float(iv.low[i]), "high": float(iv.high[i]),
                "n_problems": len(pids), **reach,
            })
    return pl.DataFrame(records)
