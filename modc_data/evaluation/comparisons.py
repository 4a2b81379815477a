"""What the pass@k evaluation compares and the records it produces: which models make up one
comparison (``ArmSpec``), the pass@k curves with their paired differences (``Curve``), one
split's evaluation (``SplitEvaluation``) and the whole result (``EvaluationResult``); when two
models count as trained at equal compute (``compute_gap``), when a problem counts as collapsed
(``is_collapsed``), and the one-line verdict per comparison read from the curves (``verdict``).

What it leaves out: estimating the curves from samples (``estimates.evaluate``), writing them
out (``report``: results.md, summary.json, details.json, metrics.json, plot data) and the PNG
figures (``figures``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modc_data.schema import group_key

MODC_VARIANTS = ("experts", "prefix")
ARMS = ("standard",) + MODC_VARIANTS
# A problem counts as collapsed when this share or more of its samples use one detected mode.
COLLAPSE_THRESHOLD = 0.9


def is_collapsed(share: np.ndarray) -> np.ndarray:
    """Per problem: one mode has >= COLLAPSE_THRESHOLD of the samples with a detected mode
    (``share``: the collapse mode's share of them)."""
    return (share >= COLLAPSE_THRESHOLD) | (share <= 1 - COLLAPSE_THRESHOLD)


@dataclass(frozen=True)
class ArmSpec:
    """Which models make up one (label source, mix) comparison.

    ``standard``/``experts``/``prefix``: values of the samples' ``model`` column; experts rows of
    one arm share one model key and differ by ``mode``. ``modes``: the modes the budget is split
    over (e.g. ('dfs', 'bfs')).
    """

    label_source: str
    mix: str
    standard: str
    modes: tuple[str, ...]
    experts: str | None = None
    prefix: str | None = None
    tag: str | None = None  # train_jobs' tag: another objective (etc.) on the same rows

    @property
    def key(self) -> str:
        return group_key(self.label_source, self.mix, self.tag)

    def model_of(self, variant: str) -> str | None:
        return {"standard": self.standard, "experts": self.experts, "prefix": self.prefix}[variant]


@dataclass
class Curve:
    """pass@k over problems for budgets ``k``; ModC curves add the paired diff vs standard."""

    k: list[int]
    pass_at_k: list[float]
    ci_low: list[float]
    ci_high: list[float]
    diff: list[float] | None = None
    diff_ci_low: list[float] | None = None
    diff_ci_high: list[float] | None = None
    efficiency_ratio: float | None = None  # n / (smallest k reaching standard's pass@n)
    k_to_match: int | None = None
    # why this ModC model is not compared with its standard (unequal training compute): the
    # report then prints no Δ, verdict or efficiency for it; None: trained at equal compute
    not_comparable: str | None = None


@dataclass
class SplitEvaluation:
    split: str
    n: int  # largest budget evaluated (standard samples per problem unless ks says less)
    n_problems: int
    dropped_problems: int  # problems without samples from every model/mode of the arm
    curves: dict[str, Curve]  # 'standard', 'experts', 'prefix' (those the arm has)
    single_modes: dict[str, dict[str, Curve]]  # variant -> mode -> full-budget curve of one mode
    collapse: dict[str, Any]  # summary statistics; {} when no detected modes
    shares: dict[str, list[float]]  # variant -> per-problem share of the collapse mode
    categories: dict[str, dict[str, Any]]  # category -> problems and pass@n per arm
    # variant -> per k, the standard deviation over problems of the paired per-problem
    # difference (ModC − standard): what power.py sizes a design from
    diff_sd: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class EvaluationResult:
    keys: dict[str, dict[str, SplitEvaluation]]  # '<label_source>/<mix>' -> split -> evaluation
    verdicts: dict[str, str]
    settings: dict[str, Any] = field(default_factory=dict)
    # key -> variant -> {"steps", "tokens"} of its model's training (empty when not given)
    compute: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


# Two models are compared (Δ, verdict, efficiency) only when their training compute is equal
# within this relative gap, in optimizer steps and in training tokens.
COMPUTE_TOLERANCE = 0.05


def compute_gap(standard: Mapping[str, float] | None, other: Mapping[str, float] | None,
                tolerance: float = COMPUTE_TOLERANCE) -> str | None:
    """Why ``other`` (a ModC model's training compute, ``{"steps", "tokens"}``) is not comparable
    with ``standard``'s, or None when both steps and tokens agree within ``tolerance`` (or
    either record is missing: nothing to judge by)."""
    if not standard or not other:
        return None
    for unit in ("steps", "tokens"):
        a, b = standard.get(unit), other.get(unit)
        if a and b and abs(a - b) / max(a, b) > tolerance:
            return (f"trained {int(b):,} vs the standard model's {int(a):,} {unit}; "
                    f"ModC and standard are compared only at equal compute")
    return None


def verdict(key: str, per_split: dict[str, SplitEvaluation], ci: float, min_k: int) -> str:
    """One line for comparison ``key``: per ModC variant, whether it beats standard with the
    paired ``ci`` CI above zero at every k >= ``min_k`` (the largest k where none is) on every
    split, else where it first does not; no verdict for a model not trained at equal compute."""
    parts = []
    variants = [v for v in MODC_VARIANTS if any(v in s.curves for s in per_split.values())]
    if not variants:
        return f"{key}: no ModC model evaluated"
    for v in variants:
        gap = next((s.curves[v].not_comparable for s in per_split.values()
                    if v in s.curves and s.curves[v].not_comparable), None)
        if gap:
            parts.append(f"{v} is not compared with standard ({gap}): no verdict")
            continue
        failure = None
        n_checked = 0
        for split, ev in per_split.items():
            cur = ev.curves[v]
            checked = [i for i, k in enumerate(cur.k) if k >= min_k] or [len(cur.k) - 1]
            n_checked += len(checked)
            for i in checked:
                if cur.diff_ci_low[i] <= 0:
                    failure = (
                        split,
                        cur.k[i],
                        cur.diff[i],
                        cur.diff_ci_low[i],
                        cur.diff_ci_high[i],
                    )
                    break
            if failure:
                break
        if failure is None:
            parts.append(
                f"{v} beats standard with the paired {ci:.0%} CI above zero at every k >= {min_k} "
                f"on {', '.join(per_split)}"
            )
        else:
            s, k, d, lo, hi = failure
            if d > 0:
                word = "better but not significantly"
            elif d == 0:
                word = "tied"  # e.g. both saturate at 1.0
            else:
                word = "significantly worse" if hi < 0 else "worse but not significantly"
            parts.append(
                f"{v} does not beat standard everywhere: on {s} at k={k} it is {word} "
                f"(Δ {d:+.3f}, CI [{lo:+.3f}, {hi:+.3f}])"
            )
    return f"{key}: " + "; ".join(parts) + "."
