"""RL rewards and the pass@k objective: the verifier reward on real search traces, the
binding-kept reward, closed-form pass@k advantages against brute force, and the pass@k GRPO
trainer on TRL with a real (tiny) model."""

from __future__ import annotations

import json
import random
from itertools import combinations
from math import sqrt

import numpy as np
import pytest

from modc_data.rl.passk import grouped_passk_advantages, passk_advantages
from modc_data.rl.rewards import BindingReward, VerifierReward
from modc_data.tasks import get_task
from modc_data.tasks.countdown import format_prompt
from modc_data.tasks.countdown_search import bfs, dfs, draw_problem


def brute_force_advantages(correct: list[int], k: int) -> np.ndarray:
    """Every k-subset is an attempt rewarded 1 if any member is correct; a sample's advantage is
    the mean over its subsets of (attempt reward - mean attempt reward), over the sd."""
    n = len(correct)
    subsets = list(combinations(range(n), k))
    reward = {s: float(any(correct[i] for i in s)) for s in subsets}
    rho = float(np.mean(list(reward.values())))
    sigma = sqrt(rho * (1 - rho))
    return np.array([np.mean([reward[s] - rho for s in subsets if i in s]) / (sigma + 1e-6)
                     for i in range(n)])


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_passk_advantages_equal_brute_force(n):
    rng = np.random.default_rng(n)
    for k in range(1, n + 1):
        for c in range(n + 1):
            correct = rng.permutation([1] * c + [0] * (n - c)).tolist()
            closed = passk_advantages(np.array(correct), k)
            np.testing.assert_allclose(closed, brute_force_advantages(correct, k), atol=1e-9)
            assert abs(closed.sum()) < 1e-9  # TRL's mean subtraction leaves them unchanged


def test_passk_advantages_at_k1_are_grpo_and_groups_split():
    r = np.array([1, 0, 0, 1, 0, 1, 1, 1])
    adv = grouped_passk_advantages(r, 4, 1)
    for g, a in zip(r.reshape(2, 4), adv.reshape(2, 4), strict=True):
        p = g.mean()  # k = 1: (r - mean) / population sd, GRPO's group normalisation
        np.testing.assert_allclose(a, (g - p) / (np.sqrt(p * (1 - p)) + 1e-6), atol=1e-9)
    with pytest.raises(ValueError, match="groups of 3"):
        grouped_passk_advantages(r, 3, 1)
    with pytest.raises(ValueError, match="1 <= k <= group size 4"):
        passk_advantages(r[:4], 5)
    with pytest.raises(ValueError, match="0 or 1"):
        passk_advantages(np.array([0.5, 1.0]), 1)


def _countdown_rows(count: int) -> list[tuple[dict, str, str, bool]]:
    """(problem row, mode, trace, solved) for real BFS and DFS traces of random problems."""
    rng = random.Random(0)
    out = []
    while len(out) < count:
        nums, target = draw_problem(rng, 4, 1, 30)
        row = {"problem_id": f"p{len(out)}", "prompt": format_prompt(nums, target),
               "meta": json.dumps({"nums": list(nums), "target": target})}
        for mode, search in (("bfs", bfs), ("dfs", dfs)):
            res = search(nums, target, 40)
            out.append((row, mode, res.trace, res.solved))
    return out


def _columns(rows: list[dict], modes: list[str]) -> dict[str, list]:
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    return {**cols, "mode": modes, "trainer_state": None, "log_metric": print}


def test_verifier_reward_equals_the_task_verifier_on_real_traces():
    task = get_task("countdown")
    data = _countdown_rows(40)
    rows, modes, texts, solved = (list(x) for x in zip(*data, strict=True))
    texts[0] = texts[0] + " garbage"  # odd completions are scored, never crash
    rewards = VerifierReward(task)(prompts=[r["prompt"] for r in rows], completions=texts,
                                   **_columns(rows, modes))
    assert rewards == [float(task.score(r, t)[1]) for r, t in zip(rows, texts, strict=True)]
    assert 0 < sum(rewards) < len(rewards)  # both verdicts occur
    assert [bool(x) for x in rewards[1:]] == solved[1:]


