"""Countdown: reach a target from a few numbers with + - * /, solved by DFS or BFS under a budget.

What this module handles:
- drawing a problem (``draw_problem``): N ordered input numbers and a target that a random valid
  expression over a subset of them reaches, so every target is reachable;
- the two reference searches (``dfs`` / ``bfs``, or ``search``) under a node budget, each emitting
  a compact word-level trace (tokens separated by single spaces, no newlines)::

      nums 3 7 9 target 22                              <- format_prompt
      9 + 7 = 16 | 16 3 ; 16 + 3 = 19 | 19 ; ... ; ANS 7 * 3 = 21 , 21 + 1 = 22

  one explored node per ``;``-separated step (the operation, then the numbers left after it,
  the new result first), ending in ``ANS <solution>`` or ``FAIL``;
- ``verify`` (the solution checker, never evaluates text), ``parse_trace`` / ``format_trace``
  (a lossless round trip for well-formed traces), ``detect_mode`` (which search order a trace
  follows) and ``CountdownTask`` (the ``Task`` protocol of ``modc_data.tasks``).

What it leaves out: splitting problems into train/test and running searches in parallel
(``modc_data.generate``).

Search rules, shared by the solvers, the verifier and the generator: an operation takes two of
the current numbers; ``-`` and ``/`` take the larger first, ``/`` must divide exactly; results
must be positive (unless ``allow_nonpositive``, which also allows ``small - large``) and at most
``max_intermediate`` in absolute value. A node counts against the budget when it is explored
(printed); the search stops at the first node whose result is the target (and, with
``use_all_numbers``, that has used every input).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

OPS = ("+", "-", "*", "/")
NODE_SEP = " ; "
STEP_SEP = " , "
ANS = "ANS"
FAIL = "FAIL"
MODES = ("dfs", "bfs")


# --------------------------------------------------------------------------- prompt and problems
def format_prompt(nums: Sequence[int], target: int) -> str:
    """``(3, 7, 9), 22`` -> ``"nums 3 7 9 target 22"`` (space-separated words)."""
    return "nums " + " ".join(map(str, nums)) + f" target {target}"


def problem_key(nums: Sequence[int], target: int) -> str:
    """Key hashed into ``problem_id``: ``"3 7 9 -> 22"`` (ordered: order matters to search)."""
    return " ".join(map(str, nums)) + f" -> {target}"


def _apply(op: str, a: int, b: int) -> int | None:
    """``a op b`` as an exact integer, or None when ``/`` does not divide exactly."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b != 0 and a % b == 0:
        return a // b
    return None


def _allowed(c: int, allow_nonpositive: bool, max_intermediate: int | None) -> bool:
    if c <= 0 and not allow_nonpositive:
        return False
    return max_intermediate is None or abs(c) <= max_intermediate


_OP_TABLES: dict[tuple[bool, int | None], dict[tuple[int, int], tuple[int, ...]]] = {}


