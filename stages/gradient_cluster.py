"""Stage `gradient_cluster@<mix>`: discover modes without labels from per-example gradients.

    python stages/gradient_cluster.py balanced   # reads params.yaml: gradient_cluster
The reference arm's standard model (trained on the unlabeled mixture; a LoRA adapter over a
pretrained base, or a scratch model) gives each row of <rows_source>/<mix>.parquet its gradient
of log p(completion | prompt); a Rademacher projection and k-means turn them into modes
`cluster:<i>`. Writes artifacts/datasets/gradient_cluster/<mix>.parquet (+ .declared.json) and
C, silhouette scores, cluster sizes and the agreement with the rows' known modes (ARI,
contingency table) to artifacts/metrics/gradient_cluster/<mix>.json. Features are cached (and resumed after an
interruption) under artifacts/cache/gradient_cluster/<mix>/<key>, where the key hashes the
reference model's parameters (``gradients.model_hash``), the rows and the params: a rerun with a retrained reference model
starts a fresh store, and stores of other keys are deleted.
With ``gradient_cluster.processes: N`` (N > 1) the script re-runs itself under ``accelerate
launch``: each rank featurises its shard of the rows (on its own GPU where there are GPUs), rank 0
merges the shards, clusters and writes the outputs.
"""

import hashlib
import os
import shutil
import sys

import polars as pl
import torch

from modc_data import pipeline
from modc_data.artifacts import frame_hash, write_json, write_parquet
from modc_data.autotune import resolve_threads
from modc_data.experiment import model_dir as job_model_dir
from modc_data.labeling.declared import uniform, write_declared
from modc_data.labeling.gradient_cluster import cluster_mode, label_by_gradient_clusters
from modc_data.labeling.gradients import model_hash
from modc_data.modeling import launch
from modc_data.modeling.load import load_checkpoint
from modc_data.pipeline import StageError


def cache_dir(mix: str, model, rows: pl.DataFrame, cfg, clean: bool = True):
    """The feature store of this (reference model, rows, params); stale siblings are removed
    (``clean``: by one rank only)."""
    h = hashlib.sha256()
    h.update(model_hash(model).encode())
    h.update(frame_hash(rows, ["id", "prompt", "completion"]).encode())
    # threads and processes do not change the features (shards merge into the same store)
    h.update(cfg.model_dump_json(exclude={"threads", "processes"}).encode())
    key = h.hexdigest()[:16]
    root = pipeline.ARTIFACTS / "cache" / "gradient_cluster" / mix
    if clean and root.exists():
        for old in root.iterdir():
            if old.name != key:
                print(f"[gradient_cluster] removing stale feature cache {old}", file=sys.stderr)
                if old.is_dir():
                    shutil.rmtree(old)
                else:
                    old.unlink()
    return root / key


def main(params, argv):
    cfg = params.gradient_cluster
    if len(argv) != 1 or argv[0] not in cfg.mixes:
        raise StageError(f"usage: gradient_cluster.py <mix>; gradient_cluster.mixes are {cfg.mixes}")
    mix = argv[0]
    if launch.should_launch(cfg.processes):
        print(f"[gradient_cluster] {mix}: {cfg.processes} processes (accelerate launch)", file=sys.stderr)
        rc = launch.relaunch([sys.argv[0], mix], cfg.processes)
        if rc:
            raise StageError(f"{mix}: featurising under {cfg.processes} processes failed (exit "
                             f"{rc}); the ranks' errors are above")
        return
    procs = launch.state()  # joins the process group of a launch
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", procs.num_processes))
    model_dir = job_model_dir(f"{cfg.reference_arm}-standard", pipeline.ARTIFACTS)
    threads, threads_record = resolve_threads(cfg.threads)
    if local_world > 1 and cfg.threads == "auto":  # the ranks share the free cores
        threads = max(1, threads // local_world)
        threads_record = {**threads_record, "threads": threads, "ranks_per_machine": local_world}
    torch.set_num_threads(threads)
    # trainable: a LoRA reference's adapter weights give the gradients (lora_A and lora_B)
    model, tokenizer, _ = load_checkpoint(model_dir, dtype=torch.float32, trainable=True)
    model.to(procs.device)
    rows = pl.read_parquet(pipeline.ARTIFACTS / "datasets" / cfg.rows_source / f"{mix}.parquet")
    labeled, rep = label_by_gradient_clusters(
        rows, model, tokenizer, cfg, cache_dir(mix, model, rows, cfg, clean=procs.is_main_process),
        shard=(procs.process_index, procs.num_processes), barrier=procs.wait_for_everyone,
    )
    if not procs.is_main_process:
        return  # rank 0 clusters and writes
    path = pipeline.ARTIFACTS / "datasets" / "gradient_cluster" / f"{mix}.parquet"
    write_parquet(labeled, path)
    modes = labeled.filter(pl.col("split") == "train")["mode"].unique().to_list()
    if isinstance(cfg.n_clusters, int):  # C fixed: every cluster is declared; auto: those found
        modes = [cluster_mode(i) for i in range(cfg.n_clusters)]
    write_declared(path, uniform(modes))
    write_json({**rep, "threads": threads_record, "processes": procs.num_processes}, pipeline.ARTIFACTS / "metrics" / "gradient_cluster" / f"{mix}.json")


if __name__ == "__main__":
    pipeline.run(main)
