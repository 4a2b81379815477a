"""Gradient features from several reference checkpoints, and a label-free check of a partition.

Why: whether k-means on one reference model's gradient features tracks the search
algorithm depended on that model's random draw (train ARI 0.40 / 0.02 / 0.09 for seeds 0/1/2).
TRAK (Park et al., 2023) and LESS (Xia et al., 2024) steady such features by taking them from
several checkpoints (TRAK: independently trained models; LESS: the checkpoints of one run) and
combining them after projection. This module does that over the existing single-reference
pieces:

- ``featurize_references``: one resumable feature store per reference
  (``gradient_features.featurize``, the same projection seed for all, so features of different
  references live in one space), optionally over a subset of the parameters (``restrict_params``:
  a regex over parameter names, e.g. the first transformer layer);
- ``combine``: each reference's rows L2-normalised, then concatenated and scaled by
  ``1/sqrt(R)`` (``concat``: the squared distance of two combined rows is the mean of the
  references' squared distances, so every reference counts the same) or averaged (``mean``,
  TRAK's average of projected gradients);
- ``partition_stability``: k-means on each reference alone, then the mean pairwise adjusted
  Rand index between those partitions. It uses no true labels, so it may choose a recipe
  (layers, C) where true labels are unknown: a partition that the checkpoints agree on is one
  the data carry, not one the draw made.

Hand-written: the combination is a few lines of numpy; no maintained library ensembles
gradient features of a Hugging Face model outside its own training loop (TRAK's ``trak`` package
wants its own model wrapper and GPU projector, LESS's code is a research script).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
from sklearn.metrics import adjusted_rand_score

from modc_data.labeling.clustering import cluster_features, normalize_rows
from modc_data.labeling.gradient_features import featurize
from modc_data.labeling.gradients import gradient_params, model_hash

Combine = Literal["concat", "mean"]


@contextmanager
def restrict_params(model, pattern: str | None) -> Iterator[list[str]]:
    """Within the block, only the gradient parameters whose names match ``pattern``
    (``re.search``) require grad, so ``gradient_features.featurize`` takes gradients over those
    alone.

    Yields the names kept. ``None`` or ``""``: all of them (nothing changes). Raises ValueError
    naming the pattern and a few parameter names when it matches none. ``requires_grad`` is
    restored on exit, also after an error.
    """
    params = gradient_params(model)
    if not pattern:
        yield list(params)
        return
    rx = re.compile(pattern)
    kept = [n for n in params if rx.search(n)]
    if not kept:
        sample = ", ".join(list(params)[:4])
        raise ValueError(
            f"restrict_params: the layer pattern {pattern!r} matches none of the model's "
            f"{len(params)} gradient parameters (e.g. {sample}); fix the pattern "
            "(a Python regex searched in each parameter name)"
        )
    before = {n: p.requires_grad for n, p in params.items()}
    try:
        for n, p in params.items():
            p.requires_grad_(n in kept)
        yield kept
    finally:
        for n, p in params.items():
            p.requires_grad_(before[n])


def reference_key(model, pattern: str | None) -> str:
    """16 hex of the reference's gradient parameters (all of them, so the key does not depend on
    the pattern's side effects) and the pattern: one feature store per (reference, layers)."""
    h = hashlib.sha256(model_hash(model).encode())
    h.update(f"\x1f{pattern or ''}".encode())
    return h.hexdigest()[:16]


def featurize_references(
    models: Sequence,
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    directory: str | Path,
    *,
    dim: int,
    seed: int = 0,
    layers: str | None = None,
    chunk_size: int = 32,
    method: str = "auto",
    on_reference: Callable[[int, dict], None] | None = None,
) -> list[np.ndarray]:
    """Projected gradient features ``[N, dim]`` of ``pairs`` under each of ``models``.

    ``models``: reference checkpoints loaded in fp32 (a scratch model, or a LoRA one loaded
    trainable), all with ``tokenizer``. Each gets its own store ``directory/ref-<key>``
    (``reference_key``), which ``featurize`` resumes after an interruption and reuses on a
    rerun; every store uses the projection of ``seed``. ``layers``: a regex over parameter
    names restricting the gradients (``restrict_params``). ``on_reference(i, info)`` is called
    after each reference with ``featurize``'s info.
    """
    if not models:
        raise ValueError("featurize_references: no reference models given")
    out = []
    for i, model in enumerate(models):
        store = Path(directory) / f"ref-{reference_key(model, layers)}"
        with restrict_params(model, layers):
            feats, info = featurize(model, tokenizer, pairs, store, dim=dim, seed=seed,
                                    chunk_size=chunk_size, method=method)
        out.append(np.asarray(feats, dtype=np.float32))
        if on_reference is not None:
            on_reference(i, info)
    return out


def combine(feature_sets: Sequence[np.ndarray], how: Combine = "concat") -> np.ndarray:
    """One feature matrix from several references' ``[N, d_r]`` features (rows aligned).

    Every reference's rows are L2-normalised first, so no checkpoint dominates by gradient
    scale (late checkpoints have far smaller gradients). ``concat``: side by side, scaled by
    ``1/sqrt(R)`` (unit rows; cosine similarity = the mean of the references' cosines).
    ``mean``: the average (needs equal widths and one projection, as ``featurize_references``
    makes them).
    """
    if not feature_sets:
        raise ValueError("combine: no feature sets")
    n = {f.shape[0] for f in feature_sets}
    if len(n) != 1:
        raise ValueError(f"combine: feature sets have different row counts {sorted(n)}")
    normed = [normalize_rows(f) for f in feature_sets]
    if how == "concat":
        return np.concatenate(normed, axis=1) / np.float32(np.sqrt(len(normed)))
    if how == "mean":
        widths = {f.shape[1] for f in normed}
        if len(widths) != 1:
            raise ValueError(f"combine: 'mean' needs equal widths, got {sorted(widths)}")
        return np.mean(np.stack(normed), axis=0).astype(np.float32)
    raise ValueError(f"combine: how must be 'concat' or 'mean', got {how!r}")


def partition_stability(
    feature_sets: Sequence[np.ndarray], n_clusters: int, *, n_init: int = 10, seed: int = 0
) -> dict:
    """How much k-means partitions of the same rows agree across references, without labels.

    Returns ``{"stability": mean pairwise ARI, "pairs": [ARI per pair], "labels": [per
    reference]}``; one reference gives stability 1.0 by definition (nothing to disagree with),
    so compare recipes at the same number of references.
    """
    labels = [
        cluster_features(f, n_clusters, n_init=n_init, seed=seed).labels for f in feature_sets
    ]
    pairs = [float(adjusted_rand_score(a, b)) for a, b in itertools.combinations(labels, 2)]
    return {
        "stability": float(np.mean(pairs)) if pairs else 1.0,
        "pairs": pairs,
        "labels": labels,
    }
