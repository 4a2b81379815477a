"""``ModCSampler``: sample a published ModC model with the budget split across its modes.

    from modc_data.sampler import ModCSampler
    sampler = ModCSampler.from_pretrained("modc/modc-countdown-search_algorithm-balanced-prefix")
    for mode, completion in sampler.sample(["numbers 3 7 9 target 22"], k=8)[0]:
        print(mode, completion)

What goes in: a local checkpoint folder or a Hub model repo id holding ``modc.json`` (a prefix
model, an experts group, a single expert or a standard model). What comes out: per prompt, ``k``
``ModeSample(mode, completion)`` records; mode ``m`` gets ``k_m`` of them with ``sum k_m == k``.
Generation goes through ``modc_data.sampling`` backends (``hf`` by default, ``vllm`` on GPU).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modc_data.errors import InputError, hub_errors
from modc_data.modeling.modc_json import ModcInfo, read_modc
from modc_data.sampling.base import get_backend, sample_seed


@dataclass(frozen=True)
class ModeSample:
    """One completion and the mode it was sampled under (None for a standard model)."""

    mode: str | None
    completion: str

    def __iter__(self):  # so `for mode, completion in ...` works
        return iter((self.mode, self.completion))


def split_budget(k: int, modes: Sequence[str], split: str | Mapping[str, float] = "uniform"
                 ) -> dict[str, int]:
    """Samples per mode, summing to ``k``.

    ``uniform``: ``k // M`` each, the remainder to the first ``k % M`` modes in ``modes`` order.
    A dict of weights (>= 0, any positive sum; missing modes weigh 0): largest-remainder
    rounding of ``k * w / sum(w)``, ties to the earlier mode, so every count is within 1 of its
    exact share. Deterministic: same inputs, same counts.
    """
    if k < 0:
        raise InputError(f"k must be >= 0, got {k}")
    if not modes:
        raise InputError("split_budget needs at least one mode")
    if split == "uniform":
        q, r = divmod(k, len(modes))
        return {m: q + (1 if i < r else 0) for i, m in enumerate(modes)}
    if not isinstance(split, Mapping):
        raise InputError(f"split must be 'uniform' or a dict of mode weights, got {split!r}")
    unknown = sorted(set(split) - set(modes))
    if unknown:
        raise InputError(f"split names unknown modes {unknown}; the model's modes are {list(modes)}")
    w = [float(split.get(m, 0.0)) for m in modes]
    if any(x < 0 or math.isnan(x) for x in w) or sum(w) <= 0:
        raise InputError(f"split weights must be >= 0 with a positive sum, got {dict(split)}")
    exact = [k * x / sum(w) for x in w]
    counts = [math.floor(e) for e in exact]
    order = sorted(range(len(modes)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: k - sum(counts)]:
        counts[i] += 1
    return dict(zip(modes, counts, strict=True))


def _resolve(repo_or_path: str | Path, revision: str | None) -> Path:
    path = Path(repo_or_path)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(str(repo_or_path))
    except HFValidationError:
        raise InputError(f"{repo_or_path}: no such folder, and not a Hub repo id "
                         "('<namespace>/<name>'); pass a folder with modc.json or a repo id") from None
    # only safetensors, json and tokenizer files: never pickled weights
    with hub_errors(str(repo_or_path), "model"):
        return Path(snapshot_download(
            str(repo_or_path), revision=revision,
            ignore_patterns=["*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt", "figures/*"],
        ))


class ModCSampler:
    """A loaded ModC checkpoint plus a sampling backend; see ``from_pretrained``."""

    def __init__(self, path: Path, info: ModcInfo, backend: Any):
        self.path, self.info, self.backend = path, info, backend

    @classmethod
    def from_pretrained(cls, repo_or_path: str | Path, backend: str = "hf", *,
                        revision: str | None = None, **backend_kwargs: Any) -> ModCSampler:
        """Read ``modc.json`` from a folder (or a Hub repo, downloaded once) and pick a backend.

        ``backend``: ``hf`` | ``vllm``; ``backend_kwargs`` go to it (e.g. ``batch_size``,
        ``device``, ``trust_remote_code`` which stays off unless set).
        """
        path = _resolve(repo_or_path, revision)
        info = read_modc(path)  # clear error when this is not a modc-data checkpoint
        if info.variant == "experts":
            for m, rel in info.experts.items():
                if not (path / rel).is_dir():
                    raise FileNotFoundError(f"{path}: expert for mode {m!r} missing at {rel}/")
        return cls(path, info, get_backend(backend, **backend_kwargs))

    @property
    def modes(self) -> list[str]:
        """Modes the budget is split over ([] for a standard model)."""
        return list(self.info.modes)

    def _target(self, mode: str | None) -> tuple[Path, str | None]:
        """(checkpoint dir, mode token argument) that samples ``mode``."""
        if self.info.variant == "experts":
            return self.path / self.info.experts[mode], None
        if self.info.variant == "prefix":
            return self.path, mode
        return self.path, None  # standard model or single expert: no token

    def sample(
        self,
        prompts: Sequence[str],
        k: int,
        split: str | Mapping[str, float] = "uniform",
        temperature: float = 1.0,
        max_new_tokens: int = 100,
        seed: int = 0,
        top_p: float = 1.0,
    ) -> list[list[ModeSample]]:
        """``k`` samples per prompt, ``split_budget(k, modes, split)`` of them under each mode.

        Returns ``len(prompts)`` lists of ``k`` ModeSample, grouped by mode in ``modes`` order.
        Same seed, same samples.
        """
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings, got one string")
        modes = self.modes or [None]
        budget = (split_budget(k, self.modes, split) if self.modes else {None: k})
        out: list[list[ModeSample]] = [[] for _ in prompts]
        for mode in modes:
            n = budget[mode]
            if n == 0:
                continue
            model_dir, token_mode = self._target(mode)
            seeds = [sample_seed(seed, p, str(mode), n=n) for p in prompts]
            comps = self.backend.generate(
                model_dir, list(prompts), mode=token_mode, n=n, seeds=seeds,
                temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
            )
            for i, cs in enumerate(comps):
                out[i].extend(ModeSample(mode, c.text) for c in cs)
        return out
