"""Results section for RL after SFT: each RL'd model against its start and against RL'd standard.

What it handles, on each evaluated split, with paired bootstrap CIs over the problems both models
were sampled on:

- every RL job against the model it started from: pass@k of both (ModC models split k over their
  modes) and their difference; for a model with modes on a task that detects a completion's mode,
  the *mode-following* rate (share of forced-mode samples whose detected mode is the requested
  one) before and after RL;
- every RL'd ModC model against every RL'd standard model of its arm, beside the same difference
  between their SFT starts;
- the answers to the four questions of RL after SFT (does RL close the pass@1 gap; does ModC still
  lead from k = 2; does plain RL loosen the prefix binding and does the binding reward keep it;
  does ModC add on top of pass@k RL), read from those rows by fixed rules;
- one figure per split: pass@k of every RL'd model (solid) and its start (dashed).

What it leaves out: the tagged groups' own standard-vs-ModC tables (the pass@k sections) and
the tagged-against-untagged comparisons (``objective_sections``).

    text, rows = rl_section(samples, jobs, ks=[1, 2, 4], n_resamples=1000, figures_dir=out)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from modc_data.evaluation.bootstrap import (
    paired_diff_interval,
    percentile_interval,
    resample_indices,
)
from modc_data.evaluation.counts import count_table, problem_matrix
from modc_data.evaluation.markdown import cell, group_rows
from modc_data.evaluation.passk import pass_at_k_curve, pass_at_k_modc


@dataclass(frozen=True)
class RLJob:
    """One RL'd model and its start (model keys in the samples table), with what RL did."""

    key: str
    start: str
    variant: str  # standard | experts | prefix (both models)
    modes: tuple[str, ...]  # () for standard
    how: str = ""  # e.g. "GRPO, reward verifier and requested mode, 20 steps"
    method: str = "grpo"  # grpo | passk
    binding: bool = False
    arm: str = ""  # the (label source, mix) dataset both models were trained on


_COLS = ("n", "c", "n_det", "n_follow")


def _r(a) -> list[float]:
    return [round(float(x), 6) for x in np.atleast_1d(a)]


def _frame(at: pl.DataFrame, model: str, variant: str, modes: tuple[str, ...]) -> pl.DataFrame:
    f = at.filter((pl.col("model") == model) & (pl.col("variant") == variant))
    if not modes:  # one column per problem
        f = f.group_by("problem_id").agg(pl.col(*_COLS).sum()).with_columns(mode=pl.lit(""))
    return f


def _covered(f: pl.DataFrame, modes: tuple[str, ...]) -> set[str]:
    """Problems sampled in every one of ``modes``."""
    modes = modes or ("",)
    return set(f.filter(pl.col("mode").is_in(list(modes))).group_by("problem_id")
               .agg(m=pl.col("mode").n_unique()).filter(pl.col("m") == len(modes))["problem_id"]
               .to_list())


