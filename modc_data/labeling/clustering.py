"""k-means on L2-normalised gradient features, with C fixed or chosen by silhouette score.

What it handles: fitting (scikit-learn ``KMeans``, or ``faiss`` when it is installed), seeded,
``n_init`` restarts; ``n_clusters='auto'`` tries each C in ``auto_range``, fitting on one part of
the rows and scoring the silhouette of a held-out slice (so a larger C is not rewarded for fitting
its own points); assigning new rows (validation) to the nearest centre. Cluster ids are ordered
by size, largest first, so the same data and seed always give the same ids.
What it leaves out: where the features come from (``gradients.py``, ``gradient_features.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

try:  # optional, faster on large N; same semantics
    import faiss  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    faiss = None


@dataclass
class ClusterResult:
    """labels [N] int (0..C-1, 0 the largest cluster), distances [N] (Euclidean, on normalised
    features) to the assigned centre, centres [C, d] (normalised-feature space), the chosen C and
    the silhouette score per C tried (one entry when C was fixed)."""

    labels: np.ndarray
    distances: np.ndarray
    centers: np.ndarray
    n_clusters: int
    silhouette: dict[int, float] = field(default_factory=dict)
    backend: str = "sklearn"


def normalize_rows(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32 copy); all-zero rows stay zero."""
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D [N, d], got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise ValueError(f"features row {bad} is not finite (NaN/inf gradient?)")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _kmeans(x: np.ndarray, k: int, n_init: int, seed: int) -> tuple[np.ndarray, str]:
    """Centres [k, d] of k-means on ``x``."""
    if faiss is not None:
        km = faiss.Kmeans(x.shape[1], k, niter=300, nredo=n_init, seed=seed, verbose=False)
        km.train(np.ascontiguousarray(x, dtype=np.float32))
        return np.asarray(km.centroids, dtype=np.float32), "faiss"
    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x)
    return km.cluster_centers_.astype(np.float32), "sklearn"


def assign_to_centers(features: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of each (normalised) row: labels [N] int64 and Euclidean distances [N]."""
    x = normalize_rows(features)
    if centers.ndim != 2 or centers.shape[1] != x.shape[1]:
        raise ValueError(f"centres have shape {centers.shape}, features have d={x.shape[1]}")
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2, in float64 so tiny distances do not go negative
    x64, c64 = x.astype(np.float64), centers.astype(np.float64)
    d2 = (x64**2).sum(1, keepdims=True) - 2 * x64 @ c64.T + (c64**2).sum(1)[None, :]
    labels = d2.argmin(axis=1)
    dist = np.sqrt(np.maximum(d2[np.arange(len(x)), labels], 0.0))
    return labels.astype(np.int64), dist


def _silhouette(x: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """Silhouette score; -1.0 when it is undefined (one cluster, or every point its own)."""
    n_labels = len(np.unique(labels))
    if n_labels < 2 or n_labels >= len(x):
        return -1.0
    sample = min(len(x), 5000)  # silhouette is O(N^2); a seeded sample keeps it bounded
    return float(silhouette_score(x, labels, sample_size=sample, random_state=seed))


def _order_by_size(centers: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.bincount(labels, minlength=len(centers))
    order = np.argsort(-sizes, kind="stable")  # new id i = old cluster order[i]
    remap = np.empty_like(order)
    remap[order] = np.arange(len(order))
    return centers[order], remap[labels]


def cluster_features(
    features: np.ndarray,
    n_clusters: int | Literal["auto"] = 2,
    *,
    auto_range: Sequence[int] = (2, 3, 4),
    n_init: int = 10,
    seed: int = 0,
    holdout_fraction: float = 0.2,
) -> ClusterResult:
    """k-means of ``features`` [N, d] (L2-normalised first) into C clusters.

    ``n_clusters='auto'``: for each C in ``auto_range``, fit on a seeded ``1 - holdout_fraction``
    of the rows and score the silhouette of the held-out rows assigned to those centres; the best
    C is refit on all rows. The result's ``silhouette`` holds every score (for a fixed C: the
    silhouette of all rows).
    """
    x = normalize_rows(features)
    n = len(x)
    candidates = list(auto_range) if n_clusters == "auto" else [n_clusters]
    if not candidates or any((not isinstance(c, int)) or c < 2 for c in candidates):
        raise ValueError(
            f"n_clusters/auto_range must be integers >= 2 (or n_clusters='auto'), got "
            f"n_clusters={n_clusters!r}, auto_range={list(auto_range)!r}"
        )
    if n < max(candidates):
        raise ValueError(f"cannot make {max(candidates)} clusters from {n} examples")
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")

    scores: dict[int, float] = {}
    if n_clusters == "auto":
        perm = np.random.default_rng(seed).permutation(n)
        n_hold = max(int(round(n * holdout_fraction)), 2)
        hold, fit = perm[:n_hold], perm[n_hold:]
        if len(fit) < max(candidates):
            raise ValueError(
                f"auto C: only {len(fit)} rows left to fit after holding out {n_hold}; "
                "lower holdout_fraction or give more examples"
            )
        for c in candidates:
            centers, _ = _kmeans(x[fit], c, n_init, seed)
            held_labels, _ = assign_to_centers(x[hold], centers)
            scores[c] = _silhouette(x[hold], held_labels, seed)
        chosen = max(candidates, key=lambda c: (scores[c], -c))  # ties: fewer clusters
    else:
        chosen = int(n_clusters)

    centers, backend = _kmeans(x, chosen, n_init, seed)
    labels, _ = assign_to_centers(x, centers)
    centers, labels = _order_by_size(centers, labels)
    labels, dist = assign_to_centers(x, centers)
    if n_clusters != "auto":
        scores[chosen] = _silhouette(x, labels, seed)
    return ClusterResult(labels, dist, centers, chosen, scores, backend)
