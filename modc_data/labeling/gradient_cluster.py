"""Gradient-cluster mode labels: rows without a usable mode label get ``cluster:<i>`` modes.

Pipeline: per-example gradient of log p(completion | prompt) under a reference model
(``gradients.py``) -> Rademacher projection into a resumable feature store
(``gradient_features.py``, ``projection.py``) -> k-means on the train rows (``clustering.py``);
validation (and any other non-train) rows are assigned to the nearest train centre, so every
split has the same modes.

What it leaves out: loading the reference model and reading/writing files (the stage does that).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import adjusted_rand_score

from modc_data.labeling.cluster_agreement import agreement_table
from modc_data.labeling.clustering import assign_to_centers, cluster_features
from modc_data.labeling.gradient_features import featurize
from modc_data.params_blocks import GradientClusterParams
from modc_data.schema import ROW_SCHEMA, check_schema

LABEL_SOURCE = "gradient_cluster"


def cluster_mode(i: int) -> str:
    """Mode label of cluster ``i``: ``cluster:3``."""
    return f"cluster:{i}"


def _true_modes(rows: pl.DataFrame, metas: list[dict], column: str | None) -> tuple[list, str]:
    """Reference labels to score clusters against, and where they came from.

    Order of preference: the given column; ``meta['true_mode']``; the rows' existing ``mode``
    (e.g. ``dfs``/``bfs`` of a search-algorithm-labeled reference arm) unless those are
    themselves gradient clusters. Entries are None where unknown.
    """
    if column is not None:
        return rows[column].cast(pl.String).to_list(), f"column {column}"
    if any("true_mode" in m for m in metas):
        return [m.get("true_mode") for m in metas], "meta.true_mode"
    modes = rows["mode"].to_list()
    sources = rows["label_source"].to_list()
    known = [m if s != LABEL_SOURCE else None for m, s in zip(modes, sources, strict=True)]
    named = sorted({s for s in sources if s != LABEL_SOURCE})
    return known, ",".join(named) or "mode"  # e.g. 'teacher_id': the label source of the modes


def _agreement(clusters: list[str], truth: list) -> dict[str, Any] | None:
    """ARI and the cluster x true-mode contingency table over rows whose truth is known."""
    pairs = [(c, t) for c, t in zip(clusters, truth, strict=True) if t is not None]
    if not pairs:
        return None
    cs, ts = zip(*pairs, strict=True)
    table: dict[str, dict[str, int]] = {}
    for (c, t), n in sorted(Counter(pairs).items()):
        table.setdefault(c, {})[t] = n
    return {"ari": float(adjusted_rand_score(ts, cs)), "n": len(pairs), "contingency": table}


def label_by_gradient_clusters(
    rows: pl.DataFrame,
    model,
    tokenizer,
    cfg: GradientClusterParams,
    work_dir: str | Path,
    *,
    true_mode_column: str | None = None,
    shard: tuple[int, int] = (0, 1),
    barrier: Callable[[], None] = lambda: None,
) -> tuple[pl.DataFrame | None, dict[str, Any]]:
    """Relabel ``rows`` (ROW_SCHEMA, any splits) with gradient-cluster modes.

    In: rows (at least C train rows), a reference causal LM in fp32 and its tokenizer, params,
    and a work directory for the feature store (reused and resumed across runs with the same
    inputs). Out: (rows with ``mode='cluster:<i>'``, ``label_source='gradient_cluster'`` and
    ``meta`` gaining ``cluster_distance``, ``original_mode`` and ``original_label_source``, in
    the input order — only a seeded ``cfg.max_examples`` sample of the train rows when set;
    a report dict with ``n_clusters``, ``silhouette`` (C -> score), ``cluster_sizes`` per split
    and, where true modes are known, ``agreement`` per split (``ari``, ``contingency``).
    ``shard=(rank, world)``, ``barrier``: called in each of ``world`` processes, every rank
    computes its share of the features (``gradient_features.featurize``); rank 0 clusters and
    returns the rows, the others return (None, {}) once the features are merged.
    """
    check_schema(rows, "label_by_gradient_clusters: rows")
    if true_mode_column is not None and true_mode_column not in rows.columns:
        raise ValueError(
            f"label_by_gradient_clusters: true_mode_column {true_mode_column!r} is not a column "
            f"of rows (columns: {rows.columns})"
        )
    rows = rows.with_row_index("_pos")
    train = rows.filter(pl.col("split") == "train")
    if cfg.max_examples is not None and train.height > cfg.max_examples:
        train = train.sample(n=cfg.max_examples, seed=cfg.seed).sort("_pos")
    other = rows.filter(pl.col("split") != "train")
    c_needed = max(cfg.auto_range) if cfg.n_clusters == "auto" else cfg.n_clusters
    if train.height < c_needed:
        raise ValueError(
            f"label_by_gradient_clusters: {train.height} train rows, need at least {c_needed} "
            "to fit the clusters (gradient_cluster.n_clusters / auto_range)"
        )
    ordered = pl.concat([train, other])
    pairs = list(zip(ordered["prompt"].to_list(), ordered["completion"].to_list(), strict=True))

    feats, feat_info = featurize(
        model,
        tokenizer,
        pairs,
        Path(work_dir) / "features",
        dim=cfg.projection_dim,
        seed=cfg.seed,
        chunk_size=cfg.chunk_size,
        method=cfg.method,
        shard=shard,
        barrier=barrier,
    )
    if shard[0] != 0:
        return None, {}
    feats = np.asarray(feats)
    n_train = train.height
    result = cluster_features(
        feats[:n_train],
        cfg.n_clusters,
        auto_range=cfg.auto_range,
        n_init=cfg.n_init,
        seed=cfg.seed,
        holdout_fraction=cfg.holdout_fraction,
    )
    labels, dists = result.labels, result.distances
    if other.height:
        o_labels, o_dists = assign_to_centers(feats[n_train:], result.centers)
        labels, dists = np.concatenate([labels, o_labels]), np.concatenate([dists, o_dists])

    metas = [json.loads(m) if m else {} for m in ordered["meta"].to_list()]
    truth, truth_source = _true_modes(ordered, metas, true_mode_column)
    new_modes = [cluster_mode(int(i)) for i in labels]
    new_metas = []
    for meta, old_mode, old_src, d in zip(
        metas, ordered["mode"].to_list(), ordered["label_source"].to_list(), dists, strict=True
    ):
        meta = dict(meta)
        meta["cluster_distance"] = float(d)
        if old_mode is not None:
            meta["original_mode"] = old_mode
            meta["original_label_source"] = old_src
        new_metas.append(json.dumps(meta, sort_keys=True))

    out = (
        ordered.with_columns(
            pl.Series("mode", new_modes, dtype=pl.String),
            pl.lit(LABEL_SOURCE, dtype=pl.String).alias("label_source"),
            pl.Series("meta", new_metas, dtype=pl.String),
        )
        .sort("_pos")
        .select(list(ROW_SCHEMA))
    )

    splits = ordered["split"].to_list()
    references = {f"original mode ({truth_source})": truth[:n_train]}
    for key in cfg.compare_with:
        references[f"meta.{key}"] = [m.get(key) for m in metas[:n_train]]
    baselines = agreement_table(
        new_modes[:n_train], ordered["completion"].to_list()[:n_train], references,
        seed=cfg.seed, n_boot=cfg.agreement_bootstrap,
    )
    report: dict[str, Any] = {
        "n_clusters": result.n_clusters,
        "silhouette": {str(c): s for c, s in result.silhouette.items()},
        "cluster_sizes": {},
        "agreement": {},
        "true_mode_source": truth_source,
        "baselines": baselines,  # train rows: ARI [CI] of clusters, TF-IDF, length, random
        "n_train_rows": n_train,
        "n_rows": len(pairs),
        "n_train_rows_left_out": rows.filter(pl.col("split") == "train").height - n_train,
        "kmeans_backend": result.backend,
        "projection_dim": cfg.projection_dim,
        **{f"features_{k}": v for k, v in feat_info.items()},
    }
    for split in dict.fromkeys(splits):
        idx = [i for i, s in enumerate(splits) if s == split]
        modes = [new_modes[i] for i in idx]
        report["cluster_sizes"][split] = dict(sorted(Counter(modes).items()))
        agree = _agreement(modes, [truth[i] for i in idx])
        if agree is not None:
            report["agreement"][split] = agree
    return out, report
