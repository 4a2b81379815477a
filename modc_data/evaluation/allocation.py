"""Allocation of a budget of k samples over M + 1 arms: the model's free sampling and each mode.

What goes in: ``ArmCounts`` — per problem and arm, ``n`` samples and ``c`` correct (shape (P, A)),
the arm names (``FREE`` first when the model can sample freely, then the forced modes) and
optionally the model's own mode preference ``q`` (P, M) over the forced modes. What comes out: a
policy's ``Allocation`` for a budget k — per problem, integer counts ``k_a(x) >= 0`` with
``sum_a k_a(x) = k`` — and its exact per-problem pass@k (``allocation_pass_at_k``):
``1 - Π_a C(n_a - c_a, k_a) / C(n_a, k_a)``, i.e. ``pass_at_k_split`` over the arm axis.

An ``Allocation`` may be randomised: J integer allocations per problem with weights summing to 1,
scored as the weighted mean. Only ``uniform`` needs this (k = qM + r, 0 < r < M: the r extra
samples go to uniformly random modes, exactly as ``passk.pass_at_k_modc``); every other policy is
deterministic (J = 1).

Policies (``Policy`` protocol; fit the two that learn on validation only):
- ``FreePolicy``: all k on free sampling (the model's own allocation).
- ``StandardPolicy``: all k on the standard model's samples (arm ``STANDARD``, where present:
  the product owns both models, so a split may also spend samples on the standard model).
- ``UniformPolicy``: today's ModC, k split evenly over the forced modes.
- ``StaticPolicy`` (``fit_static``): one allocation over the arms per k, the same for every
  problem, maximising mean pass@k on the data it is fit on: every allocation scored when there
  are few (3 arms: 2145 at k = 64), else steepest-ascent hill climbing (OSCA, Zhang et al. 2025)
  from the best corner or uniform component. Hand-written: no library fits this.
- ``PreferencePolicy`` (``fit_preference``): per problem from q(m|x): a share ``f`` of k on free
  sampling, the rest over forced modes with weights ∝ q̃(m|x)^β (β < 0: more samples for modes
  the model under-samples; β = 0: even; β > 0: follow the model); ``(f, β)`` per k from a grid.
- ``OraclePolicy``: all k on the arm with the best pass@k per problem, read from the very samples
  it is scored on — an upper bound, flagged ``upper_bound = True``, never a product choice.

Why the oracle bounds every allocation per problem: with f = n - c failures,
``g_a(j) = log C(f, j)/C(n, j) = Σ_{i<j} log((f-i)/(n-i))`` has decreasing increments, so it is
concave in j with ``g_a(0) = 0`` and lies above its chord: ``g_a(j) >= (j/k) g_a(k)`` for
0 <= j <= k <= n_a. Summing,
``Σ_a g_a(k_a) >= Σ_a (k_a/k) g_a(k) >= min_a g_a(k)``, so no split beats the best single arm
(given every arm holds at least k samples, as in the pipeline: n per arm >= every k).

Why no feedback-driven ("bandit") policy is listed: with a binary verifier and pass@k (stop at
the first verified success), a deterministic sequential policy that sees only success/failure
is a fixed schedule. The only path on which it spends all k samples is "all failures so far",
and along it every problem sees the same observations, so the arm sequence — hence the counts
k_a — is the same for every problem; any earlier success ends the episode as a success whatever
comes next. Its pass@k therefore equals that of the static allocation of its all-failure path
(checked by brute-force enumeration in tests/test_allocation.py), and ``fit_static`` already
searches those. Per-problem gains need per-problem information, such as q(m|x).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from math import comb
from typing import ClassVar, Protocol

import numpy as np

from modc_data.budget import FREE, STANDARD, preference_split, uniform_allocations
from modc_data.evaluation.passk import fail_ratio

# STANDARD (modc_data.budget) is not a mode, so uniform and q leave it out; static, preference
# (its free share, where the model itself cannot sample freely) and the oracle can use it.
FREE_SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)  # default grid of f for fit_preference
# default grid of β for fit_preference, simplest first: a tie keeps the smaller |β|
BETAS = (0.0, -0.5, 0.5, -1.0, 1.0, -2.0, 2.0)
EXHAUSTIVE_LIMIT = 20_000  # fit_static scores every allocation up to this many, else hill-climbs


@dataclass(frozen=True)
class ArmCounts:
    """Per-problem sample and correct counts for each sampling arm of one model on one split.

    ``arms``: arm names, ``FREE`` (if present), ``STANDARD`` (if present: the standard model's
    samples) and the forced modes, e.g. ('free', 'standard', 'dfs', 'bfs').
    ``n``, ``c``: int arrays (P, A), ``0 <= c <= n``. ``q``: optional (P, M) float, the model's
    preference over the forced modes in ``forced`` order, rows summing to 1.
    """

    arms: tuple[str, ...]
    n: np.ndarray
    c: np.ndarray
    q: np.ndarray | None = None

    def __post_init__(self) -> None:
        n, c = np.asarray(self.n), np.asarray(self.c)
        a = len(self.arms)
        if len(set(self.arms)) != a or a == 0:
            raise ValueError(f"ArmCounts.arms: need distinct arm names, got {self.arms}")
        if n.ndim != 2 or n.shape[1] != a or c.shape != n.shape:
            raise ValueError(
                f"ArmCounts: n and c must both be (problems, {a}) for arms {self.arms}, "
                f"got {n.shape} and {c.shape}"
            )
        if np.any(c < 0) or np.any(c > n):
            raise ValueError("ArmCounts: need 0 <= c <= n for every problem and arm")
        object.__setattr__(self, "n", n.astype(np.int64))
        object.__setattr__(self, "c", c.astype(np.int64))
        if self.q is not None:
            q = np.asarray(self.q, dtype=float)
            if q.shape != (n.shape[0], len(self.forced)):
                raise ValueError(
                    f"ArmCounts.q: must be (problems, {len(self.forced)}) over modes "
                    f"{self.forced_modes}, got {q.shape}"
                )
            if np.any(q < 0) or not np.allclose(q.sum(axis=1), 1.0, atol=1e-6):
                raise ValueError("ArmCounts.q: each problem's mode preference must sum to 1")
            object.__setattr__(self, "q", q)

    @property
    def n_problems(self) -> int:
        return self.n.shape[0]

    @property
    def free(self) -> int | None:
        """Column of the free arm, or None when the model cannot sample freely."""
        return self.arms.index(FREE) if FREE in self.arms else None

    @property
    def standard(self) -> int | None:
        """Column of the standard model's arm, or None."""
        return self.arms.index(STANDARD) if STANDARD in self.arms else None

    @property
    def unforced(self) -> int | None:
        """Where a free share goes: the model's own free arm, else the standard model's."""
        return self.free if self.free is not None else self.standard

    def without(self, arm: str) -> ArmCounts:
        """The same problems without one arm (e.g. the standard model's: one model's arms)."""
        if arm not in self.arms:
            return self
        keep = [i for i, a in enumerate(self.arms) if a != arm]
        return ArmCounts(tuple(self.arms[i] for i in keep), self.n[:, keep], self.c[:, keep],
                         self.q)

    @property
    def forced(self) -> list[int]:
        """Columns of the forced-mode arms."""
        return [i for i, a in enumerate(self.arms) if a not in (FREE, STANDARD)]

    @property
    def forced_modes(self) -> list[str]:
        return [self.arms[i] for i in self.forced]

    def take(self, problems: np.ndarray) -> ArmCounts:
        """The same arms on a subset of the problems (row indices, in that order)."""
        idx = np.asarray(problems, dtype=np.int64)
        return ArmCounts(self.arms, self.n[idx], self.c[idx], None if self.q is None else self.q[idx])


