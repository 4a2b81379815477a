"""Teacher registry and distillation: rejection, dedup, balance, dataset teachers, early errors,
the gpu-math profile's dry run, and one real path through tiny hf checkpoints."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modc_data.labeling.distill import distill, problems_from_dataset_teacher
from modc_data.labeling.teachers import (
    TeacherError,
    backend_generate_fn,
    check_teachers,
    render_prompt,
)
from modc_data.params_sampling import DistillParams, TeacherParams
from modc_data.plan import plan
from modc_data.profiles import load_profile
from modc_data.schema import check_schema
from modc_data.tasks.math import MathTask, problems_frame

ROOT = Path(__file__).resolve().parents[1]
TASK = MathTask()
GOLD = {"1+1?": "2", "2*3?": "6", "10-3?": "7", "9/3?": "3", "2^3?": "8", "5+5?": "10"}


def _problems(split="train", items=GOLD) -> pl.DataFrame:
    return problems_frame([{"problem": q, "answer": a} for q, a in items.items()], split)


class FakeGenerator:
    """Deterministic stand-in for a sampling backend: teacher name -> solver(problem text, k).

    Records every call so tests can assert that bad teachers fail before generation.
    """

    def __init__(self, solvers):
        self.solvers = solvers
        self.calls = []

    def __call__(self, teacher, prompts, n, seed):
        self.calls.append((teacher.name, len(prompts), n, seed))
        out = []
        for prompt in prompts:
            statement = prompt.split("Problem: ")[1].split("\n")[0]
            out.append([self.solvers[teacher.name](statement, k) for k in range(n)])
        return out


def _model_teacher(tmp_path, name) -> TeacherParams:
    d = tmp_path / name
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text("{}")  # enough for check_teachers; FakeGenerator loads nothing
    return TeacherParams(
        name=name, kind="model", path=str(d), prompt_template="Problem: {problem}\n"
    )


def _right(q, k):  # right on GOLD problems, k-th sample phrased differently
    return f"attempt {k}: \\boxed{{{GOLD.get(q, '0')}}}"


def _right_even(q, k):  # right on even samples only, wrong on odd ones
    return f"try {k} \\boxed{{{GOLD[q] if k % 2 == 0 else 'wrong'}}}"


def _easy_only(q, k):  # solves only answers below 5, always the same text
    return f"\\boxed{{{GOLD[q] if int(GOLD.get(q, '999')) < 5 else 999}}}"


def _solves_first(name, c, keys):
    """Solver that is right on the first ``c`` of ``keys``; the name in the text keeps two
    teachers' texts apart (identical texts from two teachers would be deduped)."""
    return lambda q, k: f"{name}{k} \\boxed{{{GOLD[q] if keys.index(q) < c else 'no'}}}"


def test_rejection_keeps_only_verified_rows_and_counts_everything(tmp_path):
    teachers = [_model_teacher(tmp_path, "a"), _model_teacher(tmp_path, "b")]
    gen = FakeGenerator({"a": _right_even, "b": _easy_only})
    problems = _problems()
    rows, report = distill(problems, teachers, TASK, gen, n=4, keep_per_teacher=5, balance="none")
    check_schema(rows, "distilled")
    assert rows.height > 0 and rows["correct"].all()
    for r in rows.iter_rows(named=True):  # every kept row re-verifies against its problem
        problem = problems.filter(pl.col("problem_id") == r["problem_id"]).row(0, named=True)
        assert TASK.score(problem, r["completion"])[1]
        meta = json.loads(r["meta"])
        assert r["mode"] == f"teacher:{meta['teacher']}" and r["label_source"] == "teacher_id"
        assert meta["teacher_path"].endswith(meta["teacher"])
    a, b = report.teachers["teacher:a"], report.teachers["teacher:b"]
    assert a.samples == b.samples == 4 * problems.height
    assert a.correct == 2 * problems.height and a.pass_rate == 0.5
    assert a.correct + a.rejected_incorrect == a.samples
    # b repeats one text 4 times: 1 kept, 3 duplicates per easy problem
    easy = sum(int(v) < 5 for v in GOLD.values())
    assert b.kept == easy and b.rejected_duplicate == 3 * easy
    assert report.unsolved_problem_ids == []
    assert report.to_dict()["teachers"]["teacher:a"]["pass_rate"] == 0.5


