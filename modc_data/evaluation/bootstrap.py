"""Percentile bootstrap over problems: CIs of mean per-problem values and paired differences.

What goes in: per-problem values, shape (P,) or (P, K) (e.g. pass@k per problem for K budgets).
What comes out: point estimates (the mean over problems) and percentile CIs, shape (K,) or ().

Problems are the resampling unit: samples of one problem are not independent, problems are.
All B resamples come from one seeded (B, P) index matrix (``resample_indices``), so passing the
same matrix to several arms gives them the same resampled problems, which is what makes the
paired difference ``arm - standard`` tighter than two independent CIs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Resample counts are built in blocks of this many rows so that memory stays ~B_BLOCK * P floats.
_B_BLOCK = 256


@dataclass(frozen=True)
class Interval:
    """Point estimate (mean over problems) and percentile CI; arrays of shape (K,) or ()."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray


def resample_indices(n_problems: int, n_resamples: int, seed: int) -> np.ndarray:
    """Seeded (B, P) matrix of problem indices drawn with replacement."""
    if n_problems < 1:
        raise ValueError("bootstrap: no problems to resample (empty split?)")
    if n_resamples < 1:
        raise ValueError(f"bootstrap: n_resamples must be >= 1, got {n_resamples}")
    return np.random.default_rng(seed).integers(0, n_problems, size=(n_resamples, n_problems))


def bootstrap_means(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Mean of ``values`` (P, ...) over each resample in ``idx`` (B, P) -> (B, ...).

    Counts how often each problem is drawn and takes one matrix product per block, instead of
    materialising ``values[idx]`` (B x P x K floats, ~1 GB at B=1000, P=10^4, K=11).
    """
    values = np.asarray(values, dtype=float)
    b, p = idx.shape
    if values.shape[0] != p:
        raise ValueError(f"bootstrap: values have {values.shape[0]} problems, indices {p}")
    flat = values.reshape(p, -1)
    out = np.empty((b, flat.shape[1]))
    for start in range(0, b, _B_BLOCK):
        block = idx[start : start + _B_BLOCK]
        rows = len(block)
        offsets = (np.arange(rows)[:, None] * p + block).ravel()
        counts = np.bincount(offsets, minlength=rows * p).reshape(rows, p)
        out[start : start + rows] = counts @ flat / p
    return out.reshape((b,) + values.shape[1:])


def percentile_interval(values: np.ndarray, idx: np.ndarray, ci: float) -> Interval:
    """Mean of ``values`` (P, ...) with its percentile bootstrap CI at level ``ci`` (e.g. 0.95)."""
    if not 0 < ci < 1:
        raise ValueError(f"bootstrap: ci must be in (0, 1), got {ci}")
    values = np.asarray(values, dtype=float)
    means = bootstrap_means(values, idx)
    alpha = (1.0 - ci) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha], axis=0)
    return Interval(values.mean(axis=0), low, high)


def bootstrap_ci(
    values: np.ndarray, *, n_resamples: int = 1000, ci: float = 0.95, seed: int = 0
) -> Interval:
    """Percentile CI of the mean over problems of ``values`` (P,) or (P, K); seeded."""
    values = np.asarray(values, dtype=float)
    return percentile_interval(values, resample_indices(len(values), n_resamples, seed), ci)


def paired_diff_interval(
    arm: np.ndarray, standard: np.ndarray, idx: np.ndarray, ci: float
) -> Interval:
    """CI of mean(arm) - mean(standard) with the same resampled problems for both.

    ``arm`` and ``standard``: (P, ...) aligned row by row on the same problems.
    """
    arm = np.asarray(arm, dtype=float)
    standard = np.asarray(standard, dtype=float)
    if arm.shape != standard.shape:
        raise ValueError(
            f"paired bootstrap: arm values {arm.shape} and standard values {standard.shape} "
            "must cover the same problems in the same order"
        )
    # The mean is linear, so resampling per-problem differences is the same as differencing the
    # two arms' resampled means on shared indices; one product instead of two.
    return percentile_interval(arm - standard, idx, ci)


def paired_bootstrap_diff(
    arm: np.ndarray,
    standard: np.ndarray,
    *,
    n_resamples: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Paired percentile CI of mean(arm - standard) over problems; seeded."""
    arm = np.asarray(arm, dtype=float)
    return paired_diff_interval(arm, standard, resample_indices(len(arm), n_resamples, seed), ci)


def hierarchical_diff_interval(
    arm: np.ndarray, standard: np.ndarray, idx: np.ndarray, ci: float, *, seed: int = 0
) -> Interval:
    """CI of mean(arm − standard) over training seeds and problems: a two-level bootstrap.

    ``arm`` and ``standard``: (S, P, ...) per-problem values of the two models trained with
    each of S seeds (row s of both from the same seed: the pairing), on the same P problems.
    Each resample draws S seeds with replacement, and the problems by row b of ``idx`` (B, P),
    the same draw for every seed (the problems are crossed with the seeds). The estimate is the
    mean over seeds and problems. With S = 1 the seed draw is always that seed, and the
    interval equals ``paired_diff_interval(arm[0], standard[0], idx, ci)`` exactly.
    """
    if not 0 < ci < 1:
        raise ValueError(f"bootstrap: ci must be in (0, 1), got {ci}")
    arm = np.asarray(arm, dtype=float)
    standard = np.asarray(standard, dtype=float)
    if arm.shape != standard.shape or arm.ndim < 2:
        raise ValueError(f"hierarchical bootstrap: arm {arm.shape} and standard {standard.shape} "
                         "must both be (seeds, problems, ...) over the same seeds and problems")
    diffs = arm - standard
    n_seeds = diffs.shape[0]
    # per seed, the mean over each problem resample: (S, B, ...)
    per_seed = np.stack([bootstrap_means(d, idx) for d in diffs])
    if n_seeds == 1:
        means = per_seed[0]
    else:
        draws = np.random.default_rng(seed).integers(0, n_seeds, size=(len(idx), n_seeds))
        means = per_seed[draws, np.arange(len(idx))[:, None]].mean(axis=1)
    alpha = (1.0 - ci) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha], axis=0)
    return Interval(diffs.mean(axis=(0, 1)), low, high)