def concat_arm_counts(parts: list[ArmCounts]) -> ArmCounts:
    """Stack the problems of several splits (e.g. validation_adversarial and a natural validation
    slice, to fit on both); every part must have the same arms, and q on all or none."""
    if not parts or any(p.arms != parts[0].arms for p in parts):
        raise ValueError(
            f"concat_arm_counts: need parts with the same arms, got {[p.arms for p in parts]}"
        )
    qs = [p.q for p in parts]
    if any(q is None for q in qs) and not all(q is None for q in qs):
        raise ValueError("concat_arm_counts: q(m|x) is given for some parts but not all")
    return ArmCounts(
        parts[0].arms,
        np.concatenate([p.n for p in parts]),
        np.concatenate([p.c for p in parts]),
        None if qs[0] is None else np.concatenate(qs),
    )


@dataclass(frozen=True)
class Allocation:
    """Per-problem (possibly randomised) allocation of k samples over the arms.

    ``counts``: int (P, J, A), each row summing to k; ``weights``: (P, J), each row summing to 1.
    """

    counts: np.ndarray
    weights: np.ndarray

    @classmethod
    def fixed(cls, counts: np.ndarray) -> Allocation:
        """A deterministic allocation from (P, A) counts."""
        counts = np.asarray(counts, dtype=np.int64)
        return cls(counts[:, None, :], np.ones((counts.shape[0], 1)))

    @property
    def k(self) -> int:
        return int(self.counts[0, 0].sum()) if self.counts.size else 0

    def mean_counts(self) -> np.ndarray:
        """Expected samples per arm and problem, (P, A) float."""
        return np.einsum("pja,pj->pa", self.counts, self.weights)


