"""The evaluate stage's allocation-policy section on sample rows, and its params.

A planted world in sample-table form: half the problems only DFS solves, half only BFS. The
standard model collapses onto DFS but is strong there (0.9 on the DFS half), the prefix model
forced into a mode solves that mode's half at 0.6: standard wins at k = 1, uniform beats it at
k >= 2, and mixing the standard model's samples with forced BFS beats both (static), so the
chosen policy never loses to either and is strictly better somewhere.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from matplotlib.image import imread

from modc_data.config import Params
from modc_data.evaluation.passk import pass_at_k_modc
from modc_data.evaluation.policy_sections import never_loses, policy_sections
from modc_data.params_sampling import PoliciesParams, SampleParams

N = 16
KS = [1, 2, 4, 8, 16]
MODES = ["dfs", "bfs"]


def rows(split: str, n_problems: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_problems):
        side = MODES[i % 2]
        pid = f"{split}-{i:03d}"
        for j in range(N):  # standard: always DFS, and solves the DFS half at 0.9
            mode = "dfs"
            ok = mode == side and rng.random() < 0.9
            out.append((pid, split, "std", "standard", "", mode, bool(ok), j))
        for mode in MODES:
            for j in range(N):
                ok = mode == side and rng.random() < 0.6
                out.append((pid, split, "pre", "prefix", mode, mode, bool(ok), j))
    return pl.DataFrame(
        out,
        schema=["problem_id", "split", "model", "variant", "mode", "detected_mode", "correct",
                "sample_idx"],
        orient="row",
    )


@pytest.fixture(scope="module")
def samples() -> pl.DataFrame:
    return pl.concat([rows("validation_adversarial", 80, 1), rows("test_adversarial", 80, 2)])


def test_section_scores_every_policy_and_the_bar_holds(samples, tmp_path):
    text, out = policy_sections(
        samples, {"arm": ("pre", "std", MODES)}, {"test_adversarial": "validation_adversarial"},
        KS, figures_dir=tmp_path, n_resamples=200,
    )
    assert "## Allocation policies" in text and "### arm on test_adversarial" in text
    (row,) = out
    assert row["scored"] and row["n_test"] == 80 and row["n_validation"] == 80
    pol = row["policies"]
    # a forced-only prefix model: no free arm; the standard model's samples are an arm of their own
    assert set(pol) == {"standard", "uniform", "static", "preference", "chosen", "oracle"}
    assert "free" in row["skipped"] and "standard" in row["arms"]
    # static may mix the standard model's samples with forced BFS (both models are published)
    assert row["static"]["16"]["standard"] > 0 and row["static"]["16"]["bfs"] > 0
    assert row["allocation"] is None  # two models' allocation: nothing ships in one modc.json
    # uniform equals the exact split pass@k of the forced modes (today's ModC number)
    test = samples.filter((pl.col("split") == "test_adversarial") & (pl.col("model") == "pre"))
    c = (test.group_by("problem_id", "mode").agg(pl.col("correct").sum())
         .pivot(on="mode", index="problem_id", values="correct").sort("problem_id"))
    cm = c.select(MODES).to_numpy()
    want = pass_at_k_modc(np.full_like(cm, N), cm, KS).mean(axis=0)
    assert pol["uniform"]["mean"] == pytest.approx(list(want), abs=1e-9)
    # the collapsed standard model wins at k = 1 and loses to uniform at k >= 4
    assert pol["standard"]["mean"][0] > pol["uniform"]["mean"][0] + 0.1
    assert pol["uniform"]["mean"][2] > pol["standard"]["mean"][2] + 0.2
    v = row["verdict"]
    assert v["holds"] and v["strictly_better_at"], v
    assert "**Never loses: yes**" in text
    for j in range(len(KS)):
        assert pol["oracle"]["mean"][j] >= pol["chosen"]["mean"][j] - 1e-12
    img = imread(tmp_path / row["figure"])
    assert img.shape[0] > 100 and img.shape[1] > 100


def test_never_loses_flags_a_loss(samples):
    _, (row,) = policy_sections(
        samples, {"arm": ("pre", "std", MODES)}, {"test_adversarial": "validation_adversarial"},
        KS, n_resamples=100,
    )
    # a fake evaluation object whose chosen policy is the standard model: it loses to uniform
    class P:  # noqa: D401 - the fields never_loses reads
        def __init__(self, d):
            self.vs_standard, self.vs_uniform = d.get("vs_standard"), d.get("vs_uniform")
            self.mean = d.get("mean")

    u = row["policies"]["uniform"]["vs_standard"]  # uniform − standard, so standard − uniform:
    zero = [0.0] * len(row["ks"])
    standard = {"vs_standard": {"diff": zero, "ci_low": zero, "ci_high": zero},
                "vs_uniform": {"diff": [-d for d in u["diff"]], "ci_low": [-h for h in u["ci_high"]],
                               "ci_high": [-lo for lo in u["ci_low"]]}}

    class Ev:
        ks = row["ks"]
        policies = {"chosen": P(standard), "standard": P(row["policies"]["standard"]),
                    "uniform": P(row["policies"]["uniform"])}

    v = never_loses(Ev())
    assert not v["holds"] and v["worst_against"] == "uniform" and v["worst_ci_low"] < -0.01
    # the same chosen policy where uniform is the lower of the two on test at every k: it loses
    # nothing to the better one (itself), only the CI against the worse one is wide
    lower = [m - 0.05 for m in row["policies"]["standard"]["mean"]]
    Ev.policies["uniform"] = P({"mean": lower})
    wide = {"diff": [0.02] * len(zero), "ci_low": [-0.03] * len(zero), "ci_high": [0.07] * len(zero)}
    Ev.policies["chosen"] = P({"vs_standard": standard["vs_standard"], "vs_uniform": wide})
    v = never_loses(Ev())
    assert not v["holds"] and v["holds_vs_better"]
    assert v["worst_vs_better_against"] == "standard" and v["worst_vs_better_ci_low"] == 0.0
    # and where uniform is the better one, the wide CI against it is a miss either way
    Ev.policies["uniform"] = P({"mean": [m + 0.1 for m in lower]})
    v = never_loses(Ev())
    assert not v["holds"] and not v["holds_vs_better"] and v["worst_vs_better_against"] == "uniform"


def test_a_pair_without_samples_is_listed_not_scored(samples):
    text, out = policy_sections(
        samples, {"arm": ("pre", "std", MODES)}, {"test": "validation"}, KS, n_resamples=50
    )
    assert "Not scored: no samples on ['test', 'validation']" in text
    assert out == [{"arm": "arm", "test": "test", "validation": "validation", "scored": False}]


def _params(**policies) -> dict:
    return {
        "labels": {"sources": ["search_algorithm"], "mixes": {"skewed": {"dfs": 0.9, "bfs": 0.1}}},
        "arms": {"search_algorithm-skewed": {"label_source": "search_algorithm", "mix": "skewed"}},
        "train_jobs": {
            f"search_algorithm-skewed-{v}": {"label_source": "search_algorithm", "mix": "skewed",
                                             "variant": v}
            for v in ("standard", "prefix")
        },
        "sample": {"splits": ["test_adversarial"], "policies": policies},
    }


def test_policy_params_checked_and_splits_planned():
    p = Params.model_validate(_params(arms=["search_algorithm-skewed"], validation_problems=40))
    assert p.policy_splits("search_algorithm-skewed-prefix") == {
        "test_adversarial": None, "validation_adversarial": 40}
    assert p.policy_splits("search_algorithm-skewed-standard") == p.policy_splits(
        "search_algorithm-skewed-prefix")
    assert Params.model_validate(_params()).policy_splits("search_algorithm-skewed-prefix") == {}
    with pytest.raises(ValueError, match="sample.policies.arms: unknown arm 'nope'"):
        Params.model_validate(_params(arms=["nope"]))
    with pytest.raises(ValueError, match="maps to itself"):
        Params.model_validate(_params(arms=["search_algorithm-skewed"],
                                      pairs={"test": "test"}))
    with pytest.raises(ValueError, match="not splits of task"):
        Params.model_validate(_params(arms=["search_algorithm-skewed"],
                                      pairs={"test": "holdout"}))
    with pytest.raises(ValueError, match="validation_problems"):
        SampleParams(policies=PoliciesParams(validation_problems=0))


def test_free_sampling_prefix_is_its_own_free_arm_and_standard_stays_the_reference(samples):
    """With free samples of the prefix model (model 'pre:free'), `free` is those samples, the
    reference `standard` is still the standard model's, and an allocation is shipped."""
    rng = np.random.default_rng(5)
    free = []
    for split in ("validation_adversarial", "test_adversarial"):
        for i in range(80):
            side = MODES[i % 2]
            for j in range(N):  # the prefix model's own choice: BFS half the time, solves at 0.6
                mode = MODES[j % 2]
                free.append((f"{split}-{i:03d}", split, "pre:free", "prefix", "", mode,
                             bool(mode == side and rng.random() < 0.6), j, mode))
    schema = ["problem_id", "split", "model", "variant", "mode", "detected_mode", "correct",
              "sample_idx", "declared_mode"]
    both = pl.concat([samples.with_columns(declared_mode=pl.lit(None, pl.String)),
                      pl.DataFrame(free, schema=schema, orient="row")])
    q = pl.DataFrame([(p, s, m, 0.5, 1.0) for p, s in both.select("problem_id", "split").unique().iter_rows()
                      for m in MODES], schema=["problem_id", "split", "mode", "q", "mass"], orient="row")
    text, (row,) = policy_sections(both, {"arm": ("pre", "std", MODES)},
                                   {"test_adversarial": "validation_adversarial"}, KS,
                                   n_resamples=100, q_tables={"pre": q})
    assert row["free_source"] == "prefix" and "`free` = the prefix model `pre`" in text
    assert row["free_sampling"]["declared"] == {"dfs": 0.5, "bfs": 0.5}
    test = both.filter(pl.col("split") == "test_adversarial")
    std = test.filter(pl.col("model") == "std").group_by("problem_id").agg(
        pl.len().alias("n"), pl.col("correct").sum().alias("c"))
    k1 = float((std["c"] / std["n"]).mean())  # the standard model's pass@1
    assert row["policies"]["standard"]["mean"][0] == pytest.approx(k1)
    own = test.filter(pl.col("model") == "pre:free")["correct"].mean()
    assert row["policies"]["free"]["mean"][0] == pytest.approx(own)
    assert sorted(row["allocation"], key=int) == [str(k) for k in KS]
