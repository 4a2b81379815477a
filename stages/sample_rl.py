"""Stage `sample_rl@<job>`: samples of an RL'd model, as `sample@<job>` draws them for a trained one.

    python stages/sample_rl.py search_algorithm-skewed-grpo-prefix   # reads params.yaml: sample, rl_jobs
Writes artifacts/samples/<job>.parquet, <job>.q.parquet and artifacts/metrics/sample/<job>.json.
The model is sampled as a tagged model of its start's arm and variant (key
`<arm>-<tag>-<variant>`), so evaluation groups it with the arm's other `<tag>` models.
"""

from modc_data import pipeline
from modc_data.pipeline import StageError
from modc_data.sampling.stage import sample_stage


def main(params, argv):
    if len(argv) != 1 or argv[0] not in params.rl_jobs:
        raise StageError(f"usage: sample_rl.py <job>; RL jobs are {sorted(params.rl_jobs)}")
    sample_stage(params, argv[0], params.models[argv[0]])


if __name__ == "__main__":
    pipeline.run(main)
