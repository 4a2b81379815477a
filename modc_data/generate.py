"""Problem generation: the problems table of a task (``problems_from_params``), and Countdown's
own, with both reference traces per problem.

``generate_problems(cfg, seed)`` draws unique problems (``modc_data.tasks.countdown_search``), runs
DFS and BFS on each under ``cfg.budget`` in ``cfg.workers`` processes, and returns one polars frame
(``PROBLEM_COLUMNS``) holding the natural splits (train / validation / test) and the adversarial
ones (test_adversarial / validation_adversarial: problems solvable within budget by exactly one
algorithm, balanced between only-DFS and only-BFS). ``solvability_breakdown(df)`` summarises the
categories per split for DVC metrics.

Determinism: candidates are drawn in chunks, chunk ``i`` from ``random.Random(f"countdown:{seed}:{i}")``
(workers draw and search whole chunks), and the main process takes them in chunk order,
skipping duplicates; so the frame does not depend on ``cfg.workers``.

What it leaves out: writing files (stages do), labelling rows by mode (``modc_data.labeling``).
"""

from __future__ import annotations

import itertools
import multiprocessing
import random
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

import polars as pl
from tqdm.auto import tqdm

from modc_data.errors import InputError
from modc_data.params_blocks import CountdownParams
from modc_data.schema import SPLITS, problem_id
from modc_data.tasks.countdown import NODE_SEP, format_prompt, problem_key
from modc_data.tasks.countdown_search import draw_problem, explore, reachable

TASK = "countdown"
CATEGORIES = ("both", "only_dfs", "only_bfs", "neither")
NATURAL_SPLITS = ("test", "validation", "train")  # fill order (held-out targets skip train)
ADVERSARIAL_SPLITS = ("test_adversarial", "validation_adversarial")
PROBLEM_COLUMNS: dict[str, pl.DataType] = {
    "problem_id": pl.String(),
    "task": pl.String(),
    "split": pl.String(),
    "prompt": pl.String(),
    "answer": pl.String(),
    "category": pl.String(),
    "meta": pl.String(),
    "dfs_trace": pl.String(),
    "dfs_solved": pl.Boolean(),
    "dfs_nodes": pl.Int64(),
    "dfs_answer": pl.String(),
    "bfs_trace": pl.String(),
    "bfs_solved": pl.Boolean(),
    "bfs_nodes": pl.Int64(),
    "bfs_answer": pl.String(),
}
CHUNK = 2048  # candidate draws per worker task: large enough to amortise pickling
# Give up after this many draws in a row that add nothing (duplicates / wrong category):
# max(MIN_IDLE_DRAWS, IDLE_DRAWS_PER_PROBLEM * problems requested).
MIN_IDLE_DRAWS = 50_000
IDLE_DRAWS_PER_PROBLEM = 5
# Exact space counts enumerate every tuple's full search tree; only done when that is cheap.
MAX_TUPLES_TO_COUNT = 200_000

Problem = tuple[tuple[int, ...], int]


class GenerationError(InputError):
    """The params ask for more problems than the problem space (or the budget) can supply."""


# --------------------------------------------------------------------------- workers
# n_numbers, value_min, value_max, use_all_numbers, allow_nonpositive, max_intermediate, budget
Spec = tuple[int, int, int, bool, bool, int | None, int]


def spec_of(cfg: CountdownParams) -> Spec:
    """The fields of ``cfg`` a worker needs, as a small picklable tuple."""
    return (
        cfg.n_numbers,
        cfg.value_min,
        cfg.value_max,
        cfg.use_all_numbers,
        cfg.allow_nonpositive,
        cfg.max_intermediate,
        cfg.budget,
    )


def search_row(nums: tuple[int, ...], target: int, spec: Spec) -> tuple:
    """One problems-table row without its split (``PROBLEM_COLUMNS`` order minus ``split``)."""
    _, _, _, use_all, nonpos, cap, budget = spec
    # trace_for inlined: this runs once per candidate and is the hot path of generation.
    out: list = []
    for algo in ("dfs", "bfs"):
        ex = explore(nums, algo, budget, nonpos, cap)
        i = (ex.first_leaf_at if use_all else ex.first_at).get(target)
        if i is None:
            out += (ex.fail_trace, False, len(ex.texts), "")
        else:
            ans = ex.answers[i]
            out += (NODE_SEP.join(ex.texts[: i + 1]) + NODE_SEP + "ANS " + ans, True, i + 1, ans)
    d_solved, b_solved = out[1], out[5]
    return (
        problem_id(TASK, problem_key(nums, target)),
        TASK,
        format_prompt(nums, target),
        out[3] if d_solved else out[7],
        category(d_solved, b_solved),
        f'{{"nums": [{", ".join(map(str, nums))}], "target": {target}}}',  # json.dumps, faster
        *out,
    )


