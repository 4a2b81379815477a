"""Typed params: every profile validates, and malformed params fail with the field named."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modc_data.config import ParamsError, load_params, parse_params
from modc_data.profiles import load_profile

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", ["params.yaml", *sorted(p.name for p in (ROOT / "profiles").glob("*.yaml"))])
def test_every_profile_validates(path):
    full = ROOT / path if path == "params.yaml" else ROOT / "profiles" / path
    params = load_profile(full)
    assert params.countdown.budget > 0


def _default() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda d: d["countdown"].update(budget=0), "countdown.budget"),
        (lambda d: d["countdown"].update(budget=-3), "countdown.budget"),
        (lambda d: d["countdown"].update(n_numbers="three"), "countdown.n_numbers"),
        (lambda d: d["train"].update(stepz=10), "train.stepz"),
        (lambda d: d.update(unknown_block={}), "unknown_block"),
        (lambda d: d["labels"]["mixes"].update(bad={"dfs": 0.7, "bfs": 0.7}), "labels.mixes"),
        (lambda d: d["labels"]["mixes"].update(bad="rejekt"), "labels.mixes"),
        (lambda d: d["train_jobs"]["search_algorithm-skewed-prefix"].update(mix="nope"), "train_jobs"),
        (lambda d: d["sample"].update(backend="tgi"), "sample.backend"),
        (lambda d: d["train"].update(objective="pass@n"), "train.objective"),
        (lambda d: d["train"].update(pass_at_n={"N": 0}), "train.pass_at_n.N"),
        (lambda d: d["train_jobs"]["search_algorithm-skewed-prefix"].update(pass_at_n={"n": 8}), "pass_at_n.n"),
        (lambda d: d["train"].update(threads=0), "train.threads"),
        (lambda d: d["sample"].update(threads="all"), "sample.threads"),
        (lambda d: d["gradient_cluster"].update(threads=True), "gradient_cluster.threads"),
        (lambda d: d["sample"].update(decoder="beam"), "sample.decoder"),
        (lambda d: d["train_jobs"]["search_algorithm-skewed-prefix"].update(shared_steps=10),
         "shared_steps is for variant 'experts'"),
    ],
)
def test_malformed_params_name_the_field(edit, field):
    data = _default()
    edit(data)
    with pytest.raises(ParamsError) as err:
        parse_params(data)
    assert field in str(err.value)


def test_stage_fails_before_any_work(tmp_path):
    """A stage run on a bad params.yaml exits non-zero, names the field and writes nothing."""
    data = _default()
    data["countdown"]["budget"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "generate.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode != 0
    assert "countdown.budget" in proc.stderr
    assert not (tmp_path / "artifacts").exists()


def test_missing_input_file_is_one_line_with_the_fix(tmp_path):
    """A stage run before its inputs exist (polars' own FileNotFoundError has no filename)."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    job = next(iter(yaml.safe_load((ROOT / "params.yaml").read_text())["train_jobs"]))
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / "train.py"), job], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("[train] error: artifacts/datasets/") and ".parquet: no such file" in line
    assert "`dvc repro` builds every input in order" in line


def test_yaml_that_is_not_a_mapping(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ParamsError, match="mapping"):
        load_params(bad)


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda d: d["evaluate"].update(ks=[1, 8, 128]), "evaluate.ks: k=128 exceeds sample.n=64"),
        (lambda d: d["arms"]["random-skewed"].update(standard_from="nope"),
         "arms.random-skewed.standard_from: unknown arm 'nope'"),
        (lambda d: d["arms"].update({"search_algorithm-wide": {"label_source": "search_algorithm", "mix": "wide"}}),
         "arms.search_algorithm-wide.mix: no stage makes search_algorithm/wide.parquet"),
        (lambda d: d["gradient_cluster"].update(reference_arm="random-skewed", rows_source="random"),
         "gradient_cluster.reference_arm: 'random-skewed' has no standard model"),
        (lambda d: d["gradient_cluster"].update(rows_source="teacher_id"),
         "gradient_cluster.rows_source: 'teacher_id' is not the reference arm's label source"),
        (lambda d: d["distill"].update(mixes=[]),
         "arms.teacher_id-distilled.mix: no stage makes teacher_id/distilled.parquet"),
        (lambda d: d["distill"].update(after="artifacts/data/problems.parquet"),
         "distill.after must be it or a folder above it"),
        (lambda d: d["sample"].update(splits=["test", "dev"]), "sample.splits: ['dev']"),
        (lambda d: d["train_jobs"]["search_algorithm-skewed-experts"].update(shared_steps=1200),
         "train_jobs.search_algorithm-skewed-experts.shared_steps: 1200 leaves none of the 1200 steps"),
        (lambda d: d.update(task="math"), "labels.sources: 'search_algorithm' needs DFS/BFS traces"),
    ],
)
def test_cross_block_references_fail_when_params_load(edit, needle):
    """Typos that would otherwise surface only after training and sampling ran."""
    data = _default()
    edit(data)
    with pytest.raises(ParamsError) as err:
        parse_params(data)
    assert needle in str(err.value)


