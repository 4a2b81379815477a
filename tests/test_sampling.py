"""Sampling backends and the sample step, on tiny random checkpoints (garbage text is fine here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modc_data.modeling.format import encode_prompt
from modc_data.modeling.load import load_checkpoint
from modc_data.params_sampling import OpenAIParams, SampleParams
from modc_data.sampling import Completion, SamplingBackend, get_backend, sample_seed
from modc_data.sampling.hf import HFBackend, hf_generate
from modc_data.sampling.openai_backend import OpenAIBackend
from modc_data.sampling.run import SAMPLES_SCHEMA, sample_model, select_problems
from modc_data.sampling.seeded import SeededSampler
from modc_data.schema import mode_token
from tests.smoke import free_port, wait_for_health
from tests.test_autotune import slow
from tests.tiny_models import make_tiny_checkpoint

PROMPTS = ["numbers 3 7 9 target 22", "numbers 2 5 8 target 18", "numbers 1 4 6 target 10"]
GEN = dict(temperature=1.0, top_p=1.0, max_new_tokens=8)


class WordTask:
    """Stand-in task: the answer is the first word; correct when it is a number; mode by keyword."""

    name = "word"

    def score(self, problem, completion: str) -> tuple[str, bool]:
        first = completion.split()[0] if completion.split() else ""
        return first, first.isdigit()

    def detect_mode(self, completion: str) -> str | None:
        return "dfs" if "goal" in completion else None


class RefusingBackend:
    """Our own protocol, not a library: proves errors come before any generation."""

    name = "refusing"

    def generate(self, *args, **kwargs):
        raise AssertionError("generate must not be called")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    return {
        "standard": make_tiny_checkpoint(root / "standard", "standard"),
        "prefix": make_tiny_checkpoint(root / "prefix", "prefix", ["dfs", "bfs"]),
        "experts": make_tiny_checkpoint(root / "experts", "experts", ["dfs", "bfs"]),
    }


@pytest.fixture(scope="module")
def standard(ckpts):
    model, tok, _ = load_checkpoint(ckpts["standard"])
    return model, tok


def problems_frame(n: int = 3) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "problem_id": [f"p{i}" for i in range(n)],
            "split": ["test"] * n,
            "prompt": PROMPTS[:n],
            "answer": ["x"] * n,
        }
    )


# --------------------------------------------------------------------------- seeds
@given(st.integers(0, 2**31), st.text(max_size=8), st.text(max_size=8), st.integers(1, 4096))
def test_sample_seed_is_stable_multiple_of_n(base, a, b, n):
    s = sample_seed(base, a, b, n=n)
    assert s == sample_seed(base, a, b, n=n)
    assert s % n == 0 and 0 <= s < 2**62
    # distinct groups: child seeds [s, s+n) never overlap
    t = sample_seed(base, a, b + "x", n=n)
    assert s == t or abs(s - t) >= n


# --------------------------------------------------------------------------- hf backend
def test_hf_same_seed_same_samples_across_batch_sizes(standard):
    model, tok = standard
    ids = [encode_prompt(tok, p) for p in PROMPTS]
    runs = [
        hf_generate(model, tok, ids, n=5, seeds=[11, 12, 13], batch_size=bs, **GEN)
        for bs in (1, 4, 64)
    ]
    assert runs[0] == runs[1] == runs[2]
    assert all(isinstance(c, Completion) and 1 <= c.n_tokens <= 8 for r in runs[0] for c in r)
    # samples of one prompt differ from each other, and another seed gives other samples
    assert len({c.text for c in runs[0][0]}) > 1
    other = hf_generate(model, tok, ids, n=5, seeds=[99, 12, 13], batch_size=64, **GEN)
    assert other[0] != runs[0][0] and other[1:] == runs[0][1:]


@pytest.mark.parametrize("temperature,top_p", [(1.5, 1.0), (1.2, 0.7), (0.0, 1.0)])
def test_hf_compact_decoder_equals_transformers_generate(standard, temperature, top_p):
    """The hand-written loop that evicts finished rows gives generate's samples exactly (float32),
    including rows that end early (eviction happened) and rows that run to the cap."""
    model, tok = standard
    ids = [encode_prompt(tok, p) for p in PROMPTS[:2]]
    gen = dict(n=40, seeds=[1, 2], temperature=temperature, top_p=top_p, max_new_tokens=24)
    compact = hf_generate(model, tok, ids, batch_size=80, decoder="compact", **gen)
    reference = hf_generate(model, tok, ids, batch_size=80, decoder="generate", **gen)
    assert compact == reference
    if temperature > 0:
        lengths = [c.n_tokens for r in compact for c in r]
        early = sum(n < 24 for n in lengths)
        assert early >= 10 and early < len(lengths), "the test must exercise eviction"


def test_compact_decoder_passes_the_cache_as_forward_documents_it(ckpts):
    """``cache`` on transformers that renamed ``past_key_values`` (then the old name warns, which
    pyproject's filters turn into a failure of the compact-decoder tests), for a peft model too."""
    import inspect

    from peft import LoraConfig, get_peft_model

    from modc_data.sampling.compact import cache_kwarg

    model, tok, _ = load_checkpoint(ckpts["standard"])  # its own copy: peft modifies it in place
    forward = inspect.signature(model.forward).parameters
    assert cache_kwarg(model) == ("cache" if "cache" in forward else "past_key_values")
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    assert cache_kwarg(lora) == cache_kwarg(model)
    ids = [encode_prompt(tok, p) for p in PROMPTS[:2]]
    gen = dict(n=4, seeds=[1, 2], temperature=1.0, top_p=1.0, max_new_tokens=6)
    compact = hf_generate(lora, tok, ids, decoder="compact", **gen)
    assert compact == hf_generate(lora, tok, ids, decoder="generate", **gen)


def test_hf_backend_dtype_and_decoder(ckpts):
    fp32 = HFBackend(batch_size=16, dtype="float32")
    bf16 = HFBackend(batch_size=16, dtype="bfloat16")
    model, _ = bf16.load(ckpts["standard"])
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model.config._attn_implementation == "eager"  # CPU: eager decodes faster
    assert next(fp32.load(ckpts["standard"])[0].parameters()).dtype == torch.float32
    assert HFBackend(dtype="auto").torch_dtype() in (torch.float32, torch.bfloat16)
    gen = dict(mode=None, n=6, seeds=[5, 6], **GEN)
    first = bf16.generate(ckpts["standard"], PROMPTS[:2], **gen)
    assert first == bf16.generate(ckpts["standard"], PROMPTS[:2], **gen)  # reproducible
    assert all(1 <= c.n_tokens <= 8 for r in first for c in r)
    with pytest.raises(ValueError, match="sample.dtype"):
        HFBackend(dtype="float16")
    with pytest.raises(ValueError, match="sample.decoder"):
        HFBackend(decoder="beam")
    with pytest.raises(ValueError, match="decoder"):
        SampleParams(decoder="beam")


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(0, 2), min_size=1, max_size=4), st.integers(1, 9))
def test_hf_prompt_samples_do_not_depend_on_batch_company(standard, picks, batch_size):
    """Whatever other prompts share the call and whatever the batch size, prompt i's samples
    equal those it gets alone."""
    model, tok = standard
    ids = [encode_prompt(tok, PROMPTS[i]) for i in picks]
    seeds = [100 + i for i in picks]
    together = hf_generate(model, tok, ids, n=3, seeds=seeds, batch_size=batch_size, **GEN)
    for k, i in enumerate(picks):
        alone = hf_generate(model, tok, [ids[k]], n=3, seeds=[100 + i], batch_size=3, **GEN)
        assert together[k] == alone[0]


