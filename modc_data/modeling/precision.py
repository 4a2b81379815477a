"""Numeric precision and speed choices of a training run, decided when it starts.

``train.bf16``: bf16 autocast or fp32, measured on one real step where the hardware has native
bf16 (``choose_bf16``); the dtype of a pretrained base's frozen weights (``frozen_base_dtype``);
the shape key under which a verdict is cached per machine. What is not here: the thread count
(``modc_data.autotune``) and the loop that uses the choices (``modeling.loop``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from modc_data import autotune
from modc_data.params_training import ModelParams


def use_bf16(setting: str, device: torch.device) -> bool:
    """Whether bfloat16 can be fast here at all: 'off' never, 'on' always, 'auto' where the
    hardware has native bf16. Whether it *is* faster is measured (``choose_bf16``)."""
    if setting == "off":
        return False
    if setting == "on":
        return True
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # oneDNN reports bf16 support only with native instructions (avx512_bf16 / AMX); without
    # them autocast emulates bf16 and is slower than fp32.
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def choose_bf16(
    setting: str, device: torch.device, model, slices: Sequence[dict[str, torch.Tensor]],
    shape: str, *, cache: str | Path | None, timer: autotune.Timer,
) -> autotune.Verdict:
    """``train.bf16``: 'on'/'off' as set; 'auto' times forward+backward of ``slices`` (one real
    step's micro-batches, on ``device``) in fp32 and under bf16 autocast and keeps the faster
    (fp32 on a tie, and without measuring where the hardware has no native bf16).

    The model's weights, gradients (None before and after) and the RNG are left as they were.
    """
    if setting != "auto":
        return autotune.fixed("train.bf16", setting)

    def step(bf16: bool):
        def run() -> None:
            for batch in slices:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    loss = model(**batch).loss
                loss.backward()
            model.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        return run

    candidates = {"off": step(False)}
    if use_bf16("auto", device):
        candidates["on"] = step(True)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return autotune.choose("train.bf16", candidates, shape=shape, cache=cache, timer=timer,
                               device=str(device))


def shape_key(model, slices: Sequence[dict[str, torch.Tensor]], trainable: int) -> str:
    """What a step's time depends on: architecture, trainable share, batch rows and slices, the
    longest row in steps of 32 tokens (coarse, so the arms and jobs of a run share a key), and
    the thread count (a verdict timed on a loaded machine with 1 thread is not one for 2)."""
    c = model.config
    total = sum(p.numel() for p in model.parameters())
    rows = sum(b["input_ids"].shape[0] for b in slices)
    longest = 32 * math.ceil(max(b["input_ids"].shape[1] for b in slices) / 32)
    return (f"{c.model_type} h{c.hidden_size} l{c.num_hidden_layers} "
            f"i{getattr(c, 'intermediate_size', 0)} v{c.vocab_size // 1000}k "
            f"trainable {trainable / total:.2f} batch {rows} in {len(slices)} T<={longest} "
            f"threads {torch.get_num_threads()}")


def frozen_base_dtype(model_cfg: ModelParams, device: torch.device) -> torch.dtype | None:
    """dtype of a pretrained base's frozen weights: ``model.pretrained.dtype`` ('auto': bf16 on a
    GPU that supports it, where it halves the base's memory and the LoRA weights stay fp32;
    fp32 on a CPU, where bf16 matmuls are slower without AMX)."""
    choice = model_cfg.pretrained.dtype
    if choice == "auto":
        ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if ok else None
    return torch.bfloat16 if choice == "bfloat16" else None
