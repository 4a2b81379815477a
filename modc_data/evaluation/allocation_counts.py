"""Build the ``ArmCounts`` of one model on one split from the sample stage's rows: per problem,
the samples and correct ones of each forced mode, of the free arm and of the standard model's
arm, and the model's mode preference q(m|x) (from a first-token table or from the modes its
free samples declare or show).

What it leaves out: what the counts mean and how policies use them (``allocation``), fitting
and choosing policies (``allocation_selection``), scoring them (``allocation_scores``) and
rendering (``allocation_report``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from modc_data.budget import FREE, STANDARD
from modc_data.evaluation.allocation import ArmCounts


def arm_counts(
    samples: pl.DataFrame,
    split: str,
    model: str,
    modes: Sequence[str],
    *,
    free_model: str | None = None,
    standard_model: str | None = None,
    q_model: str | None = None,
    problem_ids: Sequence[str] | None = None,
    q_table: pl.DataFrame | None = None,
    q_column: str = "detected_mode",
) -> tuple[ArmCounts, list[str]]:
    """ArmCounts of one split from sample rows (the columns ``estimates`` reads: problem_id,
    split, model, mode, correct, detected_mode).

    Forced arms: rows of ``model`` under each of ``modes``. Free arm (first, named ``FREE``):
    rows of ``free_model`` with mode '' (a prefix model sampled without a mode token, or None
    for none). Standard arm (next, named ``STANDARD``): rows of ``standard_model`` with mode ''
    (the standard model's own samples; None for none). q(m|x): the share of ``q_model``'s free samples (default ``free_model``) whose
    detected mode is m, over the detected ones in ``modes``; a problem with none detected gets
    uniform q. Problems: ``problem_ids`` in that order, else every problem the forced arms
    cover, sorted. Returns (ArmCounts, problem ids). A problem some arm lacks is a ValueError.
    ``q_table`` (columns problem_id, split, mode, q: a free-sampling prefix model's first-token
    q(m|x), ``sampling.run.mode_preference``) replaces the detected-mode shares when given; it
    must cover every problem and mode of the split. ``q_column``: the samples' mode column the
    shares are read from without a ``q_table`` (``declared_mode`` for a free-sampling prefix
    model's own choice of mode token).
    """
    part = samples.filter(pl.col("split") == split)
    pids = (
        list(problem_ids)
        if problem_ids is not None
        else sorted(part.filter(pl.col("model") == model)["problem_id"].unique().to_list())
    )
    if not pids:
        raise ValueError(f"arm_counts: model {model!r} has no samples on split {split!r}")
    index = pl.DataFrame({"problem_id": pids}).with_row_index("_i")
    sources = (
        ([(FREE, free_model, "")] if free_model else [])
        + ([(STANDARD, standard_model, "")] if standard_model else [])
        + [(m, model, m) for m in modes]
    )
    n = np.zeros((len(pids), len(sources)), dtype=np.int64)
    c = np.zeros_like(n)
    for a, (arm, mdl, mode) in enumerate(sources):
        got = (
            part.filter((pl.col("model") == mdl) & (pl.col("mode") == mode))
            .group_by("problem_id")
            .agg(pl.len().alias("n"), pl.col("correct").sum().alias("c"))
            .join(index, on="problem_id", how="inner")
        )
        if got.height < len(pids):
            raise ValueError(
                f"arm_counts: arm {arm!r} ({mdl}, mode {mode!r}) has samples for {got.height} of "
                f"{len(pids)} problems on split {split!r}"
            )
        n[got["_i"].to_numpy(), a] = got["n"].to_numpy()
        c[got["_i"].to_numpy(), a] = got["c"].to_numpy()
    q = None
    q_model = q_model or free_model
    if q_table is not None:
        got = q_table.filter(pl.col("split") == split).join(index, on="problem_id", how="inner")
        col = {m: j for j, m in enumerate(modes)}
        got = got.filter(pl.col("mode").is_in(list(modes)))
        if got.height != len(pids) * len(modes):
            raise ValueError(
                f"arm_counts: q_table has {got.height} (problem, mode) rows on split {split!r}, "
                f"expected {len(pids)} problems x {len(modes)} modes"
            )
        q = np.zeros((len(pids), len(modes)))
        q[got["_i"].to_numpy(), [col[m] for m in got["mode"]]] = got["q"].to_numpy()
        q = q / q.sum(axis=1, keepdims=True)
    elif q_model:
        detected = (
            part.filter(
                (pl.col("model") == q_model)
                & (pl.col("mode") == "")
                & pl.col(q_column).is_in(list(modes))
            )
            .group_by("problem_id", q_column)
            .len()
            .join(index, on="problem_id", how="inner")
        )
        hits = np.zeros((len(pids), len(modes)))
        col = {m: j for j, m in enumerate(modes)}
        hits[detected["_i"].to_numpy(), [col[m] for m in detected[q_column]]] = detected[
            "len"
        ].to_numpy()
        total = hits.sum(axis=1, keepdims=True)
        q = np.where(total > 0, hits / np.maximum(total, 1), 1.0 / len(modes))
    return ArmCounts(tuple(s[0] for s in sources), n, c, q), pids