def test_hf_greedy_and_tiny_top_p_equal_transformers_greedy(standard):
    model, tok = standard
    ids = encode_prompt(tok, PROMPTS[0])
    ref = model.generate(
        torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        do_sample=False,
        max_new_tokens=8,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )[0, len(ids) :].tolist()
    if tok.eos_token_id in ref:
        ref = ref[: ref.index(tok.eos_token_id) + 1]
    want = tok.decode(ref, skip_special_tokens=True)
    greedy = hf_generate(
        model, tok, [ids], n=3, seeds=[1], temperature=0, top_p=1.0, max_new_tokens=8
    )
    assert [c.text for c in greedy[0]] == [want] * 3
    # top_p so small that only the most likely token survives: sampling becomes greedy
    nucleus = hf_generate(
        model, tok, [ids], n=3, seeds=[1], temperature=1.0, top_p=1e-6, max_new_tokens=8
    )
    assert [c.text for c in nucleus[0]] == [want] * 3


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.5, 1.0), (1.0, 0.8)])
def test_seeded_sampler_matches_target_distribution(temperature, top_p):
    """Statistical check: token frequencies follow softmax(logits / T) restricted to the nucleus."""
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, float("-inf")])
    rows = 40_000
    u = torch.rand(rows, 1, generator=torch.Generator().manual_seed(0))
    out = SeededSampler(u, prompt_len=0, temperature=temperature, top_p=top_p)(
        torch.zeros(rows, 0, dtype=torch.long), logits.expand(rows, -1).clone()
    )
    assert torch.isfinite(out).sum(-1).eq(1).all()
    freq = torch.bincount(out.argmax(-1), minlength=6).double() / rows
    p = torch.softmax(logits.double() / temperature, -1)
    order = p.argsort(descending=True)
    keep = torch.zeros_like(p, dtype=torch.bool)
    keep[order] = (p[order].cumsum(0) - p[order]) < top_p
    want = torch.where(keep, p, 0) / p[keep].sum()
    assert freq[-1] == 0  # a -inf logit is never sampled
    assert torch.allclose(freq, want, atol=0.01)


