"""Prefix models that can also sample freely: training format, q(m|x) from the
first token, the free arm of the sample step, and the allocation shipped into modc.json."""

from __future__ import annotations

import math

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modc_data.errors import InputError
from modc_data.evaluation.allocation_counts import arm_counts
from modc_data.modeling.format import (
    IGNORE_INDEX,
    encode_free_example,
    encode_prompt,
    mode_token_id,
)
from modc_data.modeling.modc_json import read_modc
from modc_data.modeling.train import free_rows, train_model
from modc_data.params_sampling import SampleParams
from modc_data.params_training import ModelParams, TrainParams
from modc_data.publish.layout import PublishError, build_model_repo
from modc_data.sampler import ModCSampler
from modc_data.sampling.hf import HFBackend
from modc_data.sampling.run import FREE_SUFFIX, Q_SCHEMA, mode_preference, sample_model
from modc_data.tasks import get_task
from tests.tiny_models import TINY_SCRATCH, TINY_TEXTS, tiny_rows, tiny_tokenizer

MODES = ["dfs", "bfs"]
TRAIN = TrainParams(batch_size=8, lr=1e-2, warmup_steps=2, save_every=1000, eval_batches=2, threads=1)


@pytest.fixture(scope="module")
def free_prefix(tmp_path_factory):
    """A tiny prefix model trained with half its rows free (mode token as first target)."""
    out = tmp_path_factory.mktemp("free") / "prefix"
    train, val = tiny_rows(48, MODES, "train", seed=0), tiny_rows(16, MODES, "validation", seed=1)
    result = train_model(
        train, val, variant="prefix", mode=None, modes=MODES, label_source="search_algorithm",
        arm="tiny", model_cfg=ModelParams(scratch=TINY_SCRATCH), train_cfg=TRAIN, steps=150,
        out_dir=out, tokenizer_texts=TINY_TEXTS, progress=False, free_share=0.5,
    )
    return out, train, result


def test_free_example_puts_the_mode_token_first_in_the_target():
    tok = tiny_tokenizer(modes=MODES)
    ids, labels = encode_free_example(tok, "numbers 3 7 9 target 22", "7 + 9 = 16 goal", "bfs")
    prompt = encode_prompt(tok, "numbers 3 7 9 target 22", None)
    assert ids[: len(prompt)] == prompt  # the plain prompt: no mode token in it
    assert labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert labels[len(prompt)] == mode_token_id(tok, "bfs")  # the model learns to choose it
    assert labels[len(prompt):] == ids[len(prompt):]
    with pytest.raises(ValueError, match="no mode token"):
        mode_token_id(tiny_tokenizer(), "bfs")


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 400), share=st.floats(0, 1), seed=st.integers(0, 5))
def test_free_rows_are_a_seeded_share_independent_of_order(n, share, seed):
    ids = [f"row{i}" for i in range(n)]
    got = free_rows(ids, share, seed)
    assert got == free_rows(list(reversed(ids)), share, seed)
    assert got <= set(ids)
    if share == 0:
        assert not got
    # binomial: within 5 standard deviations (+1 for rounding) of n * share
    assert abs(len(got) - n * share) <= 5 * math.sqrt(n * share * (1 - share)) + 1


def test_training_records_free_sampling(free_prefix):
    out, train, _ = free_prefix
    info = read_modc(out)
    assert info.free_sampling and info.variant == "prefix"
    assert info.train["free_share"] == 0.5
    assert info.train["free_rows"] == len(free_rows(train["id"].to_list(), 0.5, TRAIN.seed))
    plain = ModCSampler(out, info, None)
    assert plain.arms == ["free", *MODES]


def test_free_share_is_only_for_prefix_models(tmp_path):
    train, val = tiny_rows(16, MODES, "train"), tiny_rows(8, MODES, "validation", seed=1)
    with pytest.raises(ValueError, match="free_share is for a prefix model"):
        train_model(train, val, variant="standard", mode=None, modes=MODES,
                    label_source="search_algorithm", arm="tiny",
                    model_cfg=ModelParams(scratch=TINY_SCRATCH), train_cfg=TRAIN, steps=2,
                    out_dir=tmp_path / "s", tokenizer_texts=TINY_TEXTS, progress=False,
                    free_share=0.5)


