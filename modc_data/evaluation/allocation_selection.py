"""Choosing allocations on validation data: fitting the two policies that learn (static and
preference), scoring a fitted policy out of fold, and the validated choice among the policies
per k.

- ``fit_static``: one allocation over the arms per k, the same for every problem, maximising
  mean pass@k on the data it is fit on: every allocation scored when there are few (3 arms: 2145
  at k = 64), else steepest-ascent hill climbing (OSCA, Zhang et al. 2025) from the best corner
  or uniform component. Hand-written: no library fits this.
- ``fit_preference``: the preference rule's ``(f, β)`` per k from a grid.
- ``out_of_fold``: each validation problem scored by the policy fit on the other folds.
- ``select_policies``: at each k the best of the policies that need no fitting (free, uniform,
  and standard where the standard model's samples are an arm), replaced by a fitted one (static,
  preference) only where the fitted policy's *out-of-fold* validation score (fit on the other
  folds, ``CV_FOLDS``) beats it with the paired bootstrap CI above zero. A fitted policy scored
  on the problems it was fit on looks better than it is (the default run's 124-problem
  validation split made static at k = 8 lose 0.6 points to uniform on test); the guard keeps
  the product on the safe side of "never worse than free or uniform".

What it leaves out: the policies and their exact pass@k (``allocation``), scoring them on test
(``allocation_scores``) and rendering (``allocation_report``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import product
from math import comb
from typing import Any

import numpy as np

from modc_data.evaluation.allocation import (
    Allocation,
    ArmCounts,
    Policy,
    PreferencePolicy,
    StaticPolicy,
    UniformPolicy,
    corner_counts,
    mean_pass,
    policy_pass_at_k,
    preference_counts,
)
from modc_data.evaluation.bootstrap import paired_diff_interval
from modc_data.evaluation.passk import fail_ratio

FREE_SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)  # default grid of f for fit_preference
# default grid of β for fit_preference, simplest first: a tie keeps the smaller |β|
BETAS = (0.0, -0.5, 0.5, -1.0, 1.0, -2.0, 2.0)
EXHAUSTIVE_LIMIT = 20_000  # fit_static scores every allocation up to this many, else hill-climbs
# what "chosen" picks from; "standard" (all k on the standard model's samples) only where the
# arms hold the standard model (``STANDARD``): the product publishes both models of an arm
CANDIDATES = ("free", "uniform", "standard", "static", "preference")
SHIPPABLE = ("free", "uniform", "static")  # policies whose counts are the same for every prompt
SAFE = ("free", "uniform", "standard")  # nothing fit: chosen falls back to the best of these
CV_FOLDS = 5  # validation folds for the fitted policies' out-of-fold scores


def _compositions(k: int, caps: np.ndarray) -> np.ndarray:
    """Every allocation of k samples over len(caps) arms with arm a holding at most caps[a]:
    int array (C, A)."""
    rows: list[list[int]] = [[]]
    for i, cap in enumerate(caps):
        last = i == len(caps) - 1
        rows = [
            r + [j]
            for r in rows
            for j in ([k - sum(r)] if last else range(min(cap, k - sum(r)) + 1))
            if j <= cap
        ]
    return np.array(rows, dtype=np.int64).reshape(-1, len(caps))


def fit_static(
    data: ArmCounts, ks: list[int], exhaustive_limit: int = EXHAUSTIVE_LIMIT
) -> StaticPolicy:
    """Per k, the one allocation over the arms with the best mean pass@k on ``data``.

    Start: the best of every corner (all k on one arm, free sampling among them) and every
    component of the uniform split, so the fit is never below free or uniform on ``data`` (the
    uniform score is the mean of its components' scores). Then, when there are at most
    ``exhaustive_limit`` allocations (C(k + A - 1, A - 1): 2145 for 3 arms at k = 64), score them
    all and keep the best (exact); otherwise hill-climb: move one sample from arm i to arm j,
    taking the best improving move, until none improves (a local search: on random 3-arm data it
    misses the optimum in ~2% of cases). A candidate replaces the start only when strictly better.
    Arms are capped at the fewest samples any problem has on them.
    """
    a = len(data.arms)
    caps = data.n.min(axis=0)
    table: dict[int, dict[str, int]] = {}
    for k in ks:
        # failure chance per arm, problem and count j <= min(k, cap): tables[a][p, j]
        tables = [
            fail_ratio(data.n[:, i, None], data.c[:, i, None], np.arange(min(k, caps[i]) + 1))
            for i in range(a)
        ]

        def scores(allocs: np.ndarray, tables=tables) -> np.ndarray:
            """Mean pass@k of each allocation in ``allocs`` (C, A) -> (C,)."""
            out = np.empty(len(allocs))
            for lo in range(0, len(allocs), 256):  # (P, 256) floats at a time
                block = allocs[lo : lo + 256]
                fail = np.ones((data.n_problems, len(block)))
                for i in range(a):
                    fail *= tables[i][:, block[:, i]]
                out[lo : lo + 256] = 1.0 - fail.mean(axis=0)
            return out

        starts = [corner_counts(data, i, k)[0] for i in range(a) if caps[i] >= k]
        if data.forced:
            starts += [u for u in UniformPolicy().allocate(data, k).counts[0] if np.all(u <= caps)]
        if not starts:
            raise ValueError(f"fit_static: no arm holds k={k} samples on every problem (n={caps})")
        start_scores = scores(np.array(starts))
        best, best_score = starts[int(np.argmax(start_scores))], float(start_scores.max())
        if comb(k + a - 1, a - 1) <= exhaustive_limit:
            allocs = _compositions(k, caps)
            all_scores = scores(allocs)
            if all_scores.max() > best_score + 1e-12:
                best = allocs[int(np.argmax(all_scores))]
        else:
            while True:
                moves = []
                for i, j in product(range(a), range(a)):
                    if i != j and best[i] > 0 and best[j] < min(k, caps[j]):
                        cand = best.copy()
                        cand[i] -= 1
                        cand[j] += 1
                        moves.append(cand)
                if not moves:
                    break
                move_scores = scores(np.array(moves))
                if move_scores.max() <= best_score + 1e-12:
                    break
                best, best_score = moves[int(np.argmax(move_scores))], float(move_scores.max())
        table[k] = {arm: int(x) for arm, x in zip(data.arms, best, strict=True)}
    return StaticPolicy(table)


def fit_preference(
    data: ArmCounts,
    ks: list[int],
    free_shares: tuple[float, ...] = FREE_SHARES,
    betas: tuple[float, ...] = BETAS,
) -> PreferencePolicy:
    """Per k, the grid point (f, β) with the best mean pass@k on ``data`` (ties: first in grid,
    f outer, β inner, so with f = 1, where β does not matter, β = 0 is reported).

    Without a free or standard arm only f = 0 is tried (the free share goes to the free arm,
    else to the standard model's). The grid holds (1, ·) = free sampling, so the fit is
    never below free on ``data``; β = 0 is an even split with the remainder to the earlier modes.
    """
    shares = free_shares if data.unforced is not None else (0.0,)
    params: dict[int, tuple[float, float]] = {}
    for k in ks:
        grid = [(f, b) for f in shares for b in betas]
        scores = [
            mean_pass(data, Allocation.fixed(preference_counts(data, k, f, b))) for f, b in grid
        ]
        params[k] = grid[int(np.argmax(scores))]
    return PreferencePolicy(params)


def out_of_fold(
    fit: Callable[[ArmCounts, list[int]], Policy],
    data: ArmCounts,
    ks: Sequence[int],
    folds: int,
    seed: int,
) -> np.ndarray:
    """Per-problem pass@k (P, K) of a fitted policy, each problem scored by the policy ``fit`` on
    the other folds (seeded split of the problems into ``folds`` near-equal parts; at least 2,
    at most one problem a fold)."""
    ks = list(ks)
    p = data.n_problems
    folds = max(2, min(int(folds), p))
    if p < 2:
        raise ValueError(f"out_of_fold: need at least 2 validation problems, got {p}")
    parts = np.array_split(np.random.default_rng(seed).permutation(p), folds)
    out = np.empty((p, len(ks)))
    for held in parts:
        rest = np.setdiff1d(np.arange(p), held)
        policy = fit(data.take(rest), ks)
        out[held] = policy_pass_at_k(policy, data.take(held), ks)
    return out


def select_policies(
    val: dict[str, np.ndarray],
    oof: dict[str, np.ndarray],
    ks: Sequence[int],
    candidates: Sequence[str],
    idx: np.ndarray,
    ci: float,
) -> tuple[dict[int, str], dict[int, dict[str, Any]]]:
    """The validated choice per k among ``candidates``, and the evidence for it.

    ``val``: per-problem validation pass@k (P, K) of every scored policy (in-sample: the fitted
    ones were fit on these problems); ``oof``: the fitted policies' out-of-fold scores.
    At each k the baseline is the safe candidate (``SAFE``: nothing fit) with the best validation
    mean (ties: the earlier in ``candidates``). A fitted candidate replaces it only when its
    out-of-fold scores beat the baseline's with the paired bootstrap CI (``idx``, ``ci``) above
    zero; among several, the largest out-of-fold mean wins.
    """
    names = [c for c in candidates if c in val]
    safe = [c for c in names if c in SAFE] or names[:1]
    fitted = [c for c in names if c not in safe and c in oof]
    chosen: dict[int, str] = {}
    evidence: dict[int, dict[str, Any]] = {}
    for j, k in enumerate(ks):
        base = safe[0]
        for name in safe[1:]:
            if val[name][:, j].mean() > val[base][:, j].mean() + 1e-12:
                base = name
        best, best_gain = base, 0.0
        rows: dict[str, dict[str, float]] = {}
        for name in fitted:
            d = paired_diff_interval(oof[name][:, j], val[base][:, j], idx, ci)
            gain, low, high = float(d.estimate), float(d.low), float(d.high)
            rows[name] = {"oof_gain": gain, "ci_low": low, "ci_high": high}
            if low > 0 and gain > best_gain + 1e-12:
                best, best_gain = name, gain
        chosen[int(k)] = best
        evidence[int(k)] = {"baseline": base, "fitted": rows, "chosen": best}
    return chosen, evidence