# --------------------------------------------------------------------------- sample step
def test_samples_table_schema_and_scoring(ckpts):
    cfg = SampleParams(n=4, max_new_tokens=6, batch_size=8)
    df = sample_model(
        ckpts["standard"],
        problems_frame(),
        task=WordTask(),
        model_key="a/standard",
        arm="a",
        variant="standard",
        modes=None,
        cfg=cfg,
        progress=False,
    )
    assert dict(df.schema) == SAMPLES_SCHEMA
    assert df.height == 3 * 4
    assert df["mode"].unique().to_list() == [""]
    assert (
        df.group_by("problem_id").agg(pl.col("sample_idx").sort())["sample_idx"].to_list()
        == [[0, 1, 2, 3]] * 3
    )
    task = WordTask()
    for r in df.iter_rows(named=True):
        assert (r["answer"], r["correct"]) == task.score(None, r["completion"])
        assert r["detected_mode"] == task.detect_mode(r["completion"])
    # re-running reproduces the table exactly
    again = sample_model(
        ckpts["standard"],
        problems_frame(),
        task=WordTask(),
        model_key="a/standard",
        arm="a",
        variant="standard",
        modes=None,
        cfg=cfg.model_copy(update={"batch_size": 3}),
        progress=False,
    )
    assert again.equals(df)


def test_prefix_sampling_prepends_each_mode_token(ckpts):
    backend = HFBackend(batch_size=16)
    ids = backend.encode(ckpts["prefix"], PROMPTS[:1], "bfs")[0]
    _, tok = backend.load(ckpts["prefix"])
    assert ids[:2] == [tok.bos_token_id, tok.convert_tokens_to_ids(mode_token("bfs"))]
    assert ids[2:] == encode_prompt(tok, PROMPTS[0])[1:]

    cfg = SampleParams(n=3, max_new_tokens=6)
    df = sample_model(
        ckpts["prefix"],
        problems_frame(2),
        task=WordTask(),
        model_key="a/prefix",
        arm="a",
        variant="prefix",
        modes=None,
        cfg=cfg,
        backend=backend,
        progress=False,
    )
    assert df.height == 2 * 2 * 3 and set(df["mode"]) == {"dfs", "bfs"}
    # each mode's rows are exactly what generation from the mode-prefixed ids gives
    model, tok = backend.load(ckpts["prefix"])
    for mode in ("dfs", "bfs"):
        seeds = [sample_seed(cfg.seed, f"p{i}", "a/prefix", mode, n=3) for i in range(2)]
        want = hf_generate(
            model,
            tok,
            [encode_prompt(tok, p, mode) for p in PROMPTS[:2]],
            n=3,
            seeds=seeds,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=6,
        )
        got = df.filter(pl.col("mode") == mode).sort("problem_id", "sample_idx")["completion"]
        assert got.to_list() == [c.text for row in want for c in row]


