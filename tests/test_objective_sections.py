"""Tagged models (another objective on the same rows) against the arm's CE models: tagged train
jobs in params, their own evaluation group, and the paired comparison section."""

from __future__ import annotations

from math import comb

import polars as pl
import pytest

from modc_data.config import parse_params
from modc_data.evaluation.comparisons import ArmSpec
from modc_data.evaluation.estimates import evaluate
from modc_data.evaluation.objective_sections import COMPARISONS, objective_rows, objective_section
from modc_data.experiment import model_dir
from tests.test_config import _default

N = 16
MODES = ("dfs", "bfs")


def _ref(n: int, c: int, k: int) -> float:
    return 1.0 - comb(n - c, k) / comb(n, k)


def _samples() -> tuple[pl.DataFrame, pl.DataFrame]:
    """24 problems, each solvable by one mode. CE standard: one mode per problem, right on even
    problems (c=2), always detected as that mode (collapsed). Objective standard: c=4 everywhere,
    detected modes alternate (not collapsed). CE prefix c=6, objective prefix c=8 on the right
    mode, 0 on the other."""
    rows, probs = [], []
    for i in range(24):
        pid = f"p{i:02d}"
        good = "dfs" if i < 12 else "bfs"
        other = "bfs" if good == "dfs" else "dfs"
        probs.append({"problem_id": pid, "split": "test_adversarial", "category": f"only_{good}"})
        chosen = good if i % 2 == 0 else other
        plan = [("ce-std", "standard", "", 2 if chosen == good else 0, lambda j, ch=chosen: ch),
                ("obj-std", "standard", "", 4, lambda j: MODES[j % 2])]
        for mode in MODES:
            plan.append(("ce-pre", "prefix", mode, 6 if mode == good else 0, lambda j, m=mode: m))
            plan.append(("obj-pre", "prefix", mode, 8 if mode == good else 0, lambda j, m=mode: m))
        for model, variant, mode, c, det in plan:
            rows += [{"problem_id": pid, "split": "test_adversarial", "model": model, "arm": "a",
                      "variant": variant, "mode": mode, "sample_idx": j, "completion": "…",
                      "answer": "", "correct": j < c, "detected_mode": det(j), "n_tokens": 10}
                     for j in range(N)]
    return pl.DataFrame(rows), pl.DataFrame(probs)


SPECS = {
    "sa": ArmSpec("search_algorithm", "skewed", "ce-std", MODES, prefix="ce-pre"),
    "sa-pass8": ArmSpec("search_algorithm", "skewed", "obj-std", MODES, prefix="obj-pre", tag="pass8"),
}
KS = [2, 4, 8, 16]


