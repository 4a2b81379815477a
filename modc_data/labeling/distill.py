"""Multi-teacher distillation: teacher-ID labeled rows by rejection sampling.

For every problem and teacher: take ``n`` solutions (sampled from a model teacher through an
injected ``generate`` callable, read from a dataset teacher, or the problem's own worked solution
for a reference teacher), verify each with ``task.score`` (or with a dataset's own verdict
column, whose nulls are counted as unverifiable), keep the correct ones (at most
``keep_per_teacher`` per problem, exact repeats dropped) and label them ``teacher:<name>``. Then
balance the teachers' shares: ``none`` keeps all, ``downsample`` cuts every teacher to the
smallest teacher's row count (per split, seeded), ``per_problem`` keeps only problems every
teacher solved, one row per teacher.

Nothing is dropped silently: the report counts, per teacher, samples, correct ones, rows kept and
each rejection reason, plus the problems no teacher solved and the dataset rows that match no
problem.

What it leaves out: where each teacher's candidate solutions come from (sampling, reading a
dataset, a problem's worked solution: ``teacher_samples.py``), resolving and checking teachers
(``teachers.py``); paths and I/O stay with the caller (``stages/``).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import polars as pl

from modc_data.labeling.teacher_samples import (
    VERDICT,
    dataset_candidates,
    derived_seed,
    model_candidates,
    problem_meta,
    reference_candidates,
)
from modc_data.labeling.teachers import GenerateFn, ResolvedTeacher, check_teachers, teacher_mode
from modc_data.params_sampling import TeacherParams
from modc_data.schema import empty_rows, make_rows, row_id
from modc_data.tasks import Task

Balance = Literal["none", "downsample", "per_problem"]
BALANCES = ("none", "downsample", "per_problem")
PROBLEM_COLUMNS = ("problem_id", "split", "prompt", "answer", "meta")


@dataclass
class TeacherStats:
    """Counts for one teacher (one mode). ``pass_rate`` = correct / samples."""

    source: str  # 'model', 'dataset' or 'reference'
    location: str  # checkpoint path, Hub id or dataset
    samples: int = 0
    correct: int = 0
    kept: int = 0  # rows in the final output, after balancing
    rejected_incorrect: int = 0
    rejected_unverifiable: int = 0  # the source's own verdict is null: cannot be checked
    rejected_too_long: int = 0  # longer than max_completion_chars
    rejected_duplicate: int = 0
    rejected_over_cap: int = 0  # correct and new, but keep_per_teacher was already reached
    dropped_by_balance: int = 0
    problems_solved: int = 0

    @property
    def pass_rate(self) -> float:
        return self.correct / self.samples if self.samples else 0.0


@dataclass
class DistillReport:
    balance: str
    n: int
    keep_per_teacher: int
    problems: int
    teachers: dict[str, TeacherStats] = field(default_factory=dict)  # mode -> stats
    unsolved_problem_ids: list[str] = field(default_factory=list)  # no teacher solved them
    problems_dropped_by_balance: int = 0
    unmatched_dataset_rows: int = 0  # dataset-teacher rows whose problem is not in `problems`
    rows: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (DVC metrics); per-teacher pass rates included."""
        d = asdict(self)
        d["unsolved_problems"] = len(self.unsolved_problem_ids)
        for mode, stats in self.teachers.items():
            d["teachers"][mode]["pass_rate"] = round(stats.pass_rate, 6)
        return d


def _check_problems(problems: pl.DataFrame) -> None:
    missing = [c for c in PROBLEM_COLUMNS if c not in problems.columns]
    if missing:
        raise ValueError(
            f"distill: problems frame lacks column(s) {missing}; it has {problems.columns}. "
            "Build it with modc_data.tasks.math.problems_frame (or the generate stage)."
        )
    if problems["problem_id"].n_unique() != problems.height:
        raise ValueError("distill: problems frame has duplicate problem_id values")


