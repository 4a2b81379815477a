"""A training run's files: the resume checkpoint, the start weights, the finished checkpoint.

The resume checkpoint (``out_dir/checkpoint``) holds only what trains (for LoRA, the adapter),
safetensors for weights and our own ``state.pt`` for optimizer, scheduler, RNG and counters,
read back with ``weights_only=True``; its fingerprint refuses a checkpoint of another run. The
finished checkpoint (weights, tokenizer, ``modc.json``) is written to a temp dir and renamed onto
``out_dir``. What is not here: deciding when to save (``modeling.loop``) and ``modc.json``'s
fields (``modeling.modc_json``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from modc_data.artifacts import atomic_dir
from modc_data.modeling.modc_json import ModcInfo, write_modc
from modc_data.modeling.tokenizer import add_bos_when_encoding

CHECKPOINT_DIR = "checkpoint"  # resume state inside out_dir; removed once training finishes
RESUME_WEIGHTS = "trainable.safetensors"
RESUME_STATE = "state.pt"


def trainable_state(model) -> dict[str, torch.Tensor]:
    # Only what trains: for LoRA the frozen base stays out of the resume checkpoint.
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_resume(ckpt: Path, model, optimizer, scheduler, step: int, stats: dict, fp: str) -> None:
    with atomic_dir(ckpt) as tmp:
        save_file(trainable_state(model), str(tmp / RESUME_WEIGHTS))
        # Optimizer/scheduler/RNG state is our own file, written here; loaded with weights_only=True.
        torch.save(
            {
                "step": step,
                "fingerprint": fp,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "stats": stats,
            },
            tmp / RESUME_STATE,
        )


def load_resume(ckpt: Path, model, optimizer, scheduler, fp: str) -> tuple[int, dict]:
    state = torch.load(ckpt / RESUME_STATE, weights_only=True, map_location="cpu")
    if state["fingerprint"] != fp:
        raise ValueError(
            f"{ckpt}: resume checkpoint was made by a different run (data, variant, steps or "
            "params differ); delete that directory to start over"
        )
    weights = load_file(str(ckpt / RESUME_WEIGHTS))
    missing = set(trainable_state(model)) - set(weights)
    if missing:
        raise ValueError(f"{ckpt}: resume checkpoint lacks weights {sorted(missing)[:3]} …")
    model.load_state_dict(weights, strict=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng_cpu"])
    if torch.cuda.is_available() and state["rng_cuda"]:
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    return int(state["step"]), dict(state["stats"])


def load_start(model, ckpt: Path) -> str:
    """Load ``ckpt``'s trained weights into ``model`` (safetensors only); their sha256."""
    lora = hasattr(model, "peft_config")
    path = ckpt / ("adapter_model.safetensors" if lora else "model.safetensors")
    if not path.exists():
        raise ValueError(f"{path}: no weights to start from (init_from must be a finished "
                         f"{'LoRA' if lora else 'scratch'} checkpoint of this arm)")
    weights = load_file(str(path))
    if lora:
        from peft import set_peft_model_state_dict

        unexpected = set_peft_model_state_dict(model, weights).unexpected_keys
        missing: list[str] = []
    else:
        missing, unexpected = model.load_state_dict(weights, strict=False)
        # a tied output head is saved once, as the input embedding
        tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
        missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit this model (missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]}); was it trained on this arm?")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def save_final(model, tokenizer, info: ModcInfo, out_dir: Path, state_dict: dict | None = None) -> None:
    """Weights (safetensors / peft adapter), tokenizer and modc.json into a temp dir, then one
    rename onto ``out_dir`` (which drops the resume checkpoint inside it). ``state_dict``: the
    full weights where ``model`` holds only this process's shard."""
    with atomic_dir(out_dir) as tmp:
        # A peft adapter over a resized vocabulary: peft would also save both full embedding
        # matrices (for SmolLM2-135M 227 MB instead of ~1 MB). Not needed: the trained mode-token
        # rows are in the adapter and fit_embeddings rebuilds every other new row exactly.
        extra = {"save_embedding_layers": False} if hasattr(model, "peft_config") else {}
        if state_dict is not None:  # gathered from the shards of a sharded engine (FSDP, DeepSpeed)
            extra["state_dict"] = state_dict
        model.save_pretrained(tmp, safe_serialization=True, **extra)
        add_bos_when_encoding(tokenizer)  # plain transformers / TRL then encode as training did
        tokenizer.save_pretrained(tmp)
        write_modc(tmp, info)
