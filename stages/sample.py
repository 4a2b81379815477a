"""Stage `sample@<job>`: n verified samples per (test problem, mode) from one trained model.

    python stages/sample.py search_algorithm-skewed-prefix   # reads params.yaml: sample, task rules
Writes artifacts/samples/<job>.parquet (the samples table of modc_data.sampling.run).
"""

import polars as pl

from modc_data import pipeline
from modc_data.artifacts import write_parquet
from modc_data.modeling.modc_json import read_modc
from modc_data.pipeline import StageError
from modc_data.sampling.run import sample_model, select_problems
from modc_data.tasks import task_from_params


def main(params, argv):
    if len(argv) != 1 or argv[0] not in params.train_jobs:
        raise StageError(f"usage: sample.py <job>; jobs are {sorted(params.train_jobs)}")
    key = argv[0]
    job = params.train_jobs[key]
    model_dir = pipeline.ARTIFACTS / "models" / job.arm / job.variant
    info = read_modc(model_dir)
    problems = select_problems(
        pl.read_parquet(pipeline.ARTIFACTS / "data" / "problems.parquet"), params.sample
    )
    samples = sample_model(
        model_dir,
        problems,
        task=task_from_params(params),
        model_key=key,
        arm=job.arm,
        variant=job.variant,
        modes=info.modes or None,
        cfg=params.sample,
    )
    write_parquet(samples, pipeline.ARTIFACTS / "samples" / f"{key}.parquet")


if __name__ == "__main__":
    pipeline.run(main)