def distill(
    problems: pl.DataFrame,
    teachers: Sequence[TeacherParams] | Sequence[ResolvedTeacher],
    task: Task,
    generate_fn: GenerateFn | None,
    *,
    n: int = 4,
    keep_per_teacher: int = 1,
    balance: Balance = "downsample",
    seed: int = 0,
    chunk_size: int = 256,
    progress: bool = True,
    max_completion_chars: int | None = None,
) -> tuple[pl.DataFrame, DistillReport]:
    """Teacher-ID labeled rows (modc_data.schema.ROW_SCHEMA) and a report.

    ``problems``: columns problem_id, split, prompt, answer, meta (JSON; ``meta['problem']`` is
    the raw statement that ``{problem}`` in a teacher template refers to). ``teachers`` are
    checked (``check_teachers``) before any generation, so a bad teacher fails in seconds.
    ``generate_fn(teacher, prompts, n, seed) -> list[list[str]]`` samples model teachers; it may
    be None when every teacher is a dataset. Rows: mode ``teacher:<name>``, label_source
    ``teacher_id``, correct True, meta {teacher, teacher_entry, teacher_path, sample_idx,
    gold_answer}.
    """
    if balance not in BALANCES:
        raise ValueError(f"distill: balance {balance!r} is not one of {BALANCES}")
    if n <= 0 or keep_per_teacher <= 0:
        raise ValueError(f"distill: n ({n}) and keep_per_teacher ({keep_per_teacher}) must be > 0")
    _check_problems(problems)
    if all(isinstance(t, ResolvedTeacher) for t in teachers) and teachers:
        resolved: list[ResolvedTeacher] = list(teachers)  # type: ignore[arg-type]
    else:
        resolved = check_teachers(list(teachers))  # type: ignore[arg-type]
    if generate_fn is None and any(r.params.kind == "model" for r in resolved):
        raise ValueError(
            "distill: model teachers need a generate_fn (see teachers.backend_generate_fn)"
        )

    plist = problems.to_dicts()
    report = DistillReport(balance, n, keep_per_teacher, len(plist))
    kept: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)  # (mode, problem) -> rows
    seen_ids: set[str] = set()

    def consider(mode: str, stats: TeacherStats, idx: int, k: int, text: str, rt: ResolvedTeacher,
                 source: dict[str, Any] | None = None):
        p = plist[idx]
        stats.samples += 1
        source = dict(source or {})
        if VERDICT in source:  # the dataset's own verdict replaces the task's verifier
            verdict = source.pop(VERDICT)
            if verdict is None:
                stats.rejected_unverifiable += 1
                return
            answer, ok = str(p["answer"]), bool(verdict)
        else:
            answer, ok = task.score(p, text)
        if not ok:
            stats.rejected_incorrect += 1
            return
        stats.correct += 1
        if max_completion_chars is not None and len(text) > max_completion_chars:
            stats.rejected_too_long += 1  # correct, but too long to keep
            return
        rid = row_id(task.name, p["prompt"], text)
        if rid in seen_ids:  # an exact repeat (same prompt and text), by any teacher
            stats.rejected_duplicate += 1
            return
        if len(kept[(mode, idx)]) >= keep_per_teacher:
            stats.rejected_over_cap += 1
            return
        seen_ids.add(rid)
        name = mode.removeprefix("teacher:")
        template = problem_meta(p).get("template_id")  # kept so validation checks its split
        if template is not None:
            source["template_id"] = template
        kept[(mode, idx)].append(
            {
                "id": rid,
                "problem_id": p["problem_id"],
                "task": task.name,
                "prompt": p["prompt"],
                "completion": text,
                "answer": answer,
                "mode": mode,
                "label_source": "teacher_id",
                "split": p["split"],
                "correct": True,
                "meta": {
                    "teacher": name,
                    "teacher_entry": rt.name,
                    "teacher_path": rt.location,
                    "teacher_kind": rt.params.kind,
                    "sample_idx": k,
                    "gold_answer": str(p["answer"]),
                    **source,
                },
            }
        )

    for rt in resolved:
        if rt.params.kind == "model":
            mode = teacher_mode(rt.name)
            stats = report.teachers.setdefault(mode, TeacherStats("model", rt.location))
            assert generate_fn is not None
            for idx, k, text in model_candidates(
                rt, plist, generate_fn, n, seed, chunk_size, progress
            ):
                consider(mode, stats, idx, k, text, rt)
        elif rt.params.kind == "reference":
            mode = teacher_mode(rt.name)
            stats = report.teachers.setdefault(mode, TeacherStats("reference", rt.location))
            for idx, k, text in reference_candidates(plist):
                consider(mode, stats, idx, k, text, rt)
            if stats.samples < len(plist):
                report.warnings.append(
                    f"{mode}: {len(plist) - stats.samples} of {len(plist)} problems have no "
                    "worked solution in meta['solution']"
                )
        else:
            for name in rt.teachers_in_dataset:
                report.teachers.setdefault(teacher_mode(name), TeacherStats("dataset", rt.location))
            for name, idx, k, text, source in dataset_candidates(rt, plist, task.name, progress):
                if idx is None:
                    report.unmatched_dataset_rows += 1
                    continue
                mode = teacher_mode(name)
                consider(mode, report.teachers[mode], idx, k, text, rt, source)

    solved_by: dict[int, set[str]] = defaultdict(set)
    for (mode, idx), rows in kept.items():
        if rows:
            solved_by[idx].add(mode)
            report.teachers[mode].problems_solved += 1
    report.unsolved_problem_ids = [p["problem_id"] for i, p in enumerate(plist) if not solved_by[i]]
    if report.unsolved_problem_ids:
        report.warnings.append(
            f"{len(report.unsolved_problem_ids)} of {len(plist)} problems were solved by no teacher"
        )

    rows = _balance(kept, solved_by, list(report.teachers), balance, seed, report)
    for mode, stats in report.teachers.items():
        stats.kept = sum(1 for r in rows if r["mode"] == mode)
        if stats.kept == 0:
            report.warnings.append(f"{mode} contributes no rows (pass rate {stats.pass_rate:.3f})")
    report.rows = len(rows)
    rows.sort(key=lambda r: (r["split"], r["problem_id"], r["mode"], r["meta"]["sample_idx"]))
    return (make_rows(rows) if rows else empty_rows()), report