def draw_chunk(args: tuple[int, int, Spec]) -> list[tuple[Problem, tuple]]:
    """Worker: draw ``CHUNK`` candidate problems from the stream seeded by (seed, chunk index)
    and run both searches on each; returns ``((nums, target), row)`` pairs in draw order,
    duplicates included (the caller de-duplicates across chunks, in chunk order)."""
    seed, index, spec = args
    n, lo, hi, use_all, nonpos, cap, _ = spec
    # A string seed is hashed with SHA-512 by random.seed: stable across runs and platforms.
    rng = random.Random(f"countdown:{seed}:{index}")
    out = []
    for _ in range(CHUNK):
        nums, target = draw_problem(
            rng, n, lo, hi, use_all_numbers=use_all, allow_nonpositive=nonpos, max_intermediate=cap
        )
        out.append(((nums, target), search_row(nums, target, spec)))
    return out


def candidates(
    seed: int, spec: Spec, pool=None, workers: int = 1
) -> Iterator[tuple[Problem, tuple]]:
    """Endless stream of searched candidate problems, chunk 0, 1, 2, ... in order, computed by
    ``pool`` (a multiprocessing Pool of ``workers`` processes) or in this process.

    Chunks go out in waves of 2 per worker (``pool.imap`` would otherwise submit an endless
    iterator eagerly); the stream is the same whatever the pool size."""
    wave = 2 * workers
    for first in itertools.count(0, wave):
        jobs = [(seed, i, spec) for i in range(first, first + wave)]
        for part in pool.imap(draw_chunk, jobs) if pool is not None else map(draw_chunk, jobs):
            yield from part


def category(dfs_solved: bool, bfs_solved: bool) -> str:
    if dfs_solved:
        return "both" if bfs_solved else "only_dfs"
    return "only_bfs" if bfs_solved else "neither"


# --------------------------------------------------------------------------- problem space
def space_size(cfg: CountdownParams, exclude_targets: Sequence[int] = ()) -> int | None:
    """Exact number of distinct problems ``(ordered nums, target)`` the generator can draw, or
    None when counting would be expensive (more than ``MAX_TUPLES_TO_COUNT`` tuples or more
    than 4 numbers). A problem's targets are the results of its full (unbudgeted) search tree."""
    return _space_size(
        cfg.n_numbers,
        cfg.value_min,
        cfg.value_max,
        cfg.use_all_numbers,
        cfg.allow_nonpositive,
        cfg.max_intermediate,
        frozenset(exclude_targets),
    )


@lru_cache(maxsize=8)
def _space_size(
    n_numbers: int,
    value_min: int,
    value_max: int,
    use_all: bool,
    allow_nonpos: bool,
    cap: int | None,
    excluded: frozenset[int],
) -> int | None:
    if n_numbers > 4 or (value_max - value_min + 1) ** n_numbers > MAX_TUPLES_TO_COUNT:
        return None
    total = 0
    for nums in itertools.product(range(value_min, value_max + 1), repeat=n_numbers):
        reach = set(reachable(nums, allow_nonpos, cap, use_all))
        if not use_all:
            reach -= set(nums)  # the generator redraws zero-step problems
        total += len(reach - excluded)
    return total


def _check_sizes(cfg: CountdownParams) -> None:
    """Raise GenerationError naming the split whose size the problem space cannot hold."""
    sizes = cfg.problems
    space = space_size(cfg)
    if space is None:
        return
    held = cfg.heldout_targets
    train_space = space_size(cfg, held) if held else space
    need = 0
    for split in NATURAL_SPLITS:
        need += getattr(sizes, split)
        if need > space or (split == "train" and sizes.train > train_space):
            raise GenerationError(
                f"countdown.problems.{split}: {getattr(sizes, split)} problems requested, but with "
                f"n_numbers={cfg.n_numbers}, values {cfg.value_min}..{cfg.value_max} and "
                f"max_intermediate={cfg.max_intermediate} only {space} distinct problems exist "
                f"({train_space} without held-out targets) for all splits together "
                f"({sizes.test + sizes.validation + sizes.train} requested). Lower the split sizes "
                "or widen value_min..value_max / max_intermediate / n_numbers."
            )