def test_q_from_the_first_token_matches_the_free_samples(free_prefix):
    """q(m|x) sums to 1 over the modes, and the share of free samples whose first token is mode
    m matches mass * q(m|x) within sampling error (the sampler draws from that distribution)."""
    out, _, _ = free_prefix
    backend = HFBackend(batch_size=256, device="cpu", threads=1)
    prompts = ["numbers 3 7 target 10", "numbers 2 5 target 7", "numbers 9 1 target 10"]
    q, mass = backend.mode_preference(out, prompts, MODES)
    n = 400
    comps = backend.generate(out, prompts, mode=None, n=n, seeds=[11, 12, 13], temperature=1.0,
                             top_p=1.0, max_new_tokens=8)
    tokens = {f"<mode:{m}>": m for m in MODES}
    for qs, ms, cs in zip(q, mass, comps, strict=True):
        assert sum(qs) == pytest.approx(1.0, abs=1e-5)
        assert 0.5 < ms <= 1.0 + 1e-6  # trained: the first token is almost always a mode token
        for m, qm in zip(MODES, qs, strict=True):
            p = ms * qm
            hits = sum(tokens.get(c.first_token) == m for c in cs)
            assert abs(hits / n - p) <= 4 * math.sqrt(p * (1 - p) / n) + 0.01, (m, hits, p)
        # the emitted mode token is not part of the completion text
        assert not any("<mode:" in c.text for c in cs)


def test_sample_step_adds_the_free_arm_and_q(free_prefix):
    out, _, _ = free_prefix
    problems = pl.DataFrame({
        "problem_id": ["p1", "p2"], "split": ["test", "test"],
        "prompt": ["numbers 3 7 target 10", "numbers 2 5 target 7"],
        "meta": ['{"nums": [3, 7], "target": 10}', '{"nums": [2, 5], "target": 7}'],
    })
    cfg = SampleParams(n=6, max_new_tokens=12, batch_size=64, dtype="float32", threads=1)
    backend = HFBackend(batch_size=64, device="cpu", threads=1)
    rows = sample_model(out, problems, task=get_task("countdown"), model_key="tiny-prefix",
                        arm="tiny", variant="prefix", modes=None, cfg=cfg, backend=backend,
                        progress=False)
    free = rows.filter(pl.col("model") == "tiny-prefix" + FREE_SUFFIX)
    assert free.height == 2 * 6 and set(free["mode"]) == {""}
    assert set(free["declared_mode"].drop_nulls()) <= set(MODES)
    forced = rows.filter(pl.col("model") == "tiny-prefix")
    assert set(forced["mode"]) == set(MODES) and forced["declared_mode"].null_count() == forced.height
    q = mode_preference(out, problems, cfg=cfg, backend=backend)
    assert dict(q.schema) == Q_SCHEMA and q.height == 2 * len(MODES)
    sums = q.group_by("problem_id").agg(pl.col("q").sum())["q"]
    assert all(abs(s - 1) < 1e-6 for s in sums)
    # evaluation reads the prefix model's own free arm and the first-token q
    counts, pids = arm_counts(rows, "test", "tiny-prefix", MODES,
                              free_model="tiny-prefix" + FREE_SUFFIX, q_table=q)
    assert counts.arms == ("free", *MODES) and counts.n.tolist() == [[6, 6, 6]] * 2
    want = q.filter(pl.col("problem_id") == pids[0]).sort("mode")
    assert dict(zip(MODES, counts.q[0], strict=True))["bfs"] == pytest.approx(
        want.filter(pl.col("mode") == "bfs")["q"][0])


def _forced_only_prefix(out):
    """A tiny prefix model trained the old way (mode token always in the prompt)."""
    train, val = tiny_rows(16, MODES, "train"), tiny_rows(8, MODES, "validation", seed=1)
    train_model(train, val, variant="prefix", mode=None, modes=MODES, label_source="search_algorithm",
                arm="tiny", model_cfg=ModelParams(scratch=TINY_SCRATCH), train_cfg=TRAIN, steps=2,
                out_dir=out, tokenizer_texts=TINY_TEXTS, progress=False)
    return out


