"""Stage `sample@<job>`: n verified samples per (test problem, mode) from one trained model.

    python stages/sample.py search_algorithm-skewed-prefix   # reads params.yaml: sample, task rules
Writes artifacts/samples/<job>.parquet (the samples table of modc_data.sampling.run),
artifacts/samples/<job>.q.parquet (q(m|x) of a free-sampling prefix model; empty otherwise) and
artifacts/metrics/sample/<job>.json: rows, seconds, and the dtype / decoder / threads used and
why (``sample.dtype: auto`` is measured; bf16 and fp32 give different samples).
"""

from modc_data import pipeline
from modc_data.pipeline import StageError
from modc_data.sampling.stage import sample_stage


def main(params, argv):
    if len(argv) != 1 or argv[0] not in params.train_jobs:
        raise StageError(f"usage: sample.py <job>; jobs are {sorted(params.train_jobs)}")
    sample_stage(params, argv[0], params.train_jobs[argv[0]])


if __name__ == "__main__":
    pipeline.run(main)
