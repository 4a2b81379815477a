"""Supervised fine-tuning of one ModC model: standard, one expert, or a prefix model.

    result = train_model(train_rows, val_rows, variant="prefix", mode=None, modes=["dfs", "bfs"],
                         label_source="search_algorithm", arm="sa-balanced",
                         model_cfg=params.model, train_cfg=params.train,
                         steps=params.train.steps, out_dir=Path("artifacts/models/sa/prefix"))

What goes in: rows in the schema of ``modc_data.schema`` (``prompt``, ``completion``, ``mode``,
``id`` …) and typed params. What comes out: a checkpoint directory (safetensors weights or a peft
adapter, tokenizer, ``modc.json``) written atomically, and a ``TrainResult``.

``train_model`` checks its inputs, builds the tokenizer and model, encodes the rows and hands
them to the loop. The parts live beside it: ``train_data`` (rows, encoding, batches, the step
stream), ``precision`` (bf16, frozen-base dtype), ``loop`` (the ``Accelerator`` loop, resume,
evaluation loss), ``checkpoint`` (files), ``experts`` (one model per mode).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl
import torch

from modc_data import autotune
from modc_data.modeling.checkpoint import CHECKPOINT_DIR, load_start, save_final
from modc_data.modeling.loop import SHARDED, TrainingInterrupted, accelerator_for, fit, lr_lambda
from modc_data.modeling.modc_json import ModcInfo
from modc_data.modeling.models import build_scratch_model, load_pretrained_base
from modc_data.modeling.precision import frozen_base_dtype
from modc_data.modeling.tokenizer import add_mode_tokens, build_word_tokenizer
from modc_data.modeling.train_data import (
    batch_order,
    data_hash,
    encode_rows,
    free_rows,
    select_rows,
    task_of,
)
from modc_data.params_training import ModelParams, TrainParams
from modc_data.schema import mode_token

__all__ = ["CHECKPOINT_DIR", "TrainResult", "TrainingInterrupted", "objective_info", "train_model"]


@dataclass
class TrainResult:
    steps: int  # optimizer steps taken (== the ``steps`` asked for)
    examples: int  # training sequences seen (steps x batch_size)
    tokens: int  # non-padding tokens fed to the model while training
    eval_loss: float  # mean per-token CE on completion tokens of the validation rows, whatever the
    # objective (nan: no rows)
    wall_s: float  # seconds spent in the training loop (summed over resumed runs)
    tokens_per_s: float  # tokens / wall_s
    objective: str = "ce"  # "ce" or "pass_at_n" (train.objective)
    bf16: bool = False  # trained under bf16 autocast
    threads: int = 0  # torch threads used
    autotune: dict = field(default_factory=dict)  # how bf16 and threads were chosen (Verdicts)
    processes: int = 1  # ranks that trained it (train.processes), each on batch_size / processes rows
    engine: str = "NO"  # accelerate's distributed type: NO, MULTI_CPU, MULTI_GPU, FSDP, DEEPSPEED
    losses: list[float] = field(default_factory=list)  # the batch's training loss at every step


def objective_info(train_cfg: TrainParams) -> dict:
    """What modc.json records about the loss: the objective and, for pass@N, N and the CE warm-up."""
    if train_cfg.objective == "ce":
        return {"objective": "ce"}
    return {"objective": "pass_at_n", "pass_at_n": train_cfg.pass_at_n.model_dump()}


def train_model(
    train_rows: pl.DataFrame,
    val_rows: pl.DataFrame,
    *,
    variant: Literal["standard", "expert", "prefix"],
    mode: str | None,
    modes: Sequence[str],
    label_source: str,
    arm: str,
    model_cfg: ModelParams,
    train_cfg: TrainParams,
    steps: int,
    out_dir: str | Path,
    tokenizer_texts: Sequence[str] | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    extra_info: dict | None = None,
    autotune_cache: str | Path | None = None,
    timer: autotune.Timer = autotune.wall_timer,
    init_from: str | Path | None = None,
    free_share: float = 0.0,
) -> TrainResult:
    """Train one model for exactly ``steps`` optimizer steps and write its checkpoint to ``out_dir``.

    standard: every row, no mode token (``mode`` must be None). expert: only rows whose mode is
    ``mode``. prefix: every row, its prompt preceded by its mode's token; ``modes`` lists them.
    Scratch models build their word tokenizer from ``tokenizer_texts`` (pass all prompts and
    completions of the arm so every variant shares one vocabulary; default: these rows).
    A resume checkpoint ``out_dir/checkpoint`` is written every ``train_cfg.save_every`` steps
    and picked up when present. ``stop_after`` (tests) raises TrainingInterrupted after that step.
    ``extra_info``: merged into modc.json fields (e.g. ``revision``, ``task``).
    ``train_cfg.objective``: 'ce' minimises the mean token cross-entropy of the batch; 'pass_at_n'
    the mean over its rows of ``-log(1 - (1 - p)^N)`` (``modeling.objectives``), p the probability
    of the row's completion given its prompt (and mode token for prefix), after
    ``pass_at_n.warmup_steps`` CE steps.
    ``train.bf16: auto`` and ``train.threads: auto`` are decided when training starts
    (``choose_bf16``, ``autotune.resolve_threads``; a resumed run keeps its dtype);
    ``autotune_cache`` (JSON file, None: none) keeps bf16 verdicts per machine, ``timer`` times
    its steps (tests inject a slow one). Both choices are in the result and modc.json.
    ``init_from``: a checkpoint of this arm (same tokenizer texts) whose trained weights the
    model starts from instead of its seeded init (the experts' shared start): the full weights of
    a scratch model, the adapter of a LoRA one.
    ``free_share`` (prefix only): that share of rows (``free_rows``: by a hash of the row id)
    puts the mode token after the prompt, as the first target token, so the model can also be
    sampled with no mode token and choose one itself (``modc.json`` ``free_sampling``).
    Raises ValueError before any model is built when the rows or arguments can not work.
    """
    out_dir = Path(out_dir)
    modes = list(modes)
    # ---- validate before anything expensive
    if variant not in ("standard", "expert", "prefix"):
        raise ValueError(f"variant must be 'standard', 'expert' or 'prefix', got {variant!r}")
    if variant == "standard" and mode is not None:
        raise ValueError(f"a standard model trains on all modes; got mode={mode!r} (pass None)")
    if variant == "expert" and mode not in modes:
        raise ValueError(f"expert mode {mode!r} is not one of modes={modes}")
    if variant == "prefix" and not modes:
        raise ValueError("a prefix model needs modes (the arm's mode labels)")
    if steps <= 0:
        raise ValueError(f"steps must be > 0, got {steps}")
    if not 0.0 <= free_share <= 1.0:
        raise ValueError(f"free_share must lie in [0, 1], got {free_share}")
    if free_share and variant != "prefix":
        raise ValueError(f"free_share is for a prefix model (free sampling), not {variant!r}")
    if train_cfg.objective == "pass_at_n" and train_cfg.pass_at_n.warmup_steps >= steps:
        raise ValueError(
            f"train.pass_at_n.warmup_steps ({train_cfg.pass_at_n.warmup_steps}) must be < steps "
            f"({steps}): the whole run would be cross-entropy; lower it or use objective 'ce'"
        )
    train = select_rows(train_rows, variant, mode, modes, "train rows")
    val = select_rows(val_rows, variant, mode, modes, "validation rows")
    if train.height == 0:
        which = f"mode {mode!r}" if variant == "expert" else "this arm"
        raise ValueError(
            f"no training rows for {which} in arm {arm!r} (label source {label_source!r}); "
            f"modes present: {sorted(train_rows['mode'].unique().to_list())}"
        )
    train = train.sort("id")  # row order must not depend on upstream ordering
    val = val.sort("id")
    acc = accelerator_for(train_cfg, steps)  # joins the process group of a launch
    device = acc.device
    prefix = variant == "prefix"

    # ---- model and tokenizer
    if model_cfg.base == "scratch":
        texts = tokenizer_texts
        if texts is None:
            texts = [*train_rows["prompt"], *train_rows["completion"], *val_rows["prompt"], *val_rows["completion"]]
        tokenizer = build_word_tokenizer(texts)
        if prefix:
            add_mode_tokens(tokenizer, modes)
        # On CPU eager attention measured 2-4x faster than sdpa for these shapes (B=64, T~67,
        # padded batches: sdpa with a mask takes its slow path); sdpa on CUDA.
        attn = "sdpa" if device.type == "cuda" else "eager"
        model = build_scratch_model(model_cfg.scratch, tokenizer, train_cfg.seed, attn_implementation=attn)
        if train_cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        base_info = {"kind": "scratch", "name_or_path": None, "adapter": False}
        max_len = model_cfg.scratch.max_position_embeddings
        len_field = "model.scratch.max_position_embeddings"
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(train_cfg.seed)  # LoRA init draws from the global RNG
            model, tokenizer = load_pretrained_base(
                model_cfg.pretrained, modes if prefix else (), dtype=frozen_base_dtype(model_cfg, device),
                gradient_checkpointing=train_cfg.gradient_checkpointing)
        base_info = {"kind": "pretrained", "name_or_path": model_cfg.pretrained.name_or_path,
                     "hub_id": model_cfg.pretrained.hub_id, "adapter": True}
        max_len = getattr(model.config, "max_position_embeddings", None) or 10**9
        len_field = "the base model's max_position_embeddings"
    start_hash = "none"
    if init_from is not None:
        start_hash = load_start(model, Path(init_from))
    model.to(device)
    model.train()

    free_train = free_rows(train["id"].to_list(), free_share, train_cfg.seed)
    free_val = free_rows(val["id"].to_list(), free_share, train_cfg.seed)
    train_ex = encode_rows(tokenizer, train, prefix, free_train)
    val_ex = encode_rows(tokenizer, val, prefix, free_val)
    longest = max(len(x) for x, _ in train_ex + val_ex)
    if longest > max_len:
        raise ValueError(
            f"longest example is {longest} tokens but {len_field} is {max_len}; raise it or "
            "shorten the traces"
        )
    if model_cfg.base == "scratch" and tokenizer.unk_token_id is not None:
        unk = sum(x.count(tokenizer.unk_token_id) for x, _ in train_ex)
        if unk:
            warnings.warn(f"{unk} training tokens are <unk>: tokenizer_texts lacks some words", stacklevel=2)

    # ---- optimisation
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay, betas=(0.9, 0.95),
        fused=device.type == "cuda",
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(train_cfg.warmup_steps, steps))
    order = batch_order(len(train_ex), steps, train_cfg.batch_size, train_cfg.seed)
    d_hash = data_hash(train["id"].to_list())
    fingerprint = data_hash([
        d_hash, variant, str(mode), ",".join(modes), str(steps), str(len(tokenizer)), start_hash,
        *([f"free {free_share}"] if free_share else []),
        # threads, processes and the engine only change float rounding, and a resumed run may
        # find other cores (or GPUs) free
        model_cfg.model_dump_json(), train_cfg.model_dump_json(exclude={"threads", "processes", "accelerate_config"}),
    ])
    ckpt = out_dir / CHECKPOINT_DIR
    run, net = fit(
        acc, model, optimizer, scheduler, train_ex, val_ex, order, train_cfg=train_cfg, steps=steps,
        pad_id=tokenizer.pad_token_id, ckpt=ckpt, fingerprint=fingerprint, progress=progress,
        desc=f"train {variant}{'/' + mode if mode else ''}", stop_after=stop_after,
        autotune_cache=autotune_cache, timer=timer,
    )

    result = TrainResult(
        steps=steps,
        examples=steps * train_cfg.batch_size,
        tokens=run.tokens,
        eval_loss=run.eval_loss,
        wall_s=run.wall_s,
        tokens_per_s=run.tokens / run.wall_s if run.wall_s > 0 else 0.0,
        objective=train_cfg.objective,
        bf16=run.bf16,
        threads=run.threads,
        autotune=run.autotune,
        processes=acc.num_processes,
        engine=acc.distributed_type.value,
        losses=run.losses,
    )
    info = ModcInfo(
        variant=variant,
        label_source=label_source,
        modes=[] if variant == "standard" else ([mode] if variant == "expert" else modes),
        task=task_of(train),
        arm=arm,
        mode=mode if variant == "expert" else None,
        mode_tokens={m: mode_token(m) for m in modes} if prefix else {},
        free_sampling=prefix and free_share > 0,
        base=base_info,
        data_hash=d_hash,
        train={
            **asdict(result),
            **objective_info(train_cfg),
            "batch_size": train_cfg.batch_size,
            "lr": train_cfg.lr,
            "device": device.type,
            "train_rows": train.height,
            **({"free_share": free_share, "free_rows": len(free_train)} if free_share else {}),
            "val_rows": val.height,
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": sum(p.numel() for p in params),
            **({"init_from": {"path": Path(init_from).name, "weights_sha256": start_hash}}
               if init_from is not None else {}),
        },
        params={"model": model_cfg.model_dump(), "train": train_cfg.model_dump()},
    )
    for key, value in (extra_info or {}).items():
        setattr(info, key, value)
    # a sharded engine gathers the full weights (every process takes part); otherwise they are here
    full = acc.get_state_dict(net) if acc.distributed_type in SHARDED else None
    if acc.is_main_process:  # one set of outputs, whatever the number of processes
        save_final(acc.unwrap_model(net) if full is not None else model, tokenizer, info, out_dir, full)
    acc.wait_for_everyone()
    return result
