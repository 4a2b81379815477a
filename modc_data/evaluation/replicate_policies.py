"""The allocation bar across training seeds: each seed's prefix and standard model get their own
policies, fit on that seed's validation samples, and the bar is pooled over the seeds.

    rows = replicate_policy_rows(samples, sets, {"test_adversarial": "validation_adversarial"},
                                 ks, q_tables=..., n_resamples=1000)
    text = replicate_policy_section(rows)

What goes in: the evaluate stage's samples (with the validation splits of
``sample.policies.pairs``), the replicate sets (``replicates.replicate_sets``) of the policy
arms, the pairs, the budgets and the prefix models' q tables. Each seed is scored exactly as the
allocation-policy section scores the untagged group (``policy_sections.score_pair``: static and
preference fit on validation, "chosen" picked on validation per k; nothing on test). What comes
out, per set and pair: per seed, chosen − standard and chosen − uniform with their paired CIs
and the seed's own bar (``policy_sections.never_loses``); pooled, the same differences with the
two-level bootstrap (seeds, then problems; each seed's policies and standard model stay paired,
``bootstrap.hierarchical_diff_interval``) and the bar read from the pooled CIs: chosen never
below the better of standard and uniform, stated across seeds like the other claims
("holds pooled over 3 seeds (for s of 3 seeds alone)").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from modc_data.evaluation.bootstrap import hierarchical_diff_interval, resample_indices
from modc_data.evaluation.markdown import diff_cells, k_header
from modc_data.evaluation.policy_sections import TOLERANCE, never_loses, score_pair
from modc_data.evaluation.replicates import ReplicateSet, across, rounded

REFERENCES = ("standard", "uniform")
CLAIM = "validated allocation never below the better of standard and uniform"
CLAIM_BOTH = "validated allocation never below standard nor uniform"


def pooled_bar(chosen: np.ndarray, refs: Mapping[str, np.ndarray], ks: Sequence[int],
               idx: np.ndarray, ci: float, seed: int, tol: float = TOLERANCE) -> dict[str, Any]:
    """The bar on pooled CIs. ``chosen`` and each of ``refs``: (S, P, K) per-problem pass@k of
    each seed's chosen policy and reference. At each k the better reference is the one with the
    higher pooled mean; the bar holds when the pooled CI of chosen − that reference has its
    lower end ≥ −``tol`` at every k (``holds_vs_both``: against both references, as each seed's
    own bar, ``never_loses``, reads it)."""
    diffs = {r: hierarchical_diff_interval(chosen, v, idx, ci, seed=seed) for r, v in refs.items()}
    means = {r: v.mean(axis=(0, 1)) for r, v in refs.items()}
    better = [max(refs, key=lambda r, j=j: means[r][j]) for j in range(len(ks))]
    low_better = [float(np.atleast_1d(diffs[r].low)[j]) for j, r in enumerate(better)]
    low_both = [min(float(np.atleast_1d(d.low)[j]) for d in diffs.values()) for j in range(len(ks))]
    worst = int(np.argmin(low_better))
    return {
        "diff": {r: {"estimate": rounded(d.estimate), "low": rounded(d.low), "high": rounded(d.high)}
                 for r, d in diffs.items()},
        "better": better,
        "holds": min(low_better) >= -tol,
        "holds_vs_both": min(low_both) >= -tol,
        "worst_ci_low": round(low_better[worst], 6),
        "worst_at_k": int(ks[worst]),
        "strictly_better_at": [int(k) for j, k in enumerate(ks) if low_both[j] > 0],
        "tolerance": tol,
    }


def replicate_policy_rows(
    samples: pl.DataFrame, sets: Sequence[ReplicateSet], pairs: Mapping[str, str],
    ks: Sequence[int], *, q_tables: Mapping[str, pl.DataFrame] | None = None,
    n_resamples: int = 1000, ci: float = 0.95, seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per (set, pair) whose every seed has a prefix model and samples on both splits."""
    have = set(samples["split"].unique().to_list()) if samples.height else set()
    rows = []
    for rs in sets:
        if not all(g.prefix for g in rs.groups):
            continue
        for test, val in pairs.items():
            if not {test, val} <= have:
                continue
            evs, pids = [], []
            for g in rs.groups:
                ev, _, _, test_pids = score_pair(
                    samples, g.prefix, g.standard, g.modes, test, val, ks,
                    q_table=(q_tables or {}).get(g.prefix), n_resamples=n_resamples, ci=ci,
                    seed=seed)
                evs.append(ev)
                pids.append(test_pids)
            common = sorted(set.intersection(*(set(p) for p in pids)))
            budgets = evs[0].ks

            def stack(name: str, evs=evs, pids=pids, common=common) -> np.ndarray:
                out = []
                for ev, p in zip(evs, pids, strict=True):
                    at = {q: i for i, q in enumerate(p)}
                    out.append(ev.per_problem[name][[at[q] for q in common]])
                return np.stack(out)

            chosen = stack("chosen")
            refs = {r: stack(r) for r in REFERENCES if all(r in ev.per_problem for ev in evs)}
            idx = resample_indices(len(common), n_resamples, seed)
            pooled = pooled_bar(chosen, refs, budgets, idx, ci, seed)
            per_seed = []
            for s, ev in zip(rs.seeds, evs, strict=True):
                v = never_loses(ev)
                c = ev.policies["chosen"]
                per_seed.append({
                    "seed": s, "chosen": {str(k): ev.chosen[k] for k in budgets},
                    "diff": {r: {"estimate": rounded(d["diff"]), "low": rounded(d["ci_low"]),
                                 "high": rounded(d["ci_high"])}
                             for r, d in (("standard", c.vs_standard), ("uniform", c.vs_uniform))
                             if d is not None},
                    "holds": bool(v["holds_vs_better"]), "holds_vs_both": bool(v["holds"]),
                })
            rows.append({
                "arm": rs.arm, "test": test, "validation": val, "seeds": list(rs.seeds),
                "groups": [g.key for g in rs.groups], "n_problems": len(common), "k": budgets,
                "per_seed": per_seed, "pooled": pooled,
                "claim": {CLAIM: across(pooled["holds"], [s["holds"] for s in per_seed]),
                          CLAIM_BOTH: across(pooled["holds_vs_both"],
                                             [s["holds_vs_both"] for s in per_seed])},
            })
    return rows


