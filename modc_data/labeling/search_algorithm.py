"""Search-algorithm labels: one row per (problem, algorithm) whose trace solves the problem.

What goes in: the *problems table* written by ``modc_data.generate`` (one row per problem with a
DFS and a BFS reference trace each). What comes out: rows in ``modc_data.schema.ROW_SCHEMA`` with
``mode`` = ``dfs``/``bfs`` and ``label_source`` = ``search_algorithm``, for every split.

Only traces that reach the target within the node budget become rows, so every row is correct by
construction; a problem solved by both algorithms yields two rows, one solved by neither yields
none. Choosing *which* of those rows a model trains on is the job of ``mixes.apply_mix``.
"""

from __future__ import annotations

import json

import polars as pl

from modc_data.schema import empty_rows, make_rows
from modc_data.tasks.countdown import NODE_SEP

ALGORITHMS = ("dfs", "bfs")
LABEL_SOURCE = "search_algorithm"

# Columns of the problems table this module reads; the producer is the generate stage.
PROBLEM_COLUMNS = ("problem_id", "task", "split", "prompt", "category") + tuple(
    f"{algo}_{field}" for algo in ALGORITHMS for field in ("trace", "solved", "nodes", "answer")
)


def _check_problems(problems: pl.DataFrame, budget: int) -> None:
    """Fail before any work when the problems table or budget cannot be labeled."""
    if not isinstance(budget, int) or isinstance(budget, bool) or budget <= 0:
        raise ValueError(f"budget must be a positive int (node expansions), got {budget!r}")
    missing = [c for c in PROBLEM_COLUMNS if c not in problems.columns]
    if missing:
        raise ValueError(
            f"problems table: missing column(s) {missing}; it must be the output of the generate "
            f"stage (modc_data.generate) with columns {list(PROBLEM_COLUMNS)}"
        )
    dupes = problems.filter(pl.col("problem_id").is_duplicated())
    if dupes.height:
        raise ValueError(
            f"problems table: problem_id {dupes['problem_id'][0]!r} appears {dupes.height} times; "
            "each problem must be one row (regenerate the problems table)"
        )


def search_algorithm_rows(problems: pl.DataFrame, budget: int) -> pl.DataFrame:
    """Label every solving trace with its algorithm.

    Args:
        problems: the problems table (columns ``PROBLEM_COLUMNS``; extra columns are ignored).
        budget: node expansions allowed per search; a trace counts only when
            ``<algo>_solved`` is true and ``<algo>_nodes <= budget``.
    Returns:
        Schema-exact rows, one per (problem, algorithm) that solves within ``budget``, all
        ``correct=True``; ``meta`` = ``{budget, nodes_expanded, category}``. Sorted by
        (split, problem_id, mode) so the output does not depend on the input's row order.
    """
    _check_problems(problems, budget)
    records = []
    for p in problems.select(PROBLEM_COLUMNS).iter_rows(named=True):
        # When both searches write the same trace (the first node solves it), the row carries no
        # mode information and two rows would share one id: keep one, its label a fair coin
        # keyed by the problem so it is stable across runs.
        same = p["dfs_solved"] and p["bfs_solved"] and p["dfs_trace"] == p["bfs_trace"]
        coin = ALGORITHMS[int(p["problem_id"], 16) % len(ALGORITHMS)] if same else None
        for algo in ALGORITHMS:
            trace = p[f"{algo}_trace"]
            if not p[f"{algo}_solved"] or p[f"{algo}_nodes"] > budget:
                continue
            if coin is not None and algo != coin:
                continue
            # A solved trace must end with its answer line; a FAIL ending means the generate
            # stage and this stage disagree about what "solved" means, so stop loudly.
            last = (trace or "").rstrip().rsplit(NODE_SEP.strip(), 1)[-1].strip()
            if not last.startswith("ANS"):
                raise ValueError(
                    f"problems table: problem {p['problem_id']!r} has {algo}_solved=true but its "
                    f"{algo}_trace ends with {last[:40]!r}, not 'ANS <solution>'"
                )
            records.append(
                {
                    "problem_id": p["problem_id"],
                    "task": p["task"],
                    "prompt": p["prompt"],
                    "completion": trace,
                    "answer": p[f"{algo}_answer"],
                    "mode": algo,
                    "label_source": LABEL_SOURCE,
                    "split": p["split"],
                    "correct": True,
                    "meta": json.dumps(
                        {
                            "budget": budget,
                            "nodes_expanded": int(p[f"{algo}_nodes"]),
                            "category": p["category"],
                            "same_trace_both_modes": coin is not None,
                        },
                        sort_keys=True,
                    ),
                }
            )
    if not records:
        return empty_rows()
    return make_rows(records).sort(["split", "problem_id", "mode"])
