"""An OpenAI-compatible completions server (e.g. ``vllm serve``) as a sampling backend.

One ``POST {base_url}/v1/completions`` per prompt, carrying ``model, prompt, n, temperature,
top_p, max_tokens, seed`` (the prompt's seed; vLLM seeds child i with ``seed + i``), sent from a
small thread pool so the server can batch them. Uses only the standard library (urllib).
The API key, if any, comes from ``OPENAI_API_KEY`` and is only ever put in the request header.

Prompts: with ``prompt_format='auto'`` a local checkpoint directory's own tokenizer encodes the
prompt exactly as training did (``format.encode_prompt``: BOS, mode token, prompt) and the ids are
sent (vLLM accepts a list of ints as prompt); otherwise the text ``format.prompt_text`` is sent and
the server tokenizes. What it leaves out: chat completions, streaming.
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


class OpenAIBackend:
    """Client of ``{base_url}/v1/completions``.

    ``base_url``: e.g. ``http://127.0.0.1:8000`` (a trailing ``/v1`` is accepted too).
    ``served_names``: checkpoint dir (as given, or resolved) -> model name on the server; a model
    not listed is sent as ``str(model)`` (what ``vllm serve <dir>`` serves it as).
    ``return_token_ids``: ask vLLM for each choice's token ids (exact ``n_tokens``); servers that
    do not know the field ignore it, and ``n_tokens`` falls back to ``usage`` (n == 1) or None.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str | None = None,
        *,
        served_names: Mapping[str, str] | None = None,
        prompt_format: Literal["auto", "text", "ids"] = "auto",
        return_token_ids: bool = True,
        concurrency: int = 8,
        timeout_s: float = 600.0,
        retries: int = 2,
    ):
        if not base_url:
            raise ValueError(
                "sample.openai_base_url is not set; the openai backend needs the server's URL "
                "(e.g. http://127.0.0.1:8000 for `vllm serve`)"
            )
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"sample.openai_base_url must start with http:// or https://, got {base_url!r}"
            )
        if prompt_format not in ("auto", "text", "ids"):
            raise ValueError(f"prompt_format must be auto, text or ids, got {prompt_format!r}")
        base = base_url.rstrip("/")
        self.url = (base if base.endswith("/v1") else base + "/v1") + "/completions"
        self.served_names = dict(served_names or {})
        self.prompt_format = prompt_format
        self.return_token_ids = return_token_ids
        self.concurrency = max(1, concurrency)
        self.timeout_s = timeout_s
        self.retries = retries
        self._tokenizers: dict[str, Any] = {}

    def __repr__(self) -> str:  # never shows the API key
        return f"OpenAIBackend(url={self.url!r})"

    def _served_name(self, model: str | Path) -> str:
        for key in (str(model), str(Path(model).resolve())):
            if key in self.served_names:
                return self.served_names[key]
        return str(model)

    def _tokenizer(self, model: str | Path):
        """The checkpoint's tokenizer when ids are to be sent, else None."""
        path = Path(model)
        local = path.is_dir() and (path / "tokenizer_config.json").exists()
        if self.prompt_format == "text" or (self.prompt_format == "auto" and not local):
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

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        key = os.environ.get("OPENAI_API_KEY")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as err:
                detail = err.read().decode("utf-8", "replace")[:500]
                if err.code in _RETRY_STATUS and attempt < self.retries:
                    time.sleep(2**attempt)
                    continue
                raise RuntimeError(
                    f"{self.url}: HTTP {err.code} for model {body.get('model')!r}: {detail}"
                ) from None
            except urllib.error.URLError as err:
                if attempt < self.retries:
                    time.sleep(2**attempt)
                    continue
                raise RuntimeError(
                    f"{self.url}: cannot reach the server ({err.reason}); is it running? "
                    "(check sample.openai_base_url)"
                ) from None
        raise AssertionError("unreachable")

    def _one(self, body: dict[str, Any], n: int) -> list[Completion]:
        resp = self._post(body)
        choices = sorted(resp.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != n:
            raise RuntimeError(f"{self.url}: asked for n={n} completions, got {len(choices)}")
        usage = (resp.get("usage") or {}).get("completion_tokens")
        out = []
        for c in choices:
            if c.get("token_ids") is not None:
                n_tok = len(c["token_ids"])
            elif (c.get("logprobs") or {}).get("tokens") is not None:
                n_tok = len(c["logprobs"]["tokens"])
            elif n == 1 and usage is not None:
                n_tok = int(usage)
            else:
                n_tok = None  # the server does not say; see the class docstring
            out.append(Completion(text=c.get("text") or "", n_tokens=n_tok))
        return out

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
                "prompt": encode_prompt(tok, p, mode) if tok is not None else prompt_text(p, mode),
                "n": n,
                "temperature": temperature,
                "top_p": top_p,
                "max_tokens": max_new_tokens,
                "seed": int(seed),
            }
            if tok is not None:
                body["add_special_tokens"] = False  # vLLM: the ids already hold BOS
            if self.return_token_ids:
                body["return_token_ids"] = True
            bodies.append(body)
        with ThreadPoolExecutor(self.concurrency) as pool:
            results = pool.map(lambda b: self._one(b, n), bodies)
            return list(tqdm(results, total=len(bodies), desc="requests", disable=not progress))