def _mats(f: pl.DataFrame, pids: list[str], modes: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {col: problem_matrix(f, pids, modes or ("",), col) for col in _COLS}


def _budgets(ks: Sequence[int], sides: Sequence[tuple[dict, tuple]]) -> list[int]:
    """The ks every side has enough samples per mode for."""
    return [k for k in ks if all(-(-k // max(1, len(modes))) <= m["n"].min() for m, modes in sides)]


def _passk(m: dict[str, np.ndarray], modes: tuple[str, ...], ks: list[int]) -> np.ndarray:
    return pass_at_k_modc(m["n"], m["c"], ks) if modes else pass_at_k_curve(m["n"][:, 0], m["c"][:, 0], ks)


def _interval_row(base: dict, quantity: str, ks: list[int], iv) -> dict:
    return {**base, "quantity": quantity, "k": ks, "estimate": _r(iv.estimate), "low": _r(iv.low),
            "high": _r(iv.high)}


def rl_rows(samples: pl.DataFrame, jobs: Sequence[RLJob], ks: Sequence[int], *,
            n_resamples: int, ci: float = 0.95, seed: int = 0,
            counts: pl.DataFrame | None = None) -> list[dict]:
    """Rows per (job, split, quantity): pass@k of start and RL'd model, their difference, and
    the mode-following rates and difference where modes are detected."""
    counts = count_table(samples, collapse_mode="") if counts is None else counts
    rows: list[dict] = []
    for job in jobs:
        for split in sorted(counts.filter(pl.col("model") == job.key)["split"].unique().to_list()):
            at = counts.filter(pl.col("split") == split)
            frames = {name: _frame(at, model, job.variant, job.modes)
                      for name, model in (("start", job.start), ("rl", job.key))}
            pids = sorted(_covered(frames["start"], job.modes) & _covered(frames["rl"], job.modes))
            if not pids:
                continue
            mats = {name: _mats(f, pids, job.modes) for name, f in frames.items()}
            budgets = _budgets(ks, [(m, job.modes) for m in mats.values()])
            if not budgets:
                continue
            values = {name: _passk(m, job.modes, budgets) for name, m in mats.items()}
            idx = resample_indices(len(pids), n_resamples, seed)
            base = {"job": job.key, "start": job.start, "variant": job.variant, "split": split,
                    "n_problems": len(pids), "how": job.how}
            for name in ("start", "rl"):
                rows.append(_interval_row(base, f"pass@k {name}", budgets,
                                          percentile_interval(values[name], idx, ci)))
            rows.append(_interval_row(base, "pass@k RL − start", budgets,
                                      paired_diff_interval(values["rl"], values["start"], idx, ci)))
            if job.modes and all(m["n_det"].sum() > 0 for m in mats.values()):
                follow = {name: m["n_follow"].sum(axis=1) / m["n"].sum(axis=1)
                          for name, m in mats.items()}
                iv = paired_diff_interval(follow["rl"][:, None], follow["start"][:, None], idx, ci)
                rows.append({**_interval_row(base, "mode-following, RL − start", [], iv),
                             "start_rate": round(float(follow["start"].mean()), 6),
                             "rl_rate": round(float(follow["rl"].mean()), 6)})
    return rows


def against_rows(samples: pl.DataFrame, jobs: Sequence[RLJob], ks: Sequence[int], *,
                 n_resamples: int, ci: float = 0.95, seed: int = 0,
                 counts: pl.DataFrame | None = None) -> list[dict]:
    """Every RL'd ModC model against every RL'd standard model of its arm (quantity ``RL``), and
    their SFT starts against each other (``SFT``), on the problems all four were sampled on."""
    counts = count_table(samples, collapse_mode="") if counts is None else counts
    rows: list[dict] = []
    for mj in (j for j in jobs if j.modes):
        for sj in (j for j in jobs if not j.modes and j.arm == mj.arm):
            for split in sorted(counts.filter(pl.col("model") == mj.key)["split"].unique().to_list()):
                at = counts.filter(pl.col("split") == split)
                sides = {("modc", "RL"): _frame(at, mj.key, mj.variant, mj.modes),
                         ("modc", "SFT"): _frame(at, mj.start, mj.variant, mj.modes),
                         ("std", "RL"): _frame(at, sj.key, "standard", ()),
                         ("std", "SFT"): _frame(at, sj.start, "standard", ())}
                modes_of = {"modc": mj.modes, "std": ()}
                pids = sorted(set.intersection(*(_covered(f, modes_of[s]) for (s, _), f in sides.items())))
                if not pids:
                    continue
                mats = {key: _mats(f, pids, modes_of[key[0]]) for key, f in sides.items()}
                budgets = _budgets(ks, [(m, modes_of[key[0]]) for key, m in mats.items()])
                if not budgets:
                    continue
                idx = resample_indices(len(pids), n_resamples, seed)
                base = {"job": f"{mj.key} vs {sj.key}", "modc": mj.key, "standard": sj.key, "modc_method": mj.method,
                        "modc_binding": mj.binding, "standard_method": sj.method, "split": split,
                        "n_problems": len(pids)}
                for stage in ("SFT", "RL"):
                    a = _passk(mats[("modc", stage)], mj.modes, budgets)
                    b = _passk(mats[("std", stage)], (), budgets)
                    rows.append(_interval_row(base, stage, budgets, paired_diff_interval(a, b, idx, ci)))
    return rows


def _sig(lo: float, hi: float) -> int:
    return 1 if lo > 0 else -1 if hi < 0 else 0


def _verdict(lo: float, hi: float, up: str, down: str) -> str:
    return {1: up, -1: down, 0: "no significant change"}[_sig(lo, hi)]


def _at(r: dict, k: int) -> tuple[float, float, float]:
    i = r["k"].index(k)
    return r["estimate"][i], r["low"][i], r["high"][i]


def _lead_from_2(r: dict) -> str:
    """Where a ModC − standard row is above / below zero among k >= 2."""
    ks = [k for k in r["k"] if k >= 2]
    if not ks:
        return "no k >= 2 was sampled"
    up = [k for k in ks if _sig(*_at(r, k)[1:]) > 0]
    down = [k for k in ks if _sig(*_at(r, k)[1:]) < 0]
    if len(up) == len(ks):
        return f"yes, at every k from 2 to {ks[-1]}"
    out = (f"at k = {', '.join(map(str, up))} only" if up else "no: at no k >= 2")
    return out + (f"; standard leads at k = {', '.join(map(str, down))}" if down else "")


def answers(rows: list[dict], vs: list[dict]) -> list[str]:
    """The four questions, answered from ``rl_rows`` and ``against_rows`` by fixed rules:
    a difference counts only when its paired CI excludes zero."""
    out = ["### Answers", "",
           "A difference counts only when its paired CI excludes zero; every RL'd model had the "
           "same RL compute.", ""]
    by_split = group_rows(vs, "split")
    for (split,), rs in by_split.items():
        pairs = group_rows(rs, "modc", "standard")
        out += [f"On `{split}`:", ""]
        q1, q2, q4 = [], [], []
        for (mk, sk), pr in pairs.items():
            sft, rl = (next(r for r in pr if r["quantity"] == q) for q in ("SFT", "RL"))
            if rl["modc_method"] == "grpo" and rl["standard_method"] == "grpo" and not rl["modc_binding"]:
                e0, l0, h0 = _at(sft, 1)
                e1, l1, h1 = _at(rl, 1)
                before, after = _sig(l0, h0), _sig(l1, h1)
                verdict = ("RL closes it" if before and not after else
                           "RL does not close it" if before and after == before else
                           "RL reverses it" if before and after else
                           "there was no significant gap; RL opens one" if after else
                           "there was no significant gap before RL, nor after")
                q1.append(f"  - {mk} − {sk}: SFT {cell(e0, l0, h0, True)}, after RL "
                          f"{cell(e1, l1, h1, True)}: {verdict}.")
                q2.append(f"  - {mk} − {sk}: {_lead_from_2(rl)}.")
            if rl["standard_method"] == "passk":
                q4.append(f"  - {mk} ({rl['modc_method']}) − {sk}: {_lead_from_2(rl)}.")
        out += ["1. **Does RL close the pass@1 gap?** (ModC − standard at k = 1, both GRPO)",
                *(q1 or ["  - no GRPO standard and ModC pair on this split."]),
                "2. **Does ModC still lead from k = 2 after RL?** (both GRPO)",
                *(q2 or ["  - no GRPO standard and ModC pair on this split."]),
                "3. **Does plain RL loosen the prefix binding; does the binding reward keep it?**"]
        q3 = []
        for r in rows:
            if r["split"] == split and r["quantity"] == "mode-following, RL − start":
                q3.append(f"  - {r['job']} ({r['how']}): follows the requested mode "
                          f"{r['start_rate']:.3f} before RL, {r['rl_rate']:.3f} after, "
                          f"{cell(r['estimate'][0], r['low'][0], r['high'][0], True)}: "
                          + _verdict(r["low"][0], r["high"][0], "it follows more often",
                                     "RL loosened the binding") + ".")
        out += q3 or ["  - not measured: no model with modes whose samples' mode is detectable."]
        out += ["4. **Does ModC add on top of pass@k RL?** (ModC − the pass@k-RL'd standard)",
                *(q4 or ["  - no pass@k-RL'd standard model on this split."]), ""]
    return out


def rl_figure(split: str, rows: list[dict], path: Path) -> Path:
    """pass@k (log2 k) of every RL'd model (solid) and its start (dashed) on ``split``."""
    from matplotlib.figure import Figure

    from modc_data.evaluation.figures import save_figure

    fig = Figure(figsize=(7.0, 4.6))
    ax = fig.add_subplot()
    colors = iter(["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
                   "#7f7f7f", "#bcbd22", "#17becf"])
    starts_drawn = set()
    for (job,), rs in group_rows([r for r in rows if r["split"] == split and r["k"]], "job").items():
        by = {r["quantity"]: r for r in rs}
        color = next(colors, "#444444")
        ax.plot(by["pass@k rl"]["k"], by["pass@k rl"]["estimate"], marker="o", ms=3, color=color,
                label=job)
        start = by["pass@k start"]
        if start["start"] not in starts_drawn:
            starts_drawn.add(start["start"])
            ax.plot(start["k"], start["estimate"], ls="--", lw=1.2, color=color, alpha=0.8,
                    label=f"{start['start']} (SFT start)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples per problem; ModC models split k over their modes)")
    ax.set_ylabel("pass@k")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(f"RL after SFT — {split}")
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def rl_section(samples: pl.DataFrame, jobs: Sequence[RLJob], ks: Sequence[int], *,
               n_resamples: int, ci: float = 0.95, seed: int = 0,
               figures_dir: str | Path | None = None) -> tuple[str, list[dict]]:
    """Markdown for ``rl_rows`` and ``against_rows`` (empty when there is no RL job), and the
    rows (those of ``against_rows`` also carry ``modc`` and ``standard``)."""
    counts = count_table(samples, collapse_mode="")
    rows = rl_rows(samples, jobs, ks, n_resamples=n_resamples, ci=ci, seed=seed, counts=counts)
    if not rows:
        return "", []
    vs = against_rows(samples, jobs, ks, n_resamples=n_resamples, ci=ci, seed=seed, counts=counts)
    lines = ["## RL after SFT", "",
             f"Each RL'd model against the model it started from, on the same problems; paired "
             f"{ci:.0%} bootstrap CIs over problems. ModC models split k over their modes. "
             "Mode-following: the share of a problem's forced-mode samples whose detected mode is "
             "the one requested.", ""]
    lines += answers(rows, vs)
    if figures_dir is not None:
        for split in sorted({r["split"] for r in rows}):
            path = rl_figure(split, rows, Path(figures_dir) / f"rl-{split}.png")
            lines += [f"![RL after SFT, {split}](figures/{path.name})", ""]
    for (job, split), rs in group_rows(rows, "job", "split").items():
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
    for (split,), rs in group_rows(vs, "split").items():
        ks_ = rs[0]["k"]
        lines += [f"### RL'd ModC − RL'd standard, {split} ({rs[0]['n_problems']} problems)", "",
                  "Paired differences; the SFT row is the same difference between their starts.", "",
                  "| ModC | standard | | " + " | ".join(f"k={k}" for k in ks_) + " |",
                  "|---|---|---|" + "---|" * len(ks_)]
        for r in rs:
            lines.append(f"| {r['modc']} | {r['standard']} | {r['quantity']} | " + " | ".join(
                cell(e, lo, hi, True) for e, lo, hi in zip(r["estimate"], r["low"], r["high"],
                                                          strict=True)) + " |")
        lines.append("")
    return "\n".join(lines), rows + vs
