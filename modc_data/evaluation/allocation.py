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

Policies (``Policy`` protocol):
- ``FreePolicy``: all k on free sampling (the model's own allocation).
- ``StandardPolicy``: all k on the standard model's samples (arm ``STANDARD``, where present:
  the product owns both models, so a split may also spend samples on the standard model).
- ``UniformPolicy``: today's ModC, k split evenly over the forced modes.
- ``StaticPolicy``: one allocation over the arms per k, the same for every problem.
- ``PreferencePolicy``: per problem from q(m|x): a share ``f`` of k on free sampling, the rest
  over forced modes with weights ∝ q̃(m|x)^β (β < 0: more samples for modes the model
  under-samples; β = 0: even; β > 0: follow the model); ``(f, β)`` per k.
- ``OraclePolicy``: all k on the arm with the best pass@k per problem, read from the very samples
  it is scored on — an upper bound, flagged ``upper_bound = True``, never a product choice.

What it leaves out: fitting static and preference on validation data and choosing among the
policies (``allocation_selection``), building ``ArmCounts`` from sample rows
(``allocation_counts``), scoring the policies on test (``allocation_scores``) and rendering them
(``allocation_report``).

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
(checked by brute-force enumeration in tests/test_allocation.py), and
``allocation_selection.fit_static`` already searches those. Per-problem gains need per-problem
information, such as q(m|x).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from modc_data.budget import FREE, STANDARD, preference_split, uniform_allocations
from modc_data.evaluation.passk import fail_ratio

# STANDARD (modc_data.budget) is not a mode, so uniform and q leave it out; static, preference
# (its free share, where the model itself cannot sample freely) and the oracle can use it.


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


def corner_counts(data: ArmCounts, arm: int, k: int) -> np.ndarray:
    """(P, A) counts with all k on column ``arm`` for every problem."""
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
        return Allocation.fixed(corner_counts(data, data.arms.index(self.arm), k))


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
    """One allocation per k over named arms, the same for every problem
    (``allocation_selection.fit_static``)."""

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
    """Mean over problems of ``allocation_pass_at_k``."""
    return float(allocation_pass_at_k(data, alloc).mean())



def policy_pass_at_k(policy: Policy, data: ArmCounts, ks: Sequence[int]) -> np.ndarray:
    """Per-problem pass@k of ``policy`` on ``data``: (P, K)."""
    return np.stack([allocation_pass_at_k(data, policy.allocate(data, k)) for k in ks], axis=1)


__all__ = [
    "FREE",
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
    "corner_counts",
    "mean_pass",
    "policy_pass_at_k",
    "preference_counts",
]