# --------------------------------------------------------------------------- the table
def generate_problems(cfg: CountdownParams, seed: int) -> pl.DataFrame:
    """The problems table for ``cfg`` (a ``CountdownParams`` block), deterministic for ``seed``.

    Returns one row per problem with columns ``PROBLEM_COLUMNS``; splits: train, validation,
    test (``cfg.problems`` sizes; held-out targets never in train), test_adversarial
    (``cfg.adversarial_per_side`` only-DFS + as many only-BFS) and validation_adversarial
    (``cfg.validation_adversarial_per_side`` per side; unset: half of adversarial_per_side, at
    least 1). No problem appears twice in the table. Candidates come from one
    stream (``candidates``) and fill test, validation, train, then the adversarial splits, in
    stream order. Raises GenerationError naming ``countdown.problems.<split>`` when the problem
    space (or the budget, for adversarial splits) cannot supply a split.
    """
    _check_sizes(cfg)
    spec = spec_of(cfg)
    held = frozenset(cfg.heldout_targets)
    natural = [(split, getattr(cfg.problems, split)) for split in NATURAL_SPLITS]
    half = cfg.validation_side()
    quota = {
        ("test_adversarial", "only_dfs"): cfg.adversarial_per_side,
        ("test_adversarial", "only_bfs"): cfg.adversarial_per_side,
        ("validation_adversarial", "only_dfs"): half,
        ("validation_adversarial", "only_bfs"): half,
    }
    rows: dict[str, list[tuple]] = {split: [] for split in SPLITS}
    seen: set[Problem] = set()
    stage = 0  # index into ``natural``; == len(natural) once the adversarial splits fill
    idle = 0
    total = sum(n for _, n in natural) + sum(quota.values())
    max_idle = max(MIN_IDLE_DRAWS, IDLE_DRAWS_PER_PROBLEM * total)
    bar = tqdm(total=total, desc="countdown problems", unit="problem")
    pool = multiprocessing.get_context().Pool(cfg.workers) if cfg.workers > 1 else None
    try:
        for key, row in candidates(seed, spec, pool, cfg.workers):
            cat = row[4]  # search_row's category field
            if stage < len(natural):
                split, size = natural[stage]
                ok = key not in seen and not (split == "train" and key[1] in held)
            else:
                split = next((s for s in ADVERSARIAL_SPLITS if quota.get((s, cat), 0) > 0), None)
                ok = split is not None and key not in seen
            if not ok:
                idle += 1
                if idle > max_idle:
                    raise _exhausted_error(cfg, natural, stage, quota, len(seen), max_idle)
                continue
            idle = 0
            seen.add(key)
            rows[split].append(row[:2] + (split,) + row[2:])
            bar.update(1)
            if stage < len(natural):
                if len(rows[split]) == size:
                    stage += 1
            else:
                quota[(split, cat)] -= 1
            if stage == len(natural) and not any(quota.values()):
                break
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()  # workers may still be computing the rest of a wave
            pool.join()
    ordered = [r for split in SPLITS for r in rows[split]]
    return pl.DataFrame(ordered, schema=PROBLEM_COLUMNS, orient="row")


def _exhausted_error(
    cfg: CountdownParams, natural: list, stage: int, quota: dict, kept: int, max_idle: int
) -> GenerationError:
    """Which split could not be filled, with what is missing and the fix."""
    head = f"no usable new problem in {max_idle} draws ({kept} problems kept so far)"
    if stage < len(natural):
        return GenerationError(
            f"countdown.problems.{natural[stage][0]}: {head}; the problem space is nearly "
            "exhausted. Lower the split sizes or widen value_min..value_max / max_intermediate / "
            "n_numbers."
        )
    missing = {f"{s}.{side}": n for (s, side), n in quota.items() if n}
    split = next(s for (s, _), n in quota.items() if n)
    return GenerationError(
        f"countdown.problems.{split}: {head}; still missing {missing}. With budget={cfg.budget} "
        "one algorithm rarely wins alone (or the space is used up): lower "
        "countdown.adversarial_per_side (or validation_adversarial_per_side) or change "
        "countdown.budget."
    )


# --------------------------------------------------------------------------- metrics
def solvability_breakdown(df: pl.DataFrame) -> dict[str, dict]:
    """Per split: ``{"n": rows, "count": {category: rows}, "share": {category: fraction}}`` over
    the categories both / only_dfs / only_bfs / neither (shares rounded to 4 places)."""
    out: dict[str, dict] = {}
    for split in sorted(df["split"].unique().to_list()):
        cats = df.filter(pl.col("split") == split)["category"].to_list()
        n = len(cats)
        count = {c: cats.count(c) for c in CATEGORIES}
        out[split] = {
            "n": n,
            "count": count,
            "share": {c: round(count[c] / n, 4) if n else 0.0 for c in CATEGORIES},
        }
    return out


def problems_from_params(params: Any):
    """(problems frame, generate metrics) for the task a params file names.

    Countdown draws problems and runs DFS/BFS (``generate_problems`` below); math loads them
    with ``datasets`` from ``params.math``; gsm generates them from the GSM-Symbolic templates of
    ``params.gsm``. A new task adds a branch here and to
    ``modc_data.tasks.get_task``.
    """
    if params.task == "countdown":
        problems = generate_problems(params.countdown, seed=params.seed)
        return problems, solvability_breakdown(problems)
    if params.task == "math":
        from modc_data.tasks.math import math_problems

        problems = math_problems(params.math, seed=params.seed)
        counts = problems.group_by("split").len().sort("split")
        return problems, {"problems": dict(zip(counts["split"], counts["len"], strict=True))}
    if params.task == "gsm":
        from modc_data.tasks.gsm import gsm_problems

        problems = gsm_problems(params.gsm, seed=params.seed)
        counts = problems.group_by("split").len().sort("split")
        templates = problems.select(
            "split", pl.col("meta").str.json_path_match("$.template_id").alias("t")
        ).group_by("split").agg(pl.col("t").n_unique()).sort("split")
        return problems, {
            "problems": dict(zip(counts["split"], counts["len"], strict=True)),
            "templates": dict(zip(templates["split"], templates["t"], strict=True)),
        }
    raise ValueError(f"task {params.task!r} has no problem source; known: countdown, math, gsm")
