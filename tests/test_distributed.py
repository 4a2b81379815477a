"""Training as 2 gloo ranks on a CPU (accelerate launch) equals one process with the same global
batch: loss at every step, final weights, token count, one set of outputs; resume under 2 ranks;
an accelerate config file (FSDP, which accelerate runs as DDP on a CPU) gives the same training.
Gradient features computed by 2 ranks, each its shard, merge into the one-process store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from modc_data.labeling.gradient_features import featurize, shard_rows
from modc_data.labeling.gradients import encode_pairs
from modc_data.labeling.projection import FEATURES_FILE, META_FILE, read_feature_meta
from modc_data.modeling import launch
from modc_data.modeling.modc_json import read_modc
from modc_data.params_training import TrainParams
from tests.smoke import env
from tests.test_gradients import PAIRS
from tests.tiny_models import tiny_llama, tiny_tokenizer

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "ddp_train.py"


def _run(out: Path, *args: str, interrupted: bool = False) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out), *args], cwd=REPO,
                          env=env(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=600)
    if interrupted:  # a rank stopped with TrainingInterrupted (exit 3): the launcher stops the other, fails
        assert proc.returncode != 0 and "exitcode  : 3" in proc.stderr, proc.stderr[-3000:]
        return {}
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "model"
    return out, _run(out, "--steps", "8", "--variant", "prefix")["prefix"]


def test_two_ranks_match_one_process_and_resume(one, tmp_path):
    out1, r1 = one
    out2 = tmp_path / "two" / "model"
    # interrupted after step 6 (checkpoint at 4), then resumed: still 2 ranks
    _run(out2, "--steps", "8", "--variant", "prefix", "--processes", "2", "--stop-after", "6",
         interrupted=True)
    assert (out2 / "checkpoint").is_dir() and not (out2 / "model.safetensors").exists()
    r2 = _run(out2, "--steps", "8", "--variant", "prefix", "--processes", "2")["prefix"]
    assert r2["processes"] == 2 and r1["processes"] == 1
    assert len(r1["losses"]) == len(r2["losses"]) == 8
    torch.testing.assert_close(torch.tensor(r2["losses"]), torch.tensor(r1["losses"]), rtol=1e-4, atol=1e-5)
    assert r2["tokens"] == r1["tokens"]  # every row of every batch seen once, by some rank
    _same_weights(out1, out2)
    # one set of outputs, the same files as one process writes, nothing half-written beside
    assert sorted(p.name for p in out2.iterdir()) == sorted(p.name for p in out1.iterdir())
    assert sorted(p.name for p in out2.parent.iterdir()) == ["model"]
    info = read_modc(out2)
    assert info.train["processes"] == 2 and info.train["losses"] == r2["losses"]


def test_two_rank_experts_write_one_group(tmp_path):
    r = _run(tmp_path / "experts", "--steps", "6", "--variant", "experts", "--processes", "2")
    assert set(r) == {"dfs", "bfs"} and all(v["processes"] == 2 for v in r.values())
    group = read_modc(tmp_path / "experts")
    assert group.variant == "experts" and group.train["steps"] == 6


def test_launch_command_starts_n_gloo_ranks_not_one():
    cmd = launch.launch_command(["stages/train.py", "job"], 2, port=29511)
    # --cpu --num_processes 2 silently runs one process; --multi_gpu starts two (gloo on a CPU)
    assert "--multi_gpu" in cmd and "--cpu" not in cmd
    assert cmd[cmd.index("--num_processes") + 1] == "2" and cmd[-2:] == ["stages/train.py", "job"]
    assert launch.should_launch(1) is False


FSDP_CONFIG = """\
compute_environment: LOCAL_MACHINE
distributed_type: FSDP
num_machines: 1
num_processes: 2
mixed_precision: 'no'
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_state_dict_type: FULL_STATE_DICT
"""


def test_an_fsdp_config_on_a_cpu_trains_as_ddp_with_the_same_result(one, tmp_path):
    """accelerate joins CPU processes as MULTI_CPU (gloo DDP) whatever the config's engine: an
    FSDP config file runs here, as DDP, and gives one process's training."""
    out1, r1 = one
    config = tmp_path / "fsdp.yaml"
    config.write_text(FSDP_CONFIG)
    r2 = _run(tmp_path / "model", "--steps", "8", "--variant", "prefix", "--processes", "2",
              "--config", str(config))["prefix"]
    assert r2["processes"] == 2 and r2["engine"] == "MULTI_CPU" and r1["engine"] == "NO"
    torch.testing.assert_close(torch.tensor(r2["losses"]), torch.tensor(r1["losses"]), rtol=1e-4, atol=1e-5)
    _same_weights(out1, tmp_path / "model")
    assert read_modc(tmp_path / "model").train["engine"] == "MULTI_CPU"


