"""The results sections beside pass@k: sample diversity per (model, split) and maj@k.

    text, data = diversity_section(samples)
    text, data = majority_section(samples, task="math", ks=[1, 4, 16, 64], n_resamples=1000)

Both take the evaluate stage's samples table (one row per sample: model, split, problem_id,
mode, detected_mode, answer, completion, correct, sample_idx) and return the Markdown section
and the rows behind it (for ``details.json``).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from modc_data.evaluation.diversity import METRICS, diversity_table
from modc_data.evaluation.majority import NOT_APPLICABLE, majority_curves

_HEADS = {
    "mode_entropy_nats": "mode entropy (nats)",
    "distinct_answers": "distinct answers",
    "distinct_completions": "distinct completions",
    "pairwise_ngram_distinct": "pairwise 2-gram distinct",
}


def cell(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def diversity_section(samples: pl.DataFrame) -> tuple[str, list[dict]]:
    """Per (model, split): the mean over problems of each diversity metric, at one budget k
    (the samples per (problem, mode), so every model is compared at the same k; ModC models
    split it over their modes)."""
    table = diversity_table(samples)
    k = int(table["k"][0])
    lines = [
        "## Diversity of the samples",
        "",
        f"Mean over problems; distinct counts are expected values among k = {k} samples (ModC "
        "models split k over their modes); mode entropy is over the detected modes of all of a "
        "problem's samples; pairwise distinct is 1 − Jaccard of word 2-gram sets, averaged over "
        "sample pairs.",
        "",
        "| model | split | problems | " + " | ".join(_HEADS[m] for m in METRICS) + " |",
        "|---|---|---:|" + "---:|" * len(METRICS),
    ]
    for row in table.iter_rows(named=True):
        cells = " | ".join(cell(row[m]) for m in METRICS)
        lines.append(f"| {row['model']} | {row['split']} | {row['n_problems']} | {cells} |")
    return "\n".join(lines) + "\n", table.to_dicts()


def majority_section(
    samples: pl.DataFrame, *, task: str, ks: Sequence[int], n_resamples: int, ci: float = 0.95,
    seed: int = 0,
) -> tuple[str, list[dict]]:
    """maj@k per (model, split) with bootstrap CIs, or one line saying why it does not apply."""
    if task in NOT_APPLICABLE:
        return (f"## Majority vote (maj@k)\n\nNot computed for task `{task}`: "
                f"{NOT_APPLICABLE[task]}.\n", [])
    curves = majority_curves(samples, ks, task=task, n_resamples=n_resamples, ci=ci, seed=seed)
    ks = sorted(set(curves["k"].to_list()))
    lines = [
        "## Majority vote (maj@k)",
        "",
        f"Unbiased maj@k from the n samples per problem (ties split), {ci:.0%} bootstrap CIs over "
        "problems; ModC models split k over their modes.",
        "",
        "| model | split | scheme | " + " | ".join(f"k={k}" for k in ks) + " |",
        "|---|---|---|" + "---|" * len(ks),
    ]
    for (model, split, scheme), rows in sorted(curves.group_by(["model", "split", "scheme"]),
                                               key=lambda kv: kv[0]):
        rows = rows.sort("k")
        cells = " | ".join(f"{r['maj_at_k']:.3f} [{r['low']:.3f}, {r['high']:.3f}]"
                           for r in rows.iter_rows(named=True))
        lines.append(f"| {model} | {split} | {scheme} | {cells} |")
    return "\n".join(lines) + "\n", curves.to_dicts()