def test_keep_cap_dedup_and_unsolved_reported(tmp_path):
    teachers = [_model_teacher(tmp_path, "a"), _model_teacher(tmp_path, "b")]
    gen = FakeGenerator({"a": _right, "b": _easy_only})
    items = {**GOLD, "unsolvable?": "12345"}  # teachers answer 0 and 999 there
    rows, report = distill(
        _problems(items=items), teachers, TASK, gen, n=3, keep_per_teacher=2, balance="none"
    )
    per = Counter(zip(rows["problem_id"], rows["mode"], strict=True))
    assert max(per.values()) <= 2
    assert rows["id"].n_unique() == rows.height  # no exact repeats
    assert report.teachers["teacher:a"].rejected_over_cap == len(items) - 1
    assert len(report.unsolved_problem_ids) == 1
    assert any("solved by no teacher" in w for w in report.warnings)


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=3, max_size=3), st.integers(0, 10_000))
def test_balance_modes(tmp_path_factory, solved_counts, seed):
    """Teacher i solves the first solved_counts[i] problems; check each balance rule's contract."""
    tmp = tmp_path_factory.mktemp("t")
    keys = list(GOLD)[:4]
    items = {k: GOLD[k] for k in keys}
    names = ["x", "y", "z"]
    solvers = {n: _solves_first(n, c, keys) for n, c in zip(names, solved_counts, strict=True)}
    teachers = [_model_teacher(tmp, n) for n in names]
    problems = _problems(items=items)
    kw = dict(n=2, keep_per_teacher=2, seed=seed, progress=False)
    none, _ = distill(problems, teachers, TASK, FakeGenerator(solvers), balance="none", **kw)
    down, rep = distill(
        problems, teachers, TASK, FakeGenerator(solvers), balance="downsample", **kw
    )
    down2, _ = distill(problems, teachers, TASK, FakeGenerator(solvers), balance="downsample", **kw)
    per, rep_p = distill(
        problems, teachers, TASK, FakeGenerator(solvers), balance="per_problem", **kw
    )

    assert none.height == sum(2 * c for c in solved_counts)
    counts = Counter(down["mode"])
    assert all(counts[f"teacher:{n}"] == 2 * min(solved_counts) for n in names)
    assert set(down["id"]) <= set(none["id"]) and down.equals(down2)  # subset, seeded
    assert sum(s.dropped_by_balance for s in rep.teachers.values()) == none.height - down.height

    both = min(solved_counts)  # problems solved by every teacher are the first `both`
    assert per.height == len(names) * both
    assert all(v == 1 for v in Counter(zip(per["problem_id"], per["mode"], strict=True)).values())
    assert rep_p.problems_dropped_by_balance == max(solved_counts) - both


def _multi_teacher_dataset():
    return datasets.Dataset.from_dict(
        {
            "question": ["1+1?", "1+1?", "2*3?", "2*3?", "2*3?", "not a problem here", "10-3?"],
            "generation": [
                "\\boxed{2}",
                "it is 3",
                "\\boxed{6}",
                "\\boxed{6}",
                "6",
                "\\boxed{1}",
                "7",
            ],
            "model": ["m1", "m2", "m1", "m1", "m2", "m1", "m3"],
        }
    )


