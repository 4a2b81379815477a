"""The seeded sampling rule both hf decoders share: one uniform per (row, step) picks a token.

How samples stay reproducible whatever the batching: every (prompt, sample) row draws its
randomness from its own stream, ``torch.rand(n, max_new_tokens)`` of a generator seeded with the
prompt's seed, and turns the uniform of step t into a token by inverse-CDF sampling. So rows can be
sorted by length and packed into batches of any size (left padding, attention mask, KV cache on)
and sample j of a prompt still reads the same numbers. transformers' own ``do_sample`` draws all
rows from one global RNG (``torch.multinomial``), whose output depends on the batch; hence this
hand-written sampler, run as a logits processor that leaves a single finite score per row, with
``do_sample=False`` so that ``generate`` picks exactly that token (stopping at eos, padding finished
rows, caching, all stay transformers').

What it leaves out: the decoding loops themselves (``sampling.compact`` and ``sampling.hf``);
other samplers' knobs (top-k, penalties). Float differences between batch shapes could in
principle flip a token whose CDF boundary lies within ~1e-7 of its uniform; in practice samples
are identical across batch sizes (tests check it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor


class SeededSampler(LogitsProcessor):
    """Temperature + top-p sampling from per-row uniforms ``u`` (rows, max_new_tokens).

    Returns scores that are 0 at the sampled token and -inf elsewhere, so greedy selection in
    ``generate`` takes it.
    """

    def __init__(self, uniforms: torch.Tensor, prompt_len: int, temperature: float, top_p: float):
        self.u = uniforms
        self.prompt_len = prompt_len
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_len
        u = self.u[:, step].to(scores.device)
        token = pick(scores, u, self.temperature, self.top_p).unsqueeze(-1)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(-1, token, 0.0)


def pick(scores: torch.Tensor, u: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """(rows,) token ids: inverse-CDF sampling of softmax(scores / T), nucleus-truncated, with one
    uniform per row; ``temperature == 0`` is argmax."""
    if temperature == 0:
        return scores.argmax(-1)
    probs = torch.softmax(scores.float() / temperature, dim=-1)
    if top_p < 1.0:
        # Nucleus: keep the smallest prefix (by descending prob) whose mass reaches top_p.
        probs, order = probs.sort(dim=-1, descending=True)
        before = probs.cumsum(-1) - probs  # mass strictly before each token
        probs = probs.masked_fill(before >= top_p, 0.0)
    else:
        order = None
    cdf = probs.cumsum(-1)
    # right=True: a token with zero probability (flat cdf) is never chosen.
    token_at = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1), right=True)
    token_at = token_at.clamp_(max=probs.shape[-1] - 1)
    token = order.gather(-1, token_at) if order is not None else token_at
    return token.squeeze(-1)


def row_uniforms(batch: Sequence[tuple[int, int]], seeds: Sequence[int], n: int, steps: int):
    """(len(batch), steps) uniforms; row (i, j) is row j of rand(n, steps) seeded with seeds[i].

    Each prompt's stream comes from its own generator, so it does not depend on the batch; it is
    drawn per batch (not for all prompts up front) to keep memory at batch size x steps.
    """
    out = torch.empty(len(batch), steps)
    streams: dict[int, torch.Tensor] = {}
    for b, (i, j) in enumerate(batch):
        if i not in streams:
            g = torch.Generator().manual_seed(int(seeds[i]))
            streams[i] = torch.rand(n, steps, generator=g)
        out[b] = streams[i][j]
    return out