def test_experts_group_samples_each_expert(ckpts):
    cfg = SampleParams(n=3, max_new_tokens=6)
    df = sample_model(
        ckpts["experts"],
        problems_frame(2),
        task=WordTask(),
        model_key="a/experts",
        arm="a",
        variant="experts",
        modes=["bfs"],
        cfg=cfg,
        progress=False,
    )
    assert set(df["mode"]) == {"bfs"} and df.height == 2 * 3
    full = sample_model(
        ckpts["experts"],
        problems_frame(2),
        task=WordTask(),
        model_key="a/experts",
        arm="a",
        variant="experts",
        modes=None,
        cfg=cfg,
        progress=False,
    )
    assert set(full["mode"]) == {"dfs", "bfs"}
    for mode in ("dfs", "bfs"):
        model, tok, info = load_checkpoint(ckpts["experts"] / mode)
        assert info.mode == mode
        seeds = [sample_seed(cfg.seed, f"p{i}", "a/experts", mode, n=3) for i in range(2)]
        want = hf_generate(
            model,
            tok,
            [encode_prompt(tok, p) for p in PROMPTS[:2]],
            n=3,
            seeds=seeds,
            temperature=1.0,
            top_p=1.0,
            max_new_tokens=6,
        )
        got = full.filter(pl.col("mode") == mode).sort("problem_id", "sample_idx")["completion"]
        assert got.to_list() == [c.text for row in want for c in row]


def test_bad_inputs_fail_before_generation(ckpts, tmp_path):
    cfg = SampleParams(n=2, max_new_tokens=4)
    common = dict(
        task=WordTask(), model_key="k", arm="a", cfg=cfg, backend=RefusingBackend(), progress=False
    )
    (tmp_path / "bare").mkdir()
    with pytest.raises(FileNotFoundError, match="modc.json"):
        sample_model(tmp_path / "bare", problems_frame(), variant="standard", modes=None, **common)
    with pytest.raises(ValueError, match=r"known modes: \['bfs', 'dfs'\]"):
        sample_model(
            ckpts["prefix"], problems_frame(), variant="prefix", modes=["dfs", "xyz"], **common
        )
    with pytest.raises(ValueError, match="known modes"):
        sample_model(ckpts["experts"], problems_frame(), variant="experts", modes=["xyz"], **common)
    with pytest.raises(ValueError, match="variant 'prefix'"):
        sample_model(ckpts["prefix"], problems_frame(), variant="experts", modes=None, **common)
    with pytest.raises(ValueError, match="missing column"):
        sample_model(
            ckpts["standard"],
            problems_frame().drop("prompt"),
            variant="standard",
            modes=None,
            **common,
        )
    with pytest.raises(ValueError, match="openai.base_url"):
        SampleParams(backend="openai")  # caught when params load
    with pytest.raises(ValueError, match="openai.base_url"):
        get_backend("openai", base_url=None)
    with pytest.raises(ValueError, match="unknown backend"):
        get_backend("nope")


