"""The sampling budget: how k samples are split over a model's arms, in one place.

What it handles: the names of the two arms that are not modes (``FREE``: a model sampled with no
mode token; ``STANDARD``: the arm's standard model beside a ModC one), the uniform split of ModC
(``k // M`` per mode, the remainder to the first ``k % M`` modes), every equally likely uniform
allocation (what the pass@k estimator averages over), and a split by weights with
largest-remainder rounding, and the per-prompt preference split on q(m|x). The sampler (``ModCSampler``) and evaluation both import it; it
imports neither. What it leaves out: choosing an allocation (``evaluation.allocation_selection``) and
sampling (``sampler``, ``sampling``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np

from modc_data.errors import InputError

FREE = "free"  # the arm with no mode token: a standard model, or a prefix model choosing its mode
# the arm that is another model's free sampling: the standard model trained on the same rows and
# steps, loaded beside a ModC one. Not a mode (no forced share), so the uniform split leaves it out.
STANDARD = "standard"
# Smoothing of q before the power β: q̃ = (1 - λ) q + λ / M, so a mode the model never picked
# (q = 0, e.g. from a handful of free samples) gets a finite weight under β < 0.
PREFERENCE_SMOOTHING = 0.1


def split_budget(k: int, modes: Sequence[str], split: str | Mapping[str, float] = "uniform"
                 ) -> dict[str, int]:
    """Samples per mode, summing to ``k``.

    ``uniform``: ``k // M`` each, the remainder to the first ``k % M`` modes in ``modes`` order.
    A dict of weights (>= 0, any positive sum; missing modes weigh 0): largest-remainder
    rounding of ``k * w / sum(w)``, ties to the earlier mode, so every count is within 1 of its
    exact share. Deterministic: same inputs, same counts.
    """
    if k < 0:
        raise InputError(f"k must be >= 0, got {k}")
    if not modes:
        raise InputError("split_budget needs at least one mode")
    if split == "uniform":
        q, r = divmod(k, len(modes))
        return {m: q + (1 if i < r else 0) for i, m in enumerate(modes)}
    if not isinstance(split, Mapping):
        raise InputError(f"split must be 'uniform' or a dict of mode weights, got {split!r}")
    unknown = sorted(set(split) - set(modes))
    if unknown:
        raise InputError(f"split names unknown modes {unknown}; the model's modes are {list(modes)}")
    w = [float(split.get(m, 0.0)) for m in modes]
    if any(x < 0 or math.isnan(x) for x in w) or sum(w) <= 0:
        raise InputError(f"split weights must be >= 0 with a positive sum, got {dict(split)}")
    exact = [k * x / sum(w) for x in w]
    counts = [math.floor(e) for e in exact]
    order = sorted(range(len(modes)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: k - sum(counts)]:
        counts[i] += 1
    return dict(zip(modes, counts, strict=True))


def uniform_split(k: int, n_modes: int) -> np.ndarray:
    """One allocation of ``k`` samples over ``n_modes`` modes: ``k // M`` each, the remainder to
    the first ``k % M`` modes. Shape (M,), sums to k. The estimator averages over which modes
    get the extra sample (``uniform_allocations``); this is the representative allocation."""
    if n_modes < 1 or k < 0:
        raise ValueError(f"uniform_split: need k >= 0 and n_modes >= 1, got k={k}, M={n_modes}")
    q, r = divmod(k, n_modes)
    out = np.full(n_modes, q, dtype=np.int64)
    out[:r] += 1
    return out


def uniform_allocations(k: int, n_modes: int) -> np.ndarray:
    """All equally likely even allocations of ``k`` over ``n_modes`` modes, shape (C(M, r), M),
    where r = k % M: every choice of the r modes that draw one extra sample."""
    q, r = divmod(k, n_modes)
    rows = []
    for extra in combinations(range(n_modes), r):
        a = np.full(n_modes, q, dtype=np.int64)
        a[list(extra)] += 1
        rows.append(a)
    return np.stack(rows)


def preference_split(
    q: np.ndarray, k: int, free_share: float, beta: float
) -> tuple[int, np.ndarray]:
    """The preference rule on q(m|x) alone, as ``ModCSampler`` applies it per prompt: ``k_free =
    round(f k)`` free samples and (P, M) forced counts ∝ q̃^β summing to ``k - k_free`` per row
    (largest remainder; ties to the earlier mode). ``q``: (P, M) rows summing to 1."""
    if not 0.0 <= free_share <= 1.0:
        raise ValueError(f"preference: free share must lie in [0, 1], got {free_share}")
    q = np.atleast_2d(np.asarray(q, dtype=float))
    k_free = int(np.floor(free_share * k + 0.5))
    m = q.shape[1]
    q = (1.0 - PREFERENCE_SMOOTHING) * q + PREFERENCE_SMOOTHING / m
    w = q**beta
    exact = (k - k_free) * w / w.sum(axis=1, keepdims=True)
    base = np.floor(exact).astype(np.int64)
    short = (k - k_free) - base.sum(axis=1)  # samples still to hand out, per problem
    # Largest remainder first; a stable sort keeps ties in mode order.
    order = np.argsort(-(exact - base), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(m)[None, :].repeat(len(order), 0), axis=1)
    return k_free, base + (rank < short[:, None])
