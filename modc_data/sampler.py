"""``ModCSampler``: sample a published ModC model with the budget split across its modes.

    from modc_data.sampler import ModCSampler
    sampler = ModCSampler.from_pretrained("modc/modc-countdown-search_algorithm-balanced-prefix")
    for mode, completion in sampler.sample(["numbers 3 7 9 target 22"], k=8)[0]:
        print(mode, completion)

What goes in: a local checkpoint folder or a Hub model repo id holding ``modc.json`` (a prefix
model, an experts group, a single expert or a standard model). What comes out: per prompt, ``k``
``ModeSample(mode, completion)`` records; mode ``m`` gets ``k_m`` of them with ``sum k_m == k``.
Generation goes through ``modc_data.sampling`` backends (``hf`` by default, ``vllm`` on GPU).

How k is split (``split``): ``"auto"`` (default) applies the allocation validated for this model
and shipped in ``modc.json`` (``allocation``, per k: e.g. all on free sampling at k = 1, even
over the modes at k = 8); ``"uniform"`` splits evenly over the modes; ``"free"`` puts all k on
the model's own sampling (no mode token); a dict gives explicit weights over ``arms``. A
shipped ``preference`` entry splits per prompt from the model's first-token q(m|x)
(``budgets``). The arms
are the modes, plus ``"free"`` where the model can sample freely: a standard model or single
expert (its only arm), or a prefix model trained to emit its own mode token (``free_sampling``
in modc.json); today's prefix models and experts groups cannot, and asking them is an error.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modc_data.budget import FREE, STANDARD, preference_split, split_budget
from modc_data.errors import InputError, hub_errors
from modc_data.modeling.modc_json import MODC_FILE, ModcInfo, read_modc
from modc_data.sampling.base import sample_seed
from modc_data.sampling.registry import get_backend


@dataclass(frozen=True)
class ModeSample:
    """One completion and the mode it was sampled under (None for a standard model)."""

    mode: str | None
    completion: str

    def __iter__(self):  # so `for mode, completion in ...` works
        return iter((self.mode, self.completion))


def can_sample_freely(info: ModcInfo) -> bool:
    """Whether the checkpoint can be sampled with no mode token: a standard model, or a prefix
    model trained to emit its own mode token. An expert samples its own mode, a group needs one."""
    return info.variant == "standard" or (info.variant == "prefix" and info.free_sampling)


def arms_of(info: ModcInfo, with_standard: bool = False) -> list[str]:
    """Arms the budget can go to: ``"free"`` first where allowed, ``"standard"`` next where the
    arm's standard model is loaded beside this one, then the modes."""
    return (([FREE] if can_sample_freely(info) else []) + ([STANDARD] if with_standard else [])
            + list(info.modes))


def shipped_entry(info: ModcInfo, k: int) -> tuple[int, Mapping[str, Any]] | None:
    """(validated k, its entry) of the allocation shipped in ``modc.json`` for budget ``k``: the
    entry for k when there is one, else that of the nearest validated k (on a log scale, ties to
    the smaller). None when nothing is shipped."""
    if not info.allocation:
        return None
    try:
        table = {int(kk): v for kk, v in info.allocation.items()}
    except ValueError:
        raise ValueError(
            f"{MODC_FILE} allocation: keys must be budgets k, got {sorted(info.allocation)}"
        ) from None
    near = min(table, key=lambda v: (abs(math.log2(v) - math.log2(max(k, 1))), v))
    return near, table[near]


