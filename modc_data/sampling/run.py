"""The sample step: n verified samples per (problem, model, mode) as one "samples table".

    samples = sample_model("artifacts/models/arm/prefix", select_problems(problems, cfg),
                           task=get_task("countdown"), model_key="arm/prefix", arm="arm",
                           variant="prefix", modes=None, cfg=cfg)

Variants: ``standard`` (n samples per problem, no mode token), ``prefix`` (for each mode, n samples
with the mode token in front of the prompt; a prefix model trained to sample freely, ``free_sampling``
in modc.json, also gets n samples with no mode token, as model ``<key>:free`` with mode '' and the
mode token it chose in ``declared_mode``), ``experts`` (a group dir; for each mode, n samples from
that mode's expert). Seeds come from ``base.sample_seed(cfg.seed, problem_id, model_key, mode)``,
so a row reproduces whatever the backend's batching. Everything that can be wrong with the inputs
(no modc.json, wrong variant, unknown mode, missing columns, no server URL) is raised before any
generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from modc_data.modeling.load import resolve_mode_token
from modc_data.modeling.modc_json import read_modc
from modc_data.params_sampling import OpenAIParams, SampleParams
from modc_data.sampling.base import SamplingBackend, sample_seed
from modc_data.sampling.registry import get_backend
from modc_data.schema import FREE_MODEL_SUFFIX
from modc_data.tasks import Task

SAMPLES_SCHEMA: dict[str, pl.DataType] = {
    "problem_id": pl.String(),
    "split": pl.String(),
    "model": pl.String(),  # model_key, e.g. "search_algorithm-balanced/prefix"
    "arm": pl.String(),
    "variant": pl.String(),  # standard | experts | prefix
    "mode": pl.String(),  # "" for standard
    "sample_idx": pl.Int64(),  # 0..n-1 within (problem, model, mode)
    "completion": pl.String(),
    "answer": pl.String(),  # task.score's extracted answer
    "correct": pl.Boolean(),
    "detected_mode": pl.String(),  # task.detect_mode; null when unknowable
    "n_tokens": pl.Int64(),  # generated tokens incl. eos; null only if a server does not say
    # free samples of a prefix model: the mode whose token it generated first (null: none, or
    # the backend does not say); null for every other row
    "declared_mode": pl.String(),
}
FREE_SUFFIX = FREE_MODEL_SUFFIX  # model key of a prefix model's free samples: "<job key>:free"
Q_SCHEMA: dict[str, pl.DataType] = {  # q(m|x) of a free-sampling prefix model, per problem and mode
    "problem_id": pl.String(), "split": pl.String(), "mode": pl.String(),
    "q": pl.Float64(),  # first-token probability of the mode's token, renormalised over the modes
    "mass": pl.Float64(),  # probability of any mode token first (the same for a problem's modes)
}
PROBLEM_COLUMNS = ("problem_id", "split", "prompt")
VARIANTS = ("standard", "experts", "prefix")


@dataclass(frozen=True)
class Target:
    """One thing to sample: rows get ``mode``; ``checkpoint`` is sampled with ``prompt_mode``."""

    mode: str
    checkpoint: Path
    prompt_mode: str | None
    free: bool = False  # a prefix model sampled with no mode token (rows: model "<key>:free")


def empty_samples() -> pl.DataFrame:
    return pl.DataFrame(schema=SAMPLES_SCHEMA)


def plan_targets(model_dir: str | Path, variant: str, modes: Sequence[str] | None) -> list[Target]:
    """Check ``model_dir`` against ``variant`` and ``modes``; return what to sample, in order.

    Raises FileNotFoundError (no modc.json, missing expert dir) or ValueError (variant mismatch,
    unknown mode) naming the directory and what is known.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    model_dir = Path(model_dir)
    info = read_modc(model_dir)
    expected = {"standard": ("standard",), "prefix": ("prefix",), "experts": ("experts",)}[variant]
    if info.variant not in expected:
        raise ValueError(
            f"{model_dir}: modc.json says variant {info.variant!r}, but it is being sampled as "
            f"{variant!r}; point the {variant} job at a {expected[0]!r} checkpoint"
        )
    if variant == "standard":
        if modes:
            raise ValueError(f"{model_dir}: a standard model has no modes; got modes={list(modes)}")
        return [Target("", model_dir, None)]
    modes = list(modes) if modes else list(info.modes)
    if not modes:
        raise ValueError(f"{model_dir}: {variant} checkpoint lists no modes in modc.json")
    if variant == "prefix":
        for m in modes:
            resolve_mode_token(info, m)  # ValueError naming the known modes
        free = [Target("", model_dir, None, free=True)] if info.free_sampling else []
        return [Target(m, model_dir, m) for m in modes] + free
    targets = []
    for m in modes:
        if m not in info.experts:
            raise ValueError(
                f"{model_dir}: experts group has no expert for mode {m!r}; "
                f"known modes: {sorted(info.experts)}"
            )
        expert_dir = model_dir / info.experts[m]
        expert = read_modc(expert_dir)  # FileNotFoundError naming the expert dir
        if expert.variant != "expert" or expert.mode != m:
            raise ValueError(
                f"{expert_dir}: expected the expert of mode {m!r}, modc.json says variant "
                f"{expert.variant!r}, mode {expert.mode!r}"
            )
        targets.append(Target(m, expert_dir, None))
    return targets