def test_binding_reward_is_zero_for_a_correct_completion_in_the_wrong_mode():
    task = get_task("countdown")
    data = [d for d in _countdown_rows(80) if d[3] and task.detect_mode(d[2]) == d[1]]
    assert len(data) >= 4
    rows = [d[0] for d in data]
    texts = [d[2] for d in data]
    asked = [d[1] for d in data]
    other = ["dfs" if m == "bfs" else "bfs" for m in asked]
    reward = BindingReward(task)
    kept = reward(prompts=[""] * len(rows), completions=texts, **_columns(rows, asked))
    wrong = reward(prompts=[""] * len(rows), completions=texts, **_columns(rows, other))
    assert kept == [1.0] * len(rows) and wrong == [0.0] * len(rows)
    with pytest.raises(ValueError, match="'mode' column"):
        reward(prompts=[""], completions=texts[:1], meta=[rows[0]["meta"]])
    with pytest.raises(ValueError, match="cannot tell which mode"):
        BindingReward(get_task("math"))


def test_passk_trainer_trains_on_closed_form_advantages_with_trl(tmp_path):
    """Real TRL GRPO on a tiny model: the advantages TRL trains on are the pass@k ones."""
    import datasets
    import torch
    from trl import GRPOConfig

    from modc_data.modeling.models import build_scratch_model
    from modc_data.modeling.tokenizer import build_word_tokenizer
    from modc_data.params_training import ScratchModelParams
    from modc_data.rl.passk import passk_trainer_class

    data = _countdown_rows(4)
    tok = build_word_tokenizer([d[0]["prompt"] + " " + d[2] for d in data])
    model = build_scratch_model(ScratchModelParams(), tok, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    ds = datasets.Dataset.from_list([{**d[0], "mode": d[1]} for d in data])
    given: list[list[float]] = []

    def even_length(prompts, completions, **_):  # a 0/1 reward both ways on a random model
        out = [float(len(c.split()) % 2 == 0) for c in completions]
        given.append(out)
        return out

    base = passk_trainer_class()
    seen: list[torch.Tensor] = []

    class Spy(base):
        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            seen.append(out["advantages"].detach().clone())
            return out

    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=16, max_steps=3, learning_rate=1e-3, beta=0.0,
                      scale_rewards="none", report_to=[], use_cpu=True, save_strategy="no",
                      logging_steps=1, seed=0)
    with pytest.raises(ValueError, match="scale_rewards='none'"):
        base(model=model, processing_class=tok, reward_funcs=[even_length], train_dataset=ds,
             args=GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=8,
                             num_generations=4, report_to=[], use_cpu=True), passk_k=2)
    trainer = Spy(model=model, processing_class=tok, reward_funcs=[even_length],
                  train_dataset=ds, args=args, passk_k=2)
    trainer.train()
    assert len(seen) == len(given) == 3
    for adv, rewards in zip(seen, given, strict=True):
        np.testing.assert_allclose(adv.numpy(), grouped_passk_advantages(np.array(rewards), 4, 2),
                                   atol=1e-5)
    assert any(not np.allclose(a.numpy(), 0) for a in seen)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def _problems(n: int = 6) -> list[dict]:
    """Countdown-like problem rows whose words the tiny tokenizer knows."""
    return [{"problem_id": f"p{i}", "prompt": f"numbers {i} {i + 3} target {2 * i + 3}",
             "meta": json.dumps({"nums": [i, i + 3], "target": 2 * i + 3})} for i in range(n)]


def _even_length(prompts, completions, **_):
    """A 0/1 reward both values of which a random tiny model earns (the verifier gives it 0)."""
    return [float(len(c.split()) % 2 == 0) for c in completions]


_even_length.__name__ = "even_length"
SETTINGS = dict(steps=4, prompts_per_step=2, group_size=4, max_new_tokens=8, lr=5e-3,
                save_every=2, seed=0)


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(next(path.glob("*.safetensors"))))


