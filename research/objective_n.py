"""Choose pass@N's N on a validation split, never on test.

Reads the samples a `dvc repro` left in a repo copy whose params.yaml has tagged pass@N jobs
(e.g. ``search_algorithm-skewed-pass8-standard`` ... ``-pass64-standard``) beside the untagged CE
ones. Tagged jobs sample the `sample.policies` validation splits like their untagged twins.
Prints, per (arm, variant), the mean pass@k over k = 1, 2, 4, ... n on the validation split of
every N and of CE, with a bootstrap CI over problems, and the N with the highest mean.

    python research/objective_n.py --root /path/to/repo-copy [--split validation_adversarial]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

from modc_data.config import load_params
from modc_data.evaluation.bootstrap import bootstrap_ci
from modc_data.evaluation.passk import default_ks, pass_at_k_curve, pass_at_k_modc


def curve(samples: pl.DataFrame, modes: list[str] | None) -> tuple[np.ndarray, list[int], int]:
    """Per-problem pass@k (P, K) of one model's samples (ModC split over ``modes`` if given)."""
    if modes:
        samples = samples.filter(pl.col("mode").is_in(modes))
        g = samples.group_by("problem_id", "mode").agg(n=pl.len(), c=pl.col("correct").sum())
        pids = sorted(g["problem_id"].unique().to_list())
        pos = {p: i for i, p in enumerate(pids)}
        n = np.zeros((len(pids), len(modes)), dtype=int)
        c = np.zeros_like(n)
        for p, m, nn, cc in g.select("problem_id", "mode", "n", "c").iter_rows():
            n[pos[p], modes.index(m)], c[pos[p], modes.index(m)] = nn, cc
        ks = default_ks(int(n.min()))  # the same budgets as a standard model with n samples
        return pass_at_k_modc(n, c, ks), ks, len(pids)
    g = samples.group_by("problem_id").agg(n=pl.len(), c=pl.col("correct").sum()).sort("problem_id")
    n, c = g["n"].to_numpy(), g["c"].to_numpy()
    ks = default_ks(int(n.min()))
    return pass_at_k_curve(n, c, ks), ks, g.height


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("."))
    ap.add_argument("--split", default=None, help="default: the first sample.policies validation split")
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args()
    params = load_params(args.root / "params.yaml")
    split = args.split or next(iter(params.sample.policies.pairs.values()))
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for key, job in params.train_jobs.items():
        t = job.train_params(params.train)
        if job.tag and t.objective == "pass_at_n":
            groups.setdefault((job.arm, job.variant), []).append((f"N={t.pass_at_n.N}", key))
    if not groups:
        raise SystemExit(f"{args.root}/params.yaml has no tagged pass_at_n train jobs")
    print(f"split {split}; mean pass@k over k = 1, 2, 4, ... n; 95% bootstrap CI over problems")
    for (arm, variant), runs in sorted(groups.items()):
        ce = params.model_key(arm, variant)
        rows = ([("CE", ce)] if ce else []) + sorted(runs, key=lambda r: int(r[0][2:]))
        best = None
        print(f"\n{arm} {variant}")
        for label, key in rows:
            path = args.root / "artifacts" / "samples" / f"{key}.parquet"
            if not path.exists():
                print(f"  {label:<6} {key}: not sampled yet ({path} missing)")
                continue
            s = pl.read_parquet(path).filter((pl.col("split") == split) & (pl.col("variant") == variant))
            if s.is_empty():
                print(f"  {label:<6} {key}: no samples on {split}")
                continue
            modes = None if variant == "standard" else sorted(s["mode"].unique().to_list())
            vals, ks, n_problems = curve(s, modes)
            iv = bootstrap_ci(vals.mean(axis=1), n_resamples=args.bootstrap)
            at = " ".join(f"{v:.3f}" for v in vals.mean(axis=0))
            print(f"  {label:<6} mean {float(iv.estimate):.4f} [{float(iv.low):.4f}, {float(iv.high):.4f}]"
                  f"  pass@k k={ks[0]}..{ks[-1]}: {at}  ({n_problems} problems)")
            if label != "CE" and (best is None or float(iv.estimate) > best[1]):
                best = (label, float(iv.estimate))
        if best:
            print(f"  chosen on {split}: {best[0]} (mean {best[1]:.4f})")


if __name__ == "__main__":
    main()