def replicate_policy_section(rows: Sequence[dict[str, Any]]) -> str:
    """results.md's "Allocation across training seeds" ("" without rows)."""
    if not rows:
        return ""
    lines = [
        "### Allocation across training seeds",
        "",
        "Each seed's prefix and standard model get their own policies, fit and chosen on that "
        "seed's validation samples as above; chosen − standard and chosen − uniform per seed "
        "(paired CI over problems) and pooled (two-level bootstrap: seeds, then problems). Bar: "
        "chosen never below the better of the two (by pooled mean at each k; CI lower end ≥ "
        f"−{TOLERANCE:g}).",
        "",
    ]
    for r in rows:
        ks = r["k"]
        lines += [f"#### {r['arm']} on `{r['test']}` (fit on `{r['validation']}`; "
                  f"{r['n_problems']} problems, seeds {', '.join(map(str, r['seeds']))})", "",
                  *k_header(["seed", "chosen −"], ks)]
        for s in r["per_seed"]:
            lines += [f"| {s['seed']} | {ref} | " + diff_cells(d) for ref, d in s["diff"].items()]
        lines += [f"| **pooled** | {ref} | " + diff_cells(d, bold=True)
                  for ref, d in r["pooled"]["diff"].items()]
        lines.append("")
        for s in r["per_seed"]:
            lines.append(f"- seed {s['seed']} chose on validation: " + ", ".join(
                f"k={k} {s['chosen'][str(k)]}" for k in ks))
        p = r["pooled"]
        lines += [f"- pooled worst CI lower end against the better: {p['worst_ci_low']:+.3f} at "
                  f"k={p['worst_at_k']}; strictly better than both at k = "
                  f"{p['strictly_better_at'] or 'none'}"]
        lines += [f"- {claim}: **{verdict}**" for claim, verdict in r["claim"].items()]
        lines.append("")
    return "\n".join(lines)