def test_rl_checkpoints_load_and_sample_like_trained_ones(tmp_path):
    from modc_data.modeling.modc_json import read_modc
    from modc_data.rl.grpo import RLSettings, rl_checkpoint, rl_prompts
    from modc_data.sampler import ModCSampler
    from tests.tiny_models import make_tiny_checkpoint

    rows = rl_prompts(_problems(8), ["bfs", "dfs"], seed=0)
    assert sorted(r["mode"] for r in rows) == ["bfs"] * 4 + ["dfs"] * 4
    assert all(r["prompt"].startswith(f"<mode:{r['mode']}> numbers ") for r in rows)
    task = get_task("countdown")
    for variant in ("prefix", "experts"):
        start = make_tiny_checkpoint(tmp_path / variant, variant, ["bfs", "dfs"])
        out = tmp_path / f"{variant}-rl"
        settings = RLSettings(method="passk", passk_k=2, **SETTINGS)
        rl_checkpoint(start, out, _problems(), task, settings, reward=_even_length)
        info = read_modc(out)
        assert info.variant == variant and info.modes == ["bfs", "dfs"]
        rl = info.train["rl"]
        if variant == "experts":  # the steps split between the experts: equal compute
            assert [r["steps"] for r in rl["experts"].values()] == [2, 2]
            assert all(read_modc(out / d).train["rl"]["method"] == "passk"
                       for d in info.experts.values())
        else:
            assert rl["steps"] == 4 and rl["completions"] == 4 * 2 * 4 and rl["tokens"] > 0
            assert not (out / "_rl_state").exists()
            assert any(not torch_equal(a, _weights(start)[k]) for k, a in _weights(out).items())
        samples = ModCSampler.from_pretrained(out).sample(["numbers 3 7 target 22"], k=4,
                                                          max_new_tokens=6)
        assert sorted({s.mode for s in samples[0]}) == ["bfs", "dfs"]


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_interrupted_rl_resumes_to_the_same_result(tmp_path):
    from transformers import TrainerCallback

    from modc_data.rl.grpo import RLSettings, rl_one
    from tests.tiny_models import make_tiny_checkpoint

    class Interrupt(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise KeyboardInterrupt("interrupted after the step-2 checkpoint")

    start = make_tiny_checkpoint(tmp_path / "standard", "standard")
    settings = RLSettings(**SETTINGS)
    task = get_task("countdown")
    whole = rl_one(start, tmp_path / "whole", _problems(), task, settings, reward=_even_length)
    with pytest.raises(KeyboardInterrupt):
        rl_one(start, tmp_path / "resumed", _problems(), task, settings, reward=_even_length,
               callbacks=[Interrupt()])
    assert (tmp_path / "resumed" / "_rl_state" / "checkpoint-2").is_dir()
    assert not (tmp_path / "resumed" / "modc.json").exists()  # nothing half-written
    resumed = rl_one(start, tmp_path / "resumed", _problems(), task, settings, reward=_even_length)
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and all(torch_equal(a[k], b[k]) for k in a)
    assert any(not torch_equal(a[k], _weights(start)[k]) for k in a)
    assert resumed["steps"] == whole["steps"] == 4


def _table(model, variant, modes, p_of, p_follow, n=8, problems=40, seed=0):
    """Samples whose success probability depends on the problem and mode: ``p_of(i, mode)``."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(problems):
        for m in modes or [None]:
            for j in range(n):
                follow = m is not None and rng.random() < p_follow
                det = m if follow else ("bfs" if m == "dfs" else "dfs") if m else None
                rows.append({"problem_id": f"p{i:02d}", "split": "test", "model": model,
                             "variant": variant, "mode": m, "sample_idx": j,
                             "correct": bool(rng.random() < p_of(i, m)), "detected_mode": det})
    return rows


def _samples_table(model: str, variant: str, modes, p_correct, p_follow, n=4, problems=30, seed=0):
    """A samples table (the columns evaluation reads) with known success and following rates."""
    return _table(model, variant, modes, lambda i, m: p_correct, p_follow, n, problems, seed)


def test_rl_section_reports_pass_at_k_change_and_mode_following():
    import polars as pl

    from modc_data.evaluation.rl_sections import RLJob, rl_section

    modes = ("bfs", "dfs")
    samples = pl.DataFrame(
        _samples_table("a-prefix", "prefix", modes, 0.2, 0.95, seed=1)
        + _samples_table("a-grpo-prefix", "prefix", modes, 0.6, 0.40, seed=2)
        + _samples_table("a-standard", "standard", None, 0.3, 0, seed=3)
        + _samples_table("a-grpo-standard", "standard", None, 0.3, 0, seed=4))
    jobs = [RLJob("a-grpo-prefix", "a-prefix", "prefix", modes, "GRPO, reward verifier, 2 steps"),
            RLJob("a-grpo-standard", "a-standard", "standard", ())]
    text, rows = rl_section(samples, jobs, [1, 2, 4], n_resamples=300)
    by = {(r["job"], r["quantity"]): r for r in rows}
    d = by[("a-grpo-prefix", "pass@k RL − start")]
    assert d["k"] == [1, 2, 4] and all(lo > 0 for lo in d["low"])  # 0.6 vs 0.2 per sample
    f = by[("a-grpo-prefix", "mode-following, RL − start")]
    assert abs(f["start_rate"] - 0.95) < 0.05 and abs(f["rl_rate"] - 0.40) < 0.08 and f["high"][0] < 0
    assert ("a-grpo-standard", "mode-following, RL − start") not in by  # no modes, no binding
    assert "## RL after SFT" in text and "RL loosened the binding" in text
    assert "### a-grpo-prefix from a-prefix, test (30 problems): GRPO, reward verifier, 2 steps" in text


def test_rl_state_of_other_settings_is_not_resumed(tmp_path):
    from modc_data.rl.grpo import STATE_DIR, RLSettings, rl_one
    from tests.tiny_models import make_tiny_checkpoint

    start = make_tiny_checkpoint(tmp_path / "standard", "standard")
    stale = tmp_path / "out" / STATE_DIR / "checkpoint-2"
    stale.mkdir(parents=True)  # left by an interrupted run with unknown settings
    (stale / "trainer_state.json").write_text("{}")
    rec = rl_one(start, tmp_path / "out", _problems(), get_task("countdown"),
                 RLSettings(**{**SETTINGS, "steps": 2}), reward=_even_length)
    assert rec["steps"] == 2 and (tmp_path / "out" / "modc.json").exists()


def test_rl_section_says_when_mode_following_cannot_be_measured():
    import polars as pl

    from modc_data.evaluation.rl_sections import RLJob, rl_section

    modes = ("bfs", "dfs")
    rows = (_samples_table("a-prefix", "prefix", modes, 0.2, 0.9, seed=1)
            + _samples_table("a-grpo-prefix", "prefix", modes, 0.3, 0.9, seed=2))
    samples = pl.DataFrame([{**r, "detected_mode": None} for r in rows],
                           schema_overrides={"detected_mode": pl.String})
    text, rows = rl_section(samples, [RLJob("a-grpo-prefix", "a-prefix", "prefix", modes)], [1, 2],
                            n_resamples=100)
    assert not [r for r in rows if r["quantity"].startswith("mode-following")]
    assert "Not measured: no sample of the start or of the RL'd model has a detectable mode" in text


def test_rl_section_answers_the_four_questions_from_paired_cis(tmp_path):
    """Standard solves half the problems; each prefix mode solves its own half. Before RL the
    prefix model trails at k = 1; after RL it matches at k = 1 and leads from k = 2, also against
    the pass@k-RL'd standard; plain RL loosens the binding, the binding reward keeps it."""
    import polars as pl

    from modc_data.evaluation.rl_sections import RLJob, rl_section

    modes = ("bfs", "dfs")

    def std(p):
        return lambda i, m: p if i < 20 else 0.0

    def split_modes(p):
        return lambda i, m: p if (i < 20) == (m == "dfs") else 0.0

    samples = pl.DataFrame(
        _table("a-standard", "standard", None, std(0.6), 0, seed=1)
        + _table("a-prefix", "prefix", modes, split_modes(0.15), 0.95, seed=2)
        + _table("a-grpo-standard", "standard", None, std(0.6), 0, seed=3)
        + _table("a-passk-standard", "standard", None, std(0.8), 0, seed=4)
        + _table("a-grpo-prefix", "prefix", modes, split_modes(0.6), 0.40, seed=5)
        + _table("a-bind-prefix", "prefix", modes, split_modes(0.6), 0.95, seed=6),
        schema_overrides={"mode": pl.String, "detected_mode": pl.String}, infer_schema_length=None)
    jobs = [RLJob("a-grpo-standard", "a-standard", "standard", (), arm="a"),
            RLJob("a-passk-standard", "a-standard", "standard", (), method="passk", arm="a"),
            RLJob("a-grpo-prefix", "a-prefix", "prefix", modes, "GRPO, reward verifier", arm="a"),
            RLJob("a-bind-prefix", "a-prefix", "prefix", modes, "GRPO, reward verifier and mode",
                  binding=True, arm="a")]
    text, rows = rl_section(samples, jobs, [1, 2, 4, 8], n_resamples=400, figures_dir=tmp_path)
    vs = {(r["modc"], r["standard"], r["quantity"]): r for r in rows if "modc" in r}
    sft, rl = vs[("a-grpo-prefix", "a-grpo-standard", "SFT")], vs[("a-grpo-prefix", "a-grpo-standard", "RL")]
    assert sft["high"][0] < 0 and rl["low"][0] < 0 < rl["high"][0]  # gap at k = 1 closed by RL
    assert all(lo > 0 for lo in rl["low"][1:])  # prefix leads from k = 2
    assert ("a-bind-prefix", "a-passk-standard", "RL") in vs and not any(
        r["standard"] == "a-grpo-prefix" for r in rows if "modc" in r)
    answers = text.split("### Answers")[1].split("![")[0]
    assert "a-grpo-prefix − a-grpo-standard: SFT" in answers and "RL closes it" in answers
    assert "a-grpo-prefix − a-grpo-standard: yes, at every k from 2 to 8" in answers
    assert "a-grpo-prefix (grpo) − a-passk-standard: yes, at every k from 2 to 8" in answers
    q3 = answers.split("3. **")[1].split("4. **")[0]
    assert "a-grpo-prefix (GRPO, reward verifier): follows the requested mode" in q3
    assert "RL loosened the binding" in q3.split("a-bind-prefix")[0]
    assert "no significant change" in q3.split("a-bind-prefix")[1]
    assert (tmp_path / "rl-test.png").stat().st_size > 0 and "](figures/rl-test.png)" in text


def test_rl_under_two_processes_writes_one_checkpoint_that_loads(tmp_path):
    """accelerate launch with 2 gloo processes, as the rl stage relaunches itself: each takes
    half of a step's rollouts; one checkpoint with the same RL compute as one process."""
    import subprocess
    import sys
    from pathlib import Path

    from modc_data.modeling.modc_json import read_modc
    from modc_data.sampler import ModCSampler
    from tests.smoke import env

    repo = Path(__file__).resolve().parents[1]
    start, out = tmp_path / "prefix", tmp_path / "prefix-rl"
    proc = subprocess.run([sys.executable, "tests/ddp_rl.py", str(start), str(out),
                           "--processes", "2"], cwd=repo, capture_output=True, text=True,
                          env=env(PYTHONPATH=str(repo), OMP_NUM_THREADS="1"), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["processes"] == 2 and record["steps"] == SETTINGS["steps"]
    rl = read_modc(out).train["rl"]
    assert rl["processes"] == 2 and rl["completions"] == 4 * 2 * 4 and rl["tokens"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prefix", "prefix-rl"]  # no .tmp left
    assert not (out / "_rl_state").exists()
    assert any(not torch_equal(a, _weights(start)[k]) for k, a in _weights(out).items())
    samples = ModCSampler.from_pretrained(out).sample(["numbers 3 7 target 22"], k=2,
                                                      max_new_tokens=4)
    assert sorted({s.mode for s in samples[0]}) == ["bfs", "dfs"]