def test_select_problems():
    df = pl.DataFrame(
        {
            "problem_id": ["c", "a", "b", "d"],
            "split": ["test", "test", "train", "test_adversarial"],
            "prompt": ["x"] * 4,
        }
    )
    got = select_problems(df, SampleParams(splits=["test", "test_adversarial"], max_problems=1))
    assert got["problem_id"].to_list() == ["a", "d"]
    with pytest.raises(ValueError, match="sample.splits"):
        select_problems(df, SampleParams(splits=["validation"]))
    # extra splits (allocation policies): added with their own cap; a shared split keeps the
    # smaller cap; a missing one names sample.policies.pairs
    got = select_problems(df, SampleParams(splits=["test_adversarial"]), extra={"test": 1})
    assert got["problem_id"].to_list() == ["a", "d"]
    got = select_problems(df, SampleParams(splits=["test"]), extra={"test": None, "train": 5})
    assert got.sort("problem_id")["problem_id"].to_list() == ["a", "b", "c"]
    got = select_problems(df, SampleParams(splits=["test"], max_problems=5), extra={"test": 1})
    assert got["problem_id"].to_list() == ["a"]
    with pytest.raises(ValueError, match="sample.policies.pairs"):
        select_problems(df, SampleParams(splits=["test"]), extra={"validation_adversarial": 3})


