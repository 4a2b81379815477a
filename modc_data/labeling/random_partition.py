"""Random-partition labels: the control for every other label source.

What goes in: schema rows (usually a mixed search-algorithm dataset). What comes out: the same
rows, each relabeled ``random:0`` .. ``random:{n-1}`` independently and uniformly at random, with
``label_source='random'`` and the original mode kept in ``meta``. Completions, answers and ids
are untouched: the id hashes (task, prompt, completion), none of which change, so a row keeps
its id across label sources and datasets can be compared row by row.

A random partition carries no information about how a completion reasons, so ModC over it should
match the standard model; a gain here would point at an artefact (more data per mode, seeds).
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from modc_data.schema import check_schema

LABEL_SOURCE = "random"


def random_mode(i: int) -> str:
    """Name of the ``i``-th random mode (``random:0``, ``random:1``, ...)."""
    return f"random:{i}"


def uniform_shares(n_modes: int) -> dict[str, float]:
    """The declared mix of a random labeling: ``{random:i: 1/n_modes}`` (for validation)."""
    return {random_mode(i): 1.0 / n_modes for i in range(n_modes)}


def random_rows(rows: pl.DataFrame, n_modes: int, seed: int) -> pl.DataFrame:
    """Relabel every row with a mode drawn uniformly from ``n_modes`` random modes.

    Args:
        rows: schema rows (``modc_data.schema.ROW_SCHEMA``).
        n_modes: number of random modes (>= 2).
        seed: the labels depend only on ``seed`` and the rows' content (id, split, mode), not on
            their order.
    Returns:
        Same rows in the same order; ``mode`` = ``random:<i>``, ``label_source`` = ``random``,
        ``meta`` gains ``original_mode`` and ``original_label_source``.
    """
    check_schema(rows, "random_rows rows")
    if not isinstance(n_modes, int) or n_modes < 2:
        raise ValueError(f"n_modes must be an int >= 2 (labels.random.n_modes), got {n_modes!r}")

    # Draw in a content-defined order so that shuffling the input does not change any label.
    order = rows.with_row_index("_row").sort("id", "split", "mode", "_row")
    labels = np.random.default_rng(seed).integers(0, n_modes, size=rows.height)
    order = order.with_columns(
        pl.Series("_label", [random_mode(int(i)) for i in labels], dtype=pl.String)
    )
    relabeled = order.sort("_row").with_columns(
        pl.struct("meta", "mode", "label_source")
        .map_elements(_annotate_meta, return_dtype=pl.String)
        .alias("meta"),
        pl.col("_label").alias("mode"),
        pl.lit(LABEL_SOURCE, dtype=pl.String).alias("label_source"),
    )
    return relabeled.select(rows.columns)


def _annotate_meta(r: dict) -> str:
    meta = json.loads(r["meta"]) if r["meta"] else {}
    meta["original_mode"] = r["mode"]
    meta["original_label_source"] = r["label_source"]
    return json.dumps(meta, sort_keys=True)
