"""Stage `generate`: the problems table of the configured task, split by problem.

    python stages/generate.py        # reads params.yaml: seed, task, <task> (countdown | math)
Countdown: problems with DFS and BFS reference traces; math: problems loaded with `datasets`
from `math.train` / `math.test` (a Hub id or a local parquet/json/`save_to_disk` folder).
Writes artifacts/data/problems.parquet and a breakdown to artifacts/metrics/generate.json.
"""

from modc_data import pipeline
from modc_data.artifacts import write_json, write_parquet
from modc_data.generate import problems_from_params


def main(params, argv):
    problems, metrics = problems_from_params(params)
    write_parquet(problems, pipeline.ARTIFACTS / "data" / "problems.parquet")
    write_json(metrics, pipeline.ARTIFACTS / "metrics" / "generate.json")


if __name__ == "__main__":
    pipeline.run(main)
