"""Training mixes: which labeled row (if any) each training problem contributes.

What goes in: schema rows with possibly several rows per problem (one per mode that solves it),
and a declared mix ``{mode: share}``. What comes out: at most one row per train/validation
problem, with mode shares that track the mix; test splits pass through untouched.

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

import numpy as np
import polars as pl

from modc_data.schema import check_schema

MIXED_SPLITS = ("train", "validation")  # every other split keeps all of its rows
SHARE_SUM_TOLERANCE = 1e-6


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


def apply_mix(rows: pl.DataFrame, shares: Mapping[str, float], seed: int) -> pl.DataFrame:
    """Draw one mode per train/validation problem with probability ``shares[mode]``.

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

    keep = (
        rows.with_row_index("_row")
        .join(drawn, on=["split", "problem_id"], how="left")
        .filter(~pl.col("split").is_in(MIXED_SPLITS) | (pl.col("mode") == pl.col("_drawn")))
    )
    # Several rows of the drawn mode for one problem (e.g. two teacher samples): keep the first,
    # so each problem contributes one row and the mode shares stay per problem.
    keep = keep.filter(
        ~pl.col("split").is_in(MIXED_SPLITS)
        | (pl.col("_row") == pl.col("_row").min().over("split", "problem_id"))
    )
    return keep.sort("_row").select(rows.columns)


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
