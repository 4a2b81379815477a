"""The sampling backends by name: ``get_backend("hf" | "vllm" | "openai", **kwargs)``.

Apart from ``base`` (which every backend imports) so that ``base`` never imports a backend.
"""

from __future__ import annotations

from typing import Any

from modc_data.sampling.base import BACKENDS, SamplingBackend


def get_backend(name: str, **kwargs: Any) -> SamplingBackend:
    """Backend by name: ``hf`` (transformers), ``vllm`` (offline engine), ``openai`` (HTTP).

    ``kwargs`` go to the backend's constructor (e.g. ``batch_size`` for hf, ``base_url`` for
    openai). vLLM is imported only when chosen.
    """
    if name == "hf":
        from modc_data.sampling.hf import HFBackend

        return HFBackend(**kwargs)
    if name == "vllm":
        from modc_data.sampling.vllm_backend import VLLMBackend

        return VLLMBackend(**kwargs)
    if name == "openai":
        from modc_data.sampling.openai_backend import OpenAIBackend

        return OpenAIBackend(**kwargs)
    raise ValueError(
        f"sample.backend: unknown backend {name!r}; choose one of {', '.join(BACKENDS)}"
    )
