"""What every sampling backend takes and returns, and how per-(problem, model, mode) seeds are made.

A backend turns ``(checkpoint, prompts, mode)`` into ``n`` completions per prompt. The prompt the
model sees is ``format.prompt_text(prompt, mode)`` (ids: ``format.encode_prompt``), so a prefix
model is sampled under a mode by passing ``mode``; standard models and experts get ``mode=None``.

What it leaves out: loading checkpoints (each backend does its own) and scoring (``run.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

BACKENDS = ("hf", "vllm", "openai")

# Seeds live in [0, 2**62): vLLM gives child i of an n-sample request the seed ``seed + i``, and
# torch generators take at most 64-bit seeds, so this leaves room for any n.
_SEED_SPACE = 2**62


@dataclass(frozen=True)
class Completion:
    """One sampled completion: decoded text (special tokens skipped) and generated-token count.

    ``n_tokens`` counts the ids the model produced, the stop token included, padding excluded;
    ``None`` only when a remote server does not say (see ``openai_backend``).
    """

    text: str
    n_tokens: int | None
    # the first generated token as the tokenizer spells it (special tokens kept), where the
    # backend knows it (hf): a free-sampling prefix model's own choice of mode token
    first_token: str | None = None


@runtime_checkable
class SamplingBackend(Protocol):
    """Samples ``n`` completions for each prompt from one checkpoint.

    ``model``: a checkpoint directory (``hf``, ``vllm``) or the name a server knows it by
    (``openai``; a directory is mapped to a served name by that backend).
    ``prompts``: prompt texts without any mode token; ``mode``: the prefix mode or None.
    ``seeds``: one per prompt; the ``n`` samples of prompt ``i`` depend only on ``seeds[i]``, the
    model and the sampling settings, never on which other prompts share a batch.
    ``temperature`` 0 means greedy. Returns ``len(prompts)`` lists of ``n`` Completions, in order.
    """

    name: str

    def generate(
        self,
        model: str | Path,
        prompts: Sequence[str],
        *,
        mode: str | None,
        n: int,
        seeds: Sequence[int],
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        progress: bool = False,
    ) -> list[list[Completion]]: ...


def sample_seed(base_seed: int, *parts: str, n: int = 1) -> int:
    """Stable seed for one (problem, model, mode) group of ``n`` samples.

    A sha256 of ``(base_seed, *parts)`` reduced to a multiple of ``n`` in [0, 2**62): two distinct
    groups therefore get seed ranges ``[s, s + n)`` that never overlap (vLLM seeds sample i with
    ``s + i``), unless the hash itself collides (probability about n / 2**62).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    h = hashlib.sha256(str(int(base_seed)).encode())
    for p in parts:
        h.update(b"\x1f" + str(p).encode("utf-8"))
    slots = _SEED_SPACE // n
    return (int.from_bytes(h.digest()[:8], "big") % slots) * n


def check_request(
    prompts: Sequence[str],
    seeds: Sequence[int],
    n: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
) -> None:
    """Raise ValueError naming the argument when a generate request is malformed."""
    if len(seeds) != len(prompts):
        raise ValueError(f"seeds: need one per prompt, got {len(seeds)} for {len(prompts)} prompts")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