def make_backend(cfg: SampleParams, autotune_cache: str | Path | None = None) -> SamplingBackend:
    """The backend named by ``sample.backend``, configured from the other ``sample`` params.

    ``autotune_cache``: JSON file where hf keeps its measured ``auto`` dtype/decoder verdicts.
    """
    if cfg.backend == "hf":
        return get_backend("hf", batch_size=cfg.batch_size, dtype=cfg.dtype, decoder=cfg.decoder,
                           threads=cfg.threads, autotune_cache=autotune_cache)
    if cfg.backend == "openai":
        return get_backend("openai", **openai_kwargs(cfg.openai))
    return get_backend("vllm", params=cfg.vllm)


def openai_kwargs(o: OpenAIParams) -> dict:
    """``OpenAIBackend`` arguments from a ``sample.openai`` block."""
    return dict(
        base_url=o.base_url, served_names=o.served_names, server=o.server,
        per_request_n=o.per_request_n, concurrency=o.concurrency, timeout_s=o.timeout_s,
        max_retries=o.max_retries,
    )


def select_problems(
    problems: pl.DataFrame, cfg: SampleParams, extra: dict[str, int | None] | None = None
) -> pl.DataFrame:
    """Rows of ``cfg.splits``; with ``cfg.max_problems``, the first that many per split by id.

    ``extra``: more splits to sample, {split: cap or None} (``Params.policy_splits``: the
    splits allocation policies are fit and scored on). A split both in ``cfg.splits`` and in
    ``extra`` keeps the smaller cap. Raises ValueError naming ``sample.splits`` (or
    ``sample.policies.pairs`` for an extra split) when a requested split has no problems.
    """
    _check_problems(problems)
    present = set(problems["split"].unique().to_list())
    missing = [s for s in cfg.splits if s not in present]
    if missing:
        raise ValueError(
            f"sample.splits: no problems in split(s) {missing}; the problems have {sorted(present)}"
        )
    extra = extra or {}
    missing = [s for s in extra if s not in present]
    if missing:
        raise ValueError(
            f"sample.policies.pairs: no problems in split(s) {missing}; the problems have "
            f"{sorted(present)}"
        )
    caps: dict[str, int | None] = dict.fromkeys(cfg.splits, cfg.max_problems)
    for split, cap in extra.items():
        if split in caps:
            known = [c for c in (caps[split], cap) if c is not None]
            caps[split] = min(known) if known else None
        else:
            caps[split] = cap
    parts = []
    for split in sorted(caps):
        rows = problems.filter(pl.col("split") == split).sort("problem_id")
        parts.append(rows if caps[split] is None else rows.head(caps[split]))
    return pl.concat(parts).sort("split", "problem_id")


