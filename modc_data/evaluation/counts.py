"""Per-problem sample counts from the samples table, shared by the pass@k evaluation
(``estimates``) and the sections that compare models on the same problems
(``objective_sections``, ``rl_sections``).

What it handles: one row per (model, variant, split, problem, mode) with the sample, correct and
detected-mode counts (``count_table``), and a (problems, modes) integer matrix of one such count
(``problem_matrix``). What it leaves out: checking the samples table (``estimates``), pass@k and
bootstrap estimates (``passk``, ``bootstrap``) and any rendering.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def count_table(samples: pl.DataFrame, collapse_mode: str) -> pl.DataFrame:
    """One row per (model, variant, split, problem, mode): n, c and detected-mode counts."""
    det = pl.col("detected_mode").cast(pl.String)
    return samples.group_by("model", "variant", "split", "problem_id", "mode").agg(
        n=pl.len(),
        c=pl.col("correct").cast(pl.Int64).sum(),
        n_det=det.is_not_null().cast(pl.Int64).sum(),
        n_collapse=(det == collapse_mode).fill_null(False).cast(pl.Int64).sum(),
        n_follow=(det == pl.col("mode")).fill_null(False).cast(pl.Int64).sum(),
    )


def problem_matrix(frame: pl.DataFrame, pids: list[str], modes: tuple[str, ...], col: str) -> np.ndarray:
    """(P, M) array of ``col`` for problems ``pids`` and ``modes``; missing cells are 0."""
    pos = {p: i for i, p in enumerate(pids)}
    mpos = {m: j for j, m in enumerate(modes)}
    out = np.zeros((len(pids), len(modes)), dtype=np.int64)
    for p, m, v in frame.select("problem_id", "mode", col).iter_rows():
        if p in pos and m in mpos:
            out[pos[p], mpos[m]] = v
    return out
