"""The two kinds of model a ModC checkpoint starts from.

- ``build_scratch_model``: a small Llama (``transformers.LlamaForCausalLM``) with random weights,
  sized by ``model.scratch`` params, over a word tokenizer (``modeling.tokenizer``).
- ``load_pretrained_base``: a causal LM by Hub id or local path (offline-aware), wrapped in a peft
  LoRA adapter sized by ``model.pretrained.lora`` params; prefix mode tokens get trainable
  embedding rows through peft's ``trainable_token_indices`` (only those rows train, not the whole
  embedding matrix).
What it leaves out: the training loop (``modeling.train``) and loading finished checkpoints
(``modeling.load``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from modc_data.modeling.tokenizer import add_mode_tokens
from modc_data.params_training import PretrainedModelParams, ScratchModelParams


def build_scratch_model(
    cfg: ScratchModelParams, tokenizer, seed: int, attn_implementation: str = "sdpa"
) -> LlamaForCausalLM:
    """A randomly initialised Llama whose vocabulary is exactly ``len(tokenizer)``.

    Weights depend only on ``(cfg, len(tokenizer), seed)``. Embeddings are tied (at this size
    the embedding matrix is a large share of all parameters).
    """
    if cfg.hidden_size % cfg.num_attention_heads:
        raise ValueError(
            f"model.scratch.hidden_size ({cfg.hidden_size}) must be divisible by "
            f"model.scratch.num_attention_heads ({cfg.num_attention_heads})"
        )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_attention_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    config._attn_implementation = attn_implementation
    # Seed a private generator-state scope: model init draws from torch's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model


def fit_embeddings(model, tokenizer) -> None:
    """Grow the embedding matrix when the tokenizer has more ids than it has rows.

    Many Hub models carry spare rows (e.g. Qwen2.5: 151936 rows, 151665 tokens), so new mode
    tokens often fit without a resize; training and loading both call this so shapes agree.
    New rows, input and output (tied or not), are the mean of the existing rows (the average
    embedding init of Hewitt, 2021): deterministic, so a LoRA checkpoint need not store the whole
    resized embedding matrices to be reloaded exactly; its trained mode-token rows are in the
    adapter (peft's trainable tokens), every other new row is rebuilt here. transformers'
    ``mean_resizing`` samples around that mean and its default init is random: both would
    differ between loads.
    """
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        layers = [model.get_input_embeddings(), model.get_output_embeddings()]
        weights = {id(m.weight): m.weight for m in layers if m is not None}  # tied: one tensor
        with torch.no_grad():
            for w in weights.values():
                w[rows:] = w[:rows].mean(dim=0)


def _check_exists(name_or_path: str) -> None:
    """Fail before any loading when a base can not be found offline."""
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        raise FileNotFoundError(
            f"model.pretrained.name_or_path={name_or_path!r} is a GGUF file; convert it to a "
            "safetensors folder first (modc convert-gguf FILE.gguf OUT_DIR) and point "
            "name_or_path at OUT_DIR"
        )
    if path.exists():
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"model.pretrained.name_or_path={name_or_path!r} is a directory without "
                "config.json; point it at a saved transformers model (save_pretrained) or a Hub id"
            )
        if not any(path.glob("*.safetensors")):
            raise FileNotFoundError(
                f"model.pretrained.name_or_path={name_or_path!r} has no *.safetensors weights "
                "(only safetensors are loaded); re-save it with save_pretrained("
                "safe_serialization=True), or convert a GGUF file with modc convert-gguf"
            )
        return
    # A Hub id is "name" or "owner/name"; anything else that does not exist is a bad local path.
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
    if looks_local:
        raise FileNotFoundError(
            f"model.pretrained.name_or_path={name_or_path!r}: no such directory; "
            "fix the path or give a Hub id such as 'Qwen/Qwen2.5-0.5B'"
        )
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name_or_path, "config.json"), str):
            raise FileNotFoundError(
                f"model.pretrained.name_or_path={name_or_path!r} is not in the local Hugging "
                "Face cache and HF_HUB_OFFLINE=1; download it first (huggingface-cli download "
                f"{name_or_path}) or set model.pretrained.name_or_path to a local directory"
            )


def load_pretrained_base(
    cfg: PretrainedModelParams,
    modes: Sequence[str] = (),
    *,
    lora: bool = True,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    gradient_checkpointing: bool = False,
):
    """(model, tokenizer) for fine-tuning a pretrained causal LM.

    ``modes``: prefix-model modes; their tokens are added to the tokenizer as special tokens and
    their embedding rows made trainable. With ``lora`` the model is a ``peft.PeftModel`` whose
    trainable parameters are the LoRA matrices (and those rows); without, the bare model.
    ``dtype`` None keeps float32 (training is done in fp32 master weights + autocast); bf16
    keeps the frozen base in bf16 (peft still makes the LoRA weights float32).
    ``gradient_checkpointing`` recomputes the base's activations in backward (less memory).
    Raises FileNotFoundError naming ``model.pretrained.name_or_path`` before loading anything
    when the base can not be found.
    """
    _check_exists(cfg.name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(
        cfg.name_or_path, trust_remote_code=cfg.trust_remote_code
    )
    if tokenizer.pad_token is None:
        # Causal LMs often ship without a pad token; padding positions are masked anyway.
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        cfg.name_or_path,
        dtype=dtype or torch.float32,
        trust_remote_code=cfg.trust_remote_code,
        use_safetensors=True,
    )
    mode_tokens = add_mode_tokens(tokenizer, modes) if modes else []
    fit_embeddings(model, tokenizer)
    model.to(device)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()  # the frozen embeddings' output must carry grad
    if not lora:
        return model, tokenizer

    from peft import LoraConfig, get_peft_model

    lcfg = cfg.lora
    extra = {}
    if mode_tokens:
        # Only the mode tokens' input rows train: they appear in prompts, never in labels, so
        # the output head needs no new rows trained (lighter than modules_to_save=[embed, head]).
        extra["trainable_token_indices"] = tokenizer.convert_tokens_to_ids(mode_tokens)
    peft_config = LoraConfig(
        r=lcfg.r,
        lora_alpha=lcfg.alpha,
        lora_dropout=lcfg.dropout,
        target_modules=list(lcfg.target_modules),
        task_type="CAUSAL_LM",
        **extra,
    )
    return get_peft_model(model, peft_config), tokenizer