def _results(a: int, b: int, allow_nonpositive: bool, cap: int | None) -> tuple[int, ...]:
    """Valid results of ``a op b`` for op in + - * / (``-`` and ``/`` larger first; with
    ``allow_nonpositive``, ``-`` keeps the given order); may repeat a value (2 + 2, 2 * 2)."""
    hi, lo = (a, b) if a >= b else (b, a)
    out = [a + b, a - b if allow_nonpositive else hi - lo, a * b]
    if lo != 0 and hi % lo == 0:
        out.append(hi // lo)
    return tuple(c for c in out if _allowed(c, allow_nonpositive, cap))


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


# --------------------------------------------------------------------------- verifier
def _int(tok: str) -> int | None:
    # Plain ASCII digits only: int() would also take "1_0" or unicode digits.
    body = tok[1:] if tok.startswith("-") else tok
    if not body or not body.isascii() or not body.isdigit() or len(body) > 18:
        return None
    return int(tok)


def _parse_step(tokens: Sequence[str]) -> tuple[int, str, int, int] | None:
    if len(tokens) != 5 or tokens[3] != "=" or tokens[1] not in OPS:
        return None
    a, b, c = _int(tokens[0]), _int(tokens[2]), _int(tokens[4])
    if a is None or b is None or c is None:
        return None
    return a, tokens[1], b, c


def verify(
    nums: Sequence[int],
    target: int,
    answer: str,
    *,
    use_all_numbers: bool = False,
    allow_nonpositive: bool = False,
    max_intermediate: int | None = None,
) -> bool:
    """True when ``answer`` ("a op b = c , c op d = e ...") reaches ``target`` from ``nums``.

    Each step's arithmetic must hold (``/`` exactly); operands must be inputs or earlier results,
    each used at most once (a multiset); results obey the sign and cap rules; the last result is
    the target; with ``use_all_numbers`` every input is used. Never evaluates the text; returns
    False (never raises) on anything malformed.
    """
    if not isinstance(answer, str) or not answer.strip():
        return False
    avail = Counter(nums)
    c = None
    for chunk in answer.split(","):
        step = _parse_step(chunk.split())
        if step is None:
            return False
        a, op, b, c = step
        if _apply(op, a, b) != c or not _allowed(c, allow_nonpositive, max_intermediate):
            return False
        avail[a] -= 1
        avail[b] -= 1
        if avail[a] < 0 or avail[b] < 0:
            return False
        avail[c] += 1
    if c != target:
        return False
    return not use_all_numbers or sum(avail.values()) == 1


# --------------------------------------------------------------------------- traces
@dataclass(frozen=True)
class TraceStep:
    """One explored node: ``a op b = c | remaining...``."""

    a: int
    op: str
    b: int
    c: int
    remaining: tuple[int, ...]


@dataclass(frozen=True)
class ParsedTrace:
    """A trace read back: explored nodes in order, the final answer (None if absent), whether it
    ended in FAIL, and how many ``;``-chunks could not be read as nodes (model output)."""

    steps: tuple[TraceStep, ...]
    answer: str | None
    failed: bool
    malformed: int = 0


def parse_trace(text: str) -> ParsedTrace:
    """Read a (reference or model-generated) trace; never raises on malformed text."""
    steps: list[TraceStep] = []
    answer: str | None = None
    failed = False
    malformed = 0
    for chunk in (text or "").split(";"):
        toks = chunk.split()
        if not toks:
            malformed += bool(chunk)  # only whitespace, e.g. "a ; ; b"
            continue
        if toks[0] == ANS:
            answer = " ".join(toks[1:])
            break
        if toks[0] == FAIL and len(toks) == 1:
            failed = True
            break
        step = _parse_step(toks[:5])
        rest = [_int(t) for t in toks[6:]]
        if step is None or len(toks) < 7 or toks[5] != "|" or None in rest:
            malformed += 1
            continue
        steps.append(TraceStep(*step, tuple(rest)))  # type: ignore[arg-type]
    return ParsedTrace(tuple(steps), answer, failed, malformed)


def format_trace(steps: Sequence[TraceStep], answer: str | None, failed: bool = False) -> str:
    """Inverse of ``parse_trace`` for well-formed traces (same spacing as the solvers)."""
    parts = [f"{s.a} {s.op} {s.b} = {s.c} | " + " ".join(map(str, s.remaining)) for s in steps]
    if answer is not None:
        parts.append(f"{ANS} {answer}".rstrip())
    elif failed:
        parts.append(FAIL)
    return NODE_SEP.join(parts)


def extract_answer(completion: str) -> str:
    """The text after ``ANS`` in a trace ('' when there is none)."""
    ans = parse_trace(completion).answer
    return ans or ""


def detect_mode(text: str) -> str | None:
    """'dfs' | 'bfs' | None: which search order a (possibly model-written) trace follows.

    Depth of a node = how few numbers remain after it. BFS never returns to a shallower node
    and, from a root with several children, explores a second node at the first node's depth.
    DFS goes deeper right after any node that still has >= 2 numbers (under the search rules
    every pair has a legal child unless the cap prunes all of them), and returns to shallower
    nodes when a subtree is exhausted. None when the trace has fewer than two nodes or the
    pattern fits neither (e.g. two numbers: both searches are identical).
    """
    rem = [len(s.remaining) for s in parse_trace(text).steps]
    if len(rem) < 2:
        return None
    if any(rem[i + 1] > rem[i] for i in range(len(rem) - 1)):
        return "dfs"  # backtracked to a shallower node
    if rem[1] < rem[0]:
        return "dfs"  # went deeper immediately
    if rem[1] == rem[0] and rem[0] >= 2:
        return "bfs"  # expandable first node, yet a sibling came next
    return None


# --------------------------------------------------------------------------- task
def problem_from_row(problem: Mapping[str, Any]) -> tuple[tuple[int, ...], int]:
    """``(nums, target)`` from a problems-table row (``meta`` is a JSON string or a dict)."""
    meta = problem.get("meta")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError as err:
            raise ValueError(f"countdown problem row: meta is not valid JSON ({err})") from None
    if not isinstance(meta, Mapping) or "nums" not in meta or "target" not in meta:
        raise ValueError(
            "countdown problem row: meta must be a JSON object with 'nums' and 'target' "
            f"(got {str(meta)[:80]!r}); rebuild problems with modc_data.generate"
        )
    return tuple(int(x) for x in meta["nums"]), int(meta["target"])


class CountdownTask:
    """The ``Task`` protocol for Countdown; holds the rules a solution is verified under."""

    name = "countdown"

    def __init__(
        self,
        use_all_numbers: bool = False,
        allow_nonpositive: bool = False,
        max_intermediate: int | None = None,
    ) -> None:
        self.use_all_numbers = use_all_numbers
        self.allow_nonpositive = allow_nonpositive
        self.max_intermediate = max_intermediate

    @classmethod
    def from_params(cls, cfg: Any) -> CountdownTask:
        """From a ``CountdownParams`` block."""
        return cls(cfg.use_all_numbers, cfg.allow_nonpositive, cfg.max_intermediate)

    def format_prompt(self, nums: Sequence[int], target: int) -> str:
        return format_prompt(nums, target)

    def score(self, problem: Mapping[str, Any], completion: str) -> tuple[str, bool]:
        """(answer after ``ANS``, verdict) for a completion of the problem row ``problem``."""
        nums, target = problem_from_row(problem)
        answer = extract_answer(completion)
        ok = verify(
            nums,
            target,
            answer,
            use_all_numbers=self.use_all_numbers,
            allow_nonpositive=self.allow_nonpositive,
            max_intermediate=self.max_intermediate,
        )
        return answer, ok

    def detect_mode(self, completion: str) -> str | None:
        return detect_mode(completion)
