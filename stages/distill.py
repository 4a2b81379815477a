"""Stage `distill@<mix>`: teacher-ID labels from multi-teacher distillation, verified and rejection-sampled.

    python stages/distill.py distilled   # reads params.yaml: distill, sample (backend), task rules
Every teacher is checked (loadable, columns present) before any generation. For each pool
problem and teacher it draws n solutions, keeps verified ones (at most keep_per_teacher),
balances per `distill.balance`, and writes artifacts/datasets/teacher_id/<mix>.parquet (one mode
per teacher, declared uniform in <mix>.declared.json) plus per-teacher pass rates and
kept/rejected counts to artifacts/metrics/distill/<mix>.json.
"""

import polars as pl

from modc_data import pipeline
from modc_data.artifacts import write_json, write_parquet
from modc_data.labeling.declared import uniform, write_declared
from modc_data.labeling.distill import distill
from modc_data.labeling.teachers import backend_generate_fn, check_teachers
from modc_data.pipeline import StageError
from modc_data.tasks import task_from_params


def pool(problems: pl.DataFrame, split: str, size: int, seed: int) -> pl.DataFrame:
    """A seeded sample of ``size`` problems of ``split`` (all of them if fewer)."""
    part = problems.filter(pl.col("split") == split).sort("problem_id")
    return part.sample(n=min(size, part.height), seed=seed, shuffle=True)


def teacher_modes(teachers, rows: pl.DataFrame) -> list[str]:
    """The modes distillation declares: one per model or reference teacher, one per listed (or
    found) value of a dataset teacher's column."""
    modes = []
    for t in teachers:
        if t.kind != "dataset":  # a model or the reference solutions: one teacher each
            modes.append(f"teacher:{t.name}")
        elif t.include:
            modes.extend(f"teacher:{v}" for v in t.include)
        else:
            modes.extend(rows.filter(pl.col("split") == "train")["mode"].unique().to_list())
    return sorted(set(modes))


def main(params, argv):
    d = params.distill
    if len(argv) != 1 or argv[0] not in d.mixes:
        raise StageError(f"usage: distill.py <mix>; distill.mixes are {d.mixes}")
    mix = argv[0]
    resolved = check_teachers(d.teachers)  # fails here, before any generation
    problems = pl.read_parquet(pipeline.ARTIFACTS / "data" / "problems.parquet")
    chosen = pl.concat([
        pool(problems, "train", d.pool_problems, d.seed),
        pool(problems, "validation", d.validation_problems, d.seed),
    ])
    generate = backend_generate_fn(
        temperature=d.temperature, top_p=d.top_p, max_new_tokens=d.max_new_tokens,
        batch_size=d.batch_size, vllm=params.sample.vllm, openai=params.sample.openai,
        dtype=params.sample.dtype,
    )
    rows, report = distill(
        chosen, resolved, task_from_params(params), generate, n=d.n, keep_per_teacher=d.keep_per_teacher,
        balance=d.balance, seed=d.seed, max_completion_chars=d.max_completion_chars,
    )
    path = pipeline.ARTIFACTS / "datasets" / "teacher_id" / f"{mix}.parquet"
    write_parquet(rows, path)
    write_declared(path, uniform(teacher_modes(d.teachers, rows)))
    write_json(report.to_dict(), pipeline.ARTIFACTS / "metrics" / "distill" / f"{mix}.json")


if __name__ == "__main__":
    pipeline.run(main)
