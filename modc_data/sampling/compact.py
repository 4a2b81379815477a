"""The hand-written ``compact`` KV-cache decoder, and exact first-token probabilities.

transformers' ``generate`` keeps every finished row in the batch until the longest one ends, so
with traces of ~65 tokens and a 96-token cap about a third of the work decodes padding; this loop
drops finished rows from the batch and the ``DynamicCache`` (``Cache.reorder_cache``, the public
hook beam search uses) whenever an eighth of them have finished. No library does that on CPU
(vLLM's continuous batching is GPU-only). It feeds the same uniforms (``sampling.seeded``), so its
samples equal ``generate``'s in float32 (tests check it); measured 1.1-1.4x ``generate``'s
samples/s on 2 cores (more where trace lengths vary more; ``benchmarks/sampling_throughput.py
--checkpoint``). ``first_token_probs`` is one forward pass over the same left-padded positions.

What it leaves out: batching prompts into rows, decoding text and the transformers ``generate``
decoder (``sampling.hf``); beam search.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch

from modc_data.sampling.seeded import pick

# Finished rows are dropped from the batch once they are this share of it: compacting costs a
# copy of the KV cache, so doing it every step is slower (measured: 1/8 beats 0 and 1/4).
_COMPACT_SHARE = 0.125


def cache_kwarg(model) -> str:
    """The forward argument that takes a ``Cache`` object: ``cache`` or ``past_key_values``.

    transformers has renamed ``past_key_values`` to ``cache`` on model ``forward`` (5.24 warns a
    FutureWarning for the old name, which goes away in 5.40); older releases we support (5.16+)
    know only ``past_key_values``. Read from the signature of the transformers model (for a
    peft model, its base model: peft passes unknown keyword arguments through unchanged).
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def decode_compact(
    model,
    input_ids: torch.Tensor,
    attention: torch.Tensor,
    uniforms: torch.Tensor | None,
    *,
    temperature: float,
    top_p: float,
    eos: Sequence[int],
    max_new_tokens: int,
    pad: int,
) -> torch.Tensor:
    """(rows, max_new_tokens) generated ids, ``pad`` after each row's eos (see module docstring).

    Hand-written KV-cache decoding that evicts finished rows; ``input_ids`` is left-padded and
    ``attention`` marks real tokens. ``uniforms`` (rows, max_new_tokens) drive sampling; None is
    greedy.
    """
    from transformers import DynamicCache

    device = input_ids.device
    rows_total = input_ids.shape[0]
    cache = DynamicCache(config=model.config)
    with_cache = {cache_kwarg(model): cache, "use_cache": True}
    position = (attention.cumsum(-1) - 1).clamp(min=0)
    logits = model(
        input_ids=input_ids, attention_mask=attention, position_ids=position, logits_to_keep=1,
        **with_cache,
    ).logits[:, -1]
    out = torch.full((rows_total, max_new_tokens), pad, dtype=torch.long, device=device)
    rows = torch.arange(rows_total, device=device)  # batch row -> output row
    alive = torch.ones(rows_total, dtype=torch.bool, device=device)
    next_pos = position[:, -1] + 1
    eos_t = torch.tensor(list(eos), dtype=torch.long, device=device)
    if uniforms is not None:
        uniforms = uniforms.to(device)
    for t in range(max_new_tokens):
        u = uniforms[rows, t] if uniforms is not None else None
        token = pick(logits, u, temperature, top_p)  # greedy (temperature 0) ignores u
        out[rows[alive], t] = token[alive]
        if len(eos_t):
            alive &= ~torch.isin(token, eos_t)
        if t == max_new_tokens - 1 or not bool(alive.any()):
            break
        if int((~alive).sum()) >= _COMPACT_SHARE * len(rows):
            keep = alive.nonzero().squeeze(1)
            cache.reorder_cache(keep)
            rows, attention, token, next_pos = rows[keep], attention[keep], token[keep], next_pos[keep]
            alive = alive[keep]
        attention = torch.cat([attention, attention.new_ones(len(rows), 1)], dim=1)
        logits = model(
            input_ids=token.unsqueeze(1), attention_mask=attention,
            position_ids=next_pos.unsqueeze(1), **with_cache,
        ).logits[:, -1]
        next_pos = next_pos + 1
    return out


@torch.inference_mode()
def first_token_probs(
    model, prompt_ids: Sequence[Sequence[int]], token_ids: Sequence[int], *,
    temperature: float = 1.0, batch_size: int = 512,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's first-token distribution restricted to ``token_ids``, per prompt, exactly.

    One forward pass per batch (left-padded with the positions ``decode_compact`` uses), the
    last position's logits divided by ``temperature``, softmaxed in float32 over the whole
    vocabulary. Returns (q, mass): q (P, len(token_ids)) renormalised to sum to 1 per prompt,
    and mass (P,) the probability of any of ``token_ids`` before renormalising (how surely the
    model starts with one of them). top-p is not applied: q is the model's preference.
    """
    if temperature <= 0:
        raise ValueError(f"first_token_probs: temperature must be > 0, got {temperature}")
    device = next(model.parameters()).device
    ids_t = torch.as_tensor(list(token_ids), dtype=torch.long, device=device)
    qs, masses = [], []
    for start in range(0, len(prompt_ids), batch_size):
        batch = prompt_ids[start : start + batch_size]
        longest = max(len(p) for p in batch)
        input_ids = torch.zeros((len(batch), longest), dtype=torch.long)
        attention = torch.zeros((len(batch), longest), dtype=torch.long)
        for b, ids in enumerate(batch):
            input_ids[b, longest - len(ids) :] = torch.as_tensor(list(ids), dtype=torch.long)
            attention[b, longest - len(ids) :] = 1
        position = (attention.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                       position_ids=position.to(device), logits_to_keep=1).logits[:, -1]
        probs = torch.softmax(logits.float() / temperature, dim=-1)[:, ids_t]
        mass = probs.sum(-1)
        qs.append(probs / mass.clamp(min=1e-30)[:, None])
        masses.append(mass)
    return torch.cat(qs).cpu(), torch.cat(masses).cpu()
