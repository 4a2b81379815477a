"""vLLM's offline engine (``vllm.LLM``) as a sampling backend, each engine in its own process.

One request per prompt with ``SamplingParams(n=n, seed=seed)``: vLLM seeds child i with
``seed + i``, and ``base.sample_seed`` makes every (problem, model, mode) seed a multiple of n, so
two groups never share a child seed. Prompts are token ids from ``format.encode_prompt`` with the
checkpoint's own tokenizer (BOS and mode token exactly as in training); the generated ids
are decoded with it too, as the hf backend does.

Engines: the engine arguments come from the ``sample.vllm`` params (``VLLMParams``). Each engine
runs in a process of its own, started with multiprocessing 'spawn' (this process never imports
vllm nor touches CUDA), and is ended before the next model's starts, so its GPU memory is
returned to the driver (dropping an ``LLM`` object in-process does not reliably free it).
``data_parallel_size`` N starts N engines, each on its own ``tensor_parallel_size *
pipeline_parallel_size`` GPUs (``CUDA_VISIBLE_DEVICES`` sliced), and deals the prompts out
round-robin; samples do not change, since each prompt is seeded on its own. (vLLM's own
``LLM(data_parallel_size=N)`` refuses single-process use; its DP coordination matters for MoE
models only.)

Checkpoints: a full model directory gets its own engine. A LoRA adapter directory (peft
``adapter_config.json``) is served by one engine over its base with ``enable_lora`` and a
``LoRARequest``, so all experts of a LoRA group share one engine and one copy of the base
weights. A prefix LoRA checkpoint whose mode-token embedding rows were trained (peft
``trainable_token_indices``) is not understood by vLLM's LoRA loader: it is merged
(``modeling.merge.merged_checkpoint``) into a cached full model folder under
``sample.vllm.merged_cache_dir``, and that folder is served.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing as mp
import os
import signal
import traceback
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modc_data.modeling.format import encode_prompt
from modc_data.modeling.merge import ADAPTER_CONFIG, adapter_base, has_trained_rows, is_adapter
from modc_data.params_sampling import VLLM_LORA_RANKS, VLLMParams
from modc_data.sampling.base import Completion, check_request


def _check_vllm() -> None:
    """Fail at construction, before any problem is read, without importing vllm here."""
    if importlib.util.find_spec("vllm") is None:
        raise ImportError(
            "sample.backend='vllm' needs the vllm package (pip install '.[gpu]' on a CUDA "
            "machine, or `make test-vllm` for the CPU build); use sample.backend='hf' otherwise."
        )


def _worker(conn, llm_kwargs: dict[str, Any], env: dict[str, str]) -> None:
    """Child process: one ``vllm.LLM``, answering generate requests until told to stop.

    It leads a process group of its own, which vLLM's engine-core and worker processes join, so
    ``_Engines.close`` can end every one of them: a spawned child exits with ``os._exit``,
    skipping the finalizers that would stop vLLM's processes (measured: they outlived it).
    """
    os.setpgrp()
    os.environ.update(env)
    try:
        from vllm import LLM, SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest

        llm = LLM(**llm_kwargs)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", None))
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the parent is gone
            msg = None
        if msg is None:
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception:  # best effort: close() ends the process group anyway
                pass
            break
        ids, params, lora, use_tqdm = msg
        try:
            outputs = llm.generate(
                [TokensPrompt(prompt_token_ids=i) for i in ids],
                [SamplingParams(**p) for p in params],
                use_tqdm=use_tqdm,
                lora_request=LoRARequest(*lora) if lora else None,
            )
            conn.send((
                "ok",
                [
                    [list(o.token_ids) for o in sorted(r.outputs, key=lambda o: o.index)]
                    for r in outputs
                ],
            ))
        except BaseException:
            conn.send(("error", traceback.format_exc()))


def _visible_gpus() -> list[str]:
    """CUDA device ids this process may use (``CUDA_VISIBLE_DEVICES``, else all); [] on CPU.
    ``torch.cuda.device_count`` asks NVML and creates no CUDA context here."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d for d in visible.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


class _Engines:
    """``data_parallel_size`` worker processes holding one model's engines."""

    def __init__(self, llm_kwargs: dict[str, Any], dp: int, gpus_per_engine: int):
        ctx = mp.get_context("spawn")
        devices = _visible_gpus()
        if dp > 1 and devices and len(devices) < dp * gpus_per_engine:
            raise ValueError(
                f"sample.vllm: data_parallel_size {dp} x {gpus_per_engine} GPU(s) per engine "
                f"needs {dp * gpus_per_engine} GPUs, this machine shows {len(devices)}"
            )
        self.procs: list[tuple[Any, Any]] = []
        try:
            for rank in range(dp):
                env = {}
                if dp > 1 and devices:  # without GPUs (vLLM's CPU build) nothing to pin
                    own = devices[rank * gpus_per_engine : (rank + 1) * gpus_per_engine]
                    env["CUDA_VISIBLE_DEVICES"] = ",".join(own)
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_worker, args=(child, llm_kwargs, env), daemon=False)
                proc.start()
                child.close()
                self.procs.append((proc, parent))
            for proc, conn in self.procs:
                self._reply(proc, conn, "starting the engine")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _reply(proc, conn, what: str):
        try:
            status, payload = conn.recv()
        except EOFError:
            raise RuntimeError(
                f"vLLM worker (pid {proc.pid}) died while {what} (exit code {proc.exitcode})"
            ) from None
        if status == "error":
            raise RuntimeError(f"vLLM worker failed while {what}:\n{payload}")
        return payload

    def generate(self, ids, params, lora, use_tqdm) -> list:
        dp = len(self.procs)
        for rank, (_, conn) in enumerate(self.procs):
            conn.send((ids[rank::dp], params[rank::dp], lora, use_tqdm and rank == 0))
        parts = [self._reply(p, c, "generating") for p, c in self.procs]
        out: list = [None] * len(ids)
        for rank, part in enumerate(parts):
            out[rank::dp] = part
        return out

    def close(self) -> None:
        for _, conn in self.procs:
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
        for proc, conn in self.procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=10)
            try:  # whatever vLLM left in the worker's process group
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            conn.close()
        self.procs = []


