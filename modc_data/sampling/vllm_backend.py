"""vLLM's offline engine (``vllm.LLM``) as a sampling backend; imported only when used.

One request per prompt with ``SamplingParams(n=n, seed=seed)``: vLLM seeds child i with
``seed + i``, and ``base.sample_seed`` makes every (problem, model, mode) seed a multiple of n, so
two groups never share a child seed. Prompts are token ids from ``format.encode_prompt`` with the
checkpoint's own tokenizer (BOS and mode token exactly as in training).

Checkpoints: a full model directory gets its own engine; a LoRA adapter directory (peft
``adapter_config.json``) is served by one engine over its base with ``enable_lora`` and a
``LoRARequest``, so all experts of a LoRA group share one engine and one copy of the base weights.
What it leaves out: prefix LoRA checkpoints whose mode-token embedding rows were trained
(peft ``trainable_token_indices``) are not understood by vLLM's LoRA loader: merge the adapter
(``merge_and_unload``) and sample the merged model instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modc_data.modeling.format import encode_prompt
from modc_data.sampling.base import Completion, check_request

ADAPTER_CONFIG = "adapter_config.json"


def _import_vllm():
    try:
        import vllm  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "sample.backend='vllm' needs the vllm package (pip install vllm, on a CUDA machine); "
            f"import failed: {err}. Use sample.backend='hf' otherwise."
        ) from None
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

    return LLM, SamplingParams, TokensPrompt, LoRARequest


class VLLMBackend:
    """vLLM offline engine. ``engine_kwargs`` go to ``vllm.LLM`` (e.g. ``gpu_memory_utilization``,
    ``max_model_len``, ``dtype``); ``max_lora_rank`` caps adapter ranks served with LoRA.
    One engine is kept at a time (keyed by the weights it holds)."""

    name = "vllm"

    def __init__(
        self,
        engine_kwargs: dict[str, Any] | None = None,
        max_lora_rank: int = 64,
        trust_remote_code: bool = False,
        **_ignored: Any,  # e.g. batch_size: vLLM schedules its own batches
    ):
        _import_vllm()  # fail at construction, before any problem is read
        self.engine_kwargs = dict(engine_kwargs or {})
        self.max_lora_rank = max_lora_rank
        self.trust_remote_code = trust_remote_code
        self._engine: tuple[str, Any] | None = None
        self._lora_ids: dict[str, int] = {}
        self._tokenizers: dict[str, Any] = {}

    def _engine_for(self, model: str | Path):
        """(engine, lora_request or None, tokenizer) for a checkpoint directory."""
        LLM, _, _, LoRARequest = _import_vllm()
        path = Path(model)
        adapter = (path / ADAPTER_CONFIG).exists()
        if adapter:
            from modc_data.modeling.modc_json import MODC_FILE, read_modc

            base = None
            if (path / MODC_FILE).exists():
                base = read_modc(path).base.get("name_or_path")
            base = base or json.loads((path / ADAPTER_CONFIG).read_text()).get(
                "base_model_name_or_path"
            )
            if not base:
                raise ValueError(f"{path}: LoRA adapter names no base model")
            key, kwargs = (
                f"lora:{base}",
                {"model": base, "enable_lora": True, "max_lora_rank": self.max_lora_rank},
            )
        else:
            key, kwargs = f"full:{path.resolve()}", {"model": str(path)}
        if self._engine is None or self._engine[0] != key:
            self._engine = None  # release the previous engine's memory first
            engine = LLM(**kwargs, trust_remote_code=self.trust_remote_code, **self.engine_kwargs)
            self._engine = (key, engine)
        lora = None
        if adapter:
            rid = self._lora_ids.setdefault(str(path.resolve()), len(self._lora_ids) + 1)
            lora = LoRARequest(f"adapter{rid}", rid, str(path.resolve()))
        # The checkpoint's own tokenizer holds its mode tokens (a base's tokenizer may not).
        tkey = str(path.resolve())
        if tkey not in self._tokenizers:
            from transformers import AutoTokenizer

            self._tokenizers[tkey] = AutoTokenizer.from_pretrained(
                path, trust_remote_code=self.trust_remote_code
            )
        return self._engine[1], lora, self._tokenizers[tkey]

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
    ) -> list[list[Completion]]:
        check_request(prompts, seeds, n, temperature, top_p, max_new_tokens)
        _, SamplingParams, TokensPrompt, _ = _import_vllm()
        engine, lora, tok = self._engine_for(model)
        inputs = [TokensPrompt(prompt_token_ids=encode_prompt(tok, p, mode)) for p in prompts]
        params = [
            SamplingParams(
                n=n,
                seed=int(s),
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_new_tokens,
                skip_special_tokens=True,
            )
            for s in seeds
        ]
        outputs = engine.generate(inputs, params, use_tqdm=progress, lora_request=lora)
        return [
            [
                Completion(text=o.text, n_tokens=len(o.token_ids))
                for o in sorted(req.outputs, key=lambda o: o.index)
            ]
            for req in outputs
        ]