def shipped_budget(info: ModcInfo, k: int, with_standard: bool = False) -> dict[str, int]:
    """Samples per arm under the allocation shipped in ``modc.json`` (``split="auto"``), the same
    for every prompt.

    The entry for k when there is one; otherwise the entry of the nearest validated k used as
    weights (``split_budget``'s largest-remainder rounding). No shipped allocation: uniform over
    the modes (a standard model: all free). A per-prompt ``preference`` entry gives its
    ``counts`` here (the fallback for backends without first-token probabilities);
    ``ModCSampler.budgets`` applies it per prompt. ``with_standard`` (the arm's standard model is
    loaded too): an entry's ``with_standard`` counts, the choice over both models' arms, where
    evaluation validated one; otherwise the one-model counts (the standard arm gets none).
    """
    arms = arms_of(info)
    modes = list(info.modes)
    found = shipped_entry(info, k)
    if found is None:
        out = split_budget(k, modes or arms, "uniform") if modes else {FREE: k}
        return ({STANDARD: 0} | out) if with_standard else out
    near, entry = found
    where = f"{MODC_FILE} allocation"
    counts = entry.get("counts")
    if with_standard:
        both = entry.get("with_standard") or {}
        arms = arms_of(info, with_standard=True)
        if isinstance(both.get("counts"), Mapping):
            counts, where = both["counts"], f"{where} with_standard"
    if not isinstance(counts, Mapping):
        raise ValueError(
            f"{where}[{near}]: policy {entry.get('policy')!r} ships no per-arm counts "
            "(a per-prompt policy such as 'preference' also ships the counts to fall back on); "
            "re-ship with counts"
        )
    unknown = sorted(set(a for a, m in counts.items() if m) - set(arms))
    if unknown:
        raise ValueError(f"{where}[{near}]: arms {unknown} are not among this model's {arms}")
    if near == k:
        if sum(counts.values()) != k:
            raise ValueError(f"{where}[{k}]: counts {dict(counts)} do not sum to k={k}")
        return {a: int(counts.get(a, 0)) for a in arms}
    return split_budget(k, arms, {a: float(m) for a, m in counts.items() if a in arms})


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

    def __init__(self, path: Path, info: ModcInfo, backend: Any, standard: Path | None = None):
        self.path, self.info, self.backend, self.standard = path, info, backend, standard

    @classmethod
    def from_pretrained(cls, repo_or_path: str | Path, backend: str = "hf", *,
                        revision: str | None = None, standard: str | Path | None = None,
                        **backend_kwargs: Any) -> ModCSampler:
        """Read ``modc.json`` from a folder (or a Hub repo, downloaded once) and pick a backend.

        ``backend``: ``hf`` | ``vllm``; ``backend_kwargs`` go to it (e.g. ``batch_size``,
        ``device``, ``trust_remote_code`` which stays off unless set). ``standard``: the same
        arm's standard model (folder or repo id) to sample beside a prefix model or experts
        group: it becomes the arm ``"standard"``, and ``split="auto"`` follows the allocation
        validated over both models (an entry's ``with_standard``) where one was shipped.
        """
        path = _resolve(repo_or_path, revision)
        info = read_modc(path)  # clear error when this is not a modc-data checkpoint
        std = None
        if standard is not None:
            std = _resolve(standard, None)
            std_info = read_modc(std)
            if std_info.variant != "standard" or info.variant not in ("prefix", "experts"):
                raise InputError(
                    f"standard={standard!s}: a {std_info.variant} model beside a {info.variant} "
                    "model; give the same arm's standard model beside its prefix model or experts"
                )
            if std_info.arm and info.arm and std_info.arm != info.arm:
                warnings.warn(f"standard={standard!s} was trained on arm {std_info.arm!r}, the "
                              f"model on {info.arm!r}: the shipped allocation was validated for "
                              "the same arm's pair", stacklevel=2)
        if info.variant == "experts":
            for m, rel in info.experts.items():
                if not (path / rel).is_dir():
                    raise FileNotFoundError(f"{path}: expert for mode {m!r} missing at {rel}/")
        return cls(path, info, get_backend(backend, **backend_kwargs), std)

    @property
    def modes(self) -> list[str]:
        """Modes the budget is split over ([] for a standard model)."""
        return list(self.info.modes)

    @property
    def arms(self) -> list[str]:
        """Arms a budget can go to: ``"free"`` (where the model can sample freely),
        ``"standard"`` (where a standard model was loaded beside it), the modes."""
        return arms_of(self.info, with_standard=self.standard is not None)

    def budget(self, k: int, split: str | Mapping[str, float] = "auto") -> dict[str, int]:
        """Samples per arm for one prompt (same for every prompt), summing to ``k``."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        arms = self.arms
        if len(arms) == 1:
            return {arms[0]: k}  # a standard model or single expert: one way to sample
        if split == "auto":
            return shipped_budget(self.info, k, with_standard=self.standard is not None)
        if split == "free":
            if FREE not in arms:
                raise ValueError(
                    f"{self.path}: this {self.info.variant} model cannot sample without a mode "
                    "token (free_sampling is off in modc.json); use 'uniform', 'auto' or weights"
                )
            return {a: (k if a == FREE else 0) for a in arms}
        if split == STANDARD:
            if STANDARD not in arms:
                raise ValueError(f"{self.path}: split='standard' needs the standard model "
                                 "loaded beside it (from_pretrained(..., standard=...))")
            return {a: (k if a == STANDARD else 0) for a in arms}
        if split == "uniform":
            even = split_budget(k, self.modes)
            return {a: even.get(a, 0) for a in arms}
        if isinstance(split, Mapping) and FREE in split and FREE not in arms:
            raise ValueError(
                f"{self.path}: weights name 'free' but this model cannot sample freely; "
                f"its arms are {arms}"
            )
        if not isinstance(split, Mapping):
            raise ValueError(
                f"split must be 'auto', 'uniform', 'free' or a dict of arm weights, got {split!r}"
            )
        return split_budget(k, arms, split)

    def budgets(
        self, prompts: Sequence[str], k: int, split: str | Mapping[str, float] = "auto",
        temperature: float = 1.0,
    ) -> list[dict[str, int]]:
        """Samples per arm for each prompt, each summing to ``k``.

        The same as ``budget`` for every prompt, except where ``split="auto"`` meets a shipped
        ``preference`` entry and the backend can read the model's first-token distribution
        (``mode_preference``; the ``hf`` backend): then q(m|x) of each prompt, at
        ``temperature``, sets its counts by the validated rule (``round(f k)`` free, the rest
        ∝ q̃^β: ``budget.preference_split``, the function evaluation scored it with).
        Otherwise the entry's fallback counts, with a warning. With the standard model loaded,
        an entry's ``with_standard`` counts win where there are any.
        """
        found = shipped_entry(self.info, k) if split == "auto" and len(self.arms) > 1 else None
        if found is None or found[1].get("policy") != "preference":
            return [self.budget(k, split)] * len(prompts)
        near, entry = found
        if self.standard is not None and entry.get("with_standard"):
            return [self.budget(k, split)] * len(prompts)  # the two-model choice: fixed counts
        if not hasattr(self.backend, "mode_preference"):
            warnings.warn(
                f"{self.path}: the shipped allocation at k={near} is per prompt ('preference', "
                f"from the first-token q(m|x)), which backend {type(self.backend).__name__} cannot "
                f"read; using its fallback counts ({entry.get('fallback')})",
                stacklevel=2,
            )
            return [self.budget(k, split)] * len(prompts)

        f, beta = float(entry["free_share"]), float(entry["beta"])
        if f > 0 and FREE not in self.arms:
            raise ValueError(f"{MODC_FILE} allocation[{near}]: free share {f} but this model "
                             "cannot sample freely")
        q, _ = self.backend.mode_preference(self.path, list(prompts), self.modes,
                                            temperature=temperature)
        k_free, forced = preference_split(q, k, f, beta)
        return [
            {a: (k_free if a == FREE else 0 if a == STANDARD else int(row[self.modes.index(a)]))
             for a in self.arms}
            for row in forced
        ]

    def _target(self, mode: str | None) -> tuple[Path, str | None]:
        """(checkpoint dir, mode token argument) that samples ``mode`` (None: free)."""
        if mode is None:
            return self.path, None
        if mode == STANDARD and self.standard is not None:
            return self.standard, None
        if self.info.variant == "experts":
            return self.path / self.info.experts[mode], None
        if self.info.variant == "prefix":
            return self.path, mode
        return self.path, None  # standard model or single expert: no token

    def sample(
        self,
        prompts: Sequence[str],
        k: int,
        split: str | Mapping[str, float] = "auto",
        temperature: float = 1.0,
        max_new_tokens: int = 100,
        seed: int = 0,
        top_p: float = 1.0,
    ) -> list[list[ModeSample]]:
        """``k`` samples per prompt, ``budgets(prompts, k, split)`` of them on each arm.

        Returns ``len(prompts)`` lists of ``k`` ModeSample, grouped by arm in ``arms`` order;
        free samples carry mode None. Same seed, same samples.
        """
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings, got one string")
        budgets = self.budgets(prompts, k, split, temperature=temperature)
        out: list[list[ModeSample]] = [[] for _ in prompts]
        for arm in self.arms:
            mode = None if arm == FREE else arm
            model_dir, token_mode = self._target(mode)
            if arm == STANDARD:
                mode = None  # the standard model's samples carry no mode
            # one generate call per distinct count (a per-prompt policy gives several)
            for n in sorted({b.get(arm, 0) for b in budgets} - {0}):
                rows = [i for i, b in enumerate(budgets) if b.get(arm, 0) == n]
                group = [prompts[i] for i in rows]
                seeds = [sample_seed(seed, p, str(mode), n=n) for p in group]
                comps = self.backend.generate(
                    model_dir, group, mode=token_mode, n=n, seeds=seeds,
                    temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                )
                for i, cs in zip(rows, comps, strict=True):
                    out[i].extend(ModeSample(mode, c.text) for c in cs)
        return out
