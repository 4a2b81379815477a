"""Stage `label`: search-algorithm labels, their training mixes, and the random-partition control.

    python stages/label.py           # reads params.yaml: seed, countdown.budget, labels, arms
Writes artifacts/datasets/search_algorithm/{full,<mix>...}.parquet (full = every solving trace),
artifacts/datasets/random/<mix>.parquet for every random arm, and the realised mode shares to
artifacts/metrics/label.json.
"""

import polars as pl

from modc_data import pipeline
from modc_data.artifacts import write_json, write_parquet
from modc_data.labeling.mixes import apply_mix, mix_seeds, mode_shares
from modc_data.labeling.random_partition import random_rows
from modc_data.labeling.search_algorithm import search_algorithm_rows


def main(params, argv):
    out = pipeline.ARTIFACTS / "datasets"
    problems = pl.read_parquet(pipeline.ARTIFACTS / "data" / "problems.parquet")
    full = search_algorithm_rows(problems, params.countdown.budget)
    write_parquet(full, out / "search_algorithm" / "full.parquet")
    metrics = {"search_algorithm/full": mode_shares(full)}
    mixed = {}
    seeds = mix_seeds(params.labels.mixes, params.seed)
    for mix, shares in sorted(params.labels.mixes.items()):
        mixed[mix] = apply_mix(full, shares, seed=seeds[mix])
        write_parquet(mixed[mix], out / "search_algorithm" / f"{mix}.parquet")
        metrics[f"search_algorithm/{mix}"] = mode_shares(mixed[mix])
    random_mixes = sorted({a.mix for a in params.arms.values() if a.label_source == "random"})
    (out / "random").mkdir(parents=True, exist_ok=True)
    for mix in random_mixes:
        rows = random_rows(mixed[mix], params.labels.random.n_modes, seed=params.labels.random.seed)
        write_parquet(rows, out / "random" / f"{mix}.parquet")
        metrics[f"random/{mix}"] = mode_shares(rows)
    write_json(metrics, pipeline.ARTIFACTS / "metrics" / "label.json")


if __name__ == "__main__":
    pipeline.run(main)
