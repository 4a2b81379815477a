"""Math word problems with a verifiable final answer (MATH / MATH-500 style).

What it handles: the prompt template, loading problems, and scoring a free-form solution
against the gold answer (the answer rules, the last ``\\boxed{...}`` compared with math-verify,
are in ``tasks.answers``).
What it leaves out: modes. In math the mode is the teacher that wrote a solution, which the text
does not reveal, so ``detect_mode`` always returns None.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from modc_data.schema import problem_id
from modc_data.tasks.answers import answers_equal, extract_answer, last_boxed  # noqa: F401 (re-exported)

DEFAULT_TEMPLATE = "Problem: {problem}\nPut the final answer in \\boxed{}."

class MathTask:
    """Task protocol (modc_data.tasks.Task) for math problems with a gold ``answer``."""

    name = "math"

    def __init__(self, template: str = DEFAULT_TEMPLATE) -> None:
        if "{problem}" not in template:
            raise ValueError(f"math prompt template must contain '{{problem}}', got {template!r}")
        self.template = template

    def prompt(self, problem: str) -> str:
        """Model input for a problem statement.

        Plain replacement, not ``str.format``: templates hold literal braces (``\\boxed{}``).
        """
        return self.template.replace("{problem}", problem)

    def score(self, problem: Mapping[str, Any], completion: str) -> tuple[str, bool]:
        """(extracted answer, verdict) for ``completion`` against ``problem['answer']``.

        The gold answer may itself be a full solution (e.g. MATH's ``solution`` column); its
        boxed content is used then.
        """
        if "answer" not in problem:
            raise KeyError("math problem row has no 'answer' column (the gold final answer)")
        gold_raw = str(problem["answer"] or "")
        gold = last_boxed(gold_raw) or gold_raw
        predicted = extract_answer(completion)
        return predicted, answers_equal(gold, predicted)

    def detect_mode(self, completion: str) -> str | None:
        return None


PROBLEMS_SCHEMA: dict[str, pl.DataType] = {
    c: pl.String() for c in ("problem_id", "task", "split", "prompt", "answer", "category", "meta")
}


def problems_frame(
    records: Iterable[Mapping[str, Any]], split: str, task: MathTask | None = None
) -> pl.DataFrame:
    """problems.parquet rows from ``{problem, answer[, category, ...]}`` records.

    ``problem_id`` hashes the stripped statement, so a dataset teacher's rows with the same
    statement find their problem. The gold answer is reduced to its boxed content when it is a
    full solution. ``meta`` keeps the raw statement (``meta['problem']``) and any extra fields.
    Duplicated statements are kept once (first wins).
    """
    task = task or MathTask()
    out, seen = [], set()
    for i, r in enumerate(records):
        if "problem" not in r or "answer" not in r:
            raise KeyError(f"math problem record {i} needs 'problem' and 'answer'; got {sorted(r)}")
        statement = str(r["problem"]).strip()
        pid = problem_id("math", statement)
        if pid in seen:
            continue
        seen.add(pid)
        gold = str(r["answer"])
        extra = {k: v for k, v in r.items() if k not in ("problem", "answer", "category")}
        out.append(
            {
                "problem_id": pid,
                "task": "math",
                "split": split,
                "prompt": task.prompt(statement),
                "answer": last_boxed(gold) or gold.strip(),
                "category": str(r.get("category") or ""),
                "meta": json.dumps({"problem": statement, **extra}, sort_keys=True, default=str),
            }
        )
    return pl.DataFrame(out, schema=PROBLEMS_SCHEMA)


def load_math_problems(source: Any, split_name: str, task: MathTask | None = None) -> pl.DataFrame:
    """problems frame for one ``MathSourceParams`` (params_blocks.py): Hub id, local file/dir or a
    ``save_to_disk`` dir. A missing column fails before any row is read, naming it."""
    import datasets  # imported here: heavy, and only the generate stage needs it

    local = Path(source.dataset).expanduser()
    if source.dataset.startswith("package:"):  # tasks.packaged.PACKAGE_PREFIX
        from modc_data.tasks.packaged import PACKAGE_PREFIX, load_packaged

        ds = load_packaged(source.dataset.removeprefix(PACKAGE_PREFIX), source.split)
    elif local.is_dir() and (local / "dataset_info.json").exists():
        ds = datasets.load_from_disk(str(local))
    elif local.is_dir() and (local / "dataset_dict.json").exists():
        ds = datasets.load_from_disk(str(local))[source.split]
    elif local.is_file():
        builder = {".jsonl": "json"}.get(local.suffix, local.suffix.lstrip("."))
        ds = datasets.load_dataset(builder, data_files=str(local), split="train")
    else:
        ds = datasets.load_dataset(source.dataset, source.config, split=source.split)
    for key in ("problem_column", "answer_column"):
        col = getattr(source, key)
        if col not in ds.column_names:
            raise ValueError(
                f"math.{split_name}.{key}: column {col!r} not in {source.dataset!r}; "
                f"available columns: {ds.column_names}"
            )
    if source.max_problems is not None:
        ds = ds.select(range(min(source.max_problems, len(ds))))
    extra = [c for c in ("type", "level", "subject", "unique_id", "identifier")
             if c in ds.column_names]
    records = (
        {
            "problem": row[source.problem_column],
            "answer": row[source.answer_column],
            "category": row.get("type") or row.get("subject") or row.get("category") or "",
            **{c: row[c] for c in extra},
        }
        for row in ds
    )
    return problems_frame(records, split_name, task)


def math_problems(cfg: Any, seed: int) -> pl.DataFrame:
    """problems.parquet for task ``math`` from ``MathDataParams`` (params_blocks.py).

    train: the train source minus ``cfg.validation`` problems held out as ``validation`` (a
    seeded choice by hash, so it does not depend on the source's row order); test: the test
    source. Problems whose statement is also in test are dropped from train and validation
    (no leakage: the unit is ``problem_id``, a hash of the statement).
    """
    task = MathTask(cfg.prompt_template)
    test = load_math_problems(cfg.test, "test", task)
    pool = load_math_problems(cfg.train, "train", task)
    pool = pool.filter(~pl.col("problem_id").is_in(test["problem_id"].implode()))
    if cfg.validation >= pool.height:
        raise ValueError(
            f"math.validation: {cfg.validation} held-out problems leave none of the "
            f"{pool.height} train-pool problems for training; lower math.validation"
        )
    order = pool.with_columns(
        pl.concat_str(pl.lit(f"{seed}:"), pl.col("problem_id")).hash(seed=0).alias("_k")
    ).sort("_k", "problem_id")
    held = set(order["problem_id"].head(cfg.validation).to_list())
    pool = pool.with_columns(
        pl.when(pl.col("problem_id").is_in(list(held))).then(pl.lit("validation"))
        .otherwise(pl.lit("train")).alias("split")
    )
    return pl.concat([pool, test]).sort("split", "problem_id")