@pytest.mark.parametrize("fmt", ["disk", "parquet"])
def test_dataset_teacher_rows_mapped_and_verified(tmp_path, fmt):
    ds = _multi_teacher_dataset()
    if fmt == "disk":
        path = tmp_path / "gens"
        ds.save_to_disk(str(path))
    else:
        path = tmp_path / "gens.parquet"
        ds.to_parquet(str(path))
    t = TeacherParams(
        name="pool",
        kind="dataset",
        dataset=str(path),
        prompt_column="question",
        solution_column="generation",
        teacher_column="model",
        include=["m1", "m2"],
    )

    def never(*a):
        raise AssertionError("dataset teachers never generate")

    rows, report = distill(_problems(), [t], TASK, never, n=1, keep_per_teacher=3, balance="none")
    assert set(report.teachers) == {"teacher:m1", "teacher:m2"}  # m3 not included
    assert Counter(rows["mode"]) == {"teacher:m1": 2, "teacher:m2": 1}  # dup 6 dropped, "3" wrong
    m1, m2 = report.teachers["teacher:m1"], report.teachers["teacher:m2"]
    assert (m1.samples, m1.correct, m1.rejected_duplicate) == (3, 3, 1)
    assert (m2.samples, m2.rejected_incorrect) == (2, 1)
    assert report.unmatched_dataset_rows == 1
    assert {json.loads(m)["teacher_entry"] for m in rows["meta"]} == {"pool"}


def test_problems_read_from_dataset_teacher(tmp_path):
    ds = _multi_teacher_dataset()
    ds = ds.add_column("gold", ["2", "2", "6", "6", "6", "1", "7"])
    path = tmp_path / "gens.jsonl"
    ds.to_json(str(path))
    t = TeacherParams(
        name="pool",
        kind="dataset",
        dataset=str(path),
        prompt_column="question",
        solution_column="generation",
        teacher_column="model",
        answer_column="gold",
    )
    (rt,) = check_teachers([t])
    problems = problems_from_dataset_teacher(rt)
    assert problems.height == 4  # distinct statements
    rows, report = distill(problems, [rt], TASK, None, keep_per_teacher=3, balance="none")
    assert report.unmatched_dataset_rows == 0
    assert Counter(rows["mode"]) == {"teacher:m1": 3, "teacher:m2": 1, "teacher:m3": 1}
    with pytest.raises(ValueError, match="answer_column"):
        problems_from_dataset_teacher(
            check_teachers([t.model_copy(update={"answer_column": None})])[0]
        )


def test_missing_column_fails_before_generation(tmp_path):
    path = tmp_path / "gens"
    _multi_teacher_dataset().save_to_disk(str(path))
    bad = TeacherParams(
        name="pool",
        kind="dataset",
        dataset=str(path),
        prompt_column="question",
        solution_column="solution",
        teacher_column="model",
    )
    gen = FakeGenerator({"a": _right})
    with pytest.raises(TeacherError) as err:
        distill(_problems(), [_model_teacher(tmp_path, "a"), bad], TASK, gen)
    msg = str(err.value)
    assert "'solution'" in msg and "'pool'" in msg and "generation" in msg and "question" in msg
    assert gen.calls == []


@pytest.mark.parametrize(
    "path, expected",
    [
        ("missing_dir/sub/ckpt", "does not exist"),
        ("EMPTY", "neither modc.json"),
        ("some-org/not-cached-model", "HF_HUB_OFFLINE"),
    ],
)
def test_unloadable_teacher_fails_before_generation(tmp_path, path, expected):
    if path == "EMPTY":
        (tmp_path / "empty").mkdir()
        path = str(tmp_path / "empty")
    good = _model_teacher(tmp_path, "a")
    bad = TeacherParams(name="bad", kind="model", path=path)
    gen = FakeGenerator({"a": _right})
    with pytest.raises(TeacherError, match=expected) as err:
        distill(_problems(), [good, bad], TASK, gen)
    assert "'bad'" in str(err.value) and gen.calls == []


def test_registry_rejects_duplicates_empty_and_bad_template(tmp_path):
    a = _model_teacher(tmp_path, "a")
    with pytest.raises(TeacherError, match="duplicate"):
        check_teachers([a, a])
    with pytest.raises(TeacherError, match="empty"):
        check_teachers([])
    with pytest.raises(TeacherError, match="prompt_template"):
        check_teachers([a.model_copy(update={"prompt_template": "no slot"})])
    assert render_prompt("<u>{problem}</u> \\boxed{}", "P: x", "x") == "<u>x</u> \\boxed{}"