def test_every_cross_reference_error_is_reported_at_once():
    data = _default()
    data["evaluate"]["ks"] = [1, 999]
    data["sample"]["splits"] = ["nope"]
    with pytest.raises(ParamsError) as err:
        parse_params(data)
    assert "evaluate.ks" in str(err.value) and "sample.splits" in str(err.value)


def test_rejection_mix_is_a_mix_beside_the_share_mixes():
    data = _default()
    data["labels"]["mixes"]["rejection"] = "rejection"
    data["arms"]["search_algorithm-rejection"] = {"label_source": "search_algorithm", "mix": "rejection"}
    params = parse_params(data)
    assert params.labels.mixes["rejection"] == "rejection"
    assert params.labels.mixes["balanced"] == {"dfs": 0.5, "bfs": 0.5}  # share form unchanged


def test_defaults_train_with_cross_entropy_and_jobs_override_the_objective():
    data = _default()
    assert parse_params(data).train.objective == "ce"  # the default run is unchanged
    # A pass@N arm is a params change: an alias mix with the same shares draws the same rows
    # (apply_mix depends on the seed and the problems only), its own arm, and job overrides.
    data["labels"]["mixes"]["skewed_passn"] = data["labels"]["mixes"]["skewed"]
    data["arms"]["search_algorithm-skewed_passn"] = {"label_source": "search_algorithm", "mix": "skewed_passn"}
    data["train_jobs"]["search_algorithm-skewed_passn-prefix"] = {
        "label_source": "search_algorithm", "mix": "skewed_passn", "variant": "prefix",
        "objective": "pass_at_n", "pass_at_n": {"N": 8, "warmup_steps": 100}, "lr": 0.001,
    }
    params = parse_params(data)
    cfg = params.train_jobs["search_algorithm-skewed_passn-prefix"].train_params(params.train)
    assert cfg.objective == "pass_at_n" and (cfg.pass_at_n.N, cfg.pass_at_n.warmup_steps) == (8, 100)
    assert cfg.lr == 0.001 and cfg.batch_size == params.train.batch_size
    plain = params.train_jobs["search_algorithm-skewed-prefix"].train_params(params.train)
    assert plain == params.train


@pytest.mark.parametrize(
    "vllm, field, hint",
    [
        ({"tensor_parallel_size": 0}, "sample.vllm.tensor_parallel_size", "greater than or equal to 1"),
        ({"data_parallel_size": "two"}, "sample.vllm.data_parallel_size", "integer"),
        ({"gpu_memory_utilization": 1.5}, "sample.vllm.gpu_memory_utilization", "less than or equal to 1"),
        ({"max_model_len": 0}, "sample.vllm.max_model_len", "greater than 0"),
        ({"max_lora_rank": 48}, "sample.vllm.max_lora_rank", "one of vLLM's [1, 8, 16"),
        ({"distributed_executor_backend": "slurm"}, "sample.vllm.distributed_executor_backend", "'mp'"),
        ({"dtype": "int8"}, "sample.vllm.dtype", "'bfloat16'"),
        ({"engine_args": {"tensor_parallel_size": 2}}, "sample.vllm.engine_args", "own sample.vllm field"),
        ({"tensor_paralel_size": 2}, "sample.vllm.tensor_paralel_size", "Extra inputs"),
    ],
)
def test_sample_vllm_block_is_validated(vllm, field, hint):
    data = _default()
    data["sample"]["vllm"] = vllm
    with pytest.raises(ParamsError) as err:
        parse_params(data)
    assert field in str(err.value) and hint in str(err.value)


def test_sample_vllm_engine_kwargs_leave_unset_fields_to_vllm():
    data = _default()
    data["sample"]["vllm"] = {
        "tensor_parallel_size": 2, "data_parallel_size": 4, "max_model_len": 4096,
        "enable_prefix_caching": False, "engine_args": {"swap_space": 8},
    }
    kw = parse_params(data).sample.vllm.engine_kwargs()
    assert kw == {
        "tensor_parallel_size": 2, "pipeline_parallel_size": 1, "gpu_memory_utilization": 0.92,
        "max_model_len": 4096, "enable_prefix_caching": False, "max_loras": 1,
        "enforce_eager": False, "dtype": "auto", "trust_remote_code": False, "swap_space": 8,
    }  # data parallel is ours (one engine per rank); None fields are vLLM's own defaults


@pytest.mark.parametrize(
    "sample, hint",
    [
        ({"backend": "openai"}, "openai.base_url"),
        ({"openai_base_url": "http://127.0.0.1:8000"}, "moved to sample.openai.base_url"),
        ({"openai": {"base_url": "127.0.0.1:8000"}}, "http://"),
        ({"openai": {"base_url": "http://x", "concurrency": 0}}, "sample.openai.concurrency"),
        ({"openai": {"base_url": "http://x", "server": "tgi"}}, "sample.openai.server"),
    ],
)
def test_sample_openai_block_is_validated(sample, hint):
    data = _default()
    data["sample"].update(sample)
    with pytest.raises(ParamsError, match=hint.replace(".", r"\.")):
        parse_params(data)