# --------------------------------------------------------------------------- openai backend
class _Server:
    """Loopback completions server: deterministic choices, records every request."""

    def __init__(self):
        self.requests: list[tuple[dict, dict]] = []
        self.failed_once = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, dict(self.headers), body))
                if body["model"] == "flaky" and not outer.failed_once:
                    outer.failed_once = True
                    self.send_response(503)
                    self.end_headers()
                    return
                if body["model"] == "missing":
                    self.send_response(404)
                    self.end_headers()
                    self.wfile.write(b'{"error": "model not found"}')
                    return
                choices = [
                    {"index": i, "text": f"{body['seed'] + i} goal", "token_ids": [7] * (i + 1)}
                    for i in range(body.get("n", 1))
                ][::-1]  # out of order on purpose: the client must sort by index
                data = json.dumps({"choices": choices, "usage": {"completion_tokens": 0}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_openai_backend_against_loopback_server(ckpts, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    with _Server() as server:
        cfg = SampleParams(
            backend="openai",
            openai=OpenAIParams(base_url=server.url),
            n=3,
            temperature=0.7,
            top_p=0.9,
            max_new_tokens=5,
        )
        backend = OpenAIBackend(
            server.url,
            served_names={str(ckpts["prefix"]): "served-prefix"},
            concurrency=2,
            max_retries=0,
        )
        assert isinstance(backend, SamplingBackend) and "sk-test" not in repr(backend)
        df = sample_model(
            ckpts["prefix"],
            problems_frame(2),
            task=WordTask(),
            model_key="a/p",
            arm="a",
            variant="prefix",
            modes=["dfs"],
            cfg=cfg,
            backend=backend,
            progress=False,
        )
        text = OpenAIBackend(server.url, prompt_format="text", max_retries=0).generate(
            "some-model",
            ["hello"],
            mode="bfs",
            n=1,
            seeds=[5],
            temperature=0,
            top_p=1.0,
            max_new_tokens=2,
        )
        with pytest.raises(RuntimeError, match="HTTP 404"):
            OpenAIBackend(server.url, max_retries=0).generate(
                "missing",
                ["x"],
                mode=None,
                n=1,
                seeds=[0],
                temperature=0,
                top_p=1.0,
                max_new_tokens=1,
            )
        flaky = OpenAIBackend(server.url, max_retries=1).generate(
            "flaky", ["x"], mode=None, n=2, seeds=[10], temperature=1.0, top_p=1.0,
            max_new_tokens=1,
        )
        assert [c.text for c in flaky[0]] == ["10 goal", "11 goal"]  # retried after the 503
    _, tok, _ = load_checkpoint(ckpts["prefix"])
    sampled = server.requests[:2]
    assert sorted(b["seed"] for _, _, b in sampled) == sorted(
        sample_seed(0, f"p{i}", "a/p", "dfs", n=3) for i in range(2)
    )
    for path, headers, body in sampled:
        assert path == "/v1/completions"
        assert headers["Authorization"] == "Bearer sk-test-123"
        i = [sample_seed(0, f"p{k}", "a/p", "dfs", n=3) for k in range(2)].index(body["seed"])
        assert body["prompt"] == encode_prompt(tok, PROMPTS[i], "dfs")  # ids incl. mode token
        assert body["prompt"][1] == tok.convert_tokens_to_ids(mode_token("dfs"))
        assert (
            body["model"],
            body["n"],
            body["temperature"],
            body["top_p"],
            body["max_tokens"],
        ) == ("served-prefix", 3, 0.7, 0.9, 5)
    # choices come back in index order, with their token counts; the text is decoded from
    # the returned ids with the checkpoint's tokenizer (as the hf backend decodes)
    for r in df.iter_rows(named=True):
        ids = [7] * (r["sample_idx"] + 1)
        assert r["completion"] == tok.decode(ids, skip_special_tokens=True)
        assert r["n_tokens"] == r["sample_idx"] + 1
        assert r["detected_mode"] == WordTask().detect_mode(r["completion"])
    assert server.requests[2][2]["prompt"] == "<mode:bfs> hello"
    assert text == [[Completion(text="5 goal", n_tokens=1)]]


@contextmanager
def transformers_serve(log_path):
    """``transformers serve`` on a free loopback port, CPU, loading models on request; stopped
    on exit. Yields its base URL."""
    port = free_port()
    log = open(log_path, "w")  # noqa: SIM115 (closed below, after the server ends)
    proc = subprocess.Popen(
        [sys.executable, "-m", "transformers.cli.transformers", "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
         "--dtype", "float32", "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, proc, log_path, 120, "transformers serve")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_openai_backend_against_transformers_serve(ckpts, tmp_path):
    """A real OpenAI-compatible server on loopback: it ignores ``n`` (one choice a reply), so the
    backend falls back to one request per sample (seed + i); same seeds reproduce the samples,
    other seeds give others, and the samples are scored through the normal sample step."""
    cfg = SampleParams(n=4, max_new_tokens=8, temperature=1.0)
    problems = problems_frame(2)
    with transformers_serve(tmp_path / "serve.log") as url:
        def run(seed: int, backend=None):
            backend = backend or OpenAIBackend(url, server="transformers", max_retries=0)
            return sample_model(
                ckpts["prefix"], problems, task=WordTask(), model_key="a/prefix", arm="a",
                variant="prefix", modes=["bfs"], cfg=cfg.model_copy(update={"seed": seed}),
                backend=backend, progress=False,
            )

        backend = OpenAIBackend(url, server="transformers", max_retries=0)
        first = run(0, backend)
        assert backend.per_request_n is False  # learned from the reply: n is ignored there
        again = run(0)
        other = run(1)
        # the server samples exactly what model.generate samples locally from the training ids
        model, tok, _ = load_checkpoint(ckpts["prefix"])
        row = first.filter((pl.col("mode") == "bfs") & (pl.col("problem_id") == "p1")).sort(
            "sample_idx"
        )
        ids = torch.tensor([encode_prompt(tok, PROMPTS[1], "bfs")])
        for j in (0, 3):
            torch.manual_seed(sample_seed(0, "p1", "a/prefix", "bfs", n=4) + j)
            out = model.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=0,
                temperature=1.0, top_p=1.0, max_new_tokens=8, pad_token_id=tok.pad_token_id,
            )
            want = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
            assert row["completion"][j] == want
    assert dict(first.schema) == SAMPLES_SCHEMA
    assert first.height == 2 * 4 and set(first["mode"]) == {"bfs"}
    assert (
        first.group_by("problem_id").agg(pl.col("sample_idx").sort())["sample_idx"].to_list()
        == [[0, 1, 2, 3]] * 2
    )
    assert again.equals(first)  # same seeds, same completions
    assert (other["completion"] != first["completion"]).sum() >= first.height // 2
    groups = first.group_by("problem_id").agg(pl.col("completion").n_unique())
    assert groups["completion"].max() > 1  # it sampled (do_sample), not greedy
    task = WordTask()
    for r in first.iter_rows(named=True):
        assert (r["answer"], r["correct"]) == task.score(None, r["completion"])
        assert 1 <= r["n_tokens"] <= 8


# --------------------------------------------------------------------------- vllm backend
def test_vllm_backend_needs_vllm():
    """Without vllm the backend fails at construction with the fix named; the engine itself is
    tested in tests/test_vllm.py (``make test-vllm``)."""
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is importable here: tests/test_vllm.py runs the engine")
    with pytest.raises(ImportError, match="sample.backend='vllm' needs the vllm package"):
        get_backend("vllm")


@pytest.mark.parametrize("r, wanted, rank", [(4, None, 16), (16, None, 16), (24, None, 32),
                                             (4, 8, 8), (64, 128, 128)])
def test_vllm_lora_rank_fits_the_adapter(tmp_path, r, wanted, rank):
    from modc_data.sampling.vllm_backend import lora_rank_for

    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": r}))
    assert lora_rank_for(tmp_path, wanted) == rank


def test_vllm_lora_rank_too_small_is_named(tmp_path):
    from modc_data.sampling.vllm_backend import lora_rank_for

    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 32}))
    with pytest.raises(ValueError, match="sample.vllm.max_lora_rank 16"):
        lora_rank_for(tmp_path, 16)


# --------------------------------------------------------------------------- dtype / decoder auto
def _refuse(name, step):
    raise AssertionError(f"a set value must not be measured (timed {name})")


@pytest.mark.parametrize("slow_dtype", ["bfloat16", "float32"])
def test_hf_auto_picks_the_faster_dtype_and_decoder(ckpts, slow_dtype, bf16_candidate):
    gen = dict(mode=None, n=6, seeds=[5, 6], **GEN)
    # bf16 or fp32 made slow, and transformers' generate too: one candidate is left fast
    timer = slow(lambda name: name.startswith(slow_dtype) or name.endswith("generate"), 50.0)
    auto = HFBackend(batch_size=16, dtype="auto", decoder="auto", timer=timer)
    out = auto.generate(ckpts["standard"], PROMPTS[:2], **gen)
    chosen = "float32" if slow_dtype == "bfloat16" else "bfloat16"
    record = auto.settings()
    assert (record["dtype"], record["decoder"]) == (chosen, "compact")
    assert record["autotune"]["source"] == "measured"
    assert set(record["autotune"]["timings_ms"]) == {f"{d}/{c}" for d in ("float32", "bfloat16")
                                                    for c in ("compact", "generate")}
    assert next(auto.load(ckpts["standard"])[0].parameters()).dtype == getattr(torch, chosen)
    # the samples are those of the chosen dtype set by hand
    assert out == HFBackend(batch_size=16, dtype=chosen).generate(ckpts["standard"], PROMPTS[:2], **gen)
    # decided once: a second model of the stage reuses the verdict without timing again
    auto.timer = _refuse
    auto.generate(ckpts["prefix"], PROMPTS[:1], **{**gen, "mode": "dfs", "seeds": [5]})


def test_hf_user_set_dtype_and_decoder_are_never_overridden(ckpts):
    gen = dict(mode=None, n=4, seeds=[1], **GEN)
    for dtype in ("float32", "bfloat16"):
        backend = HFBackend(batch_size=16, dtype=dtype, decoder="generate", timer=_refuse, threads=1)
        backend.generate(ckpts["standard"], PROMPTS[:1], **gen)
        record = backend.settings()
        assert (record["dtype"], record["decoder"], record["autotune"]["source"]) == (dtype, "generate", "user")
        assert record["threads"] == {"threads": 1, "source": "user"}
    # a set dtype with decoder auto: only decoders are timed, all in the set dtype
    backend = HFBackend(batch_size=16, dtype="bfloat16", decoder="auto", timer=slow("bfloat16/compact"))
    backend.generate(ckpts["standard"], PROMPTS[:1], **gen)
    assert set(backend.settings()["autotune"]["timings_ms"]) == {"bfloat16/compact", "bfloat16/generate"}
    assert backend.settings()["decoder"] == "generate" and backend.settings()["dtype"] == "bfloat16"
