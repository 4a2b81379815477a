"""Score allocation policies: fit on a validation split, score on a test split, with CIs.

What goes in: ``ArmCounts`` (``allocation``) of one model for a validation and a test split,
the budgets ``ks``, and the reference *standard* model's free sampling on the same test problems
(its own per-problem ``n``, ``c``). What comes out: ``PolicyEvaluation`` — per policy and k, mean
test pass@k with a percentile bootstrap CI over problems, paired CIs against standard and
against uniform, the validation score, and the validation choices (static allocation,
preference parameters, the chosen policy per k).

Nothing is chosen on test: static and preference are fit on validation, and ``chosen`` at each k
is picked on validation (``allocation_selection.select_policies``). The oracle reads the scored
test samples and is shown only as an upper bound.

What it leaves out: the policies (``allocation``), fitting and choosing them
(``allocation_selection``), building ``ArmCounts`` from sample rows (``allocation_counts``), and
the results.md tables, the figure and the allocation written into modc.json
(``allocation_report``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modc_data.budget import STANDARD
from modc_data.evaluation.allocation import (
    ArmCounts,
    FreePolicy,
    OraclePolicy,
    Policy,
    StandardPolicy,
    UniformPolicy,
    policy_pass_at_k,
)
from modc_data.evaluation.allocation_selection import (
    CANDIDATES,
    CV_FOLDS,
    SHIPPABLE,
    fit_preference,
    fit_static,
    out_of_fold,
    select_policies,
)
from modc_data.evaluation.bootstrap import (
    paired_diff_interval,
    percentile_interval,
    resample_indices,
)
from modc_data.evaluation.passk import pass_at_k_curve

# Row order of tables and figures; "chosen" is the validated product choice.
POLICY_ORDER = ("standard", "free", "uniform", "static", "preference", "chosen", "oracle")


@dataclass
class PolicyScores:
    """One policy on the test split, per k (lists aligned with ``PolicyEvaluation.ks``)."""

    mean: list[float]
    ci_low: list[float]
    ci_high: list[float]
    validation: list[float] | None  # mean on the validation split (None: not scored there)
    # fitted policies only: mean on each validation fold when fit on the other folds
    validation_oof: list[float] | None = None
    vs_standard: dict[str, list[float]] | None = None  # diff, ci_low, ci_high (paired)
    vs_uniform: dict[str, list[float]] | None = None
    upper_bound: bool = False


@dataclass
class PolicyEvaluation:
    ks: list[int]
    arms: list[str]
    n_validation: int
    n_test: int
    ci: float
    bootstrap: int
    policies: dict[str, PolicyScores]
    static: dict[int, dict[str, int]]  # validation choice: k -> {arm: samples}
    preference: dict[int, list[float]] | None  # validation choice: k -> [free share, beta]
    chosen: dict[int, str]  # validation choice: k -> policy name
    # the evidence behind chosen, per k (select_policies): safe baseline, each fitted
    # candidate's out-of-fold gain over it with its paired CI, and the choice
    selection: dict[int, dict[str, Any]] = field(default_factory=dict)
    shippable: dict[int, str] = field(default_factory=dict)  # the same rule over SHIPPABLE
    # static over the model's own arms (no STANDARD arm): what one model's modc.json can ship
    static_own: dict[int, dict[str, int]] = field(default_factory=dict)
    shippable_validation: dict[int, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # policy -> why it is not scored
    per_problem: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # (P, K)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (per-problem arrays left out)."""
        return {
            "ks": self.ks,
            "arms": self.arms,
            "n_validation": self.n_validation,
            "n_test": self.n_test,
            "ci": self.ci,
            "bootstrap": self.bootstrap,
            "policies": {k: vars(v) for k, v in self.policies.items()},
            "static": {str(k): v for k, v in self.static.items()},
            "preference": None
            if self.preference is None
            else {str(k): v for k, v in self.preference.items()},
            "chosen": {str(k): v for k, v in self.chosen.items()},
            "selection": {str(k): v for k, v in self.selection.items()},
            "shippable": {str(k): v for k, v in self.shippable.items()},
            "static_own": {str(k): v for k, v in self.static_own.items()},
            "skipped": self.skipped,
        }


def _floats(a: np.ndarray) -> list[float]:
    return [float(x) for x in np.atleast_1d(a)]


def _diff(values: np.ndarray, ref: np.ndarray, idx: np.ndarray, ci: float) -> dict[str, list]:
    d = paired_diff_interval(values, ref, idx, ci)
    return {"diff": _floats(d.estimate), "ci_low": _floats(d.low), "ci_high": _floats(d.high)}


