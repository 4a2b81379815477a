"""ModCSampler: budget split properties, and real sampling of published tiny checkpoints
(prefix model and experts group) from a fresh process, tagged with their modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modc_data.budget import split_budget
from modc_data.modeling.modc_json import ModcInfo, read_modc, write_modc
from modc_data.sampler import ModCSampler, shipped_budget
from tests.test_publish import make_release, run_publish
from tests.tiny_models import make_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
MODES = st.lists(st.text("abcdefgh:", min_size=1, max_size=6), min_size=1, max_size=6, unique=True)


@settings(max_examples=50)
@given(k=st.integers(0, 300), modes=MODES)
def test_uniform_split_sums_to_k_and_is_even(k, modes):
    b = split_budget(k, modes)
    assert list(b) == modes and sum(b.values()) == k
    assert max(b.values()) - min(b.values()) <= 1
    # remainder goes to the earliest modes: counts never increase along the mode order
    assert list(b.values()) == sorted(b.values(), reverse=True)


@settings(deadline=None, max_examples=50)
@given(k=st.integers(0, 300), data=st.data(), modes=MODES)
def test_weighted_split_within_one_of_exact_share(k, data, modes):
    w = data.draw(st.lists(st.floats(0, 10, allow_nan=False), min_size=len(modes),
                           max_size=len(modes)).filter(lambda x: sum(x) > 1e-3))
    b = split_budget(k, modes, dict(zip(modes, w, strict=True)))
    assert sum(b.values()) == k
    for m, x in zip(modes, w, strict=True):
        assert abs(b[m] - k * x / sum(w)) < 1 + 1e-9
    assert b == split_budget(k, modes, dict(zip(modes, w, strict=True)))  # deterministic


def test_split_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown modes"):
        split_budget(4, ["dfs", "bfs"], {"xfs": 1.0})
    with pytest.raises(ValueError, match="positive sum"):
        split_budget(4, ["dfs", "bfs"], {"dfs": 0.0})
    with pytest.raises(ValueError, match="k must be"):
        split_budget(-1, ["dfs"])


def test_sample_prefix_and_experts_from_published_repos_in_fresh_process(tmp_path):
    inputs = make_release(tmp_path / "in", configs=("search_algorithm-balanced",))
    run_publish(inputs, tmp_path / "hub")
    models = tmp_path / "hub" / "models" / "modc"
    code = f"""
import json
from modc_data.sampler import ModCSampler
out = {{}}
for v in ("prefix", "experts"):
    s = ModCSampler.from_pretrained({str(models)!r} + "/modc-countdown-search_algorithm-balanced-" + v)
    res = s.sample(["numbers 3 7 9 target 22", "numbers 2 5 8 target 18"], k=8, max_new_tokens=6)
    again = s.sample(["numbers 3 7 9 target 22", "numbers 2 5 8 target 18"], k=8, max_new_tokens=6)
    out[v] = {{"modes": s.modes, "records": [[[m, c] for m, c in r] for r in res],
              "same": res == again}}
print(json.dumps(out))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    for v in ("prefix", "experts"):
        assert got[v]["modes"] == ["dfs", "bfs"]
        assert got[v]["same"]  # seeded
        assert len(got[v]["records"]) == 2
        for recs in got[v]["records"]:
            assert len(recs) == 8
            assert Counter(m for m, _ in recs) == {"dfs": 4, "bfs": 4}
            assert all(isinstance(c, str) for _, c in recs)


def test_experts_use_their_own_checkpoint_and_remainder_split(tmp_path):
    group = make_tiny_checkpoint(tmp_path / "experts", "experts", ["dfs", "bfs", "cot"])
    s = ModCSampler.from_pretrained(group)
    calls = []
    real = s.backend.generate

    def spy(model, prompts, **kw):  # records which checkpoint each mode is sampled from
        calls.append((Path(model).name, kw["mode"], kw["n"]))
        return real(model, prompts, **kw)

    s.backend.generate = spy
    res = s.sample(["numbers 1 4 6 target 10"], k=7, max_new_tokens=4)
    assert calls == [("dfs", None, 3), ("bfs", None, 2), ("cot", None, 2)]
    assert [m for m, _ in res[0]] == ["dfs"] * 3 + ["bfs"] * 2 + ["cot"] * 2
    # the other seed gives other samples (the tiny model is random, so text differs)
    assert s.sample(["numbers 1 4 6 target 10"], k=7, max_new_tokens=4, seed=1) != res


def test_prefix_samples_under_mode_token_and_standard_has_no_modes(tmp_path):
    prefix = ModCSampler.from_pretrained(make_tiny_checkpoint(tmp_path / "p", "prefix", ["dfs", "bfs"]))
    seen = []
    real = prefix.backend.generate
    prefix.backend.generate = lambda model, prompts, **kw: (seen.append(kw["mode"]),
                                                             real(model, prompts, **kw))[1]
    res = prefix.sample(["numbers 3 7 9 target 22"], k=3, split={"dfs": 2, "bfs": 1},
                        max_new_tokens=4)
    assert seen == ["dfs", "bfs"] and [m for m, _ in res[0]] == ["dfs", "dfs", "bfs"]
    std = ModCSampler.from_pretrained(make_tiny_checkpoint(tmp_path / "s", "standard"))
    assert std.modes == []
    assert [m for m, _ in std.sample(["numbers 3 7 9 target 22"], k=3, max_new_tokens=4)[0]] == [None] * 3


def test_not_a_modc_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="modc.json"):
        ModCSampler.from_pretrained(tmp_path)


