"""Tasks: how a problem becomes a prompt, and how a completion is scored.

A problem is one row of ``problems.parquet`` (columns: problem_id, task, split, prompt, answer,
category, meta (JSON)). ``get_task(name)`` returns an object with:
- ``score(problem: Mapping, completion: str) -> tuple[str, bool]``: extracted answer, verdict;
- ``detect_mode(completion: str) -> str | None``: which mode a completion follows, if knowable.
"""

from __future__ import annotations

from typing import Any, Protocol


class Task(Protocol):
    name: str

    def score(self, problem: Any, completion: str) -> tuple[str, bool]: ...

    def detect_mode(self, completion: str) -> str | None: ...


def get_task(name: str, **rules: Any) -> Task:
    if name == "countdown":
        from modc_data.tasks.countdown import CountdownTask

        return CountdownTask(**rules)
    if name == "math":
        from modc_data.tasks.math import MathTask

        return MathTask(**rules)
    if name == "gsm":
        from modc_data.tasks.gsm import GsmTask

        return GsmTask(**rules)
    raise ValueError(f"unknown task {name!r}; known tasks: countdown, gsm, math")


def task_from_params(params: Any) -> Task:
    """The task a params file names, with its rules (Countdown rules live in ``countdown``)."""
    if params.task == "countdown":
        c = params.countdown
        return get_task(
            "countdown",
            use_all_numbers=c.use_all_numbers,
            allow_nonpositive=c.allow_nonpositive,
            max_intermediate=c.max_intermediate,
        )
    if params.task == "math":
        return get_task("math", template=params.math.prompt_template)
    if params.task == "gsm":
        return get_task("gsm", template=params.gsm.prompt_template)
    return get_task(params.task)

