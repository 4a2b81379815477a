"""Load a finished modc-data checkpoint for sampling, and pick the mode token to sample under.

What it handles: a single checkpoint directory (``standard``, ``expert`` or ``prefix``), either a
full transformers model (scratch) or a peft LoRA adapter over a pretrained base; ``modc.json``
says which. What it leaves out: ``experts`` group directories, which hold one checkpoint per
mode: load each ``info.experts[mode]`` sub-directory on its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from modc_data.modeling.modc_json import ModcInfo, read_modc
from modc_data.schema import mode_token

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def load_checkpoint(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    trainable: bool = False,
):
    """(model, tokenizer, ModcInfo) from a checkpoint directory; the model is in eval mode.

    ``trainable``: a LoRA adapter is loaded with its adapter weights requiring grad (gradient
    features need them); a full model's parameters require grad either way.

    ``dtype`` None: float32 on CPU, as saved elsewhere. ``attn_implementation``: passed to
    ``from_pretrained`` when given (None: the transformers default). A directory with
    ``adapter_config.json`` is a LoRA adapter: its base (``info.base['name_or_path']``, else the
    adapter config's ``base_model_name_or_path``) is loaded first, grown to the adapter
    tokenizer's size, then wrapped with ``peft.PeftModel.from_pretrained``. ``trainable``: the
    adapter's parameters keep ``requires_grad`` (peft's ``is_trainable=True``; the base stays
    frozen), as gradient features under a LoRA reference need; by default peft loads adapters
    frozen. A full model's parameters require grad either way. Weights are read from
    safetensors only. Raises FileNotFoundError when ``modc.json`` or the adapter's safetensors
    file is missing and ValueError for an ``experts`` group directory.
    """
    path = Path(path)
    info = read_modc(path)
    if info.variant == "experts":
        raise ValueError(
            f"{path} is an 'experts' group (one model per mode); load each expert directory "
            f"instead: {', '.join(str(path / d) for d in info.experts.values())}"
        )
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    kwargs = {
        "dtype": dtype or torch.float32,
        "trust_remote_code": trust_remote_code,
        "use_safetensors": True,
    }
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if (path / ADAPTER_CONFIG).exists():
        from peft import PeftModel

        from modc_data.modeling.models import fit_embeddings

        base_name = info.base.get("name_or_path") or json.loads(
            (path / ADAPTER_CONFIG).read_text()
        ).get("base_model_name_or_path")
        if not base_name:
            raise ValueError(
                f"{path}: adapter checkpoint names no base model (modc.json base.name_or_path "
                "and adapter_config.json base_model_name_or_path are both empty)"
            )
        if not (path / ADAPTER_WEIGHTS).exists():
            # peft has no use_safetensors switch: without this file it would unpickle
            # adapter_model.bin (with weights_only, but still not safetensors).
            raise FileNotFoundError(
                f"{path}: adapter checkpoint has no {ADAPTER_WEIGHTS}; only safetensors weights "
                "are loaded (re-save the adapter with save_pretrained(safe_serialization=True))"
            )
        base = AutoModelForCausalLM.from_pretrained(base_name, **kwargs)
        fit_embeddings(base, tokenizer)
        model = PeftModel.from_pretrained(base, path, is_trainable=trainable)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    model.to(device)
    model.eval()
    return model, tokenizer, info


def resolve_mode_token(info: ModcInfo, mode: str | None) -> str | None:
    """The token to put before the prompt when sampling ``info``'s model under ``mode``.

    prefix: ``mode`` must be one of ``info.modes``; returns its token. expert: ``mode`` must be
    the expert's own mode (or None); returns None. standard: ``mode`` must be None; returns None.
    Raises ValueError naming the known modes otherwise.
    """
    if info.variant == "prefix":
        if mode not in info.modes:
            raise ValueError(
                f"prefix model has no mode {mode!r}; known modes: {sorted(info.modes)}"
            )
        return info.mode_tokens.get(mode, mode_token(mode))
    if info.variant == "expert":
        if mode is not None and mode != info.mode:
            raise ValueError(
                f"this expert was trained on mode {info.mode!r}, not {mode!r}; "
                f"known modes: [{info.mode!r}]"
            )
        return None
    if info.variant == "standard":
        if mode is not None:
            raise ValueError(
                f"a standard model has no modes (got mode {mode!r}); pass mode=None"
            )
        return None
    raise ValueError(
        f"variant {info.variant!r} has no single model; resolve the mode per expert "
        f"(known modes: {sorted(info.experts)})"
    )
