"""What the research scripts share: an arm's training inputs read from a built pipeline, as the
train stage reads them (``stages/train.py``), per-problem sample counts, and the printed table of
a candidate against its baseline with the choice that ends each run. Not a script itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl


def arm_inputs(root: Path, params, arm_key: str) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """(train rows, validation rows, tokenizer texts) of ``arm_key`` under ``root``: the texts
    are every problem's prompt and the train and validation completions, the train stage's one
    vocabulary for all variants."""
    arm = params.arms[arm_key]
    art = Path(root) / "artifacts"
    rows = pl.read_parquet(art / "datasets" / arm.label_source / f"{arm.mix}.parquet")
    train_rows = rows.filter(pl.col("split") == "train")
    val_rows = rows.filter(pl.col("split") == "validation")
    problems = pl.read_parquet(art / "data" / "problems.parquet", columns=["prompt"])
    texts = problems["prompt"].to_list() + train_rows["completion"].to_list() + val_rows["completion"].to_list()
    return train_rows, val_rows, texts


def counts(samples: pl.DataFrame, modes: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Problem ids and (P, M) sample / correct counts, modes in ``modes`` order ('' = no mode)."""
    g = samples.group_by("problem_id", "mode").agg(pl.len().alias("n"), pl.col("correct").sum().alias("c"))
    ids = sorted(g["problem_id"].unique().to_list())
    pos = {p: i for i, p in enumerate(ids)}
    n = np.zeros((len(ids), len(modes)), dtype=np.int64)
    c = np.zeros_like(n)
    for p, m, nn, cc in g.iter_rows():
        n[pos[p], modes.index(m)] = nn
        c[pos[p], modes.index(m)] = cc
    return ids, n, c


def print_comparison(ks, cand: np.ndarray, base: np.ndarray, diff, names: tuple[str, str]) -> None:
    """Markdown table per k: mean pass@k of the candidate and the baseline, (P, K) each, and their
    paired bootstrap difference ``diff`` (an ``Interval``)."""
    print(f"| k | {names[0]} | {names[1]} | Δ [95% CI] |\n|---|---|---|---|")
    for i, k in enumerate(ks):
        print(f"| {k} | {cand[:, i].mean():.3f} | {base[:, i].mean():.3f} | "
              f"{diff.estimate[i]:+.3f} [{diff.low[i]:+.3f}, {diff.high[i]:+.3f}] |", flush=True)


def print_choice(split: str, what: str, scores: dict) -> None:
    """The candidate with the highest score (mean pass@k over the ks), and every score."""
    best = max(scores, key=scores.get)
    print(f"\nchosen on {split}: {what}{best} (mean pass@k {scores[best]:.4f}; "
          + ", ".join(f"{s}: {v:.4f}" for s, v in scores.items()) + ")")
