"""Stage `train@<job>`: the standard model, all experts, or the prefix model of one arm.

    python stages/train.py search_algorithm-skewed-prefix   # reads params.yaml: model, train, train_jobs
Writes artifacts/models/<arm>/<variant>[/<mode>] (safetensors + tokenizer + modc.json) and the
compute accounting (examples, tokens, optimizer steps) and the bf16 / threads choices (measured
when ``auto``, with their timings) to artifacts/metrics/train/<job>.json.
Experts of one arm split the standard model's steps between them, so compute is equal.
With ``train.processes: N`` (N > 1) the script re-runs itself under ``accelerate launch`` with N
ranks (DDP: one per GPU, or gloo processes on a CPU); with ``train.accelerate_config`` under the
engine that file names (DDP, FSDP, DeepSpeed). Rank 0 writes the outputs.
"""

import sys

import polars as pl

from modc_data import pipeline
from modc_data.artifacts import revision_info, write_json
from modc_data.experiment import model_dir
from modc_data.modeling import launch
from modc_data.modeling.experts import train_experts
from modc_data.modeling.train import train_model
from modc_data.pipeline import StageError


def main(params, argv):
    if len(argv) != 1 or argv[0] not in params.train_jobs:
        raise StageError(f"usage: train.py <job>; jobs are {sorted(params.train_jobs)}")
    key = argv[0]
    job = params.train_jobs[key]
    processes = params.train.processes
    config = params.train.accelerate_config
    if launch.should_launch(processes, config):
        if config is not None:
            launch.check_config(config)
        print(f"[train] {key}: {processes} processes (accelerate launch"
              f"{', ' + config if config else ''})", file=sys.stderr)
        rc = launch.relaunch([sys.argv[0], key], processes, config_file=config)
        if rc:
            raise StageError(f"{key}: training under {processes} processes failed (exit {rc}); "
                             "the ranks' errors are above")
        return
    arm = params.arms[job.arm]
    rows = pl.read_parquet(pipeline.ARTIFACTS / "datasets" / arm.label_source / f"{arm.mix}.parquet")
    train_rows = rows.filter(pl.col("split") == "train")
    val_rows = rows.filter(pl.col("split") == "validation")
    modes = sorted(train_rows["mode"].unique().to_list())
    # One vocabulary for every variant and every test prompt (a word-level tokenizer would
    # otherwise map numbers it never saw to <unk>); test completions are not included.
    problems = pl.read_parquet(pipeline.ARTIFACTS / "data" / "problems.parquet", columns=["prompt"])
    texts = problems["prompt"].to_list() + train_rows["completion"].to_list() + val_rows["completion"].to_list()
    train_cfg = job.train_params(params.train)
    common = dict(
        label_source=arm.label_source, arm=job.arm, model_cfg=params.model, train_cfg=train_cfg,
        steps=job.steps or params.train.steps, tokenizer_texts=texts,
        extra_info={"revision": revision_info()},
        autotune_cache=pipeline.ARTIFACTS / "cache" / "autotune.json",
    )
    out_dir = model_dir(key, pipeline.ARTIFACTS)
    if job.variant == "experts":
        results = train_experts(train_rows, val_rows, modes=modes, out_dir=out_dir,
                                shared_steps=job.shared_steps or 0, **common)
    else:
        results = {job.variant: train_model(
            train_rows, val_rows, variant=job.variant, mode=None, modes=modes, out_dir=out_dir,
            free_share=job.free_share or 0.0, **common
        )}
    metrics = {
        name: {"examples": r.examples, "tokens": r.tokens, "steps": r.steps,
               "eval_loss": r.eval_loss, "wall_s": round(r.wall_s, 1), "tokens_per_s": round(r.tokens_per_s),
               "objective": r.objective, "bf16": r.bf16, "threads": r.threads,
               "autotune": r.autotune}
        for name, r in results.items()
    }
    metrics["total"] = {k: sum(m[k] for m in metrics.values()) for k in ("examples", "tokens", "steps")}
    metrics["total"]["processes"] = processes
    if not launch.state().is_main_process:
        return  # rank 0 writes the metrics
    write_json(metrics, pipeline.ARTIFACTS / "metrics" / "train" / f"{key}.json")


if __name__ == "__main__":
    pipeline.run(main)