def test_forced_only_prefix_has_no_free_arm(tmp_path):
    out = _forced_only_prefix(tmp_path / "p")
    assert not read_modc(out).free_sampling
    problems = pl.DataFrame({"problem_id": ["p1"], "split": ["test"], "prompt": ["numbers 3 7 target 10"]})
    backend = HFBackend(batch_size=64, device="cpu", threads=1)
    assert mode_preference(out, problems, cfg=SampleParams(), backend=backend).height == 0
    sampler = ModCSampler(out, read_modc(out), backend)
    with pytest.raises(ValueError, match="cannot sample without a mode token"):
        sampler.budget(4, "free")


def _publish(ckpt, tmp, allocation):
    return build_model_repo(
        tmp, repo_id="modc/x", checkpoint=ckpt, summary_key="search_algorithm/tiny",
        summary_entry={}, dataset_repo_id="modc/d", figures=[], license="apache-2.0",
        params={}, revision={}, allow_local_base=True, allocation=allocation,
    )


def test_published_model_ships_the_allocation_and_samples_by_it(free_prefix, tmp_path):
    out, _, _ = free_prefix
    allocation = {"1": {"policy": "free", "counts": {"free": 1, "dfs": 0, "bfs": 0}},
                  "4": {"policy": "static", "counts": {"free": 2, "dfs": 0, "bfs": 2}}}
    staged = _publish(out, tmp_path / "repo", allocation)
    info = read_modc(staged.path)
    assert info.allocation == allocation and info.free_sampling
    assert read_modc(out).allocation == {}  # the pipeline's checkpoint is left as it was
    sampler = ModCSampler.from_pretrained(staged.path, backend="hf", device="cpu", threads=1)
    got = sampler.sample(["numbers 3 7 target 10", "numbers 2 5 target 7"], k=4, max_new_tokens=8)
    for per_prompt in got:
        assert [s.mode for s in per_prompt] == [None, None, "bfs", "bfs"]
    assert [s.mode for s in sampler.sample(["numbers 3 7 target 10"], k=1, max_new_tokens=8)[0]] == [None]


class _NoFirstToken:
    """A backend that generates but cannot give first-token probabilities (like openai)."""

    def __init__(self, inner):
        self.generate = inner.generate


def test_shipped_preference_splits_each_prompt_by_its_own_q(free_prefix, tmp_path):
    """A shipped 'preference' entry: each prompt's counts follow the validated rule on the
    model's first-token q(m|x) (the function the policy was scored with); a backend without
    first-token probabilities falls back to the entry's counts, with a warning."""
    from modc_data.budget import preference_split

    out, _, _ = free_prefix
    allocation = {"8": {"policy": "preference", "free_share": 0.25, "beta": 1.0,
                        "validation": 0.5, "counts": {"free": 0, "dfs": 4, "bfs": 4},
                        "fallback": "uniform"}}
    staged = _publish(out, tmp_path / "repo", allocation)
    card = (staged.path / "README.md").read_text()
    assert "preference (free share 0.25, β = 1)" in card and "uniform: dfs=4, bfs=4" in card
    sampler = ModCSampler.from_pretrained(staged.path, backend="hf", device="cpu", threads=1)
    prompts = ["numbers 3 7 target 10", "numbers 2 5 target 7", "numbers 9 1 target 10",
               "numbers 4 4 target 16"]
    q, _ = HFBackend(batch_size=64, device="cpu", threads=1).mode_preference(staged.path, prompts,
                                                                              MODES)
    k_free, forced = preference_split(q, 8, 0.25, 1.0)
    want = [{"free": k_free, "dfs": int(r[0]), "bfs": int(r[1])} for r in forced]
    got = sampler.budgets(prompts, 8)
    assert got == want and k_free == 2 and all(sum(b.values()) == 8 for b in got)
    # q follows the prompt, so do the counts: the model prefers dfs more on some prompts
    assert len({b["dfs"] for b in got}) > 1 or len({round(x[0], 2) for x in q}) == 1
    samples = sampler.sample(prompts, k=8, max_new_tokens=8)
    for per_prompt, b in zip(samples, got, strict=True):
        modes = [s.mode for s in per_prompt]
        assert modes == [None] * b["free"] + ["dfs"] * b["dfs"] + ["bfs"] * b["bfs"]
    # the same prompt alone gets the same counts and the same samples (seeds are per prompt)
    assert sampler.sample(prompts[1:2], k=8, max_new_tokens=8)[0] == samples[1]
    blind = ModCSampler(staged.path, read_modc(staged.path), _NoFirstToken(sampler.backend))
    with pytest.warns(UserWarning, match="fallback counts"):
        assert blind.budgets(prompts, 8) == [{"free": 0, "dfs": 4, "bfs": 4}] * len(prompts)
    assert sampler.budgets(prompts, 8, split="uniform") == [{"free": 0, "dfs": 4, "bfs": 4}] * 4


