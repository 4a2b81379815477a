"""Stage `evaluate`: pass@k of standard vs ModC (experts / prefix split) for every arm.

    python stages/evaluate.py        # reads params.yaml: arms, train_jobs, evaluate, task rules
Writes artifacts/eval/{summary.json,details.json,metrics.json,results.md}, DVC plot data under
artifacts/eval/plots/ and PNG figures under artifacts/eval/figures/ (``evaluation.build``).
"""

from modc_data import pipeline
from modc_data.evaluation.build import build


def main(params, argv):
    build(params, pipeline.ARTIFACTS)


if __name__ == "__main__":
    pipeline.run(main)
