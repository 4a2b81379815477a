"""Countdown: reach a target from a few numbers with + - * /; its prompt, traces and verifier.

What this module handles:
- the prompt (``format_prompt``) and the trace format the two reference searches emit, a compact
  word-level trace (tokens separated by single spaces, no newlines)::

      nums 3 7 9 target 22                              <- format_prompt
      9 + 7 = 16 | 16 3 ; 16 + 3 = 19 | 19 ; ... ; ANS 7 * 3 = 21 , 21 + 1 = 22

  one explored node per ``;``-separated step (the operation, then the numbers left after it,
  the new result first), ending in ``ANS <solution>`` or ``FAIL``;
- ``verify`` (the solution checker, never evaluates text), ``parse_trace`` / ``format_trace``
  (a lossless round trip for well-formed traces), ``detect_mode`` (which search order a trace
  follows) and ``CountdownTask`` (the ``Task`` protocol of ``modc_data.tasks``).

What it leaves out: drawing problems and the DFS / BFS searches themselves
(``modc_data.tasks.countdown_search``); splitting problems into train/test and running searches
in parallel (``modc_data.generate``).

Search rules, shared by the solvers, the verifier and the generator: an operation takes two of
the current numbers; ``-`` and ``/`` take the larger first, ``/`` must divide exactly; results
must be positive (unless ``allow_nonpositive``, which also allows ``small - large``) and at most
``max_intermediate`` in absolute value. A node counts against the budget when it is explored
(printed); the search stops at the first node whose result is the target (and, with
``use_all_numbers``, that has used every input).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OPS = ("+", "-", "*", "/")
NODE_SEP = " ; "
STEP_SEP = " , "
ANS = "ANS"
FAIL = "FAIL"
MODES = ("dfs", "bfs")


# --------------------------------------------------------------------------- prompt and rules
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


def allowed_result(c: int, allow_nonpositive: bool, max_intermediate: int | None) -> bool:
    """Whether a result obeys the sign and cap rules (module docstring)."""
    if c <= 0 and not allow_nonpositive:
        return False
    return max_intermediate is None or abs(c) <= max_intermediate


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
        if _apply(op, a, b) != c or not allowed_result(c, allow_nonpositive, max_intermediate):
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
