"""Stage `sample@<job>`: n verified samples per (test problem, mode) from one trained model.

    python stages/sample.py search_algorithm-skewed-prefix   # reads params.yaml: sample, task rules
Writes artifacts/samples/<job>.parquet (the samples table of modc_data.sampling.run),
artifacts/samples/<job>.q.parquet (q(m|x) of a free-sampling prefix model; empty otherwise) and
artifacts/metrics/sample/<job>.json: rows, seconds, and the dtype / decoder / threads used and
why (``sample.dtype: auto`` is measured; bf16 and fp32 give different samples).
"""

import time

import polars as pl

from modc_data import pipeline
from modc_data.artifacts import write_json, write_parquet
from modc_data.config import model_dir as job_model_dir
from modc_data.modeling.modc_json import read_modc
from modc_data.pipeline import StageError
from modc_data.sampling.run import make_backend, mode_preference, sample_model, select_problems
from modc_data.tasks import task_from_params


def main(params, argv):
    if len(argv) != 1 or argv[0] not in params.train_jobs:
        raise StageError(f"usage: sample.py <job>; jobs are {sorted(params.train_jobs)}")
    key = argv[0]
    job = params.train_jobs[key]
    model_dir = job_model_dir(key, pipeline.ARTIFACTS)
    info = read_modc(model_dir)
    problems = select_problems(
        pl.read_parquet(pipeline.ARTIFACTS / "data" / "problems.parquet"), params.sample,
        extra=params.policy_splits(key),
    )
    backend = make_backend(params.sample, autotune_cache=pipeline.ARTIFACTS / "cache" / "autotune.json")
    started = time.perf_counter()
    samples = sample_model(
        model_dir,
        problems,
        task=task_from_params(params),
        model_key=key,
        arm=job.arm,
        variant=job.variant,
        modes=info.modes or None,
        cfg=params.sample,
        backend=backend,
    )
    wall_s = time.perf_counter() - started
    # q(m|x) from the first token of a free-sampling prefix model (an empty table otherwise)
    q = mode_preference(model_dir, problems, cfg=params.sample, backend=backend)
    write_parquet(samples, pipeline.ARTIFACTS / "samples" / f"{key}.parquet")
    write_parquet(q, pipeline.ARTIFACTS / "samples" / f"{key}.q.parquet")
    settings = backend.settings() if hasattr(backend, "settings") else {"backend": params.sample.backend}
    write_json({"samples": samples.height, "wall_s": round(wall_s, 1),
                "samples_per_s": round(samples.height / wall_s, 1) if wall_s > 0 else 0.0, **settings},
               pipeline.ARTIFACTS / "metrics" / "sample" / f"{key}.json")


if __name__ == "__main__":
    pipeline.run(main)