def _balance(
    kept: dict[tuple[str, int], list[dict[str, Any]]],
    solved_by: dict[int, set[str]],
    modes: list[str],
    balance: str,
    seed: int,
    report: DistillReport,
) -> list[dict[str, Any]]:
    """Apply the balance rule; counts what it drops in ``report``."""
    if balance == "per_problem":
        out, every = [], set(modes)
        for (mode, idx), rows in kept.items():
            if solved_by[idx] >= every:
                out.append(rows[0])  # the lowest sample_idx: the first correct solution
                report.teachers[mode].dropped_by_balance += len(rows) - 1
            else:
                report.teachers[mode].dropped_by_balance += len(rows)
        report.problems_dropped_by_balance = sum(
            1 for mset in solved_by.values() if mset and not mset >= every
        )
        return out
    flat = [r for rows in kept.values() for r in rows]
    if balance == "none":
        return flat
    # downsample, per split so that train and validation are each balanced
    by_split_mode: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(flat, key=lambda r: r["id"]):  # a fixed order before the seeded draw
        by_split_mode[(r["split"], r["mode"])].append(r)
    out = []
    for split in sorted({s for s, _ in by_split_mode}):
        target = min(len(by_split_mode[(split, m)]) for m in modes)
        for m in modes:
            rows = by_split_mode[(split, m)]
            rng = random.Random(derived_seed(seed, "downsample", split, m))
            chosen = rng.sample(rows, target)
            out.extend(chosen)
            report.teachers[m].dropped_by_balance += len(rows) - target
        if target == 0:
            report.warnings.append(
                f"balance 'downsample': some teacher has no rows in split {split!r}, so the split "
                "is empty; use balance 'none' or more samples (n)"
            )
    return out


def problems_from_dataset_teacher(rt: ResolvedTeacher, split: str = "train") -> pl.DataFrame:
    """Math problems frame made from a dataset teacher's own rows (needs ``answer_column``).

    For distilling a dataset that carries its problems (statement + gold answer next to each
    solution): every distinct statement becomes one problem, so ``distill`` can match the rows.
    """
    from modc_data.tasks.math import problems_frame

    t = rt.params
    if rt.dataset is None or t.answer_column is None:
        raise ValueError(
            f"teacher {t.name!r}: problems can be read from a dataset teacher only when it sets "
            "answer_column (the gold answer of each row's problem)"
        )
    cols = rt.dataset.select_columns([t.prompt_column, t.answer_column])
    records = ({"problem": r[t.prompt_column], "answer": r[t.answer_column]} for r in cols)
    return problems_frame(records, split)