def test_the_standard_model_beside_the_prefix_model_follows_the_two_model_split(free_prefix,
                                                                                tmp_path):
    """An entry's with_standard counts (the choice over both models' arms) apply when the arm's
    standard model is loaded beside the prefix model; without it the one-model counts do."""
    out, train, _ = free_prefix
    std = tmp_path / "standard"
    train_model(train, tiny_rows(16, MODES, "validation", seed=1), variant="standard", mode=None,
                modes=MODES, label_source="search_algorithm", arm="tiny",
                model_cfg=ModelParams(scratch=TINY_SCRATCH), train_cfg=TRAIN, steps=5,
                out_dir=std, tokenizer_texts=TINY_TEXTS, progress=False)
    allocation = {"4": {"policy": "uniform", "counts": {"free": 0, "dfs": 2, "bfs": 2},
                        "validation": 0.4,
                        "with_standard": {"policy": "static", "validation": 0.5,
                                          "counts": {"free": 0, "standard": 3, "dfs": 0,
                                                     "bfs": 1}}}}
    staged = _publish(out, tmp_path / "repo", allocation)
    assert "standard=3, bfs=1 (validation 0.500)" in (staged.path / "README.md").read_text()
    alone = ModCSampler.from_pretrained(staged.path, backend="hf", device="cpu", threads=1)
    assert alone.arms == ["free", *MODES] and alone.budget(4) == {"free": 0, "dfs": 2, "bfs": 2}
    pair = ModCSampler.from_pretrained(staged.path, backend="hf", device="cpu", threads=1,
                                       standard=std)
    assert pair.arms == ["free", "standard", *MODES]
    assert pair.budget(4) == {"free": 0, "standard": 3, "dfs": 0, "bfs": 1}
    prompts = ["numbers 3 7 target 10", "numbers 2 5 target 7"]
    got = pair.sample(prompts, k=4, max_new_tokens=8)
    assert [[x.mode for x in per] for per in got] == [[None, None, None, "bfs"]] * 2
    # the standard arm's samples are the standard model's own (same seeds as sampling it alone)
    by_std = ModCSampler.from_pretrained(std, backend="hf", device="cpu", threads=1)
    assert [x.completion for x in got[0][:3]] == [
        x.completion for x in by_std.sample(prompts[:1], k=3, max_new_tokens=8)[0]]
    assert pair.budget(8) == {"free": 0, "standard": 6, "dfs": 0, "bfs": 2}  # nearest k, scaled
    assert pair.budget(4, "standard") == {"free": 0, "standard": 4, "dfs": 0, "bfs": 0}
    with pytest.raises(InputError, match="beside a standard model"):
        ModCSampler.from_pretrained(std, standard=std)


def test_publishing_refuses_an_allocation_the_model_cannot_follow(tmp_path):
    out = _forced_only_prefix(tmp_path / "p")
    with pytest.raises(PublishError, match="free"):
        _publish(out, tmp_path / "repo", {"1": {"policy": "free", "counts": {"free": 1}}})


def test_free_share_in_params_is_checked():
    from modc_data.params_training import TrainJobParams

    with pytest.raises(ValueError, match="free_share is for variant 'prefix'"):
        TrainJobParams(label_source="s", mix="m", variant="standard", free_share=0.5)
    with pytest.raises(ValueError):
        TrainJobParams(label_source="s", mix="m", variant="prefix", free_share=1.5)
    assert TrainJobParams(label_source="s", mix="m", variant="prefix", free_share=0.25).free_share == 0.25
