"""Stage `rl@<job>`: GRPO (TRL) from a trained model: standard, prefix, or every expert.

    python stages/rl.py search_algorithm-skewed-grpo-prefix   # reads params.yaml: rl_jobs, task
Starts from artifacts/models/<rl_jobs.<job>.start> and writes artifacts/models/<job> (safetensors
+ tokenizer + modc.json with the RL record), sampled and evaluated like any trained model: its
key is `<arm>-<tag>-<variant>`, so results.md compares it with the arm's other `<tag>` models
and with the untagged (SFT) ones. Prompts are the train split's problems (`rl_jobs.<job>.problems`
caps them); the reward is the task's verifier (`binding`: and the requested mode). An interrupted
run resumes from TRL's checkpoints in the output folder. Metrics: artifacts/metrics/rl/<job>.json.
With ``rl_jobs.<job>.processes: N`` (N > 1) the script re-runs itself under ``accelerate launch``
with N processes (TRL's trainer runs them data-parallel); the first one writes the outputs.
"""

import sys
import time
from dataclasses import fields

import polars as pl

from modc_data import pipeline
from modc_data.artifacts import write_json
from modc_data.autotune import resolve_threads
from modc_data.experiment import model_dir
from modc_data.modeling import launch
from modc_data.pipeline import StageError
from modc_data.rl.grpo import RLSettings, rl_checkpoint
from modc_data.tasks import task_from_params


def main(params, argv):
    if len(argv) != 1 or argv[0] not in params.rl_jobs:
        raise StageError(f"usage: rl.py <job>; RL jobs are {sorted(params.rl_jobs)}")
    key = argv[0]
    job = params.rl_jobs[key]
    if launch.should_launch(job.processes):
        print(f"[rl] {key}: {job.processes} processes (accelerate launch)", file=sys.stderr)
        rc = launch.relaunch([sys.argv[0], key], job.processes)
        if rc:
            raise StageError(f"{key}: RL under {job.processes} processes failed (exit {rc}); "
                             "the ranks' errors are above")
        return
    problems = (pl.read_parquet(pipeline.ARTIFACTS / "data" / "problems.parquet")
                .filter(pl.col("split") == "train").sort("problem_id"))
    if job.problems:
        problems = problems.head(job.problems)
    if problems.height == 0:
        raise StageError(f"rl_jobs.{key}: no train problems to use as prompts")
    settings = RLSettings(**{
        **job.model_dump(include={f.name for f in fields(RLSettings)}),
        "max_new_tokens": job.max_new_tokens or params.sample.max_new_tokens,
    })
    threads, thread_record = resolve_threads(params.train.threads)
    started = time.perf_counter()
    record = rl_checkpoint(model_dir(job.start, pipeline.ARTIFACTS), model_dir(key, pipeline.ARTIFACTS),
                           problems.to_dicts(), task_from_params(params), settings, threads=threads)
    if not launch.state().is_main_process:
        return
    write_json({"wall_s": round(time.perf_counter() - started, 1), "problems": problems.height,
                "threads": thread_record, "rl": record},
               pipeline.ARTIFACTS / "metrics" / "rl" / f"{key}.json")


if __name__ == "__main__":
    pipeline.run(main)
