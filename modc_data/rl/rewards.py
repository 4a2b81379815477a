"""Rewards for GRPO in TRL's calling convention, computed by the task's own verifier.

TRL calls a reward function as ``f(prompts=..., completions=..., completion_ids=..., **columns)``
where ``columns`` holds every other column of the training dataset, one value per completion; it
returns one float per completion. The training dataset of an RL job carries the problem's
columns (``problem_id``, ``answer``, ``meta``, …: what ``Task.score`` reads) and ``mode``, the
mode requested in the prompt (None for a model without modes).

- ``VerifierReward``: 1.0 when the task's verifier accepts the completion, else 0.0: the same
  rule sampling and evaluation score with, so RL optimises what results.md measures.
- ``BindingReward``: 1.0 only when the completion is correct *and* follows the requested mode
  (``Task.detect_mode``); a correct completion in another mode earns 0. This keeps the prefix ↔
  mode binding that plain RL may erode. Tasks that cannot tell a completion's mode (detect_mode
  returns None for everything) cannot bind; the reward refuses them rather than silently
  reducing to the verifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modc_data.tasks import Task

# Tasks whose detect_mode reads a completion's mode (the others return None for every text).
MODE_TASKS = frozenset({"countdown"})
# Columns TRL passes to reward functions that are not dataset columns.
_TRL_EXTRAS = {"trainer_state", "log_extra", "log_metric", "environments", "completion_ids"}


def _text(completion: Any) -> str:
    """A completion's text: TRL passes strings for plain prompts, message lists for chats."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"reward: unsupported completion type {type(completion).__name__}")


def _rows(n: int, columns: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-completion problem rows from TRL's column lists (extras dropped)."""
    cols = {k: v for k, v in columns.items() if k not in _TRL_EXTRAS}
    for k, v in cols.items():
        if not isinstance(v, list) or len(v) != n:
            raise ValueError(f"reward: column {k!r} has {len(v) if isinstance(v, list) else 'no'} "
                             f"values for {n} completions")
    return [{k: v[i] for k, v in cols.items()} for i in range(n)]


class VerifierReward:
    """1.0 for a completion the task's verifier accepts, else 0.0."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.__name__ = "verifier"  # TRL names reward functions by __name__ in its logs

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
                 ) -> list[float]:
        rows = _rows(len(completions), columns)
        return [float(self.task.score(r, _text(c))[1]) for r, c in zip(rows, completions, strict=True)]


class BindingReward(VerifierReward):
    """1.0 for a correct completion that follows the mode its prompt asked for, else 0.0."""

    def __init__(self, task: Task) -> None:
        if task.name not in MODE_TASKS:
            raise ValueError(f"binding reward: task {task.name!r} cannot tell which mode a "
                             f"completion follows (detect_mode); tasks that can: "
                             f"{', '.join(sorted(MODE_TASKS))}")
        super().__init__(task)
        self.__name__ = "verifier_and_mode"

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
                 ) -> list[float]:
        if "mode" not in columns:
            raise ValueError("binding reward: the RL dataset needs a 'mode' column (the mode the "
                             "prompt requests)")
        rows = _rows(len(completions), columns)
        out = []
        for r, c in zip(rows, completions, strict=True):
            text = _text(c)
            correct = self.task.score(r, text)[1]
            out.append(float(correct and self.task.detect_mode(text) == r["mode"]))
        return out
