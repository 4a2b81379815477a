"""Where the headline arm's k = 64 gain comes from: the adversarial test split by side.

Reads the samples a `dvc repro` left (``artifacts/samples``) and the problems table, and prints
for the headline arm (the first ``sample.policies`` arm, default ``search_algorithm-skewed``):

- per side of ``test_adversarial`` (only-DFS / only-BFS problems): the standard model's pass@k and
  each forced mode's pass@(k / modes), what the uniform split spends on that mode at budget k;
- the prefix model alone with an allocation over its own arms (free sampling when it has it,
  each forced mode) chosen on the validation split exactly as the policies section chooses the
  shippable one, and a static split fitted there, scored on test against the standard model
  with paired bootstrap CIs. Nothing is chosen on test.

    python research/headline_sides.py --root /path/to/run [--arm search_algorithm-skewed]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from modc_data.config import load_params
from modc_data.evaluation.allocation_counts import arm_counts
from modc_data.evaluation.allocation_scores import evaluate_policies
from modc_data.evaluation.passk import default_ks, pass_at_k_curve
from modc_data.evaluation.policy_sections import standard_nc
from modc_data.schema import FREE_MODEL_SUFFIX


def side_table(samples: pl.DataFrame, sides: dict[str, str], standard: str, prefix: str,
               modes: list[str], split: str, ks: list[int]) -> list[str]:
    """One line per (side, k): standard pass@k and each forced mode's pass@(k / len(modes))."""
    part = samples.filter(pl.col("split") == split)
    g = part.group_by("problem_id", "model", "mode").agg(n=pl.len(), c=pl.col("correct").sum())
    lines = []
    for side in sorted(set(sides.values())):
        pids = sorted(p for p, s in sides.items() if s == side)
        out = []
        for label, model, mode, share in [("standard", standard, "", 1)] + [
                (f"forced {m}", prefix, m, len(modes)) for m in modes]:
            x = g.filter((pl.col("model") == model) & (pl.col("mode") == mode)
                         & pl.col("problem_id").is_in(pids)).sort("problem_id")
            kk = [k // share for k in ks if k // share >= 1]
            vals = pass_at_k_curve(x["n"].to_numpy(), x["c"].to_numpy(), kk).mean(axis=0)
            out.append(f"{label} " + " ".join(f"@{k}:{v:.3f}" for k, v in zip(kk, vals, strict=True)))
        lines.append(f"  {side} ({len(pids)} problems): " + " | ".join(out))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("."))
    ap.add_argument("--arm", default=None, help="default: the first sample.policies arm")
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args()
    params = load_params(args.root / "params.yaml")
    pol = params.sample.policies
    arm = args.arm or pol.arms[0]
    test, val = next(iter(pol.pairs.items()))
    prefix, standard = params.model_key(arm, "prefix"), params.model_key(arm, "standard")
    art = args.root / "artifacts"
    samples = pl.concat([pl.read_parquet(art / "samples" / f"{k}.parquet") for k in (prefix, standard)],
                        how="diagonal_relaxed")
    modes = sorted(m for m in samples.filter(pl.col("model") == prefix)["mode"].unique() if m)
    problems = pl.read_parquet(art / "data" / "problems.parquet").filter(pl.col("split") == test)
    sides = dict(problems.select("problem_id", "category").iter_rows())
    n = int(samples.filter(pl.col("split") == test).group_by("problem_id", "model", "mode").len()["len"].min())
    ks = default_ks(n)
    print(f"{arm} on {test}: standard {standard}, prefix {prefix}, modes {modes}, n = {n}")
    print("\n".join(side_table(samples, sides, standard, prefix, modes, test, ks)))

    own = prefix + FREE_MODEL_SUFFIX
    free = own in set(samples["model"].unique().to_list())
    q_file = art / "samples" / f"{prefix}.q.parquet"
    how = {"free_model": own if free else None, "standard_model": None,
           "q_model": own if free else None,
           "q_table": pl.read_parquet(q_file) if free and q_file.exists() else None,
           "q_column": "declared_mode"}
    v, _ = arm_counts(samples, val, prefix, modes, **how)
    t, tp = arm_counts(samples, test, prefix, modes, **how)
    ev = evaluate_policies(v, t, ks, *standard_nc(samples, standard, test, tp),
                           n_resamples=args.bootstrap)
    print(f"\nthe prefix model alone, allocations fit on {val} ({v.n_problems} problems), scored on "
          f"{test} ({t.n_problems}); Δ against the standard model, paired 95% CI")
    print("  chosen on validation:", " ".join(f"k{k}:{ev.chosen[k]}" for k in ks))
    for name in ("standard", "uniform", "static", "chosen"):
        p = ev.policies[name]
        if p.vs_standard is None:
            print(f"  {name:<9}" + " ".join(f"k{k}:{m:.3f}" for k, m in zip(ks, p.mean, strict=True)))
            continue
        d = p.vs_standard
        print(f"  {name:<9}" + " ".join(
            f"k{k}:{m:.3f} ({e:+.3f} [{lo:+.3f}, {hi:+.3f}])"
            for k, m, e, lo, hi in zip(ks, p.mean, d["diff"], d["ci_low"], d["ci_high"], strict=True)))
    print("  static split (counts per arm) at the largest k:", ev.static_own[ks[-1]])


if __name__ == "__main__":
    main()
