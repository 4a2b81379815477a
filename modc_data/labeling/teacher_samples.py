"""Where a distilling teacher's candidate solutions come from, one generator per kind of teacher.

- a model teacher: ``model_candidates`` renders each problem into the teacher's prompt template
  and samples ``n`` completions per prompt through an injected ``generate`` callable, chunk by
  chunk, seeded per teacher (``derived_seed``);
- a dataset teacher: ``dataset_candidates`` matches each of the dataset's rows to a problem (by
  problem id or prompt) and passes on its solution, with the dataset's own verdict (``VERDICT``)
  and meta columns;
- a reference teacher: ``reference_candidates`` yields a problem's worked solution from its meta.

What it leaves out: verifying candidates, keeping and balancing rows, and the report
(``distill.py``); resolving and checking teachers, prompt templates (``teachers.py``).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from tqdm.auto import tqdm

from modc_data.labeling.teachers import GenerateFn, ResolvedTeacher, render_prompt
from modc_data.schema import problem_id

VERDICT = "\x00verdict"  # key of a dataset's own verdict among a candidate's source fields


def derived_seed(*parts: Any) -> int:
    """Stable 31-bit seed from parts (Python's hash() is salted per process, so not that)."""
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def problem_meta(problem: Mapping[str, Any]) -> dict[str, Any]:
    """A problem's meta as a dict ({} when absent or not JSON)."""
    meta = problem.get("meta")
    if isinstance(meta, str) and meta:
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            meta = None
    return dict(meta) if isinstance(meta, Mapping) else {}


def problem_text(problem: Mapping[str, Any]) -> str:
    """Raw statement of a problem: meta['problem'] when recorded, else the prompt."""
    statement = problem_meta(problem).get("problem")
    return statement if isinstance(statement, str) else str(problem["prompt"])


def model_candidates(
    rt: ResolvedTeacher,
    problems: list[dict[str, Any]],
    generate_fn: GenerateFn,
    n: int,
    seed: int,
    chunk_size: int,
    progress: bool,
):
    """Yield (problem index, sample_idx, completion) for a model teacher, chunk by chunk.

    The seed passed on is derived from (seed, teacher name): a teacher's samples do not change
    when other teachers are added or reordered (generate_fn seeds each prompt from it).
    """
    t = rt.params
    bar = tqdm(total=len(problems), desc=f"teacher {t.name}", unit="problem", disable=not progress)
    for start in range(0, len(problems), chunk_size):
        chunk = problems[start : start + chunk_size]
        prompts = [render_prompt(t.prompt_template, p["prompt"], problem_text(p)) for p in chunk]
        out = generate_fn(t, prompts, n, derived_seed(seed, t.name))
        if len(out) != len(chunk) or any(len(s) != n for s in out):
            raise RuntimeError(
                f"teacher {t.name!r}: generate returned {[len(s) for s in out]} completions for "
                f"{len(chunk)} prompts x n={n}"
            )
        for offset, samples in enumerate(out):
            for k, text in enumerate(samples):
                yield start + offset, k, text
        bar.update(len(chunk))
    bar.close()


def dataset_candidates(
    rt: ResolvedTeacher, problems: list[dict[str, Any]], task_name: str, progress: bool
):
    """Yield (teacher name, problem index | None, sample_idx, completion) for a dataset teacher.

    A dataset row belongs to the problem whose id is problem_id(task, statement) or whose
    prompt equals the row's prompt column; ``None`` when it matches no problem.
    """
    t = rt.params
    by_key: dict[str, int] = {}
    for i, p in enumerate(problems):
        by_key[p["problem_id"]] = i
        by_key.setdefault(p["prompt"], i)
    wanted = set(rt.teachers_in_dataset)
    counters: dict[tuple[str, int], int] = defaultdict(int)
    extra = ([t.verdict_column] if t.verdict_column else []) + list(t.meta_columns)
    columns = list(dict.fromkeys([t.prompt_column, t.solution_column, t.teacher_column, *extra]))
    cols = rt.dataset.select_columns(columns)
    for row in tqdm(cols, desc=f"dataset {t.name}", unit="row", disable=not progress):
        name = str(row[t.teacher_column])
        if name not in wanted:
            continue
        text = str(row[t.prompt_column])
        idx = by_key.get(problem_id(task_name, text.strip()), by_key.get(text))
        if idx is None:
            yield name, None, -1, "", None
            continue
        k = counters[(name, idx)]
        counters[(name, idx)] += 1
        source = {c: row[c] for c in t.meta_columns}
        if t.verdict_column:
            source[VERDICT] = row[t.verdict_column]
        yield name, idx, k, str(row[t.solution_column]), source


def reference_candidates(problems: list[dict[str, Any]]):
    """Yield (problem index, 0, solution) for every problem whose meta holds a worked
    ``solution`` (e.g. GSM8K's); problems without one are skipped (counted by the caller)."""
    for i, p in enumerate(problems):
        solution = problem_meta(p).get("solution")
        if isinstance(solution, str) and solution.strip():
            yield i, 0, solution
