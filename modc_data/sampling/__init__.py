"""Sampling: n completions per (problem, model, mode) from one of several backends.

- ``base``: the ``SamplingBackend`` protocol, ``Completion``, ``sample_seed``;
- ``registry``: ``get_backend``, a backend by name;
- ``hf`` (transformers, batched and seeded per row; its sampling rule in ``seeded``, its
  hand-written KV-cache decoder in ``compact``), ``vllm_backend`` (offline engine, LoRA experts
  from one engine), ``openai_backend`` (an OpenAI-compatible completions server);
- ``run``: ``sample_model``, the sample step, returning the samples table (``SAMPLES_SCHEMA``).
"""

from modc_data.sampling.base import BACKENDS, Completion, SamplingBackend, sample_seed
from modc_data.sampling.registry import get_backend

__all__ = ["BACKENDS", "Completion", "SamplingBackend", "get_backend", "sample_seed"]