def test_cli_sample_prints_mode_tagged_json(tmp_path, capsys):
    from modc_data.cli import main

    ckpt = make_tiny_checkpoint(tmp_path / "p", "prefix", ["dfs", "bfs"])
    assert main(["sample", str(ckpt), "--prompt", "numbers 3 7 9 target 22", "-k", "4",
                 "--max-new-tokens", "4"]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert Counter(x["mode"] for x in recs) == {"dfs": 2, "bfs": 2}


# --------------------------------------------------------------------------- shipped allocation
def with_allocation(ckpt: Path, allocation: dict, free_sampling: bool) -> Path:
    info = read_modc(ckpt)
    info.allocation, info.free_sampling = allocation, free_sampling
    write_modc(ckpt, info)
    return ckpt


SHIPPED = {
    "1": {"policy": "free", "counts": {"free": 1, "dfs": 0, "bfs": 0}},
    "4": {"policy": "uniform", "counts": {"free": 0, "dfs": 2, "bfs": 2}},
    "8": {"policy": "static", "counts": {"free": 2, "dfs": 5, "bfs": 1}},
}


def test_auto_split_follows_the_shipped_policy_per_prompt(tmp_path):
    ckpt = with_allocation(make_tiny_checkpoint(tmp_path / "p", "prefix", ["dfs", "bfs"]), SHIPPED, True)
    s = ModCSampler.from_pretrained(ckpt)
    assert s.arms == ["free", "dfs", "bfs"]
    calls = []
    real = s.backend.generate
    s.backend.generate = lambda model, prompts, **kw: (calls.append((kw["mode"], kw["n"])),
                                                       real(model, prompts, **kw))[1]
    prompts = ["numbers 3 7 9 target 22", "numbers 2 5 8 target 18"]
    # k=16 was not validated: the nearest validated k (8) gives the weights
    expected = {1: {None: 1}, 4: {"dfs": 2, "bfs": 2}, 8: {None: 2, "dfs": 5, "bfs": 1},
                16: {None: 4, "dfs": 10, "bfs": 2}}
    for k, want in expected.items():
        calls.clear()
        res = s.sample(prompts, k=k, max_new_tokens=3)
        for recs in res:
            assert Counter(m for m, _ in recs) == want
        # free samples go out with no mode token, forced ones with theirs; once per arm
        assert calls == [(m, n) for m, n in want.items()]
    assert s.budget(8, "uniform") == {"free": 0, "dfs": 4, "bfs": 4}
    assert s.budget(8, "free") == {"free": 8, "dfs": 0, "bfs": 0}
    assert s.budget(5, {"free": 1, "bfs": 4}) == {"free": 1, "dfs": 0, "bfs": 4}


@settings(deadline=None, max_examples=60)
@given(k=st.integers(0, 200), table=st.dictionaries(
    st.integers(1, 64), st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 9)).filter(any),
    min_size=1, max_size=5))
def test_shipped_budget_sums_to_k_for_every_k(k, table):
    info = ModcInfo(variant="prefix", label_source="search_algorithm", modes=["dfs", "bfs"],
                    free_sampling=True)
    # a validated entry sums to its own k: scale the drawn weights into counts of that k
    info.allocation = {}
    for kk, w in table.items():
        b = split_budget(kk, ["free", "dfs", "bfs"], dict(zip(["free", "dfs", "bfs"], w, strict=True)))
        info.allocation[str(kk)] = {"policy": "static", "counts": b}
    got = shipped_budget(info, k)
    assert sum(got.values()) == k and min(got.values()) >= 0
    if str(k) in info.allocation:
        assert got == info.allocation[str(k)]["counts"]


def test_models_that_cannot_sample_freely_refuse_free_arms(tmp_path):
    ckpt = with_allocation(make_tiny_checkpoint(tmp_path / "p", "prefix", ["dfs", "bfs"]), SHIPPED, False)
    s = ModCSampler.from_pretrained(ckpt)
    assert s.arms == ["dfs", "bfs"]
    with pytest.raises(ValueError, match="cannot sample without a mode token"):
        s.budget(4, "free")
    with pytest.raises(ValueError, match="cannot sample freely"):
        s.budget(4, {"free": 1.0, "dfs": 1.0})
    with pytest.raises(ValueError, match=r"arms \['free'\] are not among"):
        s.budget(1, "auto")  # the shipped k=1 policy needs free sampling
    assert s.budget(4, "auto") == {"dfs": 2, "bfs": 2}
    pref = {"2": {"policy": "preference", "free_share": 0.5, "beta": -1.0}}
    with_allocation(ckpt, pref, False)
    with pytest.raises(ValueError, match="ships no per-arm counts"):
        ModCSampler.from_pretrained(ckpt).budget(2, "auto")
    # nothing shipped (checkpoints before the allocation existed): auto is uniform
    with_allocation(ckpt, {}, False)
    assert ModCSampler.from_pretrained(ckpt).budget(5, "auto") == {"dfs": 3, "bfs": 2}


def test_cli_sample_applies_the_shipped_policy_and_free_flag(tmp_path, capsys):
    from modc_data.cli import main

    ckpt = with_allocation(make_tiny_checkpoint(tmp_path / "p", "prefix", ["dfs", "bfs"]), SHIPPED, True)
    args = ["sample", str(ckpt), "--prompt", "numbers 3 7 9 target 22", "--max-new-tokens", "3"]
    assert main([*args, "-k", "8"]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert Counter(x["mode"] for x in recs) == {None: 2, "dfs": 5, "bfs": 1}
    assert main([*args, "-k", "3", "--split", "free"]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert Counter(x["mode"] for x in recs) == {None: 3}