def evaluate_policies(
    validation: ArmCounts,
    test: ArmCounts,
    ks: Sequence[int],
    standard_n: np.ndarray,
    standard_c: np.ndarray,
    *,
    standard_validation: tuple[np.ndarray, np.ndarray] | None = None,
    n_resamples: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> PolicyEvaluation:
    """Fit static and preference on ``validation``, score every policy on ``test``.

    Args:
        validation, test: one model's arms on two splits (same arm names, any problems).
        ks: budgets; every arm and the standard model need at least max(ks) samples on every
            problem (ValueError otherwise, before any fitting).
        standard_n, standard_c: (P_test,) the standard model's samples and correct counts on the
            test problems, in ``test``'s problem order.
        standard_validation: optional (n, c) of the standard model on the validation problems,
            only to show its validation score beside the others.
        n_resamples, ci, seed: bootstrap over test problems; one index matrix for every policy,
            so the paired differences use the same resampled problems.
    Returns:
        ``PolicyEvaluation``. Policies the data cannot support (free without a free arm,
        preference without q) are listed in ``skipped`` with the reason.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"evaluate_policies: ks must be budgets >= 1, got {ks}")
    if validation.arms != test.arms:
        raise ValueError(
            f"evaluate_policies: validation arms {validation.arms} differ from test arms "
            f"{test.arms}"
        )
    standard_n, standard_c = np.asarray(standard_n), np.asarray(standard_c)
    if standard_n.shape != (test.n_problems,) or standard_c.shape != standard_n.shape:
        raise ValueError(
            f"evaluate_policies: standard counts must be ({test.n_problems},) to match the test "
            f"problems, got {standard_n.shape} and {standard_c.shape}"
        )

    # Every arm must hold every k (as the standard model must): then any allocation is feasible
    # and the oracle bound holds (allocation.py).
    for name, data in (("validation", validation), ("test", test)):
        few = data.n.min(axis=0)
        if ks[-1] > few.min():
            arm = data.arms[int(np.argmin(few))]
            raise ValueError(
                f"evaluate_policies: k={ks[-1]} exceeds the {few.min()} samples of arm {arm!r} on "
                f"some {name} problem; lower ks (evaluate.ks) or sample more (sample.n)"
            )
    policies: dict[str, Policy] = {"uniform": UniformPolicy()}
    skipped: dict[str, str] = {}
    if test.free is not None:
        policies["free"] = FreePolicy()
    else:
        skipped["free"] = "the model cannot sample without a mode token (no 'free' arm)"
    if test.standard is not None:
        policies["standard"] = StandardPolicy()
    static = fit_static(validation, ks)
    policies["static"] = static
    preference = None
    if validation.q is not None and test.q is not None:
        preference = fit_preference(validation, ks)
        policies["preference"] = preference
    else:
        skipped["preference"] = "no q(m|x) (the model's own mode preference) for these problems"

    val = {name: policy_pass_at_k(p, validation, ks) for name, p in policies.items()}
    val_mean = {name: v.mean(axis=0) for name, v in val.items()}
    fits = {"static": fit_static}
    if preference is not None:
        fits["preference"] = fit_preference
    oof = {name: out_of_fold(fit, validation, ks, CV_FOLDS, seed) for name, fit in fits.items()}
    val_idx = resample_indices(validation.n_problems, n_resamples, seed + 1)
    chosen, selection = select_policies(val, oof, ks, CANDIDATES, val_idx, ci)
    # what one model can ship: its own arms only (static refit without the standard model's)
    own = validation.without(STANDARD)
    static_own = static if own is validation else fit_static(own, ks)
    val_own = {n: val[n] for n in ("free", "uniform") if n in val}
    val_own["static"] = policy_pass_at_k(static_own, own, ks)
    oof_own = {"static": oof["static"] if own is validation
               else out_of_fold(fit_static, own, ks, CV_FOLDS, seed)}
    shippable, _ = select_policies(val_own, oof_own, ks, SHIPPABLE, val_idx, ci)
    shippable_validation = {k: float(val_own[shippable[k]][:, j].mean()) for j, k in enumerate(ks)}

    per = {name: policy_pass_at_k(p, test, ks) for name, p in policies.items()}
    per["chosen"] = np.stack([per[chosen[k]][:, j] for j, k in enumerate(ks)], axis=1)
    val_mean["chosen"] = np.array([val_mean[chosen[k]][j] for j, k in enumerate(ks)])
    per["oracle"] = policy_pass_at_k(OraclePolicy(), test, ks)
    per["standard"] = pass_at_k_curve(standard_n, standard_c, ks)
    if standard_validation is not None:
        sn, sc = (np.asarray(x) for x in standard_validation)
        val_mean["standard"] = pass_at_k_curve(sn, sc, ks).mean(axis=0)

    idx = resample_indices(test.n_problems, n_resamples, seed)
    out: dict[str, PolicyScores] = {}
    for name in POLICY_ORDER:
        if name not in per:
            continue
        iv = percentile_interval(per[name], idx, ci)
        out[name] = PolicyScores(
            mean=_floats(iv.estimate),
            ci_low=_floats(iv.low),
            ci_high=_floats(iv.high),
            validation=_floats(val_mean[name]) if name in val_mean else None,
            validation_oof=_floats(oof[name].mean(axis=0)) if name in oof else None,
            vs_standard=None if name == "standard" else _diff(per[name], per["standard"], idx, ci),
            vs_uniform=None if name == "uniform" else _diff(per[name], per["uniform"], idx, ci),
            upper_bound=name == "oracle",
        )
    return PolicyEvaluation(
        ks=ks,
        arms=list(test.arms),
        n_validation=validation.n_problems,
        n_test=test.n_problems,
        ci=ci,
        bootstrap=n_resamples,
        policies=out,
        static=static.table,
        preference=None
        if preference is None
        else {k: [float(f), float(b)] for k, (f, b) in preference.params.items()},
        chosen=chosen,
        selection=selection,
        shippable=shippable,
        static_own=static_own.table,
        shippable_validation=shippable_validation,
        skipped=skipped,
        per_problem=per,
    )