def test_gpu_math_profile_validates_and_dry_runs():
    params = load_profile(ROOT / "profiles" / "gpu-math.yaml")
    assert params.task == "math" and params.model.base == "pretrained"
    assert {t.backend for t in params.distill.teachers} == {"vllm"}
    lines = plan(ROOT / "profiles" / "gpu-math.yaml", ROOT)
    text = "\n".join(lines)
    # the stages are DVC's own: every train and sample job, distillation, no Countdown labels
    for job in params.train_jobs:
        assert f"train@{job}: python stages/train.py {job}" in lines
        assert f"sample@{job}: python stages/sample.py {job}" in lines
    stage_lines = [line for line in lines[1:] if not line.startswith(" ")]
    assert stage_lines[0].startswith("generate:") and stage_lines[-1].startswith("publish:")
    assert not any(line.startswith("label@") for line in lines)
    for needle in (
        "Qwen/Qwen2.5-Math-7B-Instruct",
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
        "Qwen/Qwen2.5-0.5B",
        "HuggingFaceH4/MATH-500",
        "vllm",
        "teacher_id-distilled-experts",
    ):
        assert needle in text, needle
    proc = subprocess.run(
        [sys.executable, "-m", "modc_data.plan", "profiles/gpu-math.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines() == lines


def test_distill_params_defaults_are_consistent():
    d = DistillParams()
    assert d.balance in ("none", "downsample", "per_problem") and d.keep_per_teacher <= d.n


# ----------------------------------------------------------------------------- real hf path
def test_real_tiny_checkpoints_through_hf_backend(tmp_path):
    """Two tiny random Llamas (a modc prefix checkpoint and a plain HF dir) sampled for real.

    The vocabulary is a few digits, so random weights emit numbers and some happen to be right;
    whatever is kept must re-verify, and the same seed must give the same rows.
    """
    from tests.tiny_models import make_tiny_checkpoint, save_tiny_base

    texts = ["answer 1 2 3", "Problem: \\boxed{} Put the final in"]
    prefix = make_tiny_checkpoint(tmp_path / "prefix", "prefix", ["x", "y"], texts, task="math")
    plain = save_tiny_base(tmp_path / "plain", texts, seed=1)
    teachers = [
        TeacherParams(name="px", kind="model", path=str(prefix), mode="x"),
        TeacherParams(name="plain", kind="model", path=str(plain)),
    ]
    problems = _problems(items={"1+1?": "2", "1+2?": "3", "0+1?": "1"})
    gen = backend_generate_fn(temperature=1.0, max_new_tokens=6, batch_size=16, device="cpu")
    rows, report = distill(
        problems, teachers, TASK, gen, n=6, keep_per_teacher=6, balance="none", seed=3
    )
    rows2, _ = distill(
        problems, teachers, TASK, gen, n=6, keep_per_teacher=6, balance="none", seed=3
    )
    assert rows.equals(rows2)
    for stats in report.teachers.values():
        assert stats.samples == 18 and stats.correct + stats.rejected_incorrect == 18
    assert report.rows == rows.height > 0  # 3-token vocabulary of digits: some guesses hit
    for r in rows.iter_rows(named=True):
        problem = problems.filter(pl.col("problem_id") == r["problem_id"]).row(0, named=True)
        assert TASK.score(problem, r["completion"])[1]
    with pytest.raises(TeacherError, match="known modes"):
        check_teachers([teachers[0].model_copy(update={"mode": "zzz"})])


def test_bad_problems_or_balance_fail_before_generation(tmp_path):
    gen = FakeGenerator({"a": _right})
    teachers = [_model_teacher(tmp_path, "a")]
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['answer'\]"):
        distill(_problems().drop("answer"), teachers, TASK, gen)
    with pytest.raises(ValueError, match="balance 'even'"):
        distill(_problems(), teachers, TASK, gen, balance="even")
    with pytest.raises(ValueError, match="generate_fn"):
        distill(_problems(), teachers, TASK, None)
    assert gen.calls == []


def test_reference_teacher_reads_each_problems_worked_solution():
    solutions = {"1+1?": "so \\boxed{2}", "2*3?": "\\boxed{5}"}  # the second one is wrong
    records = [{"problem": q, "answer": a, "template_id": i,
                **({"solution": solutions[q]} if q in solutions else {})}
               for i, (q, a) in enumerate({"1+1?": "2", "2*3?": "6", "no solution?": "7"}.items())]
    problems = problems_frame(records, "train")
    t = TeacherParams(name="human", kind="reference")
    rows, report = distill(problems, [t], TASK, None, n=1, balance="none")
    stats = report.teachers["teacher:human"]
    assert stats.source == "reference" and stats.samples == 2 and stats.correct == 1
    assert stats.rejected_incorrect == 1  # a wrong worked solution is rejected like any other
    assert rows["mode"].to_list() == ["teacher:human"]
    assert json.loads(rows["meta"][0])["template_id"] == 0  # kept for the template leakage check
    assert any("1 of 3 problems have no worked solution" in w for w in report.warnings)


def test_dataset_verdict_column_meta_columns_and_length_cap():
    problems = _problems()
    rows_in = []
    for q, a in GOLD.items():
        rows_in += [
            {"q": q, "s": f"long and right {a}" + "!" * 50, "who": "m1", "v": True, "setting": "x"},
            {"q": q, "s": f"short {a}", "who": "m1", "v": True, "setting": "y"},
            {"q": q, "s": "??", "who": "m2", "v": None, "setting": "y"},
            {"q": q, "s": f"wrong {a}", "who": "m2", "v": False, "setting": "x"},
        ]
    ds = datasets.Dataset.from_list(rows_in)
    t = TeacherParams(name="src", kind="dataset", dataset="unused", prompt_column="q",
                      solution_column="s", teacher_column="who", verdict_column="v",
                      meta_columns=["setting"])
    from modc_data.labeling.teachers import ResolvedTeacher

    rt = ResolvedTeacher(t, "files", "mem", dataset=ds, teachers_in_dataset=["m1", "m2"])
    rows, report = distill(problems, [rt], TASK, None, n=1, keep_per_teacher=5, balance="none",
                           max_completion_chars=40)
    m1, m2 = report.teachers["teacher:m1"], report.teachers["teacher:m2"]
    # the source's verdict is used, not the task's: "wrong 6" has the right number but says False
    assert (m2.rejected_unverifiable, m2.rejected_incorrect, m2.kept) == (len(GOLD), len(GOLD), 0)
    assert (m1.correct, m1.rejected_too_long, m1.kept) == (2 * len(GOLD), len(GOLD), len(GOLD))
    assert {json.loads(m)["setting"] for m in rows["meta"]} == {"y"}
    assert set(rows["answer"]) == set(GOLD.values())  # the gold answer the verdict vouches for
    d = report.to_dict()["teachers"]["teacher:m2"]
    assert d["rejected_unverifiable"] == len(GOLD)


def test_package_teacher_resolves_offline_or_names_the_fix():
    pytest.importorskip("champ_dataset")
    t = TeacherParams(name="champ", kind="dataset", dataset="package:champ-transcripts",
                      split="test", prompt_column="problem", solution_column="solution",
                      teacher_column="teacher", verdict_column="verdict",
                      meta_columns=["prompt_setting"])
    [rt] = check_teachers([t])
    assert rt.source == "package" and rt.teachers_in_dataset == [
        "gpt-3.5", "gpt-4", "gpt-4-turbo", "palm-2-medium"]
    bad = t.model_copy(update={"dataset": "package:nope"})
    with pytest.raises(TeacherError, match="unknown packaged dataset 'nope'"):
        check_teachers([bad])
    missing = t.model_copy(update={"meta_columns": ["setting"]})
    with pytest.raises(TeacherError, match=r"column 'setting' \(set by meta_columns\[0\]\)"):
        check_teachers([missing])
