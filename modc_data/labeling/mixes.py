"""Training mixes: which labeled row (if any) each training problem contributes.

What goes in: schema rows with possibly several rows per problem (one per mode that solves it),
and a mix: either declared shares ``{mode: share}`` (``balanced``, ``skewed``) or the string
``"rejection"``. What comes out: at most one row per train/validation problem; test splits pass
through untouched.

Two kinds of mix:
- **share mix** ``{mode: share}``: the shares are declared and validated (below).
- **rejection mix** ``"rejection"`` (the paper's default data): each problem keeps one solving
  trace, its mode drawn uniformly among the modes whose trace solves it. No share is declared:
  the realised shares follow from which modes solve which problems, and are reported, not
  checked (``declared_shares`` returns None for it).

Why a mix is drawn and not rebalanced: collapse (the effect ModC exploits) depends on how the
training rows mix modes, so the mix is a declared, reported parameter (DESIGN.md). For each
problem we draw a mode with probability = its share and keep that mode's row when it exists, else
drop the problem. Every kept row stays correct, and on problems that every mode solves the
realised shares equal the declared ones in expectation. The price, stated plainly: when modes
solve different fractions of problems (availability ``a_m``), the realised share of mode ``m`` is
``s_m a_m / sum_j s_j a_j``, not ``s_m``. Call ``mode_shares`` on the output and report it; the
validate stage checks it against the declared mix within a tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import polars as pl

from modc_data.schema import check_schema

MIXED_SPLITS = ("train", "validation")  # every other split keeps all of its rows
SHARE_SUM_TOLERANCE = 1e-6
REJECTION = "rejection"  # how a profile names the rejection mix: `labels.mixes.<name>: rejection`
Mix = Mapping[str, float] | Literal["rejection"]


def is_rejection(mix: Mix) -> bool:
    """True for the rejection mix (``"rejection"``), False for a ``{mode: share}`` mix."""
    return isinstance(mix, str) and mix == REJECTION


def declared_shares(mix: Mix) -> dict[str, float] | None:
    """The shares a dataset drawn under ``mix`` must show: the mix itself, or None ("no fixed
    shares") for the rejection mix, whose realised shares are reported instead of checked."""
    if isinstance(mix, str):
        if not is_rejection(mix):
            raise ValueError(f"unknown mix {mix!r}: give {{mode: share}} shares or {REJECTION!r}")
        return None
    return check_shares(mix)


def mix_seeds(mixes: Mapping[str, Mix], seed: int) -> dict[str, int]:
    """Seed of each mix's draw: share mixes get ``seed + i`` by their sorted name among the share
    mixes, rejection mixes the seeds after those. Adding a rejection mix to a profile therefore
    leaves every share mix's draw (and dataset) bit-identical to before."""
    shares = sorted(m for m, v in mixes.items() if not is_rejection(v))
    rejection = sorted(m for m, v in mixes.items() if is_rejection(v))
    return {m: seed + i for i, m in enumerate(shares + rejection)}


def check_shares(shares: Mapping[str, float], where: str = "shares") -> dict[str, float]:
    """Return ``shares`` as a dict after checking: non-empty, each share in [0, 1], sum 1."""
    if not shares:
        raise ValueError(f"{where}: the mix lists no modes; give e.g. {{'dfs': 0.5, 'bfs': 0.5}}")
    bad = {m: s for m, s in shares.items() if not (0.0 <= float(s) <= 1.0)}
    if bad:
        raise ValueError(f"{where}: shares must lie in [0, 1], got {bad}")
    total = float(sum(shares.values()))
    if abs(total - 1.0) > SHARE_SUM_TOLERANCE:
        raise ValueError(f"{where}: shares sum to {total}, expected 1 (got {dict(shares)})")
    return {str(m): float(s) for m, s in shares.items()}


def apply_mix(rows: pl.DataFrame, shares: Mix, seed: int) -> pl.DataFrame:
    """Draw one mode per train/validation problem with probability ``shares[mode]``.

    ``shares == "rejection"`` hands over to ``rejection_mix`` (uniform among solving modes).

    Args:
        rows: schema rows (``modc_data.schema.ROW_SCHEMA``), any number per problem.
        shares: declared mix, ``{mode: share}``, shares summing to 1. A mode with a positive share
            must have at least one train/validation row; rows of modes not listed are dropped
            from the mixed splits (their share is 0).
        seed: the draw depends only on ``seed`` and the set of (split, problem_id) pairs, not on
            row order, so the same inputs give the same mix.
    Returns:
        Rows of ``rows`` (same columns, same relative order): at most one per problem in
        ``MIXED_SPLITS``, all rows of the other splits.
    """
    if isinstance(shares, str):
        declared_shares(shares)  # a clear error for an unknown mix name
        return rejection_mix(rows, seed)
    check_schema(rows, "apply_mix rows")
    shares = check_shares(shares)
    mixed = rows.filter(pl.col("split").is_in(MIXED_SPLITS))
    present = set(mixed["mode"].unique().to_list())
    absent = [m for m, s in shares.items() if s > 0 and m not in present]
    if absent and mixed.height:
        raise ValueError(
            f"apply_mix: mode(s) {absent} have a positive share but no train/validation rows; "
            f"modes present are {sorted(present)} (fix the mix in params.yaml labels.mixes)"
        )

    # Sorting problems and modes makes the draw independent of row and dict order.
    problems = mixed.select("split", "problem_id").unique().sort("split", "problem_id")
    modes = sorted(shares)
    cdf = np.cumsum([shares[m] for m in modes])
    u = np.random.default_rng(seed).random(problems.height)
    # side="right" so that u (in [0, 1)) never picks a zero-share mode at a cdf plateau.
    idx = np.minimum(np.searchsorted(cdf, u, side="right"), len(modes) - 1)
    drawn = problems.with_columns(pl.Series("_drawn", [modes[i] for i in idx], dtype=pl.String))

    return _keep_drawn(rows, drawn, pl.col("mode") == pl.col("_drawn"))


def _keep_drawn(rows: pl.DataFrame, drawn: pl.DataFrame, match: pl.Expr) -> pl.DataFrame:
    """Rows of the mixed splits where ``match`` holds against ``drawn`` (split, problem_id,
    _drawn), at most the first per problem, plus every row of the other splits, in row order."""
    keep = (
        rows.with_row_index("_row")
        .join(drawn, on=["split", "problem_id"], how="left")
        .filter(~pl.col("split").is_in(MIXED_SPLITS) | match)
    )
    # Several rows of the drawn mode for one problem (e.g. two teacher samples): keep the first,
    # so each problem contributes one row and the mode shares stay per problem.
    keep = keep.filter(
        ~pl.col("split").is_in(MIXED_SPLITS)
        | (pl.col("_row") == pl.col("_row").min().over("split", "problem_id"))
    )
    return keep.sort("_row").select(rows.columns)


def rejection_mix(rows: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Keep one solving row per train/validation problem, its mode uniform among solving modes.

    Args:
        rows: schema rows, any number per problem; a row solves when ``correct`` is true.
        seed: the draw depends only on ``seed`` and the (split, problem_id, solving modes) sets,
            not on row order.
    Returns:
        Rows of ``rows`` (same columns, same relative order): per problem in ``MIXED_SPLITS`` with
        a solving row, the first row of one mode drawn uniformly among its solving modes (modes,
        not rows: two rows of one mode do not double its chance); problems with none are dropped;
        all rows of the other splits.
    """
    check_schema(rows, "rejection_mix rows")
    solving = rows.filter(pl.col("split").is_in(MIXED_SPLITS) & pl.col("correct"))
    # Sorted problems and sorted modes per problem: the draw ignores row order.
    options = (
        solving.select("split", "problem_id", "mode")
        .unique()
        .sort("split", "problem_id", "mode")
        .group_by("split", "problem_id", maintain_order=True)
        .agg(pl.col("mode"))
    )
    u = np.random.default_rng(seed).random(options.height)
    n_options = options["mode"].list.len().to_numpy()
    idx = np.minimum((u * n_options).astype(np.int64), n_options - 1)
    drawn = options.with_columns(pl.Series("_i", idx)).select(
        "split", "problem_id", pl.col("mode").list.get(pl.col("_i")).alias("_drawn")
    )
    return _keep_drawn(rows, drawn, (pl.col("mode") == pl.col("_drawn")) & pl.col("correct"))


def mode_shares(rows: pl.DataFrame, splits: tuple[str, ...] = MIXED_SPLITS) -> dict[str, dict]:
    """Realised mode shares and counts per split.

    Returns ``{split: {"n": rows, "shares": {mode: fraction}, "counts": {mode: rows}}}`` for
    each split in ``splits`` that has rows; fractions sum to 1 within a split.
    """
    out: dict[str, dict] = {}
    for split in splits:
        part = rows.filter(pl.col("split") == split)
        if not part.height:
            continue
        counts = dict(part.group_by("mode").len().sort("mode").iter_rows())
        out[split] = {
            "n": part.height,
            "counts": counts,
            "shares": {m: c / part.height for m, c in counts.items()},
        }
    return out
