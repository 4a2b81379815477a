"""Measured choices (modc_data.autotune): the fastest candidate wins, verdicts are cached per
CPU + torch version + shape, and thread counts fit the free cores."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modc_data import autotune


def slow(which, factor: float = 50.0):
    """A timer that really runs each step and reports ``which`` (a name, or a test on names) as
    ``factor`` times slower."""
    is_slow = which if callable(which) else which.__eq__

    def timer(name, step):
        secs = autotune.wall_timer(name, step) + 1e-3
        return secs * factor if is_slow(name) else secs

    return timer


def counting(names):
    calls = dict.fromkeys(names, 0)

    def make(name):
        def step():
            calls[name] += 1
            sum(range(200))  # some real work to time

        return step

    return calls, {n: make(n) for n in names}


@pytest.mark.parametrize("slow_one", ["off", "on"])
def test_auto_picks_the_candidate_that_is_not_slow(slow_one, tmp_path):
    calls, steps = counting(["off", "on"])
    v = autotune.choose("train.bf16", steps, shape="s", cache=None, timer=slow(slow_one))
    assert v.choice == ("on" if slow_one == "off" else "off")
    assert v.source == "measured"
    assert v.timings_ms[slow_one] > 2 * v.timings_ms[v.choice]
    # warm-up plus at least min_rounds timed rounds, each candidate alike
    assert calls["off"] == calls["on"] >= 2 + 3


def test_a_tie_keeps_the_reference(tmp_path):
    _, steps = counting(["float32", "bfloat16"])
    v = autotune.choose("x", steps, shape="s", timer=slow("float32", 1.02), margin=0.05)
    assert v.choice == "float32"  # 2% faster is within the margin: the reference stays


def test_one_candidate_is_not_measured():
    v = autotune.choose("x", {"float32": lambda: pytest.fail("must not run")}, shape="s")
    assert (v.choice, v.source, v.timings_ms) == ("float32", "only candidate", {})


def test_cache_is_reused_and_keyed_by_cpu_and_torch(tmp_path, monkeypatch):
    cache = tmp_path / "cache" / "autotune.json"
    here = autotune.cpu_model()
    calls, steps = counting(["off", "on"])
    first = autotune.choose("train.bf16", steps, shape="s", cache=cache, timer=slow("on"))
    runs = dict(calls)
    again = autotune.choose("train.bf16", steps, shape="s", cache=cache, timer=slow("off"))
    assert again.source == "cache" and again.choice == first.choice == "off"
    assert calls == runs, "a cache hit must not run any step"
    entries = json.loads(cache.read_text())
    (entry,) = entries.values()
    assert entry["cpu"] == here and entry["torch"] == torch.__version__

    # another shape, another CPU, another torch: each measures again and gets its own entry
    assert autotune.choose("train.bf16", steps, shape="t", cache=cache, timer=slow("off")).source == "measured"
    monkeypatch.setattr(autotune, "cpu_model", lambda: "Some Other CPU")
    other_cpu = autotune.choose("train.bf16", steps, shape="s", cache=cache, timer=slow("off"))
    assert (other_cpu.source, other_cpu.choice) == ("measured", "on")
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    assert autotune.choose("train.bf16", steps, shape="s", cache=cache, timer=slow("off")).source == "measured"
    entries = json.loads(cache.read_text())
    assert len(entries) == 4
    assert {e["cpu"] for e in entries.values()} == {here, "Some Other CPU"}
    assert {e["torch"] for e in entries.values()} >= {"9.9.9"}
    # a oneDNN ISA cap (no AMX kernels, say) is another machine as far as bf16 goes
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    capped = autotune.choose("train.bf16", steps, shape="s", cache=cache, timer=slow("on"))
    assert (capped.source, capped.choice) == ("measured", "off")
    assert json.loads(cache.read_text())[capped.key]["onednn_isa"] == "AVX512_CORE_BF16"
    again = autotune.choose("train.bf16", steps, shape="s", cache=cache, timer=slow("off"))
    assert (again.source, again.choice) == ("cache", "off")


def test_unreadable_cache_measures_again(tmp_path):
    cache = tmp_path / "autotune.json"
    cache.write_text("{not json")
    _, steps = counting(["off", "on"])
    with pytest.warns(UserWarning, match="unreadable autotune cache"):
        v = autotune.choose("x", steps, shape="s", cache=cache, timer=slow("on"))
    assert v.source == "measured"
    assert json.loads(cache.read_text())[v.key]["choice"] == "off"


# --------------------------------------------------------------------------- threads
def test_user_thread_count_is_used_as_set():
    def busy():
        raise AssertionError("a set thread count must not look at the load")

    for n in (1, 3, 64):
        assert autotune.resolve_threads(n, busy=busy) == (n, {"threads": n, "source": "user"})


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 64), st.floats(0, 64))
def test_auto_threads_fit_the_free_cores(a, b):
    cpus = len(autotune.usable_cpus())
    lo, hi = sorted((a, b))
    t_lo, rec = autotune.resolve_threads("auto", busy=lambda: lo)
    t_hi, _ = autotune.resolve_threads("auto", busy=lambda: hi)
    assert 1 <= t_hi <= t_lo <= cpus  # more load never means more threads
    assert rec["source"] == "auto" and rec["cpus"] == cpus
    assert autotune.resolve_threads("auto", busy=lambda: 0.0)[0] == cpus
    if cpus >= 2:  # one CPU-bound process takes one core
        assert autotune.resolve_threads("auto", busy=lambda: 1.0)[0] == cpus - 1


def test_busy_cores_measures_this_machine():
    load = autotune.busy_cores(0.05)
    assert 0.0 <= load <= len(autotune.usable_cpus()) + 1e-6
