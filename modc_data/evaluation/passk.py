"""Unbiased pass@k estimators: plain (one sampler) and ModC split (k_m samples from each mode).

What goes in: sample counts ``n`` and correct counts ``c`` as integer numpy arrays (any shape that
broadcasts with ``k``). What comes out: float64 arrays of pass@k in [0, 1].

- ``pass_at_k(n, c, k)``: ``1 - C(n-c, k) / C(n, k)`` (Chen et al. 2021), the probability that a
  uniformly random size-k subset of the n samples holds at least one correct one.
- ``pass_at_k_split(n, c, k)``: ModC, ``1 - Π_m C(n_m-c_m, k_m) / C(n_m, k_m)``; ``n``, ``c`` and
  ``k`` carry a trailing mode axis.
- ``pass_at_k_modc(n, c, ks)`` (the allocations: ``budget.uniform_allocations``): the uniform budget split ``k_m = k/M``
  for every total k in one vectorised call, also when M does not divide k (see below).
- ``pass_at_k_from_p`` / ``pass_at_k_split_from_p``: population values ``1 - Π (1-p_m)^{k_m}``
  for known success rates (theory curves and tests).

The binomial ratio is computed in log space with ``gammaln`` (never raw binomials, which overflow
at n ~ 1000). ``k > n`` raises ValueError: the unbiased estimator is undefined there, and a silent
nan would turn into a wrong curve after averaging over problems.

Remainder rule (our choice, written by hand: no library defines it): when k = qM + r with
0 < r < M, r modes draw q+1 samples and the others q. Which r modes get the extra sample is
uniformly random, so the estimator is the *average* over all C(M, r) such allocations. That is
the exact pass@k of "split k as evenly as possible, extra samples to random modes", symmetric in
the modes, and it reduces to the uniform mixture's pass@1 at k = 1.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import gammaln

from modc_data.budget import uniform_allocations


def _as_counts(x: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError(f"{name}: counts must be whole numbers, got {a.ravel()[:5]}…")
        a = a.astype(np.int64)
    elif a.dtype.kind not in "iub":
        raise ValueError(f"{name}: counts must be integers, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if np.any(a < 0):
        raise ValueError(f"{name}: counts must be >= 0, got min {a.min()}")
    return a


def fail_ratio(n: ArrayLike, c: ArrayLike, k: ArrayLike) -> np.ndarray:
    """``C(n-c, k) / C(n, k)``: probability that a random size-k subset holds no correct sample.

    Broadcasts ``n``, ``c``, ``k``; raises ValueError when ``c > n`` or ``k > n`` anywhere.
    """
    n, c, k = (_as_counts(x, name) for x, name in ((n, "n"), (c, "c"), (k, "k")))
    n, c, k = np.broadcast_arrays(n, c, k)
    if np.any(c > n):
        i = np.argmax(c > n)
        raise ValueError(f"c > n: {c.flat[i]} correct of {n.flat[i]} samples")
    if np.any(k > n):
        i = np.argmax(k > n)
        raise ValueError(
            f"k > n: pass@{k.flat[i]} needs at least {k.flat[i]} samples, got n={n.flat[i]}; "
            "lower k (evaluate.ks) or sample more (sample.n)"
        )
    f = n - c  # failures
    ok = f >= k  # otherwise every size-k subset holds a correct sample: ratio 0
    fs = np.where(ok, f, k)  # safe arguments for the masked-out entries
    # log C(f,k) - log C(n,k) = lgamma(f+1) - lgamma(f-k+1) - lgamma(n+1) + lgamma(n-k+1)
    log_ratio = gammaln(fs + 1.0) - gammaln(fs - k + 1.0) - gammaln(n + 1.0) + gammaln(n - k + 1.0)
    return np.where(ok, np.exp(np.minimum(log_ratio, 0.0)), 0.0)


def pass_at_k(n: ArrayLike, c: ArrayLike, k: ArrayLike) -> np.ndarray:
    """Unbiased pass@k from n samples with c correct; broadcasts; float64 in [0, 1].

    ``k = 0`` gives 0. ``k > n`` or ``c > n`` raise ValueError (see module docstring).
    """
    return 1.0 - fail_ratio(n, c, k)


def pass_at_k_split(n: ArrayLike, c: ArrayLike, k: ArrayLike) -> np.ndarray:
    """ModC split estimator ``1 - Π_m C(n_m-c_m, k_m)/C(n_m, k_m)``.

    ``n``, ``c``, ``k``: broadcastable arrays whose last axis is the mode axis (size M).
    Returns the broadcast shape without the mode axis. With M = 1 it equals ``pass_at_k``.
    """
    return 1.0 - np.prod(fail_ratio(n, c, k), axis=-1)


def pass_at_k_modc(n: ArrayLike, c: ArrayLike, ks: ArrayLike) -> np.ndarray:
    """ModC pass@k under the uniform split, for every total budget in ``ks`` in one call.

    ``n``, ``c``: shape (..., M) per-mode sample and correct counts (e.g. (problems, modes)).
    ``ks``: 1-D totals. Returns shape (..., len(ks)). Non-divisible k: average over allocations.
    """
    n = _as_counts(n, "n")
    c = _as_counts(c, "c")
    ks = _as_counts(ks, "ks").ravel()
    m = n.shape[-1]
    allocs = [uniform_allocations(int(k), m) for k in ks]
    a_max = max(len(a) for a in allocs) if allocs else 1
    # Pad every k's allocation list to a_max rows with weight 0 so that all k go in one call.
    alloc = np.zeros((len(ks), a_max, m), dtype=np.int64)
    weight = np.zeros((len(ks), a_max))
    for i, a in enumerate(allocs):
        alloc[i, : len(a)] = a
        alloc[i, len(a) :] = a[0]
        weight[i, : len(a)] = 1.0 / len(a)
    ratio = fail_ratio(n[..., None, None, :], c[..., None, None, :], alloc)  # (..., K, A, M)
    return 1.0 - np.einsum("...ka,ka->...k", np.prod(ratio, axis=-1), weight)


def pass_at_k_curve(n: ArrayLike, c: ArrayLike, ks: ArrayLike) -> np.ndarray:
    """Plain pass@k for every k in ``ks``: ``n``, ``c`` shape (...,) -> (..., len(ks))."""
    n = np.asarray(n)
    c = np.asarray(c)
    return pass_at_k(n[..., None], c[..., None], np.asarray(ks).ravel())


def pass_at_k_from_p(p: ArrayLike, k: ArrayLike) -> np.ndarray:
    """Population pass@k ``1 - (1-p)^k`` for a known success rate ``p`` in [0, 1]."""
    return 1.0 - np.power(1.0 - np.asarray(p, dtype=float), np.asarray(k, dtype=float))


def pass_at_k_split_from_p(p: ArrayLike, k: ArrayLike) -> np.ndarray:
    """Population ModC pass@k ``1 - Π_m (1-p_m)^{k_m}``; trailing mode axis on ``p`` and ``k``."""
    p = np.asarray(p, dtype=float)
    return 1.0 - np.prod(np.power(1.0 - p, np.asarray(k, dtype=float)), axis=-1)


def default_ks(n: int) -> list[int]:
    """Budgets 1, 2, 4, … up to ``n``, plus ``n`` itself when it is not a power of two."""
    if n < 1:
        raise ValueError(f"default_ks: need n >= 1 samples, got {n}")
    ks = [1 << i for i in range(n.bit_length()) if (1 << i) <= n]
    if ks[-1] != n:
        ks.append(n)
    return ks


__all__ = [
    "default_ks",
    "fail_ratio",
    "pass_at_k",
    "pass_at_k_curve",
    "pass_at_k_from_p",
    "pass_at_k_modc",
    "pass_at_k_split",
    "pass_at_k_split_from_p",
]
