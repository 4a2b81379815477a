"""Results section for tagged models (another training objective on the same rows) against the
untagged (cross-entropy) models of their arm: does the objective raise pass@k, does ModC still add
on top of it, does it reduce per-problem collapse -- each with a paired bootstrap CI over problems.

    text, rows = objective_section(samples, specs, ks=[1, 2, 4, 8, 16, 32, 64], n_resamples=1000)

``specs`` are the evaluate stage's ``ArmSpec``s; a spec with a ``tag`` is compared with the
untagged spec of the same label source and mix. The tagged group's own standard-vs-ModC table is
in the main pass@k section (its key is ``<label_source>/<mix>+<tag>``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from modc_data.evaluation.bootstrap import (
    paired_diff_interval,
    percentile_interval,
    resample_indices,
)
from modc_data.evaluation.comparisons import COLLAPSE_THRESHOLD, ArmSpec, is_collapsed
from modc_data.evaluation.counts import count_table, problem_matrix
from modc_data.evaluation.markdown import group_rows
from modc_data.evaluation.passk import pass_at_k_curve, pass_at_k_modc

# (row label, model a, model b): the paired difference a - b answers one question each.
COMPARISONS = (
    ("objective standard − CE standard", "obj:standard", "ce:standard"),
    ("objective ModC − CE ModC", "obj:modc", "ce:modc"),
    ("objective ModC − objective standard", "obj:modc", "obj:standard"),
    ("objective standard − CE ModC", "obj:standard", "ce:modc"),
)
# (question, the COMPARISONS row answering it, what a positive difference means)
QUESTIONS = (
    ("Does the objective raise pass@k at large k over CE (standard models)?", COMPARISONS[0][0], "higher"),
    ("Does ModC still add on top of it?", COMPARISONS[2][0], "ModC higher"),
    ("Does the objective alone match CE + ModC?", COMPARISONS[3][0], "higher"),
)


def _pairs(specs: dict[str, ArmSpec]) -> list[tuple[ArmSpec, ArmSpec]]:
    base = {(s.label_source, s.mix): s for s in specs.values() if s.tag is None}
    return [(s, base[(s.label_source, s.mix)]) for s in specs.values()
            if s.tag is not None and (s.label_source, s.mix) in base]


def _models(tagged: ArmSpec, ce: ArmSpec) -> dict[str, tuple[str, str]]:
    """name -> (model key, variant) of the four models compared."""
    out = {"obj:standard": (tagged.standard, "standard"), "ce:standard": (ce.standard, "standard")}
    # ModC on both sides by the same variant: the tagged group's (prefix where it has one), and
    # the CE model of that variant, or the CE arm's other ModC variant where it lacks it. A
    # tagged group with a standard model only has no "obj:modc" (its comparisons are left out).
    variant = "experts" if tagged.experts and not tagged.prefix else "prefix"
    if tagged.model_of(variant):
        out["obj:modc"] = (tagged.model_of(variant), variant)
    ce_variant = variant if ce.model_of(variant) else ("experts" if variant == "prefix" else "prefix")
    if ce.model_of(ce_variant):
        out["ce:modc"] = (ce.model_of(ce_variant), ce_variant)
    return out


def _collapsed(frame: pl.DataFrame, pids: list[str]) -> np.ndarray:
    """Per problem: 1 if >= COLLAPSE_THRESHOLD of its samples with a detected mode are one mode
    (the collapse mode or not), else 0; problems with no detected mode count as not collapsed."""
    det, col = (problem_matrix(frame, pids, ("",), c)[:, 0] for c in ("n_det", "n_collapse"))
    share = np.divide(col, det, out=np.full(len(pids), 0.5), where=det > 0)  # 0.5: not collapsed
    return is_collapsed(share).astype(float)


def objective_rows(
    samples: pl.DataFrame, specs: dict[str, ArmSpec], ks: Sequence[int], *, n_resamples: int,
    ci: float = 0.95, seed: int = 0, collapse_mode: str = "bfs",
) -> list[dict]:
    """One row per (tagged group, split, quantity): pass@k of the four models, the paired
    differences of ``COMPARISONS`` and the collapsed fraction of both standard models."""
    rows: list[dict] = []
    counts = count_table(samples, collapse_mode)
    for tagged, ce in _pairs(specs):
        models = _models(tagged, ce)
        for split in sorted(counts.filter(pl.col("model") == tagged.standard)["split"].unique().to_list()):
            at = counts.filter(pl.col("split") == split)
            frames = {name: at.filter((pl.col("model") == m) & (pl.col("variant") == v))
                      for name, (m, v) in models.items()}
            for name in ("obj:standard", "ce:standard"):  # one row per problem, as estimates.py
                frames[name] = (frames[name].group_by("problem_id")
                                .agg(pl.col("n", "c", "n_det", "n_collapse").sum())
                                .with_columns(mode=pl.lit("")))
            common = None
            for name, f in frames.items():
                if name.endswith("standard"):
                    have = set(f["problem_id"].to_list())
                else:
                    per = (f.filter(pl.col("mode").is_in(list(tagged.modes)))
                           .group_by("problem_id").agg(m=pl.col("mode").n_unique()))
                    have = set(per.filter(pl.col("m") == len(tagged.modes))["problem_id"].to_list())
                common = have if common is None else common & have
            pids = sorted(common or ())
            if not pids:
                continue
            # (n, c) per problem (standard: one column) or per (problem, mode) (ModC)
            nc = {name: tuple(problem_matrix(f, pids, ("",) if name.endswith("standard") else tagged.modes, col)
                              for col in ("n", "c")) for name, f in frames.items()}
            m = len(tagged.modes)  # the budgets every model can be scored at
            budgets = [k for k in ks if all((k if n.shape[1] == 1 else -(-k // m)) <= n.min()
                                            for n, _ in nc.values())]
            values = {name: (pass_at_k_curve(n[:, 0], c[:, 0], budgets) if n.shape[1] == 1
                             else pass_at_k_modc(n, c, budgets))
                      for name, (n, c) in nc.items()}
            idx = resample_indices(len(pids), n_resamples, seed)
            base = {"group": tagged.key, "reference": ce.key, "split": split,
                    "n_problems": len(pids), "k": budgets}
            for name, (model, _) in models.items():
                iv = percentile_interval(values[name], idx, ci)
                rows.append({**base, "quantity": f"pass@k {name}", "model": model,
                             "estimate": _round(iv.estimate), "low": _round(iv.low),
                             "high": _round(iv.high)})
            for label, a, b in COMPARISONS:
                if a not in models or b not in models:
                    continue
                iv = paired_diff_interval(values[a], values[b], idx, ci)
                rows.append({**base, "quantity": label, "model": f"{models[a][0]} − {models[b][0]}",
                             "estimate": _round(iv.estimate), "low": _round(iv.low),
                             "high": _round(iv.high)})
            coll = {name: _collapsed(frames[name], pids) for name in ("obj:standard", "ce:standard")}
            if sum(int(frames[n]["n_det"].sum()) for n in coll) > 0:
                iv = paired_diff_interval(coll["obj:standard"][:, None], coll["ce:standard"][:, None], idx, ci)
                rows.append({**base, "k": [], "quantity": "collapsed fraction, objective − CE standard",
                             "model": f"{models['obj:standard'][0]} − {models['ce:standard'][0]}",
                             "estimate": _round(iv.estimate), "low": _round(iv.low), "high": _round(iv.high),
                             "objective": round(float(coll["obj:standard"].mean()), 6),
                             "ce": round(float(coll["ce:standard"].mean()), 6)})
    return rows


def _round(a) -> list[float]:
    return [round(float(x), 6) for x in np.atleast_1d(a)]


def _answer(row: dict, what: str) -> str:
    lo, hi, est, k = row["low"][-1], row["high"][-1], row["estimate"][-1], row["k"][-1]
    at = f"at k = {k}: {est:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    if lo > 0:
        return f"yes, {what} {at}"
    if hi < 0:
        return f"no, the opposite {at}"
    return f"no significant difference {at}"


def objective_section(
    samples: pl.DataFrame, specs: dict[str, ArmSpec], ks: Sequence[int], *, n_resamples: int,
    ci: float = 0.95, seed: int = 0, collapse_mode: str = "bfs", objectives: dict[str, str] | None = None,
) -> tuple[str, list[dict]]:
    """Markdown for ``objective_rows`` (empty text when no spec has a tag), and the rows.
    ``objectives``: group key -> how its models were trained (e.g. 'pass_at_n N=32')."""
    rows = objective_rows(samples, specs, ks, n_resamples=n_resamples, ci=ci, seed=seed,
                          collapse_mode=collapse_mode)
    if not rows:
        return "", []
    lines = ["## Another objective against cross-entropy (tagged models)", "",
             f"Paired differences over the same problems, {ci:.0%} bootstrap CIs; ModC splits k "
             "over the modes. 'objective' is the tagged group's models, 'CE' the untagged models "
             "of the same arm and rows.", ""]
    groups = group_rows(rows, "group", "split")
    for (group, split), rs in groups.items():
        how = (objectives or {}).get(group)
        ks_ = rs[0]["k"]
        lines += [f"### {group} vs {rs[0]['reference']}, {split} ({rs[0]['n_problems']} problems)"
                  + (f": {how}" if how else ""), "",
                  "| quantity | " + " | ".join(f"k={k}" for k in ks_) + " |",
                  "|---|" + "---|" * len(ks_)]
        for r in rs:
            if not r["k"]:
                continue
            signed = "−" in r["quantity"]
            fmt = "{:+.3f}" if signed else "{:.3f}"
            cells = " | ".join(f"{fmt.format(e)} [{fmt.format(lo)}, {fmt.format(hi)}]"
                               for e, lo, hi in zip(r["estimate"], r["low"], r["high"], strict=True))
            lines.append(f"| {r['quantity']} ({r['model']}) | {cells} |")
        by = {r["quantity"]: r for r in rs}
        lines.append("")
        for question, quantity, what in QUESTIONS:
            lines.append(f"- {question} " + (f"{_answer(by[quantity], what)}." if quantity in by
                                             else "not measured: no such model in this group."))
        coll = by.get("collapsed fraction, objective − CE standard")
        if coll:
            lo, hi = coll["low"][0], coll["high"][0]
            verdict = ("yes, fewer collapsed problems" if hi < 0 else
                       "no, more collapsed problems" if lo > 0 else "no significant difference")
            lines.append(f"- Does the objective reduce per-problem collapse (≥ {COLLAPSE_THRESHOLD:.0%} "
                         f"of a problem's samples in one mode)? {verdict}: {coll['objective']:.3f} vs "
                         f"{coll['ce']:.3f} of problems, difference {coll['estimate'][0]:+.3f} "
                         f"[{lo:+.3f}, {hi:+.3f}].")
        lines.append("")
    return "\n".join(lines), rows