def lora_rank_for(adapter_dir: str | Path, wanted: int | None) -> int:
    """``max_lora_rank`` for an adapter: ``wanted`` if set (checked), else the smallest rank
    vLLM accepts that holds the adapter's ``r``."""
    r = int(json.loads((Path(adapter_dir) / ADAPTER_CONFIG).read_text()).get("r", 16))
    if wanted is not None:
        if wanted < r:
            raise ValueError(
                f"{adapter_dir}: LoRA rank {r} exceeds sample.vllm.max_lora_rank {wanted}"
            )
        return wanted
    fits = [k for k in VLLM_LORA_RANKS if k >= max(r, 16)]  # vLLM's default is 16
    if not fits:
        raise ValueError(f"{adapter_dir}: LoRA rank {r} exceeds vLLM's largest, 512")
    return fits[0]


class VLLMBackend:
    """vLLM offline engines configured by ``params`` (``sample.vllm``); see the module docstring.

    One model's engine(s) are kept at a time (keyed by the weights they hold); ``close()`` ends
    them (also done at interpreter exit).
    """

    name = "vllm"

    def __init__(
        self,
        params: VLLMParams | None = None,
        trust_remote_code: bool | None = None,
        **_ignored: Any,  # e.g. batch_size: vLLM schedules its own batches
    ):
        _check_vllm()
        self.params = params or VLLMParams()
        if trust_remote_code is not None:
            self.params = self.params.model_copy(update={"trust_remote_code": trust_remote_code})
        self._engines: tuple[str, _Engines] | None = None
        self._finalizer: weakref.finalize | None = None
        self._lora_ids: dict[str, int] = {}
        self._tokenizers: dict[str, Any] = {}

    def close(self) -> None:
        """End the running engine processes (their GPU memory goes back to the driver)."""
        if self._finalizer is not None:
            self._finalizer()  # runs _Engines.close once; also run at exit or garbage collection
            self._finalizer = None
        self._engines = None

    def _serve_dir(self, path: Path) -> Path:
        """What vLLM loads for ``path``: itself, or its merged full model (trained token rows)."""
        if has_trained_rows(path):
            from modc_data.modeling.merge import merged_checkpoint

            return merged_checkpoint(path, self.params.merged_cache_dir)
        return path

    def _engine_for(self, model: str | Path):
        """(engines, lora tuple or None, tokenizer) for a checkpoint directory."""
        path = Path(model)
        served = self._serve_dir(path)
        kwargs = self.params.engine_kwargs()
        lora = None
        if is_adapter(served):
            base = adapter_base(served)
            rank = lora_rank_for(served, self.params.max_lora_rank)
            key = f"lora:{base}:{rank}"
            kwargs.update(model=base, enable_lora=True, max_lora_rank=rank)
            rid = self._lora_ids.setdefault(str(served.resolve()), len(self._lora_ids) + 1)
            lora = (f"adapter{rid}", rid, str(served.resolve()))
        else:
            key = f"full:{served.resolve()}"
            kwargs["model"] = str(served)
        if self._engines is None or self._engines[0] != key:
            self.close()  # the previous model's processes end before the next one starts
            p = self.params
            engines = _Engines(
                kwargs, p.data_parallel_size, p.tensor_parallel_size * p.pipeline_parallel_size
            )
            self._engines = (key, engines)
            self._finalizer = weakref.finalize(self, engines.close)
        # The checkpoint's own tokenizer holds its mode tokens (a base's tokenizer may not).
        tkey = str(path.resolve())
        if tkey not in self._tokenizers:
            from transformers import AutoTokenizer

            self._tokenizers[tkey] = AutoTokenizer.from_pretrained(
                path, trust_remote_code=self.params.trust_remote_code
            )
        return self._engines[1], lora, self._tokenizers[tkey]

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
        engines, lora, tok = self._engine_for(model)
        ids = [encode_prompt(tok, p, mode) for p in prompts]
        # vLLM refuses n > 1 with greedy decoding; its n samples are all the one greedy one.
        k = 1 if temperature == 0 else n
        params = [
            dict(
                n=k,
                seed=int(s),
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_new_tokens,
                detokenize=False,
            )
            for s in seeds
        ]
        out = [row * (n // k) for row in engines.generate(ids, params, lora, progress)]
        # Decoded here as the hf backend decodes (vLLM's incremental detokenizer may keep a
        # leading space that batch_decode drops), so both backends give the same text.
        texts = iter(tok.batch_decode([t for row in out for t in row], skip_special_tokens=True))
        return [[Completion(text=next(texts), n_tokens=len(t)) for t in row] for row in out]
