"""Stage `label@search_algorithm`: search-algorithm labels, their mixes, and the random control.

    python stages/label.py search_algorithm   # reads params.yaml: seed, countdown.budget, labels, arms
Writes artifacts/datasets/search_algorithm/{full,<mix>...}.parquet (full = every solving trace),
artifacts/datasets/random/<mix>.parquet for every random arm, each with its declared mode shares
(<mix>.declared.json), and the realised mode shares to artifacts/metrics/label.json.
"""

import polars as pl

from modc_data import pipeline
from modc_data.artifacts import write_json, write_parquet
from modc_data.labeling.declared import write_declared
from modc_data.labeling.mixes import apply_mix, declared_shares, mix_seeds, mode_shares
from modc_data.labeling.random_partition import random_rows, uniform_shares
from modc_data.labeling.search_algorithm import ALGORITHMS, search_algorithm_rows
from modc_data.pipeline import StageError


def main(params, argv):
    if argv != ["search_algorithm"]:
        raise StageError("usage: label.py search_algorithm (the only trace-based label source)")
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
        write_declared(out / "search_algorithm" / f"{mix}.parquet", declared_shares(shares),
                       modes=ALGORITHMS)
        metrics[f"search_algorithm/{mix}"] = mode_shares(mixed[mix])
    random_mixes = sorted({a.mix for a in params.arms.values() if a.label_source == "random"})
    (out / "random").mkdir(parents=True, exist_ok=True)
    n_modes = params.labels.random.n_modes
    for mix in random_mixes:
        rows = random_rows(mixed[mix], n_modes, seed=params.labels.random.seed)
        write_parquet(rows, out / "random" / f"{mix}.parquet")
        write_declared(out / "random" / f"{mix}.parquet", uniform_shares(n_modes))
        metrics[f"random/{mix}"] = mode_shares(rows)
    write_json(metrics, pipeline.ARTIFACTS / "metrics" / "label.json")


if __name__ == "__main__":
    pipeline.run(main)