def allocation_pass_at_k(data: ArmCounts, alloc: Allocation) -> np.ndarray:
    """Exact per-problem pass@k of ``alloc``: ``1 - Σ_j w_j Π_a C(n_a-c_a, k_a)/C(n_a, k_a)``.

    Returns (P,) float64. Same formula as ``passk.pass_at_k_modc``: the uniform policy reproduces
    it up to float summation order (~1e-16). Raises ValueError where some ``k_a > n_a``.
    """
    ratio = fail_ratio(data.n[:, None, :], data.c[:, None, :], alloc.counts)  # (P, J, A)
    return 1.0 - np.einsum("pj,pj->p", np.prod(ratio, axis=-1), alloc.weights)


class Policy(Protocol):
    """Maps a budget k and a split's arm data to per-problem counts over the arms."""

    name: str
    upper_bound: bool  # True only for bounds that read the scored samples (the oracle)

    def allocate(self, data: ArmCounts, k: int) -> Allocation: ...


def _corner(data: ArmCounts, arm: int, k: int) -> np.ndarray:
    out = np.zeros((data.n_problems, len(data.arms)), dtype=np.int64)
    out[:, arm] = k
    return out


@dataclass(frozen=True)
class _OneArmPolicy:
    """All k on the arm named ``arm``."""

    name: ClassVar[str]
    arm: ClassVar[str]
    upper_bound: ClassVar[bool] = False

    def allocate(self, data: ArmCounts, k: int) -> Allocation:
        if self.arm not in data.arms:
            raise ValueError(f"policy {self.name!r}: arms {data.arms} have no {self.arm!r} arm")
        return Allocation.fixed(_corner(data, data.arms.index(self.arm), k))


@dataclass(frozen=True)
class FreePolicy(_OneArmPolicy):
    """All k on the model's own (free) sampling."""

    name: ClassVar[str] = "free"
    arm: ClassVar[str] = FREE


@dataclass(frozen=True)
class StandardPolicy(_OneArmPolicy):
    """All k on the standard model's samples (its pass@k, as a policy among the others)."""

    name: ClassVar[str] = "standard"
    arm: ClassVar[str] = STANDARD


@dataclass(frozen=True)
class UniformPolicy:
    """Today's ModC: k split evenly over the forced modes, extra samples to random modes."""

    name: ClassVar[str] = "uniform"
    upper_bound: ClassVar[bool] = False

    def allocate(self, data: ArmCounts, k: int) -> Allocation:
        forced = uniform_allocations(k, len(data.forced))  # (J, M), equally likely
        counts = np.zeros((data.n_problems, len(forced), len(data.arms)), dtype=np.int64)
        counts[:, :, data.forced] = forced
        weights = np.full((data.n_problems, len(forced)), 1.0 / len(forced))
        return Allocation(counts, weights)


