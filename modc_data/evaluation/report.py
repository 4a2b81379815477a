"""Write an ``EvaluationResult`` out: the pass@k section of results.md (per comparison and split:
pass@k tables with paired differences, efficiency, detectable differences, single modes, mode
collapse, categories) and ``summary.json``, ``details.json``, ``metrics.json`` and
``plots/passk_<split>.csv`` (``write_reports``).

What it leaves out: computing the result (``estimates.evaluate``; the record types and verdicts
are ``comparisons``'s), the PNG figures (``figures.write_figures``) and the other results.md
sections, which the evaluate stage appends through ``write_reports(results_md=...)``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl

from modc_data.artifacts import write_text
from modc_data.evaluation.comparisons import (
    ARMS,
    COMPUTE_TOLERANCE,
    EvaluationResult,
    SplitEvaluation,
)
from modc_data.evaluation.markdown import cell
from modc_data.evaluation.power import detectable_difference


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
    details.json (a section's rows). The PNG figures are ``figures.write_figures``'s."""
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
