"""Estimate pass@k from sampled completions: per comparison and split, the standard model's
curve, each ModC model's split-budget curve with its paired difference against standard and its
efficiency, single-mode curves, mode collapse and per-category pass@n.

What goes in:
- ``samples`` (polars): one row per sampled completion with columns ``problem_id``, ``split``,
  ``model``, ``variant`` ('standard' | 'experts' | 'prefix'), ``mode`` ('' for standard),
  ``correct`` (bool) and ``detected_mode`` (str or null; Countdown: 'dfs' / 'bfs').
- ``problems`` (polars): ``problem_id``, ``split`` and optionally ``category``
  ('both' | 'only_dfs' | 'only_bfs' | 'neither').
- ``arms``: arm name -> ``ArmSpec`` naming the model keys of its standard / experts / prefix
  models and its modes.

What comes out: ``EvaluationResult`` (``evaluate``). Every curve is the mean over problems of the
per-problem unbiased estimator; CIs are percentile bootstraps over problems with one index matrix
per split shared by all arms. What it leaves out: the record types and the verdict
(``comparisons``), writing results.md and the JSON/CSV files (``report``) and the PNG figures
(``figures.write_figures``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from modc_data.errors import InputError
from modc_data.evaluation.bootstrap import (
    Interval,
    paired_diff_interval,
    percentile_interval,
    resample_indices,
)
from modc_data.evaluation.comparisons import (
    ARMS,
    COLLAPSE_THRESHOLD,
    MODC_VARIANTS,
    ArmSpec,
    Curve,
    EvaluationResult,
    SplitEvaluation,
    compute_gap,
    is_collapsed,
    verdict,
)
from modc_data.evaluation.counts import count_table, problem_matrix
from modc_data.evaluation.passk import default_ks, pass_at_k_curve, pass_at_k_modc
from modc_data.schema import SPLITS

_SAMPLE_COLUMNS = {
    "problem_id": pl.String,
    "split": pl.String,
    "model": pl.String,
    "variant": pl.String,
    "mode": pl.String,
    "correct": pl.Boolean,
    "detected_mode": pl.String,
}


# --------------------------------------------------------------------------- input checks
def _check_inputs(samples: pl.DataFrame, problems: pl.DataFrame, arms: dict[str, ArmSpec]) -> None:
    for col, dtype in _SAMPLE_COLUMNS.items():
        if col not in samples.columns:
            raise InputError(f"samples: missing column {col!r} (expected {dtype}); was it sampled?")
        if col == "detected_mode" and samples.schema[col] == pl.Null:
            continue  # all-null column read back without a type
        if samples.schema[col] != dtype:
            raise InputError(
                f"samples: column {col!r} has type {samples.schema[col]}, expected {dtype}"
            )
    for col in ("problem_id", "split"):
        if col not in problems.columns:
            raise InputError(f"problems: missing column {col!r}")
    if samples["correct"].null_count():
        raise InputError("samples: column 'correct' has nulls; every sample needs a verdict")
    bad = set(samples["variant"].unique().to_list()) - set(ARMS)
    if bad:
        raise InputError(f"samples: unknown variant(s) {sorted(bad)}; allowed {list(ARMS)}")
    if not arms:
        raise InputError("evaluate: no arms given")
    present = samples.select("model", "variant").unique()
    keys: dict[str, str] = {}
    for name, spec in arms.items():
        if spec.key in keys:
            raise InputError(
                f"arms.{name}: key {spec.key!r} already used by arm {keys[spec.key]!r}"
            )
        keys[spec.key] = name
        if not spec.modes:
            raise InputError(f"arms.{name}.modes: empty; list the modes the budget is split over")
        for variant in ARMS:
            model = spec.model_of(variant)
            if model is None:
                continue
            rows = present.filter((pl.col("model") == model) & (pl.col("variant") == variant))
            if rows.is_empty():
                known = sorted(present["model"].unique().to_list())
                raise InputError(
                    f"arms.{name}.{variant}: no {variant!r} samples of model {model!r} "
                    f"(models in samples: {known}); sample it or fix the model key"
                )
            if variant != "standard":
                have = set(
                    samples.filter((pl.col("model") == model) & (pl.col("variant") == variant))[
                        "mode"
                    ]
                    .unique()
                    .to_list()
                )
                missing = [m for m in spec.modes if m not in have]
                if missing:
                    raise InputError(
                        f"arms.{name}.{variant}: model {model!r} has no samples for mode(s) "
                        f"{missing} (has {sorted(have)})"
                    )

def _curve(values: np.ndarray, ks: list[int], idx: np.ndarray, ci: float) -> Curve:
    """Curve of per-problem values (P, K) with bootstrap CIs from resample indices ``idx``."""
    iv = percentile_interval(values, idx, ci)
    return Curve(
        k=list(ks), pass_at_k=_floats(iv.estimate), ci_low=_floats(iv.low), ci_high=_floats(iv.high)
    )


def _floats(a: np.ndarray) -> list[float]:
    return [round(float(x), 6) for x in np.atleast_1d(a)]


def _add_diff(curve: Curve, diff: Interval, std: Curve) -> None:
    curve.diff = _floats(diff.estimate)
    curve.diff_ci_low = _floats(diff.low)
    curve.diff_ci_high = _floats(diff.high)
    target = std.pass_at_k[-1]  # standard's pass@n
    if target <= 0:
        return  # matching a zero pass@n says nothing: the ratio stays undefined (None)
    # Smallest budget at which the ModC arm matches standard's full-budget pass@n.
    for k, v in zip(curve.k, curve.pass_at_k, strict=True):
        if v >= target - 1e-9:
            curve.k_to_match = k
            curve.efficiency_ratio = round(std.k[-1] / k, 6)
            break


# --------------------------------------------------------------------------- evaluate
def evaluate(
    samples: pl.DataFrame,
    problems: pl.DataFrame,
    arms: dict[str, ArmSpec],
    *,
    ks: list[int] | None = None,
    bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    collapse_mode: str = "bfs",
    verdict_min_k: int = 8,
    compute: Mapping[str, Mapping[str, float]] | None = None,
) -> EvaluationResult:
    """pass@k of every arm's standard, experts-split and prefix-split models on every split.

    ``compute``: model key -> its training ``{"steps", "tokens"}``; a ModC model whose compute
    differs from its standard's by more than ``COMPUTE_TOLERANCE`` gets pass@k but no Δ
    verdict or efficiency in the report (``Curve.not_comparable`` says why).

    ``ks``: budgets (default 1, 2, 4, … up to the standard model's samples per problem n).
    ``bootstrap``: resamples over problems; ``ci``: CI level; ``seed``: bootstrap seed.
    ``collapse_mode``: detected mode whose per-problem share measures collapse.
    Raises ValueError naming the arm/field before any estimation when inputs do not fit.
    """
    _check_inputs(samples, problems, arms)
    counts = count_table(samples, collapse_mode)
    category = (
        dict(problems.select("problem_id", "category").unique("problem_id").iter_rows())
        if "category" in problems.columns
        else {}
    )
    order = {s: i for i, s in enumerate(SPLITS)}
    out: dict[str, dict[str, SplitEvaluation]] = {}
    for name, spec in arms.items():
        std_rows = counts.filter(
            (pl.col("model") == spec.standard) & (pl.col("variant") == "standard")
        )
        splits = sorted(std_rows["split"].unique().to_list(), key=lambda s: (order.get(s, 99), s))
        out[spec.key] = {
            s: _evaluate_split(
                name, spec, counts, s, ks, bootstrap, ci, seed, collapse_mode, category
            )
            for s in splits
        }
    compute = compute or {}
    spent: dict[str, dict[str, dict[str, float]]] = {}
    for spec in arms.values():
        spent[spec.key] = {v: dict(compute[m]) for v in ARMS
                           if (m := spec.model_of(v)) is not None and m in compute}
        for v in MODC_VARIANTS:
            gap = compute_gap(spent[spec.key].get("standard"), spent[spec.key].get(v))
            for ev in out[spec.key].values():
                if gap and v in ev.curves:
                    ev.curves[v].not_comparable = gap
    verdicts = {key: verdict(key, per_split, ci, verdict_min_k) for key, per_split in out.items()}
    settings = {
        "bootstrap": bootstrap,
        "ci": ci,
        "seed": seed,
        "collapse_mode": collapse_mode,
        "verdict_min_k": verdict_min_k,
    }
    return EvaluationResult(keys=out, verdicts=verdicts, settings=settings,
                            compute={k: v for k, v in spent.items() if v})


def _evaluate_split(
    name: str,
    spec: ArmSpec,
    counts: pl.DataFrame,
    split: str,
    ks: list[int] | None,
    n_boot: int,
    ci: float,
    seed: int,
    collapse_mode: str,
    category: dict[str, str],
) -> SplitEvaluation:
    rows = counts.filter(pl.col("split") == split)
    std = (
        rows.filter((pl.col("model") == spec.standard) & (pl.col("variant") == "standard"))
        .group_by("problem_id")
        .agg(pl.col("n", "c", "n_det", "n_collapse").sum())
    )
    modc = {
        v: rows.filter((pl.col("model") == spec.model_of(v)) & (pl.col("variant") == v))
        for v in MODC_VARIANTS
        if spec.model_of(v) is not None
    }
    # Paired comparisons need the same problems in every arm: keep problems every model covers
    # in every mode.
    all_pids = set(std["problem_id"].to_list())
    common = set(all_pids)
    for frame in modc.values():
        all_pids |= set(frame["problem_id"].to_list())
        hits = frame.group_by("problem_id").agg(hit=pl.col("mode").is_in(list(spec.modes)).sum())
        common &= set(hits.filter(pl.col("hit") == len(spec.modes))["problem_id"].to_list())
    pids = sorted(common)
    if not pids:
        raise InputError(
            f"arms.{name}: split {split!r} has no problem with samples from every model and mode"
        )

    std_n = problem_matrix(std.with_columns(mode=pl.lit("")), pids, ("",), "n")[:, 0]
    std_c = problem_matrix(std.with_columns(mode=pl.lit("")), pids, ("",), "c")[:, 0]
    n_max = int(std_n.min())
    budgets = list(ks) if ks is not None else default_ks(n_max)
    if budgets[-1] > n_max:
        raise InputError(
            f"evaluate.ks: k={budgets[-1]} exceeds the {n_max} samples per problem of model "
            f"{spec.standard!r} on split {split!r}; lower evaluate.ks or raise sample.n"
        )
    idx = resample_indices(len(pids), n_boot, seed)
    std_vals = pass_at_k_curve(std_n, std_c, budgets)
    curves: dict[str, Curve] = {}
    curves["standard"] = _curve(std_vals, budgets, idx, ci)
    single: dict[str, dict[str, Curve]] = {}
    per_problem: dict[str, np.ndarray] = {"standard": std_vals}
    mode_counts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    diff_sd: dict[str, list[float]] = {}
    for v, frame in modc.items():
        n = problem_matrix(frame, pids, spec.modes, "n")
        c = problem_matrix(frame, pids, spec.modes, "c")
        mode_counts[v] = (n, c)
        m = len(spec.modes)
        ceil_share = -(-budgets[-1] // m)
        if ceil_share > n.min():
            raise InputError(
                f"arms.{name}.{v}: pass@{budgets[-1]} split over {m} modes needs {ceil_share} "
                f"samples per mode, model {spec.model_of(v)!r} has {int(n.min())} on {split!r}"
            )
        vals = pass_at_k_modc(n, c, budgets)
        per_problem[v] = vals
        diff_sd[v] = _floats(np.std(vals - std_vals, axis=0, ddof=1) if len(pids) > 1
                             else np.zeros(len(budgets)))
        curves[v] = _curve(vals, budgets, idx, ci)
        _add_diff(curves[v], paired_diff_interval(vals, std_vals, idx, ci), curves["standard"])
        single[v] = {}
        for j, mode in enumerate(spec.modes):
            ks_m = [k for k in budgets if k <= n[:, j].min()]
            single[v][mode] = _curve(pass_at_k_curve(n[:, j], c[:, j], ks_m), ks_m, idx, ci)

    collapse, shares = _collapse(std, modc, pids, spec.modes, collapse_mode)
    cats: dict[str, dict[str, Any]] = {}
    labels = np.array([category.get(p) for p in pids], dtype=object)
    for cat in sorted({c for c in labels if c is not None}):
        mask = labels == cat
        entry: dict[str, Any] = {"n_problems": int(mask.sum())}
        for arm, vals in per_problem.items():
            entry[arm] = round(float(vals[mask, -1].mean()), 6)
        for v, (frame_n, frame_c) in mode_counts.items():
            for j, mode in enumerate(spec.modes):
                if budgets[-1] <= frame_n[mask, j].min():
                    vals = pass_at_k_curve(frame_n[mask, j], frame_c[mask, j], [budgets[-1]])
                    entry[f"{v}:{mode}"] = round(float(vals.mean()), 6)
        cats[cat] = entry

    return SplitEvaluation(
        split=split,
        n=budgets[-1],
        n_problems=len(pids),
        dropped_problems=len(all_pids) - len(pids),
        curves=curves,
        single_modes=single,
        collapse=collapse,
        shares=shares,
        categories=cats,
        diff_sd=diff_sd,
    )


def _collapse(
    std: pl.DataFrame,
    modc: dict[str, pl.DataFrame],
    pids: list[str],
    modes: tuple[str, ...],
    collapse_mode: str,
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Per-problem share of ``collapse_mode`` among samples with a detected mode, per variant,
    and how often ModC samples follow the mode they were asked for."""
    keep = pl.col("problem_id").is_in(pids)
    frames = {"standard": std.filter(keep)} | {v: f.filter(keep) for v, f in modc.items()}
    if sum(int(f["n_det"].sum()) for f in frames.values()) == 0:
        return {}, {}
    stats: dict[str, Any] = {"mode": collapse_mode, "threshold": COLLAPSE_THRESHOLD}
    shares: dict[str, list[float]] = {}
    for v, f in frames.items():
        per = (
            f.group_by("problem_id")
            .agg(pl.col("n_det", "n_collapse").sum())
            .filter(pl.col("n_det") > 0)
            .sort("problem_id")
        )
        share = (per["n_collapse"] / per["n_det"]).to_numpy()
        shares[v] = _floats(share) if len(share) else []
        entry: dict[str, Any] = {"n_problems": len(share)}
        if len(share):
            entry["mean_share"] = round(float(share.mean()), 6)
            collapsed = is_collapsed(share)
            entry["collapsed_fraction"] = round(float(collapsed.mean()), 6)
        if v != "standard":
            det = f.group_by("mode").agg(pl.col("n_det", "n_follow").sum())
            by_mode = {m: (d, f) for m, d, f in det.select("mode", "n_det", "n_follow").iter_rows()}
            follow = {
                m: round(by_mode[m][1] / by_mode[m][0], 6)
                for m in modes
                if m in by_mode and by_mode[m][0] > 0
            }
            total = int(det["n_det"].sum())
            entry["follows_mode"] = round(int(det["n_follow"].sum()) / total, 6) if total else None
            entry["follows_mode_by_mode"] = follow
        stats[v] = entry
    return stats, shares

