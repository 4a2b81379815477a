"""Diversity of a model's samples per (model, split): does a method that claims diversity show it?

    table = diversity_table(samples)               # one row per (model, split), means over problems
    per_problem = diversity_per_problem(samples)   # one row per (model, split, problem)

Input: the samples table of ``modc_data.sampling.run`` (columns ``problem_id``, ``split``,
``model``, ``mode``, ``completion``, ``answer``, ``detected_mode`` …). A model's samples of one
problem are all its rows for it: n for a standard model, n per mode for prefix/experts (pooled).
Metrics, per problem, then averaged over the problems of a (model, split):

- ``mode_entropy_nats``: Shannon entropy, in nats (natural log), of the empirical distribution of
  ``detected_mode`` over the problem's samples; samples whose mode is unknown (null) are left out,
  and a problem with none is NaN (skipped in the mean). 0 = one mode only; ln 2 = 0.693 = two
  modes half and half. ``scipy.stats.entropy``.
- ``distinct_answers`` / ``distinct_completions``: the expected number of distinct final answers
  (non-empty ``answer`` strings) / distinct completion strings among k samples drawn the way the
  model is evaluated: k of the n for a standard model, the uniform split k/M per mode for a model
  with modes (remainder averaged), without replacement. Exact and unbiased, by linearity:
  ``Σ_a 1 - Π_m C(n_m - c_am, k_m) / C(n_m, k_m)``, i.e. the sum over answers of the ModC
  pass@k of "this answer appears" (``passk.pass_at_k_modc``). k defaults to the samples per
  (problem, mode) of the table (``sample.n``), so every model is compared at the same budget and
  at k = n the value is just the count of distinct strings.
- ``pairwise_ngram_distinct``: for each unordered pair of the problem's samples, with A, B the
  sets of word n-grams (whitespace tokens, ``ngram`` of them) of the two completions,
  ``|A Δ B| / |A ∪ B|`` = 1 - Jaccard(A, B): the share of the pair's distinct n-grams that only one
  of them uses (0 = same n-grams, 1 = none shared; two completions shorter than n tokens count as
  identical, 0). Averaged over all pairs of the pooled samples. N-grams come from scikit-learn's
  ``CountVectorizer`` and the pairwise distances from ``scipy.spatial.distance.pdist('jaccard')``;
  there is no maintained library for "distinct-n" itself (it is a ratio of counts), so only the
  definition above is ours.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.spatial.distance import pdist
from scipy.stats import entropy
from sklearn.feature_extraction.text import CountVectorizer

from modc_data.evaluation.passk import pass_at_k_modc

METRICS = ("mode_entropy_nats", "distinct_answers", "distinct_completions", "pairwise_ngram_distinct")


def mode_entropy(detected: list[str | None]) -> float:
    """Entropy in nats of the detected modes (nulls left out); NaN when no mode is known."""
    known = [m for m in detected if m is not None]
    if not known:
        return float("nan")
    _, counts = np.unique(known, return_counts=True)
    return float(entropy(counts))


def expected_distinct(values_by_mode: list[list[str | None]], k: int) -> float:
    """Expected distinct non-empty strings among k samples split uniformly over the modes.

    ``values_by_mode[m]``: the strings of mode m's n_m samples (one list for a plain sampler).
    ``""`` and None are drawn but are not a value. Raises ValueError when some k_m > n_m.
    """
    n = np.array([len(v) for v in values_by_mode], dtype=np.int64)
    keys = sorted({v for vals in values_by_mode for v in vals if v})
    if not keys:
        return 0.0
    index = {key: i for i, key in enumerate(keys)}
    counts = np.zeros((len(keys), len(n)), dtype=np.int64)
    for m, vals in enumerate(values_by_mode):
        for v in vals:
            if v:
                counts[index[v], m] += 1
    appears = pass_at_k_modc(np.broadcast_to(n, counts.shape), counts, [k])  # (values, 1)
    return float(appears.sum())


def pairwise_ngram_distinct(completions: list[str], ngram: int = 2) -> float:
    """Mean over sample pairs of 1 - Jaccard of their word ``ngram``-gram sets; NaN if < 2."""
    if len(completions) < 2:
        return float("nan")
    vec = CountVectorizer(
        analyzer="word", ngram_range=(ngram, ngram), token_pattern=r"\S+", lowercase=False, binary=True
    )
    try:
        grams = vec.fit_transform(completions).toarray().astype(bool)
    except ValueError:  # "empty vocabulary": every completion is shorter than ngram tokens
        return 0.0
    return float(pdist(grams, metric="jaccard").mean())


def _default_k(samples: pl.DataFrame) -> int:
    sizes = samples.group_by(["model", "split", "problem_id", "mode"]).len()["len"]
    return int(sizes.min())


def diversity_per_problem(
    samples: pl.DataFrame, *, k: int | None = None, ngram: int = 2
) -> pl.DataFrame:
    """One row per (model, split, problem_id): n_samples, k and the four METRICS.

    ``k``: budget for the distinct counts (default: the fewest samples of any (problem, model,
    mode) in the table, i.e. ``sample.n``).
    """
    if samples.is_empty():
        raise ValueError("diversity: the samples table is empty")
    if ngram < 1:
        raise ValueError(f"diversity: ngram must be >= 1, got {ngram}")
    k = _default_k(samples) if k is None else k
    records = []
    for (model, split, pid), rows in sorted(
        samples.group_by(["model", "split", "problem_id"]), key=lambda kv: kv[0]
    ):
        rows = rows.sort(["mode", "sample_idx"])
        modes = sorted(rows["mode"].unique().to_list())
        by_mode = [rows.filter(pl.col("mode") == m) for m in modes]
        records.append({
            "model": model, "split": split, "problem_id": pid, "n_samples": rows.height, "k": k,
            "mode_entropy_nats": mode_entropy(rows["detected_mode"].to_list()),
            "distinct_answers": expected_distinct([r["answer"].to_list() for r in by_mode], k),
            "distinct_completions": expected_distinct([r["completion"].to_list() for r in by_mode], k),
            "pairwise_ngram_distinct": pairwise_ngram_distinct(rows["completion"].to_list(), ngram),
        })
    return pl.DataFrame(records)


def diversity_table(samples: pl.DataFrame, *, k: int | None = None, ngram: int = 2) -> pl.DataFrame:
    """One row per (model, split): n_problems, n_samples (per problem, mean), k, ngram and the
    mean over problems of each of METRICS (NaN problems left out)."""
    per = diversity_per_problem(samples, k=k, ngram=ngram)
    return (
        per.with_columns(pl.col(METRICS).fill_nan(None))
        .group_by(["model", "split"])
        .agg(
            pl.len().alias("n_problems"),
            pl.col("n_samples").mean(),
            pl.col("k").first(),
            *[pl.col(m).mean() for m in METRICS],
        )
        .with_columns(pl.lit(ngram).alias("ngram"))
        .sort(["model", "split"])
    )
