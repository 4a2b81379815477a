"""Score allocation policies: fit on a validation split, score on a test split, report with CIs.

What goes in: ``ArmCounts`` (``allocation.py``) of one model for a validation and a test split,
the budgets ``ks``, and the reference *standard* model's free sampling on the same test problems
(its own per-problem ``n``, ``c``). ``arm_counts`` builds ArmCounts from the sample stage's rows.
What comes out: ``PolicyEvaluation`` — per policy and k, mean test pass@k with a percentile
bootstrap CI over problems, paired CIs against standard and against uniform, the validation
score, and the validation choices (static allocation, preference parameters, the chosen policy
per k). ``policies_markdown`` renders it as tables for results.md; ``policies_figure`` /
``write_policies_figure`` draw pass@k per policy (matplotlib object API, Agg canvas).

Nothing is chosen on test: static and preference are fit on validation, and ``chosen`` at each k
is picked on validation by ``select_policies``: the best of the policies that need no fitting
(free, uniform, and standard where the standard model's samples are an arm), replaced by a fitted one (static, preference) only where the fitted
policy's *out-of-fold* validation score (fit on the other folds, ``CV_FOLDS``) beats it with the
paired bootstrap CI above zero. A fitted policy scored on the problems it was fit on looks better
than it is (the default run's 124-problem validation split made static at k = 8 lose 0.6 points
to uniform on test); the guard keeps the product on the safe side of "never worse than free or
uniform". The oracle reads the scored test samples and is shown only as an upper bound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from modc_data.budget import FREE, STANDARD, split_budget
from modc_data.evaluation.allocation import (
    ArmCounts,
    FreePolicy,
    OraclePolicy,
    Policy,
    StandardPolicy,
    UniformPolicy,
    allocation_pass_at_k,
    fit_preference,
    fit_static,
)
from modc_data.evaluation.bootstrap import (
    paired_diff_interval,
    percentile_interval,
    resample_indices,
)
from modc_data.evaluation.figures import save_figure
from modc_data.evaluation.passk import pass_at_k_curve
from modc_data.evaluation.report import cell

# Row order of tables and figures; "chosen" is the validated product choice.
POLICY_ORDER = ("standard", "free", "uniform", "static", "preference", "chosen", "oracle")
# what "chosen" picks from; "standard" (all k on the standard model's samples) only where the
# arms hold the standard model (``STANDARD``): the product publishes both models of an arm
CANDIDATES = ("free", "uniform", "standard", "static", "preference")
SHIPPABLE = ("free", "uniform", "static")  # policies whose counts are the same for every prompt
SAFE = ("free", "uniform", "standard")  # nothing fit: chosen falls back to the best of these
CV_FOLDS = 5  # validation folds for the fitted policies' out-of-fold scores
_COLORS = {
    "standard": "#444444",
    "free": "#2ca02c",
    "uniform": "#d62728",
    "static": "#1f77b4",
    "preference": "#9467bd",
    "chosen": "#ff7f0e",
    "oracle": "#7f7f7f",
}


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


def _scores(policy: Policy, data: ArmCounts, ks: Sequence[int]) -> np.ndarray:
    """Per-problem pass@k of ``policy`` on ``data``: (P, K)."""
    return np.stack([allocation_pass_at_k(data, policy.allocate(data, k)) for k in ks], axis=1)


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

    val = {name: _scores(p, validation, ks) for name, p in policies.items()}
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
    val_own["static"] = _scores(static_own, own, ks)
    oof_own = {"static": oof["static"] if own is validation
               else out_of_fold(fit_static, own, ks, CV_FOLDS, seed)}
    shippable, _ = select_policies(val_own, oof_own, ks, SHIPPABLE, val_idx, ci)
    shippable_validation = {k: float(val_own[shippable[k]][:, j].mean()) for j, k in enumerate(ks)}

    per = {name: _scores(p, test, ks) for name, p in policies.items()}
    per["chosen"] = np.stack([per[chosen[k]][:, j] for j, k in enumerate(ks)], axis=1)
    val_mean["chosen"] = np.array([val_mean[chosen[k]][j] for j, k in enumerate(ks)])
    per["oracle"] = _scores(OraclePolicy(), test, ks)
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
        out[held] = _scores(policy, data.take(held), ks)
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


# --------------------------------------------------------------------------- building ArmCounts
def arm_counts(
    samples: pl.DataFrame,
    split: str,
    model: str,
    modes: Sequence[str],
    *,
    free_model: str | None = None,
    standard_model: str | None = None,
    q_model: str | None = None,
    problem_ids: Sequence[str] | None = None,
    q_table: pl.DataFrame | None = None,
    q_column: str = "detected_mode",
) -> tuple[ArmCounts, list[str]]:
    """ArmCounts of one split from sample rows (``report.py``'s columns: problem_id, split,
    model, mode, correct, detected_mode).

    Forced arms: rows of ``model`` under each of ``modes``. Free arm (first, named ``FREE``):
    rows of ``free_model`` with mode '' (a prefix model sampled without a mode token, or None
    for none). Standard arm (next, named ``STANDARD``): rows of ``standard_model`` with mode ''
    (the standard model's own samples; None for none). q(m|x): the share of ``q_model``'s free samples (default ``free_model``) whose
    detected mode is m, over the detected ones in ``modes``; a problem with none detected gets
    uniform q. Problems: ``problem_ids`` in that order, else every problem the forced arms
    cover, sorted. Returns (ArmCounts, problem ids). A problem some arm lacks is a ValueError.
    ``q_table`` (columns problem_id, split, mode, q: a free-sampling prefix model's first-token
    q(m|x), ``sampling.run.mode_preference``) replaces the detected-mode shares when given; it
    must cover every problem and mode of the split. ``q_column``: the samples' mode column the
    shares are read from without a ``q_table`` (``declared_mode`` for a free-sampling prefix
    model's own choice of mode token).
    """
    part = samples.filter(pl.col("split") == split)
    pids = (
        list(problem_ids)
        if problem_ids is not None
        else sorted(part.filter(pl.col("model") == model)["problem_id"].unique().to_list())
    )
    if not pids:
        raise ValueError(f"arm_counts: model {model!r} has no samples on split {split!r}")
    index = pl.DataFrame({"problem_id": pids}).with_row_index("_i")
    sources = (
        ([(FREE, free_model, "")] if free_model else [])
        + ([(STANDARD, standard_model, "")] if standard_model else [])
        + [(m, model, m) for m in modes]
    )
    n = np.zeros((len(pids), len(sources)), dtype=np.int64)
    c = np.zeros_like(n)
    for a, (arm, mdl, mode) in enumerate(sources):
        got = (
            part.filter((pl.col("model") == mdl) & (pl.col("mode") == mode))
            .group_by("problem_id")
            .agg(pl.len().alias("n"), pl.col("correct").sum().alias("c"))
            .join(index, on="problem_id", how="inner")
        )
        if got.height < len(pids):
            raise ValueError(
                f"arm_counts: arm {arm!r} ({mdl}, mode {mode!r}) has samples for {got.height} of "
                f"{len(pids)} problems on split {split!r}"
            )
        n[got["_i"].to_numpy(), a] = got["n"].to_numpy()
        c[got["_i"].to_numpy(), a] = got["c"].to_numpy()
    q = None
    q_model = q_model or free_model
    if q_table is not None:
        got = q_table.filter(pl.col("split") == split).join(index, on="problem_id", how="inner")
        col = {m: j for j, m in enumerate(modes)}
        got = got.filter(pl.col("mode").is_in(list(modes)))
        if got.height != len(pids) * len(modes):
            raise ValueError(
                f"arm_counts: q_table has {got.height} (problem, mode) rows on split {split!r}, "
                f"expected {len(pids)} problems x {len(modes)} modes"
            )
        q = np.zeros((len(pids), len(modes)))
        q[got["_i"].to_numpy(), [col[m] for m in got["mode"]]] = got["q"].to_numpy()
        q = q / q.sum(axis=1, keepdims=True)
    elif q_model:
        detected = (
            part.filter(
                (pl.col("model") == q_model)
                & (pl.col("mode") == "")
                & pl.col(q_column).is_in(list(modes))
            )
            .group_by("problem_id", q_column)
            .len()
            .join(index, on="problem_id", how="inner")
        )
        hits = np.zeros((len(pids), len(modes)))
        col = {m: j for j, m in enumerate(modes)}
        hits[detected["_i"].to_numpy(), [col[m] for m in detected[q_column]]] = detected[
            "len"
        ].to_numpy()
        total = hits.sum(axis=1, keepdims=True)
        q = np.where(total > 0, hits / np.maximum(total, 1), 1.0 / len(modes))
    return ArmCounts(tuple(s[0] for s in sources), n, c, q), pids


# --------------------------------------------------------------------------- markdown and figure
def policies_markdown(ev: PolicyEvaluation, title: str) -> str:
    """Markdown for results.md: pass@k per policy and k, paired differences against standard
    and uniform, and the validation choices."""
    names = [n for n in POLICY_ORDER if n in ev.policies]
    head = [("oracle (upper bound)" if n == "oracle" else n) for n in names]
    lines = [
        f"### {title}",
        "",
        f"{ev.n_test} test problems, policies fit on {ev.n_validation} validation problems; "
        f"brackets: {ev.ci:.0%} percentile bootstrap CIs over problems ({ev.bootstrap} "
        "resamples). chosen = the best of free, uniform and standard (all k on the standard "
        "model's samples, where that is an arm) on validation, replaced by static "
        f"or preference only where its out-of-fold validation score ({CV_FOLDS} folds: fit on "
        "the others) beats that with the paired CI above zero; oracle reads the test samples "
        "and only bounds what any allocation could reach.",
        "",
        "| k | " + " | ".join(head) + " |",
        "|---|" + "---|" * len(names),
    ]
    for j, k in enumerate(ev.ks):
        cells = [
            cell(ev.policies[n].mean[j], ev.policies[n].ci_low[j], ev.policies[n].ci_high[j])
            for n in names
        ]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    diffs = [n for n in names if n not in ("standard", "oracle")]
    lines += [
        "",
        "Paired differences (same resampled problems): Δ vs standard / Δ vs uniform.",
        "",
        "| k | " + " | ".join(diffs) + " |",
        "|---|" + "---|" * len(diffs),
    ]
    for j, k in enumerate(ev.ks):
        cells = []
        for n in diffs:
            s, u = ev.policies[n].vs_standard, ev.policies[n].vs_uniform
            text = cell(s["diff"][j], s["ci_low"][j], s["ci_high"][j], signed=True)
            if u is not None:
                text += " / " + cell(u["diff"][j], u["ci_low"][j], u["ci_high"][j], signed=True)
            cells.append(text)
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", "Validation choices:", ""]
    for k in ev.ks:
        static = ", ".join(f"{a}={m}" for a, m in ev.static[k].items())
        pref = ""
        if ev.preference is not None:
            f, b = ev.preference[k]
            pref = f"; preference free share {f:g}, β = {b:g}"
        val = ev.policies["chosen"].validation
        sel = ev.selection.get(k, {})
        gains = "; ".join(
            f"{n} out-of-fold {cell(g['oof_gain'], g['ci_low'], g['ci_high'], signed=True)}"
            for n, g in sel.get("fitted", {}).items()
        )
        versus = f" (vs {sel['baseline']}: {gains})" if gains else ""
        lines.append(
            f"- k={k}: chosen **{ev.chosen[k]}** (validation {val[ev.ks.index(k)]:.3f}){versus}; "
            f"static {static}{pref}"
        )
    for name, why in ev.skipped.items():
        lines.append(f"- {name} not scored: {why}")
    return "\n".join(lines) + "\n"


def policies_figure(ev: PolicyEvaluation, title: str) -> Figure:
    """pass@k vs k (log2 axis) for every policy with CI bands; the oracle dashed, no band."""
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    for name in POLICY_ORDER:
        s = ev.policies.get(name)
        if s is None:
            continue
        color = _COLORS[name]
        if s.upper_bound:
            ax.plot(ev.ks, s.mean, ls="--", color=color, label=f"{name} (upper bound)")
            continue
        ax.plot(
            ev.ks,
            s.mean,
            marker="o",
            ms=3,
            color=color,
            label=name,
            lw=2.2 if name == "chosen" else 1.2,
        )
        ax.fill_between(ev.ks, s.ci_low, s.ci_high, color=color, alpha=0.15, linewidth=0)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel("pass@k")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(f"{title} ({ev.n_test} problems)")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def write_policies_figure(ev: PolicyEvaluation, title: str, path: str | Path) -> Path:
    """Render ``policies_figure`` to ``path`` (PNG, written atomically)."""
    return save_figure(policies_figure(ev, title), Path(path))


# --------------------------------------------------------------------------- shipping to modc.json
def shipped_policy(
    ev: PolicyEvaluation, modes: Sequence[str], *, with_preference: bool = False
) -> dict[str, dict[str, Any]]:
    """The allocation to write into ``modc.json`` (``ModcInfo.allocation``), per k.

    At each k, the policy ``select_policies`` picks on validation among those ``ModCSampler`` can
    apply to any prompt (``SHIPPABLE``: one count per arm, no q(m|x) needed; ``ev.shippable``), as
    ``{"policy": name, "counts": {arm: samples}, "validation": mean}``. Uniform ships its
    representative split (remainder to the first modes, as ``sampler.split_budget``): at k not
    divisible by M that is one of the allocations its score averages over.

    ``with_preference`` (q(m|x) came from the model's own first-token distribution, which the
    sampler can read per prompt): the choice is ``ev.chosen`` over every candidate; where that is
    ``preference`` the entry also carries ``free_share`` and ``beta``, and ``counts`` /
    ``fallback`` are the counts policy's, for backends that cannot give first-token
    probabilities. Where the validated choice over every arm spends samples on the standard
    model (``STANDARD``), the entry also carries it as ``with_standard`` (``policy``, ``counts``
    over all arms, ``validation``): ``ModCSampler`` follows it when the arm's standard model is
    loaded beside this one.
    """
    out: dict[str, dict[str, Any]] = {}
    own = [a for a in ev.arms if a != STANDARD]  # one model's arms: the standard model is another
    for j, k in enumerate(ev.ks):
        best = ev.shippable[k]
        if best == "static":
            counts = {a: int(m) for a, m in ev.static_own[k].items()}
        elif best == "free":
            counts = {a: (k if a == FREE else 0) for a in own}
        else:
            counts = dict.fromkeys(own, 0) | split_budget(k, modes, "uniform")
        entry: dict[str, Any] = {
            "policy": best,
            "counts": counts,
            "validation": ev.shippable_validation[k],
        }
        if with_preference and ev.chosen[k] == "preference" and ev.preference is not None:
            f, beta = ev.preference[k]
            entry = {
                "policy": "preference",
                "free_share": float(f),
                "beta": float(beta),
                "validation": ev.policies["preference"].validation[j],
                "counts": counts,
                "fallback": best,
            }
        # the choice over both models' arms, for a sampler that loads the standard model beside
        # this one (ModCSampler.from_pretrained(..., standard=...)); only where it differs
        both = ev.chosen[k]
        if STANDARD in ev.arms and both in ("standard", "static"):
            table = ({a: (k if a == STANDARD else 0) for a in ev.arms} if both == "standard"
                     else {a: int(m) for a, m in ev.static[k].items()})
            if table.get(STANDARD, 0) > 0:
                entry["with_standard"] = {"policy": both, "counts": table,
                                          "validation": ev.policies["chosen"].validation[j]}
        out[str(k)] = entry
    return out