def test_processes_that_do_not_join_fail_before_training(tmp_path):
    config = tmp_path / "cpu.yaml"  # use_cpu: accelerate starts 2 processes that never join
    config.write_text(FSDP_CONFIG.replace("FSDP", "MULTI_CPU").split("fsdp_config")[0] + "use_cpu: true\n")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "model"), "--processes", "2",
                           "--config", str(config)], cwd=REPO, env=env(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "did not join one group" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "model").exists()


def test_an_accelerate_config_is_checked_and_named_to_the_launcher(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        launch.check_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bf16.yaml"
    bad.write_text(FSDP_CONFIG.replace("mixed_precision: 'no'", "mixed_precision: bf16"))
    with pytest.raises(ValueError, match="set it to 'no' and use train.bf16"):
        launch.check_config(bad)
    (tmp_path / "other.yaml").write_text("steps: 3\n")
    with pytest.raises(ValueError, match="no distributed_type"):
        launch.check_config(tmp_path / "other.yaml")
    good = tmp_path / "fsdp.yaml"
    good.write_text(FSDP_CONFIG)
    assert launch.check_config(good)["distributed_type"] == "FSDP"
    cmd = launch.launch_command(["stages/train.py", "job"], 2, port=29511, config_file=good)
    assert cmd[cmd.index("--config_file") + 1] == str(good) and "--multi_gpu" not in cmd
    assert launch.should_launch(1, good) and not launch.should_launch(1)


def test_batch_must_split_evenly_over_the_ranks():
    with pytest.raises(ValueError, match=r"batch_size \(30\) must be a multiple of processes \(4\)"):
        TrainParams(batch_size=30, processes=4)


def _features(out: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "ddp_features.py"), str(out), *args],
                          cwd=REPO, env=env(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_two_rank_featurisation_equals_one_process(tmp_path):
    _features(tmp_path / "one")
    out = _features(tmp_path / "two", "--processes", "2")
    assert "rank 0: shards 2 resumed 0" in out and "rank 1: shards 2 resumed 0" in out
    one = np.load(tmp_path / "one" / FEATURES_FILE)
    two = np.load(tmp_path / "two" / FEATURES_FILE)
    np.testing.assert_allclose(two, one, rtol=1e-4, atol=1e-5)
    assert read_feature_meta(tmp_path / "two").rows_done == 15
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir())  # shards merged and removed
    # a rerun finds the merged store whole and computes nothing
    assert "resumed 15" in _features(tmp_path / "two", "--processes", "2")


def test_an_interrupted_shard_resumes_by_itself(tmp_path):
    _features(tmp_path / "one")
    # rank 1's shard finished earlier, rank 0's is half done: as after a crash of rank 0
    tok = tiny_tokenizer()
    model = tiny_llama(tok, seed=6)
    shards = shard_rows(encode_pairs(tok, PAIRS * 3), 2)
    pairs = PAIRS * 3
    kw = {"dim": 16, "seed": 1, "chunk_size": 4, "buffer_bytes": 1}
    for r in (0, 1):
        featurize(model, tok, [pairs[i] for i in shards[r]], tmp_path / "two" / f"shard-{r}-of-2", **kw)
    meta = tmp_path / "two" / "shard-0-of-2" / META_FILE
    meta.write_text(meta.read_text().replace('"rows_done": 8', '"rows_done": 4'))
    out = _features(tmp_path / "two", "--processes", "2")
    assert "rank 0: shards 2 resumed 4" in out and "rank 1: shards 2 resumed 7" in out
    np.testing.assert_allclose(np.load(tmp_path / "two" / FEATURES_FILE),
                               np.load(tmp_path / "one" / FEATURES_FILE), rtol=1e-4, atol=1e-5)
