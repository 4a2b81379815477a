"""How precise a paired comparison is, and how many problems and seeds a target precision needs.

What goes in: the spread of the per-problem paired difference (ModC pass@k minus standard
pass@k on each test problem, ``sd_problem``, from a pilot run: ``details.json`` holds it per
group, split, variant and k) and, when known, the spread of the mean difference between
training seeds (``sd_seed``, from replicates; 0 when a single seed was run, which makes every
figure a lower bound on what is needed).

The model: a difference measured over S seeds and P problems has variance
``sd_seed**2 / S + sd_problem**2 / (S * P)`` (each seed trains both models again; problems are
drawn independently). With z the normal quantile of the interval:

- ``half_width``: the interval's half-width, ``z * sqrt(variance)``;
- ``problems_needed``: the smallest P whose half-width is at most a target (None when the seed
  term alone is wider than the target: more seeds are needed, not more problems);
- ``detectable_difference``: the smallest true difference a two-sided test at that level finds
  with the given power, ``(z + z_power) * sqrt(variance)``.

What it leaves out: the bootstrap itself (``bootstrap.py``); the normal approximation is what
the percentile bootstrap's width approaches for the sizes used here (tested by simulation).
"""

from __future__ import annotations

import math
from statistics import NormalDist


def _z(ci: float) -> float:
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    return NormalDist().inv_cdf(0.5 + ci / 2)


def _variance(sd_problem: float, n_problems: int, n_seeds: int, sd_seed: float) -> float:
    if n_problems < 1 or n_seeds < 1:
        raise ValueError(f"need at least one problem and one seed, got {n_problems}, {n_seeds}")
    if sd_problem < 0 or sd_seed < 0:
        raise ValueError("standard deviations must be >= 0")
    return sd_seed**2 / n_seeds + sd_problem**2 / (n_seeds * n_problems)


def half_width(sd_problem: float, n_problems: int, n_seeds: int = 1, sd_seed: float = 0.0,
               ci: float = 0.95) -> float:
    """Half-width of the ``ci`` interval of the mean paired difference."""
    return _z(ci) * math.sqrt(_variance(sd_problem, n_problems, n_seeds, sd_seed))


def problems_needed(sd_problem: float, target: float, n_seeds: int = 1, sd_seed: float = 0.0,
                    ci: float = 0.95) -> int | None:
    """Fewest test problems for a half-width ≤ ``target``; None when no number of problems
    reaches it with ``n_seeds`` seeds (the seed-to-seed spread alone is wider)."""
    if target <= 0:
        raise ValueError(f"target half-width must be > 0, got {target}")
    room = (target / _z(ci)) ** 2 - sd_seed**2 / n_seeds
    if room <= 0:
        return None
    return max(1, math.ceil(sd_problem**2 / (n_seeds * room)))


def detectable_difference(sd_problem: float, n_problems: int, n_seeds: int = 1,
                          sd_seed: float = 0.0, ci: float = 0.95, power: float = 0.8) -> float:
    """Smallest true difference found (interval excluding zero) with probability ``power``."""
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    se = math.sqrt(_variance(sd_problem, n_problems, n_seeds, sd_seed))
    return (_z(ci) + NormalDist().inv_cdf(power)) * se
