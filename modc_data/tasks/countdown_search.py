"""Countdown problems and their reference solvers: drawing a problem, and DFS / BFS under a budget.

What this module handles:
- drawing a problem (``draw_problem``): N ordered input numbers and a target that a random valid
  expression over a subset of them reaches, so every target is reachable;
- the two reference searches (``dfs`` / ``bfs``, or ``search``) under a node budget, each emitting
  the word-level trace described in ``modc_data.tasks.countdown``; ``explore`` caches a search's
  whole exploration per input numbers, ``trace_for`` cuts it at a target, ``reachable`` lists what
  an unbounded search can reach.

What it leaves out: the search rules' text, the prompt and trace format, the verifier and the
``Task`` protocol (``modc_data.tasks.countdown``); splitting problems into train/test and running
searches in parallel (``modc_data.generate``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from modc_data.tasks.countdown import ANS, FAIL, MODES, NODE_SEP, STEP_SEP, allowed_result

_OP_TABLES: dict[tuple[bool, int | None], dict[tuple[int, int], tuple[int, ...]]] = {}


def _results(a: int, b: int, allow_nonpositive: bool, cap: int | None) -> tuple[int, ...]:
    """Valid results of ``a op b`` for op in + - * / (``-`` and ``/`` larger first; with
    ``allow_nonpositive``, ``-`` keeps the given order); may repeat a value (2 + 2, 2 * 2)."""
    hi, lo = (a, b) if a >= b else (b, a)
    out = [a + b, a - b if allow_nonpositive else hi - lo, a * b]
    if lo != 0 and hi % lo == 0:
        out.append(hi // lo)
    return tuple(c for c in out if allowed_result(c, allow_nonpositive, cap))


def draw_problem(
    rng: random.Random,
    n_numbers: int,
    value_min: int,
    value_max: int,
    *,
    use_all_numbers: bool = False,
    allow_nonpositive: bool = False,
    max_intermediate: int | None = None,
) -> tuple[tuple[int, ...], int]:
    """One problem ``(nums, target)`` from ``rng``.

    ``nums`` is an ordered tuple of ``n_numbers`` values in ``[value_min, value_max]`` (repeats
    allowed); ``target`` is the result of a random valid expression over a random subset of at
    least two of them (all of them with ``use_all_numbers``), so it is reachable. Without
    ``use_all_numbers`` a target equal to an input is redrawn (it would need zero steps).
    """
    if n_numbers < 2:
        raise ValueError(f"n_numbers must be >= 2, got {n_numbers}")
    # rng.random() with int() is ~3x faster than randint/randrange, and per-pair tables of the
    # valid results replace "random op, reject if invalid" (same distribution: uniform over the
    # valid ops); drawing is the largest cost of generation.
    rnd = rng.random
    table = _OP_TABLES.setdefault((allow_nonpositive, max_intermediate), {})
    if len(table) > 1 << 18:  # bounded memory when values are huge and uncapped
        table.clear()
    span = value_max - value_min + 1
    while True:
        nums = tuple([value_min + int(rnd() * span) for _ in range(n_numbers)])
        k = n_numbers if use_all_numbers else 2 + int(rnd() * (n_numbers - 1))
        pool = list(nums)
        for i in range(k):  # partial Fisher-Yates: pool[:k] is a random k-subset
            j = i + int(rnd() * (n_numbers - i))
            pool[i], pool[j] = pool[j], pool[i]
        del pool[k:]
        while len(pool) > 1:
            # A pair has a valid operation unless the cap prunes every result; a few retries,
            # then a fresh draw, keep the loop bounded.
            for _ in range(16):
                m = len(pool)
                i, j = int(rnd() * m), int(rnd() * (m - 1))
                j += j >= i
                res = table.get((pool[i], pool[j]))
                if res is None:
                    res = table[(pool[i], pool[j])] = _results(
                        pool[i], pool[j], allow_nonpositive, max_intermediate
                    )
                if res:
                    break
            else:
                break
            c = res[int(rnd() * len(res))]
            del pool[max(i, j)]
            del pool[min(i, j)]
            pool.append(c)
        if len(pool) > 1:
            continue
        target = pool[0]
        if not use_all_numbers and target in nums:
            continue
        return nums, target


# --------------------------------------------------------------------------- searches
@dataclass(frozen=True)
class Exploration:
    """Every node a search explores within its budget, in order, for one ``nums`` (any target).

    The exploration before the goal does not depend on the target, so the trace for a target
    is a prefix of this (``trace_for``); caching it per ``nums`` is what makes generation fast.
    """

    texts: tuple[str, ...]  # "a op b = c | rest" per node
    answers: tuple[str, ...]  # solution path from the root to that node
    first_at: dict[int, int]  # value -> index of the first node with that result
    first_leaf_at: dict[int, int]  # same, among nodes that used every input
    fail_trace: str


@dataclass(frozen=True)
class SearchResult:
    """One search on one problem: its trace, verdict, nodes explored (<= budget) and answer."""

    trace: str
    solved: bool
    nodes: int
    answer: str  # "" when unsolved


def _children(
    state: tuple[int, ...], allow_nonpositive: bool, cap: int | None
) -> list[tuple[str, int, tuple[int, ...], str]]:
    """Children of ``state`` in the fixed order (pair i<j, then + - * /): (node text, result,
    new state, step text). The result goes first in the new state, then the untouched numbers."""
    out = []
    n = len(state)
    for i in range(n - 1):
        for j in range(i + 1, n):
            a, b = state[i], state[j]
            hi, lo = (a, b) if a >= b else (b, a)
            rest = state[:i] + state[i + 1 : j] + state[j + 1 :]
            cands = [(hi, "+", lo, hi + lo), (hi, "-", lo, hi - lo)]
            if allow_nonpositive and hi != lo:
                cands.append((lo, "-", hi, lo - hi))
            cands.append((hi, "*", lo, hi * lo))
            if lo != 0 and hi % lo == 0:
                cands.append((hi, "/", lo, hi // lo))
            for x, op, y, c in cands:
                if c <= 0 and not allow_nonpositive:
                    continue
                if cap is not None and abs(c) > cap:
                    continue
                new = (c,) + rest
                step = f"{x} {op} {y} = {c}"
                out.append((step + " | " + " ".join(map(str, new)), c, new, step))
    return out


@lru_cache(maxsize=1 << 16)
def reachable(
    nums: tuple[int, ...],
    allow_nonpositive: bool = False,
    max_intermediate: int | None = None,
    use_all_numbers: bool = False,
) -> frozenset[int]:
    """Every result an unbounded search can reach from ``nums`` (those that use every input,
    with ``use_all_numbers``); the inputs themselves only when an operation also yields them.
    Order-free, so ``nums`` is sorted before the (cached) recursion."""
    return _reachable(tuple(sorted(nums)), allow_nonpositive, max_intermediate, use_all_numbers)


@lru_cache(maxsize=1 << 16)
def _reachable(
    state: tuple[int, ...], allow_nonpos: bool, cap: int | None, use_all: bool
) -> frozenset[int]:
    out: set[int] = set()
    for _, c, new, _ in _children(state, allow_nonpos, cap):
        if len(new) == 1 or not use_all:
            out.add(c)
        if len(new) > 1:
            out |= _reachable(tuple(sorted(new)), allow_nonpos, cap, use_all)
    return frozenset(out)


@lru_cache(maxsize=1 << 17)
def explore(
    nums: tuple[int, ...],
    algorithm: str,
    budget: int,
    allow_nonpositive: bool = False,
    max_intermediate: int | None = None,
) -> Exploration:
    """All nodes ``algorithm`` ('dfs' | 'bfs') explores from ``nums`` in ``budget`` expansions.

    DFS explores a child and then its subtree before the next sibling (so its trace returns to
    shallower states); BFS explores every node of a depth before any node of the next.
    """
    if algorithm not in MODES:
        raise ValueError(f"algorithm must be one of {MODES}, got {algorithm!r}")
    texts: list[str] = []
    values: list[int] = []
    leaves: list[bool] = []
    answers: list[str] = []

    def visit(text: str, c: int, new: tuple[int, ...], path: str) -> bool:
        texts.append(text)
        values.append(c)
        leaves.append(len(new) == 1)
        answers.append(path)
        return len(texts) < budget

    if algorithm == "dfs":
        # Iterative DFS with an explicit stack of child iterators (depth <= len(nums) - 1).
        stack = [(iter(_children(nums, allow_nonpositive, max_intermediate)), "")]
        while stack and len(texts) < budget:
            it, prefix = stack[-1]
            child = next(it, None)
            if child is None:
                stack.pop()
                continue
            text, c, new, step = child
            path = prefix + STEP_SEP + step if prefix else step
            if not visit(text, c, new, path):
                break
            if len(new) > 1:
                stack.append((iter(_children(new, allow_nonpositive, max_intermediate)), path))
    else:
        level = [(nums, "")]
        while level and len(texts) < budget:
            nxt = []
            for state, prefix in level:
                for text, c, new, step in _children(state, allow_nonpositive, max_intermediate):
                    path = prefix + STEP_SEP + step if prefix else step
                    if not visit(text, c, new, path):
                        break
                    if len(new) > 1:
                        nxt.append((new, path))
                if len(texts) >= budget:
                    break
            level = nxt

    first_at: dict[int, int] = {}
    first_leaf_at: dict[int, int] = {}
    for i, (c, leaf) in enumerate(zip(values, leaves, strict=True)):
        first_at.setdefault(c, i)
        if leaf:
            first_leaf_at.setdefault(c, i)
    fail = NODE_SEP.join(texts) + NODE_SEP + FAIL if texts else FAIL
    return Exploration(tuple(texts), tuple(answers), first_at, first_leaf_at, fail)


def trace_for(ex: Exploration, target: int, use_all_numbers: bool = False) -> SearchResult:
    """The search's result on ``target`` given its exploration (stops at the first goal node)."""
    i = (ex.first_leaf_at if use_all_numbers else ex.first_at).get(target)
    if i is None:
        return SearchResult(ex.fail_trace, False, len(ex.texts), "")
    ans = ex.answers[i]
    return SearchResult(
        NODE_SEP.join(ex.texts[: i + 1]) + NODE_SEP + ANS + " " + ans, True, i + 1, ans
    )


def search(
    nums: Sequence[int],
    target: int,
    algorithm: str,
    budget: int,
    *,
    use_all_numbers: bool = False,
    allow_nonpositive: bool = False,
    max_intermediate: int | None = None,
) -> SearchResult:
    """Run DFS or BFS on one problem under ``budget`` node expansions."""
    ex = explore(tuple(nums), algorithm, budget, allow_nonpositive, max_intermediate)
    return trace_for(ex, target, use_all_numbers)


def dfs(nums: Sequence[int], target: int, budget: int, **rules: Any) -> SearchResult:
    return search(nums, target, "dfs", budget, **rules)


def bfs(nums: Sequence[int], target: int, budget: int, **rules: Any) -> SearchResult:
    return search(nums, target, "bfs", budget, **rules)
