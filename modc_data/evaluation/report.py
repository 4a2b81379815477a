"""Evaluate sampled completions: pass@k curves, ModC split, paired CIs, efficiency, mode collapse.

What goes in:
- ``samples`` (polars): one row per sampled completion with columns ``problem_id``, ``split``,
  ``model``, ``variant`` ('standard' | 'experts' | 'prefix'), ``mode`` ('' for standard),
  ``correct`` (bool) and ``detected_mode`` (str or null; Countdown: 'dfs' / 'bfs').
- ``problems`` (polars): ``problem_id``, ``split`` and optionally ``category``
  ('both' | 'only_dfs' | 'only_bfs' | 'neither').
- ``arms``: arm name -> ``ArmSpec`` naming the model keys of its standard / experts / prefix
  models and its modes.

What comes out: ``EvaluationResult`` (``evaluate``), and on disk (``write_reports``):
``summary.json``, ``details.json``, ``metrics.json``, ``plots/passk_<split>.csv``, ``results.md``
(the PNG figures: ``figures.write_figures``). Every curve is the mean over problems of the per-problem unbiased estimator;
CIs are percentile bootstraps over problems with one index matrix per split shared by all arms.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from modc_data.artifacts import write_text
from modc_data.errors import InputError
from modc_data.evaluation.bootstrap import (
    Interval,
    paired_diff_interval,
    percentile_interval,
    resample_indices,
)
from modc_data.evaluation.passk import default_ks, pass_at_k_curve, pass_at_k_modc
from modc_data.evaluation.power import detectable_difference
from modc_data.schema import SPLITS, group_key

MODC_VARIANTS = ("experts", "prefix")
ARMS = ("standard",) + MODC_VARIANTS
# A problem counts as collapsed when this share or more of its samples use one detected mode.
COLLAPSE_THRESHOLD = 0.9


def is_collapsed(share: np.ndarray) -> np.ndarray:
    """Per problem: one mode has >= COLLAPSE_THRESHOLD of the samples with a detected mode
    (``share``: the collapse mode's share of them)."""
    return (share >= COLLAPSE_THRESHOLD) | (share <= 1 - COLLAPSE_THRESHOLD)


_SAMPLE_COLUMNS = {
    "problem_id": pl.String,
    "split": pl.String,
    "model": pl.String,
    "variant": pl.String,
    "mode": pl.String,
    "correct": pl.Boolean,
    "detected_mode": pl.String,
}


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


def count_table(samples: pl.DataFrame, collapse_mode: str) -> pl.DataFrame:
    """One row per (model, variant, split, problem, mode): n, c and detected-mode counts."""
    det = pl.col("detected_mode").cast(pl.String)
    return samples.group_by("model", "variant", "split", "problem_id", "mode").agg(
        n=pl.len(),
        c=pl.col("correct").cast(pl.Int64).sum(),
        n_det=det.is_not_null().cast(pl.Int64).sum(),
        n_collapse=(det == collapse_mode).fill_null(False).cast(pl.Int64).sum(),
        n_follow=(det == pl.col("mode")).fill_null(False).cast(pl.Int64).sum(),
    )


def problem_matrix(frame: pl.DataFrame, pids: list[str], modes: tuple[str, ...], col: str) -> np.ndarray:
    """(P, M) array of ``col`` for problems ``pids`` and ``modes``; missing cells are 0."""
    pos = {p: i for i, p in enumerate(pids)}
    mpos = {m: j for j, m in enumerate(modes)}
    out = np.zeros((len(pids), len(modes)), dtype=np.int64)
    for p, m, v in frame.select("problem_id", "mode", col).iter_rows():
        if p in pos and m in mpos:
            out[pos[p], mpos[m]] = v
    return out


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
    verdicts = {key: _verdict(key, per_split, ci, verdict_min_k) for key, per_split in out.items()}
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


# --------------------------------------------------------------------------- verdict
def _verdict(key: str, per_split: dict[str, SplitEvaluation], ci: float, min_k: int) -> str:
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


# --------------------------------------------------------------------------- writing


def summary_dict(result: EvaluationResult) -> dict[str, Any]:
    """``{key: {split: {arm: {k, pass_at_k, ci_low, ci_high[, diff…, efficiency_ratio]}}}}``."""
    out: dict[str, Any] = {}
    for key, per_split in result.keys.items():
        out[key] = {}
        for split, ev in per_split.items():
            out[key][split] = {}
            for arm, cur in ev.curves.items():
                d = asdict(cur)
                if arm == "standard":
                    d = {f: d[f] for f in ("k", "pass_at_k", "ci_low", "ci_high")}
                elif d["not_comparable"] is None:
                    del d["not_comparable"]  # compared at equal compute: nothing to say
                out[key][split][arm] = d
    return out


def details_dict(result: EvaluationResult) -> dict[str, Any]:
    """Everything besides the curves: problem counts, single modes, collapse, categories."""
    out: dict[str, Any] = {"settings": result.settings, "verdicts": result.verdicts, "keys": {}}
    for key, per_split in result.keys.items():
        out["keys"][key] = {
            split: {
                "n": ev.n,
                "n_problems": ev.n_problems,
                "dropped_problems": ev.dropped_problems,
                "single_modes": {
                    v: {m: {f: x for f, x in asdict(c).items() if f != "not_comparable"}
                        for m, c in per.items()}
                    for v, per in ev.single_modes.items()
                },
                "collapse": ev.collapse,
                "categories": ev.categories,
                "diff_sd": ev.diff_sd,
            }
            for split, ev in per_split.items()
        }
    return out


def metrics_dict(result: EvaluationResult) -> dict[str, float]:
    """Flat ``{'<key>/<split>/<arm>/pass@k': value}`` for k in {1, 8, n}, plus efficiency ratios."""
    out: dict[str, float] = {}
    for key, per_split in result.keys.items():
        for split, ev in per_split.items():
            for arm, cur in ev.curves.items():
                for k, v in zip(cur.k, cur.pass_at_k, strict=True):
                    if k in (1, 8) or k == cur.k[-1]:
                        out[f"{key}/{split}/{arm}/pass@{k}"] = v
                if cur.efficiency_ratio is not None and not cur.not_comparable:
                    out[f"{key}/{split}/{arm}/efficiency_ratio"] = cur.efficiency_ratio
    return out


def plots_frames(result: EvaluationResult) -> dict[str, pl.DataFrame]:
    """Split -> long table (key, arm, series, k, pass_at_k, ci_low, ci_high) for DVC plots."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for key, per_split in result.keys.items():
        for split, ev in per_split.items():
            for arm, cur in ev.curves.items():
                for i, k in enumerate(cur.k):
                    rows.setdefault(split, []).append(
                        {
                            "key": key,
                            "arm": arm,
                            "series": f"{key}:{arm}",
                            "k": k,
                            "pass_at_k": cur.pass_at_k[i],
                            "ci_low": cur.ci_low[i],
                            "ci_high": cur.ci_high[i],
                        }
                    )
    return {s: pl.DataFrame(r) for s, r in rows.items()}


def group_rows(rows: list[dict], *keys: str) -> dict[tuple, list[dict]]:
    """Rows grouped by the values of ``keys``, groups and rows in first-seen order."""
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def cell(v: float, lo: float, hi: float, signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(v)} [{f.format(lo)}, {f.format(hi)}]"


def _detectable_lines(ev: SplitEvaluation, ci: float) -> list[str]:
    """One line per ModC variant: the smallest difference this split's problems detect."""
    out = []
    for v, sds in ev.diff_sd.items():
        c = ev.curves[v]
        if c.not_comparable or ev.n_problems < 2:
            continue
        picks = [i for i, k in enumerate(c.k) if k in (1, 8) or i == len(c.k) - 1]
        cells = ", ".join(
            f"±{detectable_difference(sds[i], ev.n_problems, ci=ci):.3f} at k = {c.k[i]}"
            for i in dict.fromkeys(picks))
        out.append(f"- Smallest difference detectable ({v} − standard, {ev.n_problems} "
                   f"problems, {ci:.0%} CI, 80% power; one training seed, so the seed-to-seed "
                   f"spread is not in it): {cells}.")
    return out


def results_markdown(result: EvaluationResult, note: str = "") -> str:
    """Human-readable report: per key/split pass@k tables, efficiency, collapse, categories.
    ``note``: a line under the title (e.g. which verifier scored the samples)."""
    s = result.settings
    lines = [
        "# ModC evaluation",
        *([note] if note else []),
        "",
        f"pass@k is the unbiased estimator averaged over problems. Brackets: {s.get('ci', 0.95):.0%} "
        f"percentile bootstrap CIs over problems ({s.get('bootstrap')} resamples, seed "
        f"{s.get('seed')}). Δ = ModC arm − standard, paired (same resampled problems). ModC splits "
        "k evenly over the modes.",
        "",
    ]
    for key, per_split in result.keys.items():
        lines += [f"## {key}", "", f"**Verdict:** {result.verdicts[key]}", ""]
        spent = result.compute.get(key) or {}
        if spent:
            lines += ["Training compute: " + "; ".join(
                f"{v} {int(c.get('steps', 0)):,} optimizer steps, {int(c.get('tokens', 0)):,} tokens"
                for v, c in spent.items()) + ". Δ, verdicts and efficiency are printed only "
                f"between models trained at equal compute (steps and tokens within "
                f"{COMPUTE_TOLERANCE:.0%}).", ""]
        for split, ev in per_split.items():
            dropped = (
                f", {ev.dropped_problems} dropped for missing samples"
                if ev.dropped_problems
                else ""
            )
            lines += [
                f"### {key} — split `{split}` ({ev.n_problems} problems, n = {ev.n}{dropped})",
                "",
            ]
            arms = [a for a in ARMS if a in ev.curves]
            header = ["k", "standard"]
            for a in arms[1:]:
                header += [a, f"Δ {a}"]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            std = ev.curves["standard"]
            for i, k in enumerate(std.k):
                row = [str(k), cell(std.pass_at_k[i], std.ci_low[i], std.ci_high[i])]
                for a in arms[1:]:
                    c = ev.curves[a]
                    row += [
                        cell(c.pass_at_k[i], c.ci_low[i], c.ci_high[i]),
                        "not comparable" if c.not_comparable else
                        cell(c.diff[i], c.diff_ci_low[i], c.diff_ci_high[i], signed=True),
                    ]
                lines.append("| " + " | ".join(row) + " |")
            lines.append("")
            for a in arms[1:]:
                c = ev.curves[a]
                if c.not_comparable:
                    lines.append(f"- {a} is not compared with standard: {c.not_comparable}.")
                elif std.pass_at_k[-1] <= 0:
                    lines.append(f"- Efficiency ({a}): undefined (standard's pass@{ev.n} is 0).")
                elif c.efficiency_ratio is None:
                    lines.append(
                        f"- Efficiency ({a}): never reaches standard's pass@{ev.n} = "
                        f"{std.pass_at_k[-1]:.3f} within k ≤ {ev.n}."
                    )
                else:
                    lines.append(
                        f"- Efficiency ({a}): reaches standard's pass@{ev.n} = {std.pass_at_k[-1]:.3f} "
                        f"at k = {c.k_to_match}: {c.efficiency_ratio:.2f}x sample efficiency."
                    )
            lines += _detectable_lines(ev, s.get("ci", 0.95))
            for v, per in ev.single_modes.items():
                best = [
                    f"{m}: pass@{c.k[-1]} = {c.pass_at_k[-1]:.3f}" for m, c in per.items() if c.k
                ]
                lines.append(f"- Single modes of {v} at full budget: " + "; ".join(best) + ".")
            lines.append("")
            if ev.collapse:
                cm = ev.collapse["mode"]
                lines += [
                    f"Mode collapse: per-problem share of samples whose detected mode is `{cm}`; a "
                    f"problem is collapsed when one mode has ≥ {ev.collapse['threshold']:.0%} of its samples.",
                    "",
                    "| model | problems | mean share | collapsed problems | follows its mode |",
                    "|---|---|---|---|---|",
                ]
                for a in ARMS:
                    st = ev.collapse.get(a)
                    if not st:
                        continue
                    fol = st.get("follows_mode")
                    by = st.get("follows_mode_by_mode") or {}
                    fol_s = (
                        "—"
                        if fol is None
                        else f"{fol:.1%} ("
                        + ", ".join(f"{m}: {x:.1%}" for m, x in by.items())
                        + ")"
                    )
                    lines.append(
                        f"| {a} | {st['n_problems']} | {st.get('mean_share', float('nan')):.3f} | "
                        f"{st.get('collapsed_fraction', float('nan')):.1%} | {fol_s} |"
                    )
                lines.append("")
            if ev.categories:
                cols = sorted(
                    {c for e in ev.categories.values() for c in e if c != "n_problems"},
                    key=lambda c: (c not in ARMS, ARMS.index(c) if c in ARMS else 0, c),
                )
                lines += [
                    f"Per category, pass@{ev.n}:",
                    "",
                    "| category | problems | " + " | ".join(cols) + " |",
                    "|" + "---|" * (len(cols) + 2),
                ]
                for cat, e in ev.categories.items():
                    vals = [f"{e[c]:.3f}" if c in e else "—" for c in cols]
                    lines.append(f"| {cat} | {e['n_problems']} | " + " | ".join(vals) + " |")
                lines.append("")
    return "\n".join(lines) + "\n"


def write_reports(result: EvaluationResult, out_dir: str | Path, *, results_md: str | None = None,
                  details_extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write summary.json, details.json, metrics.json, plots/passk_<split>.csv and results.md
    under ``out_dir``, each once and atomically. Returns name -> path. ``results_md``: the whole
    report (default ``results_markdown(result)``); ``details_extra``: more top-level entries of
    details.json (a section's rows). The PNG figures are ``figures.write_figures``'s (it
    imports this module, never the reverse)."""
    out = Path(out_dir)
    paths: dict[str, Path] = {}

    def dump(name: str, obj: Any) -> None:
        paths[name] = out / name
        write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n", paths[name])

    dump("summary.json", summary_dict(result))
    dump("metrics.json", metrics_dict(result))
    details = {**details_dict(result), **(details_extra or {})}
    paths["details.json"] = out / "details.json"
    write_text(json.dumps(details, indent=2, sort_keys=True, default=str) + "\n", paths["details.json"])
    for split, frame in plots_frames(result).items():
        name = f"plots/passk_{split}.csv"
        paths[name] = out / name
        write_text(frame.write_csv(), paths[name])
    paths["results.md"] = out / "results.md"
    write_text(results_markdown(result) if results_md is None else results_md, paths["results.md"])
    return paths
