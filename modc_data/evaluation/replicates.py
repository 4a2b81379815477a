"""Claims across training seeds: a group trained again with other seeds, pooled.

A replicate set is one arm's group of models (standard, experts, prefix) trained with S training
seeds, each seed its own group (``experiment.replicates``). For each split and each ModC variant
the difference ModC − standard at each k is estimated

- per seed: the paired bootstrap over problems (as in the main results);
- pooled: the two-level bootstrap (seeds, then problems; the ModC and standard model of one seed
  stay paired), ``bootstrap.hierarchical_diff_interval``; with one seed it is the paired one.

Three claims are read from them, each stated across seeds ("holds pooled over 3 seeds", "holds
for 2 of 3 seeds, not pooled"): ModC above standard at every k ≥ ``min_k`` (prefix, and the
experts), and experts not below standard at any k. Beside each pooled row is the smallest
difference the design (P problems, S seeds, the measured spreads) detects with 80% power
(``power.detectable_difference``).

What it leaves out: the per-seed groups' own sections (each seed is a group of the main
results), the allocation bar across seeds (``replicate_policies``), rendering of figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from modc_data.evaluation.bootstrap import (
    hierarchical_diff_interval,
    paired_diff_interval,
    resample_indices,
)
from modc_data.evaluation.comparisons import MODC_VARIANTS, ArmSpec
from modc_data.evaluation.counts import count_table, problem_matrix
from modc_data.evaluation.markdown import diff_cells, k_header
from modc_data.evaluation.passk import pass_at_k_curve, pass_at_k_modc
from modc_data.evaluation.power import detectable_difference


@dataclass(frozen=True)
class ReplicateSet:
    """One arm's group under S training seeds: ``groups[i]`` was trained with ``seeds[i]``."""

    arm: str
    seeds: tuple[int, ...]
    groups: tuple[ArmSpec, ...]


def replicate_sets(replicates: Mapping[str, Mapping[int, str | None]],
                   specs: Mapping[str, ArmSpec]) -> list[ReplicateSet]:
    """The sets of ``replicates`` (arm -> {seed: tag}) whose groups are all in ``specs`` (keyed
    ``<arm>`` / ``<arm>-<tag>``, as the evaluate stage builds them)."""
    out = []
    for arm, tags in replicates.items():
        keys = [arm if t is None else f"{arm}-{t}" for t in tags.values()]
        if len(keys) > 1 and all(k in specs for k in keys):
            out.append(ReplicateSet(arm, tuple(tags), tuple(specs[k] for k in keys)))
    return out


def _values(counts: pl.DataFrame, group: ArmSpec, variant: str, pids: list[str],
            budgets: Sequence[int]) -> np.ndarray:
    """(P, K) per-problem pass@k of one model (ModC: the budget split uniformly over modes)."""
    f = counts.filter((pl.col("model") == group.model_of(variant)) & (pl.col("variant") == variant))
    if variant == "standard":
        f = f.group_by("problem_id").agg(pl.col("n", "c").sum()).with_columns(mode=pl.lit(""))
        n, c = (problem_matrix(f, pids, ("",), col)[:, 0] for col in ("n", "c"))
        return pass_at_k_curve(n, c, budgets)
    n, c = (problem_matrix(f, pids, group.modes, col) for col in ("n", "c"))
    return pass_at_k_modc(n, c, budgets)


def _problems(counts: pl.DataFrame, rs: ReplicateSet, variants: Sequence[str]) -> list[str]:
    """Problems every model of the set sampled (ModC models: in every mode)."""
    common: set[str] | None = None
    for g in rs.groups:
        for v in ("standard", *variants):
            f = counts.filter((pl.col("model") == g.model_of(v)) & (pl.col("variant") == v))
            if v != "standard":
                per = (f.filter(pl.col("mode").is_in(list(g.modes))).group_by("problem_id")
                       .agg(m=pl.col("mode").n_unique()).filter(pl.col("m") == len(g.modes)))
                f = per
            have = set(f["problem_id"].to_list())
            common = have if common is None else common & have
    return sorted(common or ())


def rounded(a) -> list[float]:
    return [round(float(x), 6) + 0.0 for x in np.atleast_1d(a)]  # + 0.0: no -0.0