def _check_problems(problems: pl.DataFrame) -> None:
    missing = [c for c in PROBLEM_COLUMNS if c not in problems.columns]
    if missing:
        raise ValueError(
            f"problems: missing column(s) {missing}; a problems table needs "
            f"{list(PROBLEM_COLUMNS)} (plus what the task scores with, e.g. answer)"
        )


def sample_model(
    model_dir: str | Path,
    problems: pl.DataFrame,
    *,
    task: Task,
    model_key: str,
    arm: str,
    variant: str,
    modes: Sequence[str] | None,
    cfg: SampleParams,
    backend: SamplingBackend | None = None,
    progress: bool = True,
) -> pl.DataFrame:
    """Sample and score ``cfg.n`` completions per (problem, mode) of one model.

    ``problems``: rows with at least problem_id, split, prompt (all are sampled; see
    ``select_problems``). ``modes``: None = every mode the checkpoint knows. ``backend``: None
    builds ``cfg.backend``. Returns a frame with exactly ``SAMPLES_SCHEMA``, ordered by mode (as
    planned), problem (input order), sample_idx.
    """
    _check_problems(problems)
    targets = plan_targets(model_dir, variant, modes)
    if backend is None:
        backend = make_backend(cfg)
    if problems.height == 0:
        return empty_samples()
    rows = problems.to_dicts()
    prompts = [r["prompt"] for r in rows]
    cols: dict[str, list] = {c: [] for c in SAMPLES_SCHEMA}
    tokens = {tok: m for m, tok in read_modc(model_dir).mode_tokens.items()}
    for t in targets:
        seeds = [sample_seed(cfg.seed, r["problem_id"], model_key, t.mode, n=cfg.n) for r in rows]
        key = model_key + FREE_SUFFIX if t.free else model_key
        completions = backend.generate(
            t.checkpoint,
            prompts,
            mode=t.prompt_mode,
            n=cfg.n,
            seeds=seeds,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_new_tokens,
            progress=progress,
        )
        if len(completions) != len(rows):
            raise RuntimeError(
                f"backend {getattr(backend, 'name', backend)!r} returned {len(completions)} "
                f"results for {len(rows)} prompts"
            )
        for r, comps in zip(rows, completions, strict=True):
            for j, c in enumerate(comps):
                answer, correct = task.score(r, c.text)
                cols["problem_id"].append(r["problem_id"])
                cols["split"].append(r["split"])
                cols["model"].append(key)
                cols["arm"].append(arm)
                cols["variant"].append(variant)
                cols["mode"].append(t.mode)
                cols["sample_idx"].append(j)
                cols["completion"].append(c.text)
                cols["answer"].append(answer)
                cols["correct"].append(bool(correct))
                cols["detected_mode"].append(task.detect_mode(c.text))
                cols["n_tokens"].append(c.n_tokens)
                cols["declared_mode"].append(tokens.get(c.first_token) if t.free else None)
    return pl.DataFrame(cols, schema=SAMPLES_SCHEMA)


def mode_preference(
    model_dir: str | Path, problems: pl.DataFrame, *, cfg: SampleParams,
    backend: SamplingBackend,
) -> pl.DataFrame:
    """q(m|x) of a free-sampling prefix model from its first-token distribution (``Q_SCHEMA``
    rows, one per problem and mode); empty for any other checkpoint, or when the backend cannot
    give first-token probabilities (then evaluation reads q from the free samples' declared
    modes instead)."""
    info = read_modc(model_dir)
    if not (info.variant == "prefix" and info.free_sampling) or problems.height == 0:
        return pl.DataFrame(schema=Q_SCHEMA)
    if not hasattr(backend, "mode_preference"):
        return pl.DataFrame(schema=Q_SCHEMA)
    q, mass = backend.mode_preference(model_dir, problems["prompt"].to_list(), info.modes,
                                      temperature=cfg.temperature)
    rows = [
        (pid, split, m, float(qm), float(ms))
        for pid, split, qs, ms in zip(problems["problem_id"], problems["split"], q, mass, strict=True)
        for m, qm in zip(info.modes, qs, strict=True)
    ]
    return pl.DataFrame(rows, schema=Q_SCHEMA, orient="row")
