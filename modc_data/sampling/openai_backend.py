"""An OpenAI-compatible completions server (``vllm serve``, ``transformers serve``) as a backend.

``POST {base_url}/v1/completions`` carrying ``model, prompt, temperature, top_p, max_tokens, seed``
(and ``n``), sent from a thread pool so the server can batch them. Uses only the standard library
(urllib). The API key, if any, comes from ``OPENAI_API_KEY`` and is only ever put in the header.

Seeds: sample i of a prompt whose seed is s comes from seed ``s + i`` (vLLM seeds child i of an
``n``-sample request with ``s + i``; ``base.sample_seed`` keeps groups' ranges apart). Servers that
ignore ``n`` (``transformers serve`` answers one choice per request) get one request per sample with
seed ``s + i``: ``per_request_n=False``, or ``None`` (default), which asks for n once and falls back
when the reply has fewer choices.

``server`` picks the extensions sent beyond the OpenAI schema:

- ``vllm``: with ``prompt_format='auto'`` a local checkpoint directory's own tokenizer encodes the
  prompt exactly as training did (``format.encode_prompt``: BOS, mode token, prompt) and the ids are
  sent with ``add_special_tokens: false``; ``return_token_ids`` gives exact token counts, and the
  text is decoded from those ids as the hf backend decodes.
- ``transformers``: ``transformers serve`` rejects unknown fields and takes text prompts only, and
  samples only when told ``do_sample`` (sent in its ``generation_config`` field). The text sent is
  the prompt with BOS spelled out where the tokenizer does not add it, checked to tokenize to the
  ids ``encode_prompt`` gives. Its seed is one global torch seed set when a request arrives, so
  requests go one at a time (it generates one at a time anyway unless started with
  ``--continuous-batching``).
- ``generic``: text prompts (ids with ``prompt_format='ids'``), nothing else.

Against ``vllm serve`` on a node of GPUs: start one server holding all of them, e.g.
``vllm serve artifacts/models/arm/prefix --data-parallel-size 8 --port 8000`` (add
``--tensor-parallel-size T`` for models that do not fit one GPU; DP x TP GPUs in all; for LoRA
experts, serve the base with ``--enable-lora --lora-modules dfs=<dir> bfs=<dir>``) and set
``sample.backend: openai``, ``sample.openai.base_url: http://127.0.0.1:8000``,
``sample.openai.served_names`` (checkpoint dir -> served name, e.g. the ``--lora-modules`` names),
and ``sample.openai.concurrency`` high enough to keep every data-parallel rank busy (e.g. 64);
the server's own load balancer spreads requests over the ranks, and the samples do not depend on
which rank serves them. What it leaves out: chat completions, streaming.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from modc_data.modeling.format import encode_prompt, prompt_text
from modc_data.sampling.base import Completion, check_request

_RETRY_STATUS = {429, 500, 502, 503, 504}
SERVERS = ("vllm", "transformers", "generic")


def served_prompt_text(tokenizer, prompt: str, mode: str | None) -> str:
    """Text that a server tokenizing with special tokens turns into ``encode_prompt``'s ids.

    ``prompt_text`` alone lacks BOS when the tokenizer does not add it itself (our word
    tokenizer); then BOS is spelled out in front. Raises ValueError when neither round-trips.
    """
    want = encode_prompt(tokenizer, prompt, mode)
    text = prompt_text(prompt, mode)
    candidates = [text]
    if tokenizer.bos_token:
        candidates.append(tokenizer.bos_token + text)
    for c in candidates:
        if list(tokenizer(c)["input_ids"]) == want:
            return c
    raise ValueError(
        f"prompt {prompt[:40]!r}: no text tokenizes to the training ids {want[:8]}… on the "
        "server; use sample.openai.server 'vllm' (token-id prompts) instead"
    )


class OpenAIBackend:
    """Client of ``{base_url}/v1/completions``.

    ``base_url``: e.g. ``http://127.0.0.1:8000`` (a trailing ``/v1`` is accepted too).
    ``served_names``: checkpoint dir (as given, or resolved) -> model name on the server; a model
    not listed is sent as ``str(model)`` (what ``vllm serve <dir>`` serves it as).
    ``server``, ``per_request_n``: see the module docstring. ``max_retries``: retries of a request
    that failed with 429/5xx, a timeout or a refused connection (backoff 1, 2, 4 … s).
    """

    name = "openai"

    def __init__(
        self,
        base_url: str | None = None,
        *,
        served_names: Mapping[str, str] | None = None,
        server: Literal["vllm", "transformers", "generic"] = "vllm",
        prompt_format: Literal["auto", "text", "ids"] = "auto",
        per_request_n: bool | None = None,
        concurrency: int = 8,
        timeout_s: float = 600.0,
        max_retries: int = 2,
    ):
        if not base_url:
            raise ValueError(
                "sample.openai.base_url is not set; the openai backend needs the server's URL "
                "(e.g. http://127.0.0.1:8000 for `vllm serve`)"
            )
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"sample.openai.base_url must start with http:// or https://, got {base_url!r}"
            )
        if server not in SERVERS:
            raise ValueError(f"sample.openai.server must be one of {SERVERS}, got {server!r}")
        if prompt_format not in ("auto", "text", "ids"):
            raise ValueError(f"prompt_format must be auto, text or ids, got {prompt_format!r}")
        if server == "transformers" and prompt_format == "ids":
            raise ValueError("`transformers serve` takes text prompts only; use prompt_format auto")
        base = base_url.rstrip("/")
        self.url = (base if base.endswith("/v1") else base + "/v1") + "/completions"
        self.served_names = dict(served_names or {})
        self.server = server
        self.prompt_format = prompt_format
        self.per_request_n = per_request_n
        # transformers serve seeds one global generator per request: one request at a time.
        self.concurrency = 1 if server == "transformers" else max(1, concurrency)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._tokenizers: dict[str, Any] = {}

    def __repr__(self) -> str:  # never shows the API key
        return f"OpenAIBackend(url={self.url!r}, server={self.server!r})"

    def _served_name(self, model: str | Path) -> str:
        for key in (str(model), str(Path(model).resolve())):
            if key in self.served_names:
                return self.served_names[key]
        return str(model)

    def _tokenizer(self, model: str | Path):
        """The checkpoint's tokenizer when the prompt is built from it, else None."""
        path = Path(model)
        local = path.is_dir() and (path / "tokenizer_config.json").exists()
        wants_ids = self.prompt_format == "ids" or (
            self.prompt_format == "auto" and self.server in ("vllm", "transformers")
        )
        if not wants_ids or (self.prompt_format == "auto" and not local):
            return None
        if not local:
            raise ValueError(
                f"prompt_format='ids' needs a local checkpoint directory with a tokenizer; "
                f"{model} has no tokenizer_config.json"
            )
        key = str(path.resolve())
        if key not in self._tokenizers:
            from transformers import AutoTokenizer

            self._tokenizers[key] = AutoTokenizer.from_pretrained(path)
        return self._tokenizers[key]

    def _prompt(self, tok, prompt: str, mode: str | None) -> str | list[int]:
        if tok is None:
            return prompt_text(prompt, mode)
        if self.server == "transformers":
            return served_prompt_text(tok, prompt, mode)
        return encode_prompt(tok, prompt, mode)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        key = os.environ.get("OPENAI_API_KEY")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        for attempt in range(self.max_retries + 1):
            req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            retry = attempt < self.max_retries
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as err:
                detail = err.read().decode("utf-8", "replace")[:500]
                if err.code in _RETRY_STATUS and retry:
                    time.sleep(2**attempt)
                    continue
                raise RuntimeError(
                    f"{self.url}: HTTP {err.code} for model {body.get('model')!r}: {detail}"
                ) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                if retry:
                    time.sleep(2**attempt)
                    continue
                reason = getattr(err, "reason", err)
                raise RuntimeError(
                    f"{self.url}: no answer from the server ({reason}) after "
                    f"{self.max_retries + 1} attempt(s); is it running? (check "
                    "sample.openai.base_url and sample.openai.timeout_s)"
                ) from None
        raise AssertionError("unreachable")

    def _choices(self, body: dict[str, Any], tok=None) -> list[Completion]:
        """The reply's choices in index order, as Completions. With ``tok`` (the checkpoint's
        tokenizer) and the token ids in the reply, the text is decoded here as the hf backend
        decodes it (a server's incremental detokenizer may keep a leading space that
        ``batch_decode`` drops), so every backend gives the same text."""
        resp = self._post(body)
        choices = sorted(resp.get("choices") or [], key=lambda c: c.get("index", 0))
        usage = (resp.get("usage") or {}).get("completion_tokens")
        out = []
        for c in choices:
            if c.get("token_ids") is not None:
                n_tok = len(c["token_ids"])
            elif (c.get("logprobs") or {}).get("tokens") is not None:
                n_tok = len(c["logprobs"]["tokens"])
            elif len(choices) == 1 and usage is not None:
                n_tok = int(usage)
            else:
                n_tok = None  # the server does not say; see base.Completion
            text = c.get("text") or ""
            if tok is not None and c.get("token_ids") is not None:
                text = tok.decode(c["token_ids"], skip_special_tokens=True)
            out.append(Completion(text=text, n_tokens=n_tok))
        return out

    def _sample(self, body: dict[str, Any], n: int, tok=None) -> list[Completion]:
        """n completions for one prompt: one request, or one per sample (seed + i). Greedy
        (temperature 0) asks once and copies the answer n times, as the other backends do
        (vLLM refuses n > 1 with greedy sampling)."""
        if body["temperature"] == 0:
            return self._single(body, 0, tok) * n
        if n == 1 or self.per_request_n is False:
            return [c for i in range(n) for c in self._single(body, i, tok)]
        got = self._choices({**body, "n": n}, tok)
        if len(got) == n:
            return got
        if len(got) == 1 and self.per_request_n is None:
            self.per_request_n = False  # the server ignores n: from now on one request a sample
            return got + [c for i in range(1, n) for c in self._single(body, i, tok)]
        raise RuntimeError(f"{self.url}: asked for n={n} completions, got {len(got)}")

    def _single(self, body: dict[str, Any], i: int, tok=None) -> list[Completion]:
        got = self._choices({**body, "seed": body["seed"] + i}, tok)
        if len(got) != 1:
            raise RuntimeError(f"{self.url}: asked for one completion, got {len(got)}")
        return got

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
        tok = self._tokenizer(model)
        name = self._served_name(model)
        bodies = []
        for p, seed in zip(prompts, seeds, strict=True):
            body: dict[str, Any] = {
                "model": name,
                "prompt": self._prompt(tok, p, mode),
                "temperature": temperature,
                "top_p": top_p,
                "max_tokens": max_new_tokens,
                "seed": int(seed),
            }
            if self.server == "vllm":
                body["return_token_ids"] = True
                if tok is not None:
                    body["add_special_tokens"] = False  # the ids already hold BOS
            elif self.server == "transformers" and temperature > 0:
                body["generation_config"] = json.dumps({"do_sample": True})
            bodies.append(body)
        out: list[list[Completion]] = []
        if self.per_request_n is None and n > 1 and bodies and temperature > 0:
            out.append(self._sample(bodies[0], n, tok))  # learn whether the server honours n
            bodies = bodies[1:]
        with ThreadPoolExecutor(self.concurrency) as pool:
            results = pool.map(lambda b: self._sample(b, n, tok), bodies)
            out += tqdm(results, total=len(bodies), desc="requests", disable=not progress)
        return out