@dataclass(frozen=True)
class StaticPolicy:
    """One allocation per k over named arms, the same for every problem (see ``fit_static``)."""

    table: dict[int, dict[str, int]]  # k -> {arm: samples}
    name: ClassVar[str] = "static"
    upper_bound: ClassVar[bool] = False

    def allocate(self, data: ArmCounts, k: int) -> Allocation:
        if k not in self.table:
            raise ValueError(f"policy 'static' was fit for k in {sorted(self.table)}, not k={k}")
        want = self.table[k]
        missing = sorted(a for a, m in want.items() if m > 0 and a not in data.arms)
        if missing:
            raise ValueError(f"policy 'static' uses arms {missing} that {data.arms} lack")
        row = np.array([want.get(a, 0) for a in data.arms], dtype=np.int64)
        return Allocation.fixed(np.broadcast_to(row, (data.n_problems, len(row))))


@dataclass(frozen=True)
class PreferencePolicy:
    """Per problem from q(m|x): ``round(f k)`` free samples, the rest over forced modes with
    weights ∝ q̃^β (largest-remainder rounding, ties to the earlier mode).
    ``params``: k -> (f, β).
    """

    params: dict[int, tuple[float, float]]
    name: ClassVar[str] = "preference"
    upper_bound: ClassVar[bool] = False

    def allocate(self, data: ArmCounts, k: int) -> Allocation:
        if k not in self.params:
            raise ValueError(f"policy 'preference' was fit for k in {sorted(self.params)}, not {k}")
        f, beta = self.params[k]
        return Allocation.fixed(preference_counts(data, k, f, beta))


@dataclass(frozen=True)
class OraclePolicy:
    """All k on the arm with the best sampled pass@k per problem — an upper bound only."""

    name: ClassVar[str] = "oracle"
    upper_bound: ClassVar[bool] = True

    def allocate(self, data: ArmCounts, k: int) -> Allocation:
        ratio = fail_ratio(data.n, data.c, k)  # (P, A): each arm's failure chance with all k
        best = np.argmin(ratio, axis=1)
        counts = np.zeros_like(data.n)
        counts[np.arange(data.n_problems), best] = k
        return Allocation.fixed(counts)


def preference_counts(data: ArmCounts, k: int, free_share: float, beta: float) -> np.ndarray:
    """(P, A) counts of the preference rule with free share ``free_share`` and exponent ``beta``."""
    if data.q is None:
        raise ValueError("policy 'preference' needs q(m|x): ArmCounts.q is None")
    if data.unforced is None and free_share > 0:
        raise ValueError(f"preference: free share {free_share} > 0 but no {FREE!r} or "
                         f"{STANDARD!r} arm")
    k_free, forced = preference_split(data.q, k, free_share, beta)
    counts = np.zeros((data.n_problems, len(data.arms)), dtype=np.int64)
    if data.unforced is not None:  # the model's own free arm, else the standard model's
        counts[:, data.unforced] = k_free
    counts[:, data.forced] = forced
    return counts


def mean_pass(data: ArmCounts, alloc: Allocation) -> float:
    return float(allocation_pass_at_k(data, alloc).mean())


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

        starts = [_corner(data, i, k)[0] for i in range(a) if caps[i] >= k]
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


__all__ = [
    "BETAS",
    "FREE",
    "FREE_SHARES",
    "Allocation",
    "ArmCounts",
    "FreePolicy",
    "OraclePolicy",
    "STANDARD",
    "StandardPolicy",
    "Policy",
    "PreferencePolicy",
    "StaticPolicy",
    "UniformPolicy",
    "allocation_pass_at_k",
    "concat_arm_counts",
    "fit_preference",
    "fit_static",
    "mean_pass",
    "preference_counts",
]
