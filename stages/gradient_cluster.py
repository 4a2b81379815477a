"""Stage `gradient_cluster`: discover modes without labels from per-example gradients.

    python stages/gradient_cluster.py   # reads params.yaml: gradient_cluster
For each mix in gradient_cluster.mixes: the reference arm's standard model (trained on the
unlabeled mixture) gives each row's gradient of log p(completion | prompt); a Rademacher
projection and k-means turn them into modes `cluster:<i>`. Writes
artifacts/datasets/gradient_cluster/<mix>.parquet and, per mix, C, silhouette scores, cluster
sizes and the agreement with the true search algorithm (ARI, contingency table) to
artifacts/metrics/gradient_cluster.json. Features are cached (and resumed after an
interruption) under artifacts/cache/gradient_cluster/<mix>/<key>, where the key hashes the
reference model's parameters (``gradients.model_hash``), the rows and the params: a rerun with a retrained reference model
starts a fresh store, and stores of other keys are deleted.
"""

import hashlib
import shutil
import sys

import polars as pl
import torch

from modc_data import pipeline
from modc_data.artifacts import frame_hash, write_json, write_parquet
from modc_data.autotune import resolve_threads
from modc_data.labeling.gradient_cluster import label_by_gradient_clusters
from modc_data.labeling.gradients import model_hash
from modc_data.modeling.load import load_checkpoint
from modc_data.pipeline import StageError


def cache_dir(mix: str, model, rows: pl.DataFrame, cfg):
    """The feature store of this (reference model, rows, params); stale siblings are removed."""
    h = hashlib.sha256()
    h.update(model_hash(model).encode())
    h.update(frame_hash(rows, ["id", "prompt", "completion"]).encode())
    h.update(cfg.model_dump_json(exclude={"threads"}).encode())  # threads do not change features
    key = h.hexdigest()[:16]
    root = pipeline.ARTIFACTS / "cache" / "gradient_cluster" / mix
    if root.exists():
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
    if cfg.reference_arm not in params.arms:
        raise StageError(f"gradient_cluster.reference_arm: unknown arm {cfg.reference_arm!r}")
    ref = params.arms[cfg.reference_arm]
    model_dir = pipeline.ARTIFACTS / "models" / params.standard_arm(cfg.reference_arm) / "standard"
    threads, threads_record = resolve_threads(cfg.threads)
    torch.set_num_threads(threads)
    model, tokenizer, _ = load_checkpoint(model_dir)
    model = model.float()
    report = {}
    for mix in cfg.mixes:
        rows = pl.read_parquet(pipeline.ARTIFACTS / "datasets" / ref.label_source / f"{mix}.parquet")
        labeled, rep = label_by_gradient_clusters(
            rows, model, tokenizer, cfg, cache_dir(mix, model, rows, cfg),
        )
        write_parquet(labeled, pipeline.ARTIFACTS / "datasets" / "gradient_cluster" / f"{mix}.parquet")
        report[mix] = {**rep, "threads": threads_record}
    write_json(report, pipeline.ARTIFACTS / "metrics" / "gradient_cluster.json")


if __name__ == "__main__":
    pipeline.run(main)