def test_objective_rows_equal_hand_computed_pass_at_k_and_collapse():
    samples, _ = _samples()
    rows = objective_rows(samples, SPECS, KS, n_resamples=200, seed=0)
    by = {r["quantity"]: r for r in rows}
    assert {r["group"] for r in rows} == {"search_algorithm/skewed+pass8"}
    assert all(r["reference"] == "search_algorithm/skewed" for r in rows)
    ce_std = [0.5 * _ref(N, 2, k) for k in KS]  # right mode on half the problems
    obj_std = [_ref(N, 4, k) for k in KS]
    ce_pre = [_ref(N, 6, k // 2) for k in KS]  # k/2 samples on the right mode
    obj_pre = [_ref(N, 8, k // 2) for k in KS]
    assert by["pass@k ce:standard"]["estimate"] == pytest.approx(ce_std, abs=1e-6)
    assert by["pass@k obj:standard"]["estimate"] == pytest.approx(obj_std, abs=1e-6)
    assert by["pass@k obj:modc"]["estimate"] == pytest.approx(obj_pre, abs=1e-6)
    expect = {
        COMPARISONS[0][0]: [a - b for a, b in zip(obj_std, ce_std, strict=True)],
        COMPARISONS[1][0]: [a - b for a, b in zip(obj_pre, ce_pre, strict=True)],
        COMPARISONS[2][0]: [a - b for a, b in zip(obj_pre, obj_std, strict=True)],
        COMPARISONS[3][0]: [a - b for a, b in zip(obj_std, ce_pre, strict=True)],
    }
    for label, want in expect.items():
        r = by[label]
        assert r["estimate"] == pytest.approx(want, abs=1e-6), label
        assert all(lo <= e + 1e-9 and e <= hi + 1e-9
                   for e, lo, hi in zip(r["estimate"], r["low"], r["high"], strict=True))
    # every problem's pass@N-trained samples are right in every case: the objective-vs-CE
    # standard difference is positive on every resample
    assert min(by[COMPARISONS[0][0]]["low"]) > 0
    coll = by["collapsed fraction, objective − CE standard"]
    assert (coll["objective"], coll["ce"]) == (0.0, 1.0)
    assert coll["estimate"] == [-1.0] and coll["high"] == [-1.0]


def test_objective_section_text_answers_the_questions_and_is_empty_without_tags():
    samples, _ = _samples()
    text, rows = objective_section(samples, SPECS, KS, n_resamples=200,
                                   objectives={"search_algorithm/skewed+pass8": "objective pass_at_n, N = 8"})
    assert "search_algorithm/skewed+pass8 vs search_algorithm/skewed" in text
    assert "objective pass_at_n, N = 8" in text
    assert "Does the objective raise pass@k at large k over CE (standard models)? yes" in text
    assert "reduce per-problem collapse" in text and "yes, fewer collapsed problems" in text
    assert rows
    assert objective_section(samples, {"sa": SPECS["sa"]}, KS, n_resamples=50) == ("", [])


def test_modc_is_compared_variant_to_variant():
    """Where the CE arm has experts and a prefix model, the tagged prefix model is compared with
    the CE prefix model, not the experts."""
    samples, _ = _samples()
    experts = samples.filter(pl.col("model") == "ce-pre").with_columns(
        model=pl.lit("ce-exp"), variant=pl.lit("experts"), correct=pl.lit(False))
    specs = {"sa": ArmSpec("search_algorithm", "skewed", "ce-std", MODES, experts="ce-exp",
                           prefix="ce-pre"), "sa-pass8": SPECS["sa-pass8"]}
    rows = objective_rows(pl.concat([samples, experts]), specs, KS, n_resamples=50)
    by = {r["quantity"]: r for r in rows}
    assert by["pass@k ce:modc"]["model"] == "ce-pre"
    assert by["pass@k ce:modc"]["estimate"] == pytest.approx([_ref(N, 6, k // 2) for k in KS], abs=1e-6)


def test_tagged_group_is_its_own_evaluation_key():
    samples, problems = _samples()
    result = evaluate(samples, problems, SPECS, bootstrap=100, seed=0)
    assert set(result.keys) == {"search_algorithm/skewed", "search_algorithm/skewed+pass8"}
    tagged = result.keys["search_algorithm/skewed+pass8"]["test_adversarial"]
    k8 = tagged.curves["standard"].k.index(8)
    assert tagged.curves["standard"].pass_at_k[k8] == pytest.approx(_ref(N, 4, 8), abs=1e-6)


def test_a_tagged_standard_model_alone_is_evaluated_and_compared():
    """A tagged group with a standard model only (one N being chosen on validation): its own
    evaluation key with standard curves and no ModC verdict, and the comparisons that need no
    tagged ModC model; the questions that need one say so instead of failing."""
    samples, problems = _samples()
    samples = samples.filter(pl.col("model") != "obj-pre")
    specs = {"sa": SPECS["sa"],
             "sa-pass8": ArmSpec("search_algorithm", "skewed", "obj-std", MODES, tag="pass8")}
    result = evaluate(samples, problems, specs, bootstrap=50, seed=0)
    tagged = result.keys["search_algorithm/skewed+pass8"]["test_adversarial"]
    assert set(tagged.curves) == {"standard"}
    k8 = tagged.curves["standard"].k.index(8)
    assert tagged.curves["standard"].pass_at_k[k8] == pytest.approx(_ref(N, 4, 8), abs=1e-6)
    rows = objective_rows(samples, specs, KS, n_resamples=50)
    got = {r["quantity"] for r in rows}
    assert {COMPARISONS[0][0], COMPARISONS[3][0], "pass@k ce:modc"} <= got
    assert not {COMPARISONS[1][0], COMPARISONS[2][0], "pass@k obj:modc"} & got
    by = {r["quantity"]: r for r in rows}
    assert by[COMPARISONS[3][0]]["estimate"] == pytest.approx(
        [_ref(N, 4, k) - _ref(N, 6, k // 2) for k in KS], abs=1e-6)
    text, _ = objective_section(samples, specs, KS, n_resamples=50)
    assert "Does ModC still add on top of it? not measured" in text
    assert "Does the objective raise pass@k at large k over CE (standard models)? yes" in text


def _tagged_params(**job):
    data = _default()
    arm = "search_algorithm-skewed"
    data["train_jobs"][f"{arm}-pass8-standard"] = {
        "label_source": data["arms"][arm]["label_source"], "mix": data["arms"][arm]["mix"],
        "variant": "standard", "tag": "pass8", "objective": "pass_at_n",
        "pass_at_n": {"N": 8, "warmup_steps": 10}, **job}
    return data, arm


def test_tagged_jobs_keys_model_dirs_and_policies():
    data, arm = _tagged_params()
    params = parse_params(data)
    key = f"{arm}-pass8-standard"
    job = params.train_jobs[key]
    assert (job.group, job.key) == (f"{arm}-pass8", key)
    assert params.model_key(arm, "standard", "pass8") == key
    assert params.model_key(arm, "standard") == f"{arm}-standard"  # the CE reference
    assert params.tags_of(arm) == ["pass8"]
    assert job.summary_key.endswith("+pass8")
    assert model_dir(key) == model_dir(key, "artifacts") and model_dir(key).name == key
    assert job.train_params(params.train).objective == "pass_at_n"
    # sampled on the validation splits like its untagged twin (where its N is chosen)
    assert params.policy_splits(key) == params.policy_splits(f"{arm}-standard") != {}


@pytest.mark.parametrize("bad, match", [
    ({"tag": "Pass-8"}, "tag"),   # not [a-z0-9_]
    ({"tag": "other"}, "key must be"),  # key says pass8
])
def test_bad_tags_fail_naming_the_field(bad, match):
    from modc_data.config import ParamsError
    data, _ = _tagged_params(**bad)
    with pytest.raises(ParamsError, match=match):
        parse_params(data)
