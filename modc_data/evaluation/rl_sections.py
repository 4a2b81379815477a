"""Results section for RL after SFT: each RL'd model against the model it started from.

What it handles: for every RL job (``rl_jobs``), on each evaluated split, pass@k of the start and
of the RL'd model (ModC models split k over their modes) and their paired difference, and for a
model with modes on a task that detects a completion's mode, the *mode-following* rate (share of
forced-mode samples whose detected mode is the requested one) before and after RL: the question
whether RL loosens the prefix ↔ mode binding. Paired bootstrap CIs over the problems both models
were sampled on. What it leaves out: the RL'd models' own standard-vs-ModC table (the tagged
group's pass@k section) and the tagged-against-untagged comparisons (``objective_sections``).

    text, rows = rl_section(samples, jobs, ks=[1, 2, 4], n_resamples=1000)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from modc_data.evaluation.bootstrap import (
    paired_diff_interval,
    percentile_interval,
    resample_indices,
)
from modc_data.evaluation.passk import pass_at_k_curve, pass_at_k_modc
from modc_data.evaluation.report import cell, count_table, group_rows, problem_matrix


@dataclass(frozen=True)
class RLJob:
    """One RL'd model and its start (model keys in the samples table), with what RL did."""

    key: str
    start: str
    variant: str  # standard | experts | prefix (both models)
    modes: tuple[str, ...]  # () for standard
    how: str = ""  # e.g. "GRPO, reward verifier and requested mode, 20 steps"


def _r(a) -> list[float]:
    return [round(float(x), 6) for x in np.atleast_1d(a)]


def rl_rows(samples: pl.DataFrame, jobs: Sequence[RLJob], ks: Sequence[int], *,
            n_resamples: int, ci: float = 0.95, seed: int = 0) -> list[dict]:
    """Rows per (job, split, quantity): pass@k of start and RL'd model, their difference, and
    the mode-following rates and difference where modes are detected."""
    counts = count_table(samples, collapse_mode="")
    rows: list[dict] = []
    for job in jobs:
        modes = job.modes or ("",)
        for split in sorted(counts.filter(pl.col("model") == job.key)["split"].unique().to_list()):
            at = counts.filter(pl.col("split") == split)
            frames = {}
            for name, model in (("start", job.start), ("rl", job.key)):
                f = at.filter((pl.col("model") == model) & (pl.col("variant") == job.variant))
                if not job.modes:  # one column per problem
                    f = (f.group_by("problem_id").agg(pl.col("n", "c", "n_det", "n_follow").sum())
                         .with_columns(mode=pl.lit("")))
                frames[name] = f
            have = [set(f.filter(pl.col("mode").is_in(list(modes)))
                        .group_by("problem_id").agg(m=pl.col("mode").n_unique())
                        .filter(pl.col("m") == len(modes))["problem_id"].to_list())
                    for f in frames.values()]
            pids = sorted(have[0] & have[1])
            if not pids:
                continue
            mats = {name: {col: problem_matrix(f, pids, modes, col)
                           for col in ("n", "c", "n_det", "n_follow")} for name, f in frames.items()}
            budgets = [k for k in ks
                       if all(-(-k // len(modes)) <= m["n"].min() for m in mats.values())]
            if not budgets:
                continue
            values = {name: (pass_at_k_curve(m["n"][:, 0], m["c"][:, 0], budgets) if not job.modes
                             else pass_at_k_modc(m["n"], m["c"], budgets))
                      for name, m in mats.items()}
            idx = resample_indices(len(pids), n_resamples, seed)
            base = {"job": job.key, "start": job.start, "variant": job.variant, "split": split,
                    "n_problems": len(pids), "how": job.how}
            for name in ("start", "rl"):
                iv = percentile_interval(values[name], idx, ci)
                rows.append({**base, "quantity": f"pass@k {name}", "k": budgets,
                             "estimate": _r(iv.estimate), "low": _r(iv.low), "high": _r(iv.high)})
            iv = paired_diff_interval(values["rl"], values["start"], idx, ci)
            rows.append({**base, "quantity": "pass@k RL − start", "k": budgets,
                         "estimate": _r(iv.estimate), "low": _r(iv.low), "high": _r(iv.high)})
            if job.modes and all(m["n_det"].sum() > 0 for m in mats.values()):
                follow = {name: m["n_follow"].sum(axis=1) / m["n"].sum(axis=1)
                          for name, m in mats.items()}
                iv = paired_diff_interval(follow["rl"][:, None], follow["start"][:, None], idx, ci)
                rows.append({**base, "quantity": "mode-following, RL − start", "k": [],
                             "estimate": _r(iv.estimate), "low": _r(iv.low), "high": _r(iv.high),
                             "start_rate": round(float(follow["start"].mean()), 6),
                             "rl_rate": round(float(follow["rl"].mean()), 6)})
    return rows


def _verdict(lo: float, hi: float, up: str, down: str) -> str:
    return up if lo > 0 else down if hi < 0 else "no significant change"


def rl_section(samples: pl.DataFrame, jobs: Sequence[RLJob], ks: Sequence[int], *,
               n_resamples: int, ci: float = 0.95, seed: int = 0) -> tuple[str, list[dict]]:
    """Markdown for ``rl_rows`` (empty when there is no RL job), and the rows."""
    rows = rl_rows(samples, jobs, ks, n_resamples=n_resamples, ci=ci, seed=seed)
    if not rows:
        return "", []
    lines = ["## RL after SFT", "",
             f"Each RL'd model against the model it started from, on the same problems; paired "
             f"{ci:.0%} bootstrap CIs over problems. ModC models split k over their modes. "
             "Mode-following: the share of a problem's forced-mode samples whose detected mode is "
             "the one requested.", ""]
    groups = group_rows(rows, "job", "split")
    for (job, split), rs in groups.items():
        first = rs[0]
        ks_ = first["k"]
        lines += [f"### {job} from {first['start']}, {split} ({first['n_problems']} problems)"
                  + (f": {first['how']}" if first["how"] else ""), "",
                  "| quantity | " + " | ".join(f"k={k}" for k in ks_) + " |",
                  "|---|" + "---|" * len(ks_)]
        by = {r["quantity"]: r for r in rs}
        for r in rs:
            if r["k"]:
                signed = "−" in r["quantity"]
                lines.append(f"| {r['quantity']} | " + " | ".join(
                    cell(e, lo, hi, signed) for e, lo, hi in zip(r["estimate"], r["low"], r["high"],
                                                                 strict=True)) + " |")
        d = by["pass@k RL − start"]
        lines += ["", f"- Does RL raise pass@k? At k = {d['k'][0]}: "
                  f"{_verdict(d['low'][0], d['high'][0], 'yes', 'no, it lowers it')}; at k = "
                  f"{d['k'][-1]}: {_verdict(d['low'][-1], d['high'][-1], 'yes', 'no, it lowers it')}."]
        f = by.get("mode-following, RL − start")
        if first["variant"] != "standard" and not f:
            lines.append("- Does the model still follow the requested mode? Not measured: no "
                         "sample of the start or of the RL'd model has a detectable mode.")
        if f:
            lines.append(f"- Does the model still follow the requested mode? {f['start_rate']:.3f} "
                         f"before RL, {f['rl_rate']:.3f} after, difference "
                         f"{cell(f['estimate'][0], f['low'][0], f['high'][0], True)}: "
                         + _verdict(f["low"][0], f["high"][0], "it follows more often",
                                    "RL loosened the binding") + ".")
        lines.append("")
    return "\n".join(lines), rows
