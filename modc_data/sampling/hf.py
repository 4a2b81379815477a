"""transformers as a sampling backend: many prompts x n samples, batched, seeded.

``hf_generate`` sorts (prompt, sample) rows by prompt length, packs them into left-padded
batches and decodes each with one of two decoders, fed the per-row uniforms of
``sampling.seeded`` so that sample j of a prompt does not depend on the batching: ``compact``
(default; the hand-written KV-cache loop of ``sampling.compact``, which drops finished rows) or
``generate`` (transformers' own loop, static cache, with the seeded sampler as a logits processor
and ``do_sample=False``), which stays selectable for models the hand loop does not suit.
``HFBackend`` loads checkpoints, settles ``auto`` dtype/decoder/threads by measuring, and runs it.

What it leaves out: the sampling rule and its reproducibility argument (``sampling.seeded``), the
hand-written decoding loop (``sampling.compact``); beam search; other samplers' knobs (top-k,
penalties: the model's own generation_config penalties are switched off so only the requested
settings apply).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessorList

from modc_data import autotune
from modc_data.modeling.format import encode_prompt
from modc_data.sampling.base import Completion, check_request
from modc_data.sampling.compact import decode_compact, first_token_probs
from modc_data.sampling.seeded import SeededSampler, row_uniforms

DECODERS = ("compact", "generate")
DTYPES = ("auto", "float32", "bfloat16")
_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# Rows of the timing batch ``auto`` decodes per candidate: enough for the batch's real per-row
# cost, small enough that measuring four candidates stays within a few seconds.
_TUNE_ROWS = 128


def _eos_ids(model, tokenizer) -> list[int]:
    ids: list[int] = []
    for source in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if source is None:
            continue
        for i in source if isinstance(source, (list, tuple)) else [source]:
            if i not in ids:
                ids.append(int(i))
    return ids


@torch.inference_mode()
def hf_generate(
    model,
    tokenizer,
    prompt_ids: Sequence[Sequence[int]],
    *,
    n: int,
    seeds: Sequence[int],
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    batch_size: int = 512,
    generate_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
    decoder: str = "compact",
) -> list[list[Completion]]:
    """Sample ``n`` completions for each prompt (token ids) with a loaded causal LM.

    Rows (prompt i, sample j) are sorted by prompt length and packed ``batch_size`` rows per
    batch. Sample j of prompt i depends only on ``seeds[i]``, j and the model (see
    ``sampling.seeded``). ``temperature == 0`` is greedy: one row per prompt, copied n times.
    ``decoder``: ``compact`` (hand loop that drops finished rows) or ``generate`` (transformers).
    ``generate_kwargs`` go to ``generate`` and select it (e.g. ``min_new_tokens``;
    ``cache_implementation`` overrides the default static KV cache).
    Returns, per prompt, n Completions: text decoded with special tokens skipped, n_tokens up
    to and including eos.
    """
    check_request(prompt_ids, seeds, n, temperature, top_p, max_new_tokens)
    if decoder not in DECODERS:
        raise ValueError(f"sample.decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    if generate_kwargs:
        decoder = "generate"  # only transformers' loop understands them
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("prompt_ids: every prompt needs at least one token (got an empty one)")
    greedy = temperature == 0
    per_prompt = 1 if greedy else n
    device = next(model.parameters()).device
    eos = _eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else 0)

    rows = [(i, j) for i in range(len(prompt_ids)) for j in range(per_prompt)]
    # Sorting by length keeps padding (wasted compute) small; results do not depend on order.
    rows.sort(key=lambda r: len(prompt_ids[r[0]]))
    texts: dict[tuple[int, int], Completion] = {}
    # A static (preallocated) KV cache: the default dynamic cache grows by torch.cat every step,
    # which is quadratic copying and was ~half the CPU time in benchmarks/sampling_throughput.py
    # (static: 2x faster, identical samples). Auto-compilation (which static caches switch on for
    # CUDA) is off: it would recompile for every new (batch, prompt length) shape.
    extra = {"cache_implementation": "static", "disable_compile": True, **(generate_kwargs or {})}
    batches = range(0, len(rows), batch_size)
    for start in tqdm(batches, desc="generate", unit="batch", disable=not progress):
        batch = rows[start : start + batch_size]
        longest = max(len(prompt_ids[i]) for i, _ in batch)
        input_ids = torch.full((len(batch), longest), pad, dtype=torch.long)
        attention = torch.zeros((len(batch), longest), dtype=torch.long)
        for b, (i, _) in enumerate(batch):
            ids = prompt_ids[i]
            input_ids[b, longest - len(ids) :] = torch.as_tensor(list(ids), dtype=torch.long)
            attention[b, longest - len(ids) :] = 1
        uniforms = None if greedy else row_uniforms(batch, seeds, n, max_new_tokens)
        if decoder == "compact":
            generated = decode_compact(
                model, input_ids.to(device), attention.to(device), uniforms,
                temperature=temperature, top_p=top_p, eos=eos, max_new_tokens=max_new_tokens,
                pad=pad,
            ).tolist()
        else:
            generated = _generate(
                model, input_ids.to(device), attention.to(device), uniforms, longest,
                temperature=temperature, top_p=top_p, eos=eos, max_new_tokens=max_new_tokens,
                pad=pad, extra=extra,
            )
        eos_set = set(eos)
        cut = []
        for seq in generated:
            k = next((t + 1 for t, tok in enumerate(seq) if tok in eos_set), len(seq))
            cut.append(seq[:k])
        decoded = tokenizer.batch_decode(cut, skip_special_tokens=True)
        firsts = tokenizer.convert_ids_to_tokens([ids[0] if ids else pad for ids in cut])
        for (i, j), ids, text, first in zip(batch, cut, decoded, firsts, strict=True):
            texts[(i, j)] = Completion(text=text, n_tokens=len(ids), first_token=first if ids else None)
    if greedy:
        return [[texts[(i, 0)]] * n for i in range(len(prompt_ids))]
    return [[texts[(i, j)] for j in range(n)] for i in range(len(prompt_ids))]


def _generate(model, input_ids, attention, uniforms, longest, *, temperature, top_p, eos,
              max_new_tokens, pad, extra) -> list[list[int]]:
    """transformers ``generate`` with the seeded sampler as a logits processor; generated ids."""
    processors = LogitsProcessorList()
    if uniforms is not None:
        processors.append(SeededSampler(uniforms, longest, temperature, top_p))
    out = model.generate(
        input_ids=input_ids,
        attention_mask=attention,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        logits_processor=processors,
        pad_token_id=pad,
        eos_token_id=list(eos) or None,
        use_cache=True,
        # Neutralise penalties a Hub model's generation_config may carry.
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        **extra,
    )
    return out[:, longest:].tolist()


class HFBackend:
    """transformers backend; checkpoints are loaded with ``modeling.load.load_checkpoint``.

    ``batch_size``: sequences per batch. ``device``: default cuda when available, else cpu.
    ``dtype``: weights' dtype while sampling. bf16 weights sampled 1.4x faster than float32 on
    one 2-core CPU and slower on others; 85-95% of samples are identical to float32's, the rest
    differ from the first token whose probabilities bf16 rounds differently. ``decoder``:
    ``compact`` or ``generate`` (``sampling.compact``; identical samples in float32).
    ``auto`` (either): on the first ``generate`` call the candidates (float32 / bfloat16 where
    the hardware has native bf16; compact / generate) decode one batch of the real prompts each,
    timed by ``timer``, and the fastest is kept for every later call (``autotune.choose``; the
    verdict is cached in ``autotune_cache``, a JSON file, when given). A set value is never
    measured. ``threads``: torch threads while generating (``auto``: the cores free at the first
    call; None: leave torch's setting). ``settings()`` says what was used and why, for the run's
    record. ``generate_kwargs``: extra ``generate`` arguments (they imply the ``generate``
    decoder). ``trust_remote_code`` stays off unless the user turns it on. One checkpoint is kept
    loaded at a time (experts are sampled one after another).
    """

    name = "hf"

    def __init__(
        self,
        batch_size: int = 512,
        device: str | None = None,
        generate_kwargs: dict[str, Any] | None = None,
        trust_remote_code: bool = False,
        dtype: str = "float32",
        decoder: str = "compact",
        threads: int | str | None = None,
        autotune_cache: str | Path | None = None,
        timer: autotune.Timer = autotune.wall_timer,
    ):
        if batch_size < 1:
            raise ValueError(f"sample.batch_size must be >= 1, got {batch_size}")
        if dtype not in DTYPES:
            raise ValueError(f"sample.dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if decoder not in ("auto", *DECODERS):
            raise ValueError(f"sample.decoder must be one of auto, {', '.join(DECODERS)}, got {decoder!r}")
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.generate_kwargs = dict(generate_kwargs or {})
        self.trust_remote_code = trust_remote_code
        self.dtype = dtype
        self.decoder = decoder
        self.threads = threads
        self.autotune_cache = autotune_cache
        self.timer = timer
        self.verdict: autotune.Verdict | None = None  # set by the first generate call
        self._threads: tuple[int, dict] | None = None
        self._loaded: tuple[tuple[str, str], Any, Any] | None = None

    def _dtype_name(self) -> str:
        """float32 / bfloat16: the measured choice once made; float32 while ``auto`` is open."""
        if self.verdict is not None:
            return self.verdict.choice.split("/")[0]
        return "float32" if self.dtype == "auto" else self.dtype

    def _decoder_name(self) -> str:
        if self.generate_kwargs:
            return "generate"  # only transformers' loop understands them
        if self.verdict is not None:
            return self.verdict.choice.split("/")[1]
        return "compact" if self.decoder == "auto" else self.decoder

    def torch_dtype(self) -> torch.dtype:
        """The dtype weights are loaded in now (``auto``: float32 until measured)."""
        return _TORCH_DTYPES[self._dtype_name()]

    def load(self, model: str | Path, dtype: str | None = None):
        """(model, tokenizer) of a checkpoint dir in ``dtype`` (default: ``torch_dtype()``),
        cached while the same dir and dtype are asked for."""
        dtype = dtype or self._dtype_name()
        key = (str(Path(model).resolve()), dtype)
        if self._loaded is None or self._loaded[0] != key:
            self._loaded = None  # free the previous model before loading the next
            m, tok = self._load(model, dtype)
            self._loaded = (key, m, tok)
        return self._loaded[1], self._loaded[2]

    def _load(self, model: str | Path, dtype: str):
        from modc_data.modeling.load import load_checkpoint

        m, tok, _info = load_checkpoint(
            model, device=self.device, dtype=_TORCH_DTYPES[dtype],
            trust_remote_code=self.trust_remote_code,
            # Decoding one token against a short cache: eager attention measured 1.2x sdpa
            # on CPU (sdpa's CPU flash kernel dominated the profile); sdpa on CUDA.
            attn_implementation="eager" if torch.device(self.device).type == "cpu" else None,
        )
        return m, tok

    def settings(self) -> dict[str, Any]:
        """What sampling used and why (dtype, decoder, threads, the autotune verdict), for the
        run's record; dtype changes samples, so it belongs with them."""
        return {
            "backend": self.name,
            "device": self.device,
            "dtype": self._dtype_name(),
            "decoder": self._decoder_name(),
            "threads": self._threads[1] if self._threads else None,
            "autotune": self.verdict.record() if self.verdict else None,
        }

    def _choose(self, model: str | Path, prompt_ids: Sequence[Sequence[int]], *, n: int,
                seeds: Sequence[int], temperature: float, top_p: float,
                max_new_tokens: int) -> autotune.Verdict:
        """Settle ``auto`` dtype/decoder by decoding one batch of these prompts per candidate."""
        setting = "sample.dtype+decoder"
        if self.dtype != "auto" and (self.decoder != "auto" or self.generate_kwargs):
            return autotune.fixed(setting, f"{self.dtype}/{self._decoder_name()}")
        from modc_data.modeling.precision import use_bf16

        dtypes = [self.dtype]
        if self.dtype == "auto":  # bf16 only where the hardware has it natively
            dtypes = ["float32"] + (["bfloat16"] if use_bf16("auto", torch.device(self.device)) else [])
        decoders = list(DECODERS) if self.decoder == "auto" and not self.generate_kwargs else [self._decoder_name()]
        per_prompt = 1 if temperature == 0 else n
        k = max(1, min(len(prompt_ids), math.ceil(min(self.batch_size, _TUNE_ROWS) / per_prompt)))
        path = str(Path(model).resolve())
        loaded = {self._loaded[0][1]: self._loaded[1:]} if self._loaded and self._loaded[0][0] == path else {}
        models = {d: loaded.get(d) or self._load(model, d) for d in dtypes}

        def step(dtype: str, decoder: str):
            m, tok = models[dtype]
            return lambda: hf_generate(
                m, tok, prompt_ids[:k], n=n, seeds=seeds[:k], temperature=temperature, top_p=top_p,
                max_new_tokens=max_new_tokens, batch_size=self.batch_size, decoder=decoder,
                generate_kwargs=self.generate_kwargs,
            )

        config = models[dtypes[0]][0].config
        shape = (f"{config.model_type} h{config.hidden_size} l{config.num_hidden_layers} "
                 f"v{config.vocab_size // 1000}k rows {k * per_prompt} new {max_new_tokens} "
                 f"{'greedy' if temperature == 0 else 'sampled'} threads {torch.get_num_threads()}")
        verdict = autotune.choose(
            setting, {f"{d}/{dec}": step(d, dec) for d in dtypes for dec in decoders},
            shape=shape, cache=self.autotune_cache, timer=self.timer, device=self.device,
            warmup=1, rounds=3, min_rounds=2, budget_s=3.0,
        )
        chosen = verdict.choice.split("/")[0]
        self._loaded = ((path, chosen), *models[chosen])  # keep the winner loaded
        return verdict

    def encode(
        self, model: str | Path, prompts: Sequence[str], mode: str | None
    ) -> list[list[int]]:
        """Ids ``generate`` is fed: ``format.encode_prompt`` (BOS, mode token, prompt)."""
        _, tok = self.load(model)
        return [encode_prompt(tok, p, mode) for p in prompts]

    def mode_preference(
        self, model: str | Path, prompts: Sequence[str], modes: Sequence[str], *,
        temperature: float = 1.0,
    ) -> tuple[list[list[float]], list[float]]:
        """q(m|x) of a free-sampling prefix model from its first-token distribution over the
        mode tokens (``first_token_probs``): per prompt, probabilities over ``modes`` summing to
        1, and the mass the model puts on mode tokens at all."""
        from modc_data.modeling.format import mode_token_id

        m, tok = self.load(model)
        ids = self.encode(model, prompts, None)
        q, mass = first_token_probs(m, ids, [mode_token_id(tok, md) for md in modes],
                                    temperature=temperature, batch_size=self.batch_size)
        return q.tolist(), mass.tolist()

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
        prev_threads = torch.get_num_threads()
        if self.threads is not None:
            if self._threads is None:  # decided once, so every model of a stage gets the same
                self._threads = autotune.resolve_threads(self.threads)
            torch.set_num_threads(self._threads[0])
        try:
            ids = self.encode(model, prompts, mode)
            if self.verdict is None:
                self.verdict = self._choose(model, ids, n=n, seeds=seeds, temperature=temperature,
                                            top_p=top_p, max_new_tokens=max_new_tokens)
            m, tok = self.load(model)
            return hf_generate(
                m,
                tok,
                ids,
                n=n,
                seeds=seeds,
                temperature=temperature,
                top_p=top_p,
                max_new_tokens=max_new_tokens,
                batch_size=self.batch_size,
                generate_kwargs=self.generate_kwargs,
                progress=progress,
                decoder=self._decoder_name(),
            )
        finally:
            torch.set_num_threads(prev_threads)
