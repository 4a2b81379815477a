"""Tokenizer, model construction and checkpoint loading (modeling/tokenizer, models, load)."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from peft import PeftModel
from transformers import AutoTokenizer

from modc_data.modeling.format import encode_prompt
from modc_data.modeling.load import load_checkpoint, resolve_mode_token
from modc_data.modeling.modc_json import read_modc
from modc_data.modeling.models import build_scratch_model, load_pretrained_base
from modc_data.modeling.tokenizer import add_mode_tokens, build_word_tokenizer
from modc_data.params_training import LoraParams, PretrainedModelParams, ScratchModelParams
from modc_data.schema import mode_token
from tests.tiny_models import TINY_SCRATCH, make_tiny_checkpoint, save_tiny_base, tiny_tokenizer

WORD = st.text(
    alphabet=st.characters(categories=["L", "N", "P", "S"], exclude_characters="<>"),
    min_size=1,
    max_size=6,
)
MODE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789:_-", min_size=1, max_size=12)


# --------------------------------------------------------------------------- tokenizer
@settings(max_examples=40, deadline=None)
@given(words=st.lists(WORD, min_size=1, max_size=20), modes=st.lists(MODE, min_size=1, max_size=3, unique=True))
def test_word_tokenizer_round_trip_and_single_mode_tokens(words, modes):
    text = " ".join(words)
    tok = build_word_tokenizer([text, "other words here"])
    tokens = add_mode_tokens(tok, modes)
    assert tokens == [mode_token(m) for m in modes]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(words)
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text
    for m in modes:
        prefixed = tok(f"{mode_token(m)} {text}", add_special_tokens=False)["input_ids"]
        assert prefixed[0] == tok.convert_tokens_to_ids(mode_token(m))
        assert prefixed[1:] == ids  # the mode token is one id and leaves the rest untouched


def test_mode_tokens_survive_save_load_and_are_idempotent(tmp_path):
    tok = build_word_tokenizer(["numbers 3 7 target 10"], extra_special_tokens=["<mode:x>"])
    add_mode_tokens(tok, ["dfs", "bfs"])
    n = len(tok)
    assert add_mode_tokens(tok, ["dfs"]) == ["<mode:dfs>"] and len(tok) == n
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert len(again) == n
    text = "<mode:bfs> numbers 3 7 target 10"
    assert again(text, add_special_tokens=False)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    assert again.decode(again("numbers 3 7", add_special_tokens=False)["input_ids"]) == "numbers 3 7"
    assert {again.pad_token, again.unk_token, again.bos_token, again.eos_token} == {"<pad>", "<unk>", "<bos>", "<eos>"}


def test_word_ids_are_deterministic_and_frequency_ordered():
    texts = ["b a a", "c a b"]
    v1 = build_word_tokenizer(texts).get_vocab()
    v2 = build_word_tokenizer(list(reversed(texts))).get_vocab()
    assert v1 == v2
    assert v1["a"] < v1["b"] < v1["c"]


# --------------------------------------------------------------------------- models
def test_scratch_model_matches_tokenizer_and_seed():
    tok = build_word_tokenizer(["numbers 1 2 target 3"])
    add_mode_tokens(tok, ["dfs"])
    a = build_scratch_model(TINY_SCRATCH, tok, seed=1)
    b = build_scratch_model(TINY_SCRATCH, tok, seed=1)
    c = build_scratch_model(TINY_SCRATCH, tok, seed=2)
    assert a.get_input_embeddings().weight.shape == (len(tok), TINY_SCRATCH.hidden_size)
    assert a.config.pad_token_id == tok.pad_token_id and a.config.eos_token_id == tok.eos_token_id
    assert torch.equal(a.model.embed_tokens.weight, b.model.embed_tokens.weight)
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)


def test_scratch_model_rejects_indivisible_heads():
    tok = build_word_tokenizer(["a"])
    cfg = ScratchModelParams(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="model.scratch.hidden_size"):
        build_scratch_model(cfg, tok, seed=0)


@pytest.mark.parametrize("name", ["/nonexistent/base/model", "./no-such-dir", "nobody-owns-this/no-such-model-xyz"])
def test_unknown_base_fails_fast_naming_the_field(name):
    with pytest.raises(FileNotFoundError, match="model.pretrained.name_or_path"):
        load_pretrained_base(PretrainedModelParams(name_or_path=name))


def test_base_without_safetensors_or_as_gguf_is_refused_before_loading(tmp_path):
    base = save_tiny_base(tmp_path / "base")
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(FileNotFoundError, match="is a GGUF file.*modc convert-gguf"):
        load_pretrained_base(PretrainedModelParams(name_or_path=str(gguf)))
    (base / "model.safetensors").rename(base / "pytorch_model.bin")  # a pickle-format folder
    with pytest.raises(FileNotFoundError, match="has no \\*.safetensors weights"):
        load_pretrained_base(PretrainedModelParams(name_or_path=str(base)))


def test_new_rows_are_the_mean_row_so_reloads_agree(tmp_path):
    base = save_tiny_base(tmp_path / "base")
    cfg = PretrainedModelParams(name_or_path=str(base))
    rows = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model, tok = load_pretrained_base(cfg, modes=["dfs", "bfs"], lora=False)
        rows.append(model.get_input_embeddings().weight.detach().clone())
    n = len(tiny_tokenizer())
    assert rows[0].shape[0] == n + 2
    torch.testing.assert_close(rows[0], rows[1], rtol=0, atol=0)
    torch.testing.assert_close(rows[0][n:], rows[0][:n].mean(0).expand(2, -1))


def test_adapter_without_safetensors_is_refused(tmp_path):
    from modc_data.modeling.train import train_model
    from modc_data.params_training import ModelParams, TrainParams
    from tests.tiny_models import TINY_TEXTS, tiny_rows

    cfg = ModelParams(
        base="pretrained",
        pretrained=PretrainedModelParams(
            name_or_path=str(save_tiny_base(tmp_path / "base")),
            lora=LoraParams(r=2, alpha=4, target_modules=["q_proj"]),
        ),
    )
    out = tmp_path / "std"
    train_model(
        tiny_rows(8), tiny_rows(4, split="validation"), variant="standard", mode=None, modes=[],
        label_source="search_algorithm", arm="tiny", model_cfg=cfg,
        train_cfg=TrainParams(batch_size=4, steps=1, eval_batches=1, threads=1), steps=1,
        out_dir=out, tokenizer_texts=TINY_TEXTS, progress=False,
    )
    load_checkpoint(out)  # loads as saved
    (out / "adapter_model.safetensors").rename(out / "adapter_model.bin")
    with pytest.raises(FileNotFoundError, match="no adapter_model.safetensors"):
        load_checkpoint(out)


def test_lora_base_trains_only_adapters_and_mode_rows(tmp_path):
    base_dir = save_tiny_base(tmp_path / "base")
    cfg = PretrainedModelParams(
        name_or_path=str(base_dir), lora=LoraParams(r=4, alpha=8, target_modules=["q_proj", "v_proj"])
    )
    model, tok = load_pretrained_base(cfg, modes=["dfs", "bfs"])
    assert isinstance(model, PeftModel)
    ids = tok.convert_tokens_to_ids([mode_token("dfs"), mode_token("bfs")])
    assert model.get_input_embeddings().weight.shape[0] >= len(tok) > max(ids) - 1
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "trainable_tokens" in n for n in trainable)
    assert any("trainable_tokens" in n for n in trainable)
    # The new rows really train: their gradient is non-zero after a forward/backward.
    x = torch.tensor([[tok.bos_token_id, ids[0], *tok("numbers 3", add_special_tokens=False)["input_ids"]]])
    model(input_ids=x, labels=x).loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "trainable_tokens" in n and p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


# --------------------------------------------------------------------------- load
@pytest.mark.parametrize("variant", ["standard", "expert", "prefix"])
def test_load_checkpoint_and_greedy_generate(tmp_path, variant):
    path = make_tiny_checkpoint(tmp_path / variant, variant, modes=["dfs", "bfs"])
    model, tok, info = load_checkpoint(path)
    assert info.variant == variant and not model.training
    mode = None if variant == "standard" else "dfs"
    token = resolve_mode_token(info, mode)
    assert token == (mode_token("dfs") if variant == "prefix" else None)
    ids = encode_prompt(tok, "numbers 3 7 target 10", mode if variant == "prefix" else None)
    if variant == "prefix":
        assert ids[1] == tok.convert_tokens_to_ids(token)
    out = model.generate(torch.tensor([ids]), max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == len(ids) + 4 or tok.eos_token_id in out[0, len(ids):].tolist()
    assert out[0, : len(ids)].tolist() == ids


def test_load_rejects_group_and_plain_dirs(tmp_path):
    group = make_tiny_checkpoint(tmp_path / "experts", "experts", modes=["dfs", "bfs"])
    with pytest.raises(ValueError, match="load each expert"):
        load_checkpoint(group)
    info = read_modc(group)
    model, _, expert = load_checkpoint(group / info.experts["bfs"])
    assert expert.variant == "expert" and expert.mode == "bfs"
    plain = save_tiny_base(tmp_path / "plain")
    with pytest.raises(FileNotFoundError, match="modc.json"):
        load_checkpoint(plain)


def test_resolve_mode_token_errors_name_known_modes(tmp_path):
    prefix = read_modc(make_tiny_checkpoint(tmp_path / "p", "prefix", modes=["dfs", "bfs"]))
    with pytest.raises(ValueError, match=r"known modes: \['bfs', 'dfs'\]"):
        resolve_mode_token(prefix, "greedy")
    expert = read_modc(make_tiny_checkpoint(tmp_path / "e", "expert", modes=["bfs"]))
    assert resolve_mode_token(expert, "bfs") is None and resolve_mode_token(expert, None) is None
    with pytest.raises(ValueError, match="'bfs'"):
        resolve_mode_token(expert, "dfs")
    standard = read_modc(make_tiny_checkpoint(tmp_path / "s", "standard"))
    with pytest.raises(ValueError, match="mode=None"):
        resolve_mode_token(standard, "dfs")
    assert json.loads((tmp_path / "p" / "modc.json").read_text())["mode_tokens"]["dfs"] == "<mode:dfs>"