def replicate_rows(
    samples: pl.DataFrame, sets: Sequence[ReplicateSet], ks: Sequence[int], *, n_resamples: int,
    ci: float = 0.95, seed: int = 0, min_k: int = 8,
) -> list[dict]:
    """One row per (set, split, variant): per-seed and pooled ModC − standard at each k, the
    claims' verdicts and the smallest detectable difference of the pooled design."""
    counts = count_table(samples, "bfs")
    rows: list[dict] = []
    for rs in sets:
        variants = [v for v in MODC_VARIANTS if all(g.model_of(v) for g in rs.groups)]
        models = {g.standard for g in rs.groups}
        for split in sorted(counts.filter(pl.col("model").is_in(list(models)))["split"].unique().to_list()):
            at = counts.filter(pl.col("split") == split)
            pids = _problems(at, rs, variants)
            if not pids or not variants:
                continue
            n_min = min(int(at.filter(pl.col("model") == g.model_of(v))
                            .group_by("problem_id", "mode").agg(pl.col("n").sum())["n"].min())
                        for g in rs.groups for v in ("standard", *variants))
            budgets = [k for k in ks if k <= n_min]  # a ModC model's share per mode is less
            idx = resample_indices(len(pids), n_resamples, seed)
            std = np.stack([_values(at, g, "standard", pids, budgets) for g in rs.groups])
            for v in variants:
                modc = np.stack([_values(at, g, v, pids, budgets) for g in rs.groups])
                per_seed = [paired_diff_interval(modc[i], std[i], idx, ci) for i in range(len(rs.seeds))]
                pooled = hierarchical_diff_interval(modc, std, idx, ci, seed=seed)
                diff = modc - std  # (S, P, K)
                sd_problem = diff.std(axis=1, ddof=1).mean(axis=0)
                sd_seed = (diff.mean(axis=1).std(axis=0, ddof=1) if len(rs.seeds) > 1
                           else np.zeros(len(budgets)))
                detect = [detectable_difference(float(a), len(pids), len(rs.seeds), float(b), ci)
                          for a, b in zip(sd_problem, sd_seed, strict=True)]
                rows.append({
                    "arm": rs.arm, "split": split, "variant": v, "seeds": list(rs.seeds),
                    "groups": [g.key for g in rs.groups], "n_problems": len(pids), "k": budgets,
                    "per_seed": [{"seed": s, "estimate": rounded(iv.estimate), "low": rounded(iv.low),
                                  "high": rounded(iv.high)} for s, iv in zip(rs.seeds, per_seed, strict=True)],
                    "pooled": {"estimate": rounded(pooled.estimate), "low": rounded(pooled.low),
                               "high": rounded(pooled.high)},
                    "sd_problem": rounded(sd_problem), "sd_seed": rounded(sd_seed),
                    "detectable": rounded(detect),
                    "claims": claims(v, budgets, per_seed, pooled, min_k),
                })
    return rows


def _above(iv, ks: Sequence[int], min_k: int) -> bool:
    at = [i for i, k in enumerate(ks) if k >= min_k]
    return bool(at) and all(float(np.atleast_1d(iv.low)[i]) > 0 for i in at)


def _not_below(iv) -> bool:
    return all(round(float(h), 6) >= 0 for h in np.atleast_1d(iv.high))


def across(pooled_holds: bool, per_seed: Sequence[bool]) -> str:
    """A claim stated across seeds."""
    s, n = sum(per_seed), len(per_seed)
    if pooled_holds:
        return f"holds pooled over {n} seeds (for {s} of {n} seeds alone)"
    return f"holds for {s} of {n} seeds, not pooled"


def claims(variant: str, ks: Sequence[int], per_seed, pooled, min_k: int) -> dict[str, str]:
    """The claims of one variant, each across seeds."""
    above = f"{variant} above standard at every k ≥ {min_k}"
    if not any(k >= min_k for k in ks):
        out = {above: f"not tested: no k ≥ {min_k} was sampled (raise sample.n)"}
    else:
        out = {above: across(_above(pooled, ks, min_k), [_above(iv, ks, min_k) for iv in per_seed])}
    if variant == "experts":
        out["experts not below standard at any k"] = across(
            _not_below(pooled), [_not_below(iv) for iv in per_seed])
    return out


def replicate_section(rows: Sequence[dict], ci: float = 0.95,
                      figures: Mapping[tuple[str, str], str] | None = None) -> str:
    """results.md's "Across training seeds" section ("" when no group has replicates).
    ``figures``: (arm, split) -> a figure's file name under ``figures/``, linked after the
    tables of that arm and split."""
    if not rows:
        return ""
    lines = [
        "## Across training seeds",
        "",
        f"Groups trained again with other training seeds. Per seed: ModC − standard with its "
        f"paired {ci:.0%} CI over problems. Pooled: the mean over seeds and problems, its CI from "
        "a two-level bootstrap (seeds, then problems; the models of one seed stay paired), so it "
        "counts how much of a difference is the training draw. *Detectable*: the smallest true "
        "difference this design (problems × seeds, the spreads measured here) finds with 80% power.",
        "",
    ]
    for i, r in enumerate(rows):
        ks = r["k"]
        lines += [f"### {r['arm']}: {r['variant']} − standard, `{r['split']}` "
                  f"({r['n_problems']} problems, seeds {', '.join(map(str, r['seeds']))})", "",
                  *k_header(["seed"], ks)]
        lines += [f"| {s['seed']} | " + diff_cells(s) for s in r["per_seed"]]
        lines.append("| **pooled** | " + diff_cells(r["pooled"], bold=True))
        lines.append("| detectable | " + " | ".join(f"±{d:.3f}" for d in r["detectable"]) + " |")
        lines.append("")
        lines += [f"- {claim}: **{verdict}**" for claim, verdict in r["claims"].items()]
        lines.append("")
        at = (r["arm"], r["split"])
        last = i + 1 == len(rows) or (rows[i + 1]["arm"], rows[i + 1]["split"]) != at
        name = (figures or {}).get(at)
        if last and name:
            lines += [f"![across seeds {r['arm']} {r['split']}](figures/{name})", ""]
    return "\n".join(lines)
