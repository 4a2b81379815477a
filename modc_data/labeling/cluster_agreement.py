"""Do discovered clusters recover a known partition? ARI with CIs, against baselines.

In: the cluster of each row, the rows' texts, and one or more reference partitions (the true
teacher, a prompt setting, ...: one label per row, None where unknown). Out, per reference: the
adjusted Rand index (ARI) of the gradient clusters, of two cheap text baselines with the same
number of clusters (TF-IDF + k-means on the completion; k-means on its length), and of a random
partition with the clusters' sizes, each with a percentile interval over half-samples of the rows (for the
random partition: the mean and central interval of its permutation distribution, the noise level
at this n), plus the cluster x reference contingency table.
What it leaves out: the gradient features and the clustering itself (``gradient_cluster.py``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import adjusted_rand_score

METHODS = ("gradient", "tfidf", "length", "random")


def text_baselines(texts: Sequence[str], n_clusters: int, seed: int) -> dict[str, np.ndarray]:
    """Cluster labels of the cheap baselines: TF-IDF (1-2 grams of words, numbers and symbols,
    sublinear tf) + k-means, and k-means on log length in characters; ``n_clusters`` clusters
    each, seeded. TF-IDF is left out when the texts share no token at all."""
    lengths = np.log1p(np.array([len(t) for t in texts], dtype=float)).reshape(-1, 1)
    km = dict(n_clusters=n_clusters, n_init=10, random_state=seed)
    out = {"length": KMeans(**km).fit_predict(lengths)}
    try:
        tfidf = TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"(?u)\w+|[^\w\s]",
                                sublinear_tf=True).fit_transform(texts)
    except ValueError:  # empty vocabulary: nothing for a text baseline to cluster on
        return out
    return {"tfidf": KMeans(**km).fit_predict(tfidf), **out}


def _ari_ci(a: np.ndarray, b: np.ndarray, n_boot: int, ci: float, rng: np.random.Generator
            ) -> tuple[float, float, float]:
    """ARI and a percentile interval over half-samples of the rows drawn without replacement:
    a bootstrap with replacement duplicates rows, and a duplicated row agrees with itself in
    both partitions, which inflates ARI (its interval can sit above the point). Half-samples
    give a wider, conservative interval without that bias."""
    point = float(adjusted_rand_score(b, a))
    if n_boot <= 0 or len(a) < 4:
        return point, float("nan"), float("nan")
    stats = np.empty(n_boot)
    for i in range(n_boot):
        idx = rng.choice(len(a), len(a) // 2, replace=False)
        stats[i] = adjusted_rand_score(b[idx], a[idx])
    lo, hi = np.quantile(stats, [(1 - ci) / 2, (1 + ci) / 2])
    return point, float(lo), float(hi)


def agreement_table(
    clusters: Sequence[Any],
    texts: Sequence[str],
    references: Mapping[str, Sequence[Any]],
    *,
    seed: int = 0,
    n_boot: int = 200,
    ci: float = 0.95,
) -> dict[str, Any]:
    """{reference name: {"n", "ari": {method: {"value", "low", "high"}}, "contingency"}}.

    ``clusters``: the gradient cluster of each row; ``texts``: each row's completion;
    ``references``: name -> one label per row (None: unknown; such rows are left out of that
    reference's scores). Methods: ``gradient`` (the given clusters) and the ``METHODS``
    baselines, all with the same number of clusters as ``clusters``.
    """
    clusters = np.asarray([str(c) for c in clusters])
    n_clusters = len(set(clusters.tolist()))
    rng = np.random.default_rng(seed)
    labels = {"gradient": clusters}
    if n_clusters >= 2 and len(texts) > n_clusters:
        labels.update({k: v.astype(str) for k, v in text_baselines(texts, n_clusters, seed).items()})
    out: dict[str, Any] = {}
    for name, ref in references.items():
        keep = np.array([r is not None for r in ref])
        if keep.sum() < 2:
            continue
        truth = np.asarray([str(r) for r in ref])[keep]
        scores = {}
        for method, lab in labels.items():
            v, lo, hi = _ari_ci(lab[keep], truth, n_boot, ci, rng)
            scores[method] = {"value": v, "low": lo, "high": hi}
        # random: the null distribution over permutations of the clusters (same sizes, no
        # information), its mean and central interval; one draw could land anywhere at small n
        null = np.array([adjusted_rand_score(truth, rng.permutation(clusters[keep]))
                         for _ in range(max(n_boot, 100))])
        lo, hi = np.quantile(null, [(1 - ci) / 2, (1 + ci) / 2])
        scores["random"] = {"value": float(null.mean()), "low": float(lo), "high": float(hi)}
        table: dict[str, dict[str, int]] = {}
        for (c, t), n in sorted(Counter(zip(clusters[keep].tolist(), truth.tolist(), strict=True)).items()):
            table.setdefault(c, {})[t] = n
        out[name] = {"n": int(keep.sum()), "ari": scores, "contingency": table}
    return out
