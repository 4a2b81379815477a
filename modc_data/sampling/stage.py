"""The sample stage's work for one model: samples, q(m|x) and the metrics file.

What it handles: one model's samples of the problems its params select (test splits, and the
validation splits of allocation policies), written where evaluation reads them. Shared by
``stages/sample.py`` (trained models) and ``stages/sample_rl.py`` (RL'd models). What it leaves
out: which model a key names (the stage scripts) and how samples are drawn (``run``).
"""

import time

import polars as pl

from modc_data import pipeline
from modc_data.artifacts import write_json, write_parquet
from modc_data.experiment import model_dir as job_model_dir
from modc_data.modeling.modc_json import read_modc
from modc_data.sampling.run import make_backend, mode_preference, sample_model, select_problems
from modc_data.tasks import task_from_params


def sample_stage(params, key: str, job) -> None:
    """Sample model ``key`` (its ``TrainJobParams``: arm and variant) as the stage does."""
    model_dir = job_model_dir(key, pipeline.ARTIFACTS)
    info = read_modc(model_dir)
    problems = select_problems(
        pl.read_parquet(pipeline.ARTIFACTS / "data" / "problems.parquet"), params.sample,
        extra=params.policy_splits(key, job),
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

