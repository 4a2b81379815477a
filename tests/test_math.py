"""Math task: answer extraction (nested boxes), math-verify equivalence, problem loading."""

from fractions import Fraction

import datasets
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modc_data.params_blocks import MathSourceParams
from modc_data.schema import problem_id
from modc_data.tasks import get_task
from modc_data.tasks.math import (
    DEFAULT_TEMPLATE,
    MathTask,
    answers_equal,
    extract_answer,
    last_boxed,
    load_math_problems,
    problems_frame,
)

TASK = MathTask()


def test_half_written_three_ways_is_equal_and_two_is_not_three():
    for gold in ("1/2", "0.5", "\\frac{1}{2}"):
        for completion in ("so \\boxed{1/2}", "the answer is 0.5", "\\boxed{\\frac{1}{2}}"):
            assert TASK.score({"answer": gold}, completion)[1], (gold, completion)
    assert TASK.score({"answer": "3"}, "hence \\boxed{2}") == ("2", False)
    assert TASK.score({"answer": "2"}, "hence \\boxed{2}") == ("2", True)


def test_gold_given_as_full_solution_uses_its_box():
    solution = "We add: $1+1=2$, so the answer is $\\boxed{2}$."
    assert TASK.score({"answer": solution}, "\\boxed{2}")[1]
    assert not TASK.score({"answer": solution}, "\\boxed{1}")[1]


@settings(max_examples=25, deadline=None)
@given(st.integers(-50, 50), st.integers(1, 20))
def test_fraction_forms_agree(p, q):
    """p/q, \\frac{p}{q} and (when it terminates) the decimal are all the same answer."""
    frac = Fraction(p, q)
    gold = (
        f"\\frac{{{frac.numerator}}}{{{frac.denominator}}}"
        if frac.denominator != 1
        else str(p // q)
    )
    forms = [f"{frac.numerator}/{frac.denominator}"]
    if 10**6 % frac.denominator == 0:
        forms.append(str(frac.numerator / frac.denominator))
    for form in forms:
        assert TASK.score({"answer": gold}, f"thus \\boxed{{{form}}}")[1], (gold, form)
    wrong = frac + 1
    assert not TASK.score({"answer": gold}, f"\\boxed{{{wrong.numerator}/{wrong.denominator}}}")[1]


@settings(max_examples=50, deadline=None)
@given(st.integers(-(10**6), 10**6), st.integers(-(10**6), 10**6))
def test_integers_equal_iff_same(a, b):
    assert answers_equal(str(a), str(b)) == (a == b)


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.text(alphabet="abcx0123456789+-^ ", max_size=5),
        lambda inner: st.builds(
            lambda a, b: f"{a}{{{b}}}", st.sampled_from(["\\frac", "", "^"]), inner
        ),
        max_leaves=6,
    ),
    st.text(alphabet="abc 123.", max_size=20),
)
def test_last_boxed_recovers_nested_content(content, noise):
    text = f"{noise} \\boxed{{wrong}} {noise} \\boxed{{{content}}} {noise}"
    assert last_boxed(text) == content.strip()


def test_extract_answer_fallbacks():
    assert extract_answer("first 3 then 1,250 apples") == "1250"
    assert extract_answer("x = -4.5.") == "-4.5"
    assert extract_answer("no answer here") == ""
    assert extract_answer("unclosed \\boxed{12") == "12"  # the box is ignored; 12 is a number
    assert last_boxed("unclosed \\boxed{12") is None
    assert extract_answer("\\fbox{7} and then 9") == "7"


def test_task_protocol_and_template():
    task = get_task("math")
    assert task.name == "math" and task.detect_mode("\\boxed{1}") is None
    assert task.prompt("What is 1+1?") == DEFAULT_TEMPLATE.replace("{problem}", "What is 1+1?")
    assert "\\boxed{}" in task.prompt("x")  # literal braces survive (no str.format)
    with pytest.raises(ValueError, match="problem"):
        MathTask(template="no placeholder")
    with pytest.raises(KeyError, match="answer"):
        task.score({"prompt": "x"}, "\\boxed{1}")


def test_problems_frame_ids_dedupe_and_meta():
    df = problems_frame(
        [
            {"problem": " What is 2+2? ", "answer": "4", "level": 1},
            {"problem": "What is 2+2?", "answer": "4"},  # same statement after strip
            {"problem": "Half of 1?", "answer": "so $\\boxed{\\frac12}$"},
        ],
        "train",
    )
    assert df.height == 2
    assert df["problem_id"].to_list()[0] == problem_id("math", "What is 2+2?")
    assert df["answer"].to_list() == ["4", "\\frac12"]
    assert TASK.score(df.row(1, named=True), "\\boxed{0.5}")[1]


@pytest.mark.parametrize("fmt", ["parquet", "disk"])
def test_load_math_problems_round_trip(tmp_path, fmt):
    ds = datasets.Dataset.from_dict(
        {"question": ["1+1?", "2*3?", "7-7?"], "final": ["2", "6", "0"], "type": ["a", "b", "a"]}
    )
    if fmt == "parquet":
        path = tmp_path / "math.parquet"
        ds.to_parquet(str(path))
    else:
        path = tmp_path / "math_ds"
        ds.save_to_disk(str(path))
    src = MathSourceParams(
        dataset=str(path), problem_column="question", answer_column="final", max_problems=2
    )
    df = load_math_problems(src, "test")
    assert df["split"].unique().to_list() == ["test"]
    assert df["answer"].to_list() == ["2", "6"] and df["category"].to_list() == ["a", "b"]
    bad = MathSourceParams(dataset=str(path), problem_column="problem", answer_column="final")
    with pytest.raises(ValueError, match=r"math.test.problem_column.*'problem'.*question"):
        load_math_problems(bad, "test")
