"""Stage `gradient_cluster`: discover modes without labels from per-example gradients.

    python stages/gradient_cluster.py   # reads params.yaml: gradient_cluster
For each mix in gradient_cluster.mixes: the reference arm's standard model (trained on the
unlabeled mixture) gives each row's gradient of log p(completion | prompt); a Rademacher
projection and k-means turn them into modes `cluster:<i>`. Writes
artifacts/datasets/gradient_cluster/<mix>.parquet and, per mix, C, silhouette scores, cluster
sizes and the agreement with the true search algorithm (ARI, contingency table) to
artifacts/metrics/gradient_cluster.json. Features are cached (and resumed) under
artifacts/cache/gradient_cluster/.
"""

import polars as pl

from modc_data import pipeline
from modc_data.artifacts import write_json, write_parquet
from modc_data.labeling.gradient_cluster import label_by_gradient_clusters
from modc_data.modeling.load import load_checkpoint
from modc_data.pipeline import StageError


def main(params, argv):
    cfg = params.gradient_cluster
    if cfg.reference_arm not in params.arms:
        raise StageError(f"gradient_cluster.reference_arm: unknown arm {cfg.reference_arm!r}")
    ref = params.arms[cfg.reference_arm]
    model_dir = pipeline.ARTIFACTS / "models" / params.standard_arm(cfg.reference_arm) / "standard"
    model, tokenizer, _ = load_checkpoint(model_dir)
    model = model.float()
    report = {}
    for mix in cfg.mixes:
        rows = pl.read_parquet(pipeline.ARTIFACTS / "datasets" / ref.label_source / f"{mix}.parquet")
        labeled, rep = label_by_gradient_clusters(
            rows, model, tokenizer, cfg, pipeline.ARTIFACTS / "cache" / "gradient_cluster" / mix,
        )
        write_parquet(labeled, pipeline.ARTIFACTS / "datasets" / "gradient_cluster" / f"{mix}.parquet")
        report[mix] = rep
    write_json(report, pipeline.ARTIFACTS / "metrics" / "gradient_cluster.json")


if __name__ == "__main__":
    pipeline.run(main)
