"""Stage `generate`: Countdown problems with DFS and BFS reference traces, split by problem.

    python stages/generate.py        # reads params.yaml: seed, countdown
Writes artifacts/data/problems.parquet and the solvability breakdown to
artifacts/metrics/generate.json.
"""

from modc_data import pipeline
from modc_data.artifacts import write_json, write_parquet
from modc_data.generate import generate_problems, solvability_breakdown


def main(params, argv):
    problems = generate_problems(params.countdown, seed=params.seed)
    write_parquet(problems, pipeline.ARTIFACTS / "data" / "problems.parquet")
    write_json(solvability_breakdown(problems), pipeline.ARTIFACTS / "metrics" / "generate.json")


if __name__ == "__main__":
    pipeline.run(main)
