"""LoRA checkpoints merged into cached full model folders (what vLLM serves for prefix LoRA)."""

from __future__ import annotations

import json

import torch
from transformers import AutoModelForCausalLM

from modc_data.modeling.format import encode_prompt
from modc_data.modeling.load import load_checkpoint
from modc_data.modeling.merge import has_trained_rows, merged_checkpoint
from modc_data.modeling.modc_json import read_modc
from tests.tiny_models import make_tiny_lora_checkpoint, save_tiny_base


def test_merged_prefix_lora_equals_adapter_model(tmp_path):
    base = save_tiny_base(tmp_path / "base")
    adapter = make_tiny_lora_checkpoint(tmp_path / "prefix", base, "prefix", ["dfs", "bfs"])
    assert has_trained_rows(adapter)
    assert json.loads((adapter / "adapter_config.json").read_text())["trainable_token_indices"]
    cache = tmp_path / "cache"
    out = merged_checkpoint(adapter, cache)
    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").exists()
    info = read_modc(out)
    assert info.variant == "prefix" and info.base["adapter"] is False
    assert info.base["merged_from"] == str(adapter.resolve())

    lora_model, tok, _ = load_checkpoint(adapter)
    merged, merged_tok, _ = load_checkpoint(out)
    plain_base = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    for mode in ("dfs", "bfs"):
        ids = torch.tensor([encode_prompt(tok, "numbers 3 7 9 target 22", mode)])
        assert encode_prompt(merged_tok, "numbers 3 7 9 target 22", mode) == ids[0].tolist()
        with torch.no_grad():
            want = lora_model(input_ids=ids).logits
            got = merged(input_ids=ids).logits
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # the adapter changes the model (else the check above proves nothing)
    plain_ids = torch.tensor([encode_prompt(tok, "numbers 3 7 9 target 22")])
    with torch.no_grad():
        before = plain_base(input_ids=plain_ids).logits
        after = merged(input_ids=plain_ids).logits[..., : before.shape[-1]]
        assert not torch.allclose(before, after, atol=1e-3)

    # cached: the same adapter maps to the same folder, untouched; another adapter, another folder
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert merged_checkpoint(adapter, cache) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    other = make_tiny_lora_checkpoint(tmp_path / "other" / "prefix", base, "prefix", ["dfs", "bfs"], seed=1)
    assert merged_checkpoint(other, cache) != out
    assert sorted(p.name for p in cache.iterdir()) == sorted([out.name, merged_checkpoint(other, cache).name])


def test_lora_expert_without_token_rows_is_served_as_adapter(tmp_path):
    base = save_tiny_base(tmp_path / "base")
    group = make_tiny_lora_checkpoint(tmp_path / "experts", base, "experts", ["dfs", "bfs"])
    assert not has_trained_rows(group / "dfs") and not has_trained_rows(base)
