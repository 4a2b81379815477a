"""Supervised fine-tuning of one ModC model: standard, one expert, or a prefix model.

    result = train_model(train_rows, val_rows, variant="prefix", mode=None, modes=["dfs", "bfs"],
                         label_source="search_algorithm", arm="sa-balanced",
                         model_cfg=params.model, train_cfg=params.train,
                         steps=params.train.steps, out_dir=Path("artifacts/models/sa/prefix"))

What goes in: rows in the schema of ``modc_data.schema`` (``prompt``, ``completion``, ``mode``,
``id`` …) and typed params. What comes out: a checkpoint directory (safetensors weights or a peft
adapter, tokenizer, ``modc.json``) written atomically, and a ``TrainResult``.

Why a plain PyTorch loop and not ``transformers.Trainer``: the models here are ~1M parameters
on 2 CPU cores, where Trainer's per-step overhead (callbacks, accelerate wrapping, logging) is a
visible share of a ~20 ms step, and we need exact control of two things Trainer makes awkward:
a fixed number of optimizer steps drawn from a seeded index stream independent of dataset size,
and bit-exact resume of that stream. The loop is ~60 lines.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from modc_data import autotune
from modc_data.artifacts import atomic_dir
from modc_data.config import ModelParams, TrainParams
from modc_data.modeling import distributed
from modc_data.modeling.format import IGNORE_INDEX, encode_example, encode_free_example
from modc_data.modeling.modc_json import ModcInfo, read_modc, write_modc
from modc_data.modeling.models import build_scratch_model, load_pretrained_base
from modc_data.modeling.objectives import completion_logprob, pass_at_n_loss
from modc_data.modeling.tokenizer import (
    add_bos_when_encoding,
    add_mode_tokens,
    build_word_tokenizer,
)
from modc_data.schema import check_schema, mode_slug, mode_token

CHECKPOINT_DIR = "checkpoint"  # resume state inside out_dir; removed once training finishes
_WEIGHTS = "trainable.safetensors"
_STATE = "state.pt"


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
    losses: list[float] = field(default_factory=list)  # the batch's training loss at every step


class TrainingInterrupted(RuntimeError):
    """Raised by ``train_model(stop_after=k)`` to simulate a crash after step k (tests)."""


# --------------------------------------------------------------------------- data
def _select_rows(
    rows: pl.DataFrame, variant: str, mode: str | None, modes: Sequence[str], where: str
) -> pl.DataFrame:
    """Rows a variant trains on; validates modes. ``where`` names the frame in errors."""
    check_schema(rows, where)
    if variant == "expert":
        return rows.filter(pl.col("mode") == mode)
    if variant == "prefix":
        unknown = sorted(set(rows["mode"].unique().to_list()) - set(modes))
        if unknown:
            raise ValueError(
                f"{where}: rows have modes {unknown} that are not in modes={list(modes)}; "
                "pass every mode of the arm, or filter the rows"
            )
    return rows


def data_hash(ids: Sequence[str]) -> str:
    """Order-independent hash of the training rows' ids (16 hex chars)."""
    h = hashlib.sha256()
    for i in sorted(ids):
        h.update(i.encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def free_rows(ids: Sequence[str], share: float, seed: int) -> set[str]:
    """Ids of the rows a prefix model trains *free* (mode token as the first target token):
    each row independently with probability ``share``, decided by a hash of (seed, id), so the
    choice does not depend on row order or on the other rows."""
    if share <= 0:
        return set()
    cut = share * 2**64
    return {
        i for i in ids
        if int.from_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest()[:8], "big") < cut
    }


def encode_rows(
    tokenizer, rows: pl.DataFrame, prefix_mode: bool, free: set[str] | None = None
) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) per row; the mode token is prepended when ``prefix_mode``, or, for
    rows whose id is in ``free``, is the first target token (``encode_free_example``)."""
    free = free or set()
    ids = rows["id"] if free else [None] * rows.height
    return [
        encode_free_example(tokenizer, p, c, m) if prefix_mode and i in free
        else encode_example(tokenizer, p, c, m if prefix_mode else None)
        for i, p, c, m in zip(ids, rows["prompt"], rows["completion"], rows["mode"], strict=True)
    ]


def collate(
    examples: Sequence[tuple[list[int], list[int]]], pad_id: int
) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example: input_ids/attention_mask/labels, each (B, T) int64."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def micro_batches(
    examples: Sequence[tuple[list[int], list[int]]], parts: int
) -> list[list[tuple[list[int], list[int]]]]:
    """One optimizer batch cut into up to ``parts`` slices of similar length (sorted by length).

    Padding to the longest row is the waste: Countdown traces run from ~20 to ~89 tokens, so a
    random batch of 64 is padded to ~86 while its mean is ~52, and eager attention grows with
    T^2. Two length-sorted slices measured faster per step on 2 cores with real traces: 1.16x at
    batch 64 (144 -> 124 ms), 1.09x at batch 32 (77 -> 71 ms).
    The training loop weights each slice by its share of the batch's target tokens, so the
    summed gradient is the whole batch's mean-token-loss gradient: same rows, same objective.
    """
    ordered = sorted(examples, key=lambda e: len(e[0]))
    parts = max(1, min(parts, len(ordered)))
    bounds = [round(i * len(ordered) / parts) for i in range(parts + 1)]
    return [ordered[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def _targets(labels: torch.Tensor) -> int:
    """Tokens the causal-LM loss averages over (labels shifted by one, IGNORE_INDEX dropped)."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def objective_info(train_cfg: TrainParams) -> dict:
    """What modc.json records about the loss: the objective and, for pass@N, N and the CE warm-up."""
    if train_cfg.objective == "ce":
        return {"objective": "ce"}
    return {"objective": "pass_at_n", "pass_at_n": train_cfg.pass_at_n.model_dump()}


def _pass_at_n_mean(model, batch: dict[str, torch.Tensor], n: int, device, bf16: bool) -> torch.Tensor:
    """Mean over the slice's rows of ``-log(1 - (1 - p)^n)``, p = the model's probability of the
    row's whole completion (summed log-probs of its label tokens; padding and prompt excluded)."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return pass_at_n_loss(completion_logprob(logits, batch["labels"]), n).mean()


def batch_order(n_rows: int, steps: int, batch_size: int, seed: int) -> torch.Tensor:
    """(steps, batch_size) row indices: concatenated seeded permutations (epochs), so each row
    is seen equally often and step s's batch depends only on (n_rows, seed, s)."""
    g = torch.Generator().manual_seed(seed)
    need = steps * batch_size
    perms = [torch.randperm(n_rows, generator=g) for _ in range(math.ceil(need / n_rows))]
    return torch.cat(perms)[:need].view(steps, batch_size)


# --------------------------------------------------------------------------- optimisation
def lr_lambda(warmup_steps: int, total_steps: int, min_ratio: float = 0.1):
    """Linear warmup to 1, then cosine decay to ``min_ratio`` at ``total_steps`` (nanoGPT)."""

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def use_bf16(setting: str, device: torch.device) -> bool:
    """Whether bfloat16 can be fast here at all: 'off' never, 'on' always, 'auto' where the
    hardware has native bf16. Whether it *is* faster is measured (``choose_bf16``)."""
    if setting == "off":
        return False
    if setting == "on":
        return True
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # oneDNN reports bf16 support only with native instructions (avx512_bf16 / AMX); without
    # them autocast emulates bf16 and is slower than fp32.
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def choose_bf16(
    setting: str, device: torch.device, model, slices: Sequence[dict[str, torch.Tensor]],
    shape: str, *, cache: str | Path | None, timer: autotune.Timer,
) -> autotune.Verdict:
    """``train.bf16``: 'on'/'off' as set; 'auto' times forward+backward of ``slices`` (one real
    step's micro-batches, on ``device``) in fp32 and under bf16 autocast and keeps the faster
    (fp32 on a tie, and without measuring where the hardware has no native bf16).

    The model's weights, gradients (None before and after) and the RNG are left as they were.
    """
    if setting != "auto":
        return autotune.fixed("train.bf16", setting)

    def step(bf16: bool):
        def run() -> None:
            for batch in slices:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    loss = model(**batch).loss
                loss.backward()
            model.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        return run

    candidates = {"off": step(False)}
    if use_bf16("auto", device):
        candidates["on"] = step(True)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return autotune.choose("train.bf16", candidates, shape=shape, cache=cache, timer=timer,
                               device=str(device))


def _shape_key(model, slices: Sequence[dict[str, torch.Tensor]], trainable: int) -> str:
    """What a step's time depends on: architecture, trainable share, batch rows and slices, the
    longest row in steps of 32 tokens (coarse, so the arms and jobs of a run share a key), and
    the thread count (a verdict timed on a loaded machine with 1 thread is not one for 2)."""
    c = model.config
    total = sum(p.numel() for p in model.parameters())
    rows = sum(b["input_ids"].shape[0] for b in slices)
    longest = 32 * math.ceil(max(b["input_ids"].shape[1] for b in slices) / 32)
    return (f"{c.model_type} h{c.hidden_size} l{c.num_hidden_layers} "
            f"i{getattr(c, 'intermediate_size', 0)} v{c.vocab_size // 1000}k "
            f"trainable {trainable / total:.2f} batch {rows} in {len(slices)} T<={longest} "
            f"threads {torch.get_num_threads()}")


def frozen_base_dtype(model_cfg: ModelParams, device: torch.device) -> torch.dtype | None:
    """dtype of a pretrained base's frozen weights: ``model.pretrained.dtype`` ('auto': bf16 on a
    GPU that supports it, where it halves the base's memory and the LoRA weights stay fp32;
    fp32 on a CPU, where bf16 matmuls are slower without AMX)."""
    choice = model_cfg.pretrained.dtype
    if choice == "auto":
        ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if ok else None
    return torch.bfloat16 if choice == "bfloat16" else None


def pick_device(ranks: distributed.Ranks | None = None) -> torch.device:
    return distributed.device_for(ranks or distributed.Ranks())


# --------------------------------------------------------------------------- resume state
def _trainable_state(model) -> dict[str, torch.Tensor]:
    # Only what trains: for LoRA the frozen base stays out of the resume checkpoint.
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def _save_resume(ckpt: Path, model, optimizer, scheduler, step: int, stats: dict, fp: str) -> None:
    with atomic_dir(ckpt) as tmp:
        save_file(_trainable_state(model), str(tmp / _WEIGHTS))
        # Optimizer/scheduler/RNG state is our own file, written here; loaded with weights_only=True.
        torch.save(
            {
                "step": step,
                "fingerprint": fp,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "stats": stats,
            },
            tmp / _STATE,
        )


def _load_resume(ckpt: Path, model, optimizer, scheduler, fp: str) -> tuple[int, dict]:
    state = torch.load(ckpt / _STATE, weights_only=True, map_location="cpu")
    if state["fingerprint"] != fp:
        raise ValueError(
            f"{ckpt}: resume checkpoint was made by a different run (data, variant, steps or "
            "params differ); delete that directory to start over"
        )
    weights = load_file(str(ckpt / _WEIGHTS))
    missing = set(_trainable_state(model)) - set(weights)
    if missing:
        raise ValueError(f"{ckpt}: resume checkpoint lacks weights {sorted(missing)[:3]} …")
    model.load_state_dict(weights, strict=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng_cpu"])
    if torch.cuda.is_available() and state["rng_cuda"]:
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    return int(state["step"]), dict(state["stats"])


# --------------------------------------------------------------------------- evaluation
@torch.no_grad()
def eval_loss(model, examples, batch_size: int, max_batches: int, pad_id: int, device, bf16: bool):
    """Mean loss per completion token over the first ``max_batches`` batches (nan if none)."""
    if not examples:
        return float("nan")
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for b in range(min(max_batches, math.ceil(len(examples) / batch_size))):
        batch = {k: v.to(device) for k, v in collate(examples[b * batch_size : (b + 1) * batch_size], pad_id).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits = logits[:, :-1].float()
        labels = batch["labels"][:, 1:]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
            ignore_index=IGNORE_INDEX, reduction="sum",
        )
        total += loss.item()
        count += int((labels != IGNORE_INDEX).sum())
    model.train(was_training)
    return total / max(count, 1)


# --------------------------------------------------------------------------- training
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
    ranks = distributed.env_ranks()
    if train_cfg.batch_size % ranks.world:
        raise ValueError(
            f"train.batch_size ({train_cfg.batch_size}) must be a multiple of the {ranks.world} "
            "processes training it (train.processes): each rank takes an equal share of a batch"
        )
    train = _select_rows(train_rows, variant, mode, modes, "train rows")
    val = _select_rows(val_rows, variant, mode, modes, "validation rows")
    if train.height == 0:
        which = f"mode {mode!r}" if variant == "expert" else "this arm"
        raise ValueError(
            f"no training rows for {which} in arm {arm!r} (label source {label_source!r}); "
            f"modes present: {sorted(train_rows['mode'].unique().to_list())}"
        )
    train = train.sort("id")  # row order must not depend on upstream ordering
    val = val.sort("id")
    ranks = distributed.init("cuda" if torch.cuda.is_available() else "cpu")
    device = pick_device(ranks)
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
        start_hash = _load_start(model, Path(init_from))
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
        # threads and processes only change float rounding, and a resumed run may find other
        # cores (or GPUs) free
        model_cfg.model_dump_json(), train_cfg.model_dump_json(exclude={"threads", "processes"}),
    ])
    ckpt = out_dir / CHECKPOINT_DIR
    start, stats = 0, {"tokens": 0, "wall_s": 0.0}
    if (ckpt / _STATE).exists():
        start, stats = _load_resume(ckpt, model, optimizer, scheduler, fingerprint)
    else:
        torch.manual_seed(train_cfg.seed)  # dropout RNG (LoRA dropout) starts from the seed

    pad_id = tokenizer.pad_token_id
    threads, threads_record = autotune.resolve_threads(train_cfg.threads)
    if ranks.local_world > 1 and train_cfg.threads == "auto":
        # every rank sees the same free cores when they start together: share them
        threads = max(1, threads // ranks.local_world)
        threads_record = {**threads_record, "threads": threads, "ranks_per_machine": ranks.local_world}
    # DDP sums (averages) the ranks' gradients after each step's last backward; one process: as is
    net = model
    if ranks.distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    share = train_cfg.batch_size // ranks.world  # rows of each batch this rank takes
    lo = ranks.rank * share
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        if "bf16" in stats:  # a resumed run keeps the dtype it started with
            verdict = autotune.fixed("train.bf16", "on" if stats["bf16"] else "off", "resume")
        else:
            first = [
                {k: v.to(device) for k, v in collate(part, pad_id).items()}
                for part in micro_batches([train_ex[i] for i in order[min(start, steps - 1)].tolist()[lo:lo + share]],
                                          train_cfg.micro_batches)
            ]
            verdict = None
            if ranks.main:  # one rank measures (the others wait); every rank uses its verdict
                verdict = choose_bf16(train_cfg.bf16, device, model, first,
                                      _shape_key(model, first, sum(p.numel() for p in params)),
                                      cache=autotune_cache, timer=timer)
            verdict = distributed.from_main(ranks, verdict)
        bf16 = verdict.choice == "on"
        losses = list(stats.get("losses", []))
        bar = tqdm(range(start, steps), initial=start, total=steps, disable=not progress or not ranks.main,
                   desc=f"train {variant}{'/' + mode if mode else ''}")
        t0 = time.perf_counter()
        tokens = stats["tokens"]
        for step in bar:
            rows = order[step].tolist()[lo:lo + share]  # this rank's share of the global batch
            slices = [collate(part, pad_id) for part in micro_batches([train_ex[i] for i in rows], train_cfg.micro_batches)]
            counts = [_targets(b["labels"]) for b in slices]
            # the batch's target tokens, over every rank: each slice weighs by its share of them
            targets = max(distributed.sum_all(ranks, sum(counts)), 1)
            pass_n = train_cfg.objective == "pass_at_n" and step >= train_cfg.pass_at_n.warmup_steps
            loss = torch.zeros(())
            for j, (batch, count) in enumerate(zip(slices, counts, strict=True)):
                tokens += int(batch["attention_mask"].sum())
                weight = count / targets
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                with distributed.no_sync(net, sync=j == len(slices) - 1):
                    if pass_n:
                        # A per-example loss: each slice weighs by its share of the batch's rows.
                        share_rows = len(batch["labels"]) / train_cfg.batch_size
                        part = _pass_at_n_mean(net, batch, train_cfg.pass_at_n.N, device, bf16) * share_rows
                    else:
                        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                            # HF's loss is the slice's mean over its target tokens; reweighted to the batch's.
                            part = net(**batch).loss * weight
                    # DDP averages over ranks; the parts are already shares of the whole batch
                    (part * ranks.world).backward()
                loss += part.detach().float().cpu()
            loss = torch.tensor(distributed.sum_all(ranks, loss.item()))
            losses.append(round(loss.item(), 6))
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            if done % 10 == 0 or done == steps:
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if done % train_cfg.save_every == 0 and done < steps:
                wall = stats["wall_s"] + time.perf_counter() - t0
                seen = int(stats["tokens"] + distributed.sum_all(ranks, tokens - stats["tokens"]))
                if ranks.main:  # one writer; the others wait until the checkpoint is whole
                    _save_resume(ckpt, model, optimizer, scheduler, done,
                                 {"tokens": seen, "wall_s": wall, "bf16": bf16, "losses": losses},
                                 fingerprint)
                distributed.barrier(ranks)
            if stop_after is not None and done >= stop_after and done < steps:
                raise TrainingInterrupted(f"stopped after step {done} (stop_after={stop_after})")
        wall_s = stats["wall_s"] + time.perf_counter() - t0
        # tokens: this rank's since the start or resume, plus what the checkpoint counted
        tokens = int(stats["tokens"] + distributed.sum_all(ranks, tokens - stats["tokens"]))
        ev = eval_loss(model, val_ex, train_cfg.batch_size, train_cfg.eval_batches, pad_id, device, bf16)
    finally:
        torch.set_num_threads(prev_threads)

    result = TrainResult(
        steps=steps,
        examples=steps * train_cfg.batch_size,
        tokens=tokens,
        eval_loss=ev,
        wall_s=wall_s,
        tokens_per_s=tokens / wall_s if wall_s > 0 else 0.0,
        objective=train_cfg.objective,
        bf16=bf16,
        threads=threads,
        autotune={"bf16": verdict.record(), "threads": threads_record},
        processes=ranks.world,
        losses=losses,
    )
    info = ModcInfo(
        variant=variant,
        label_source=label_source,
        modes=[] if variant == "standard" else ([mode] if variant == "expert" else modes),
        task=_task_of(train),
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
    if ranks.main:  # one set of outputs, whatever the number of ranks
        _save_final(model, tokenizer, info, out_dir)
    distributed.barrier(ranks)
    return result


def _load_start(model, ckpt: Path) -> str:
    """Load ``ckpt``'s trained weights into ``model`` (safetensors only); their sha256."""
    lora = hasattr(model, "peft_config")
    path = ckpt / ("adapter_model.safetensors" if lora else "model.safetensors")
    if not path.exists():
        raise ValueError(f"{path}: no weights to start from (init_from must be a finished "
                         f"{'LoRA' if lora else 'scratch'} checkpoint of this arm)")
    weights = load_file(str(path))
    if lora:
        from peft import set_peft_model_state_dict

        unexpected = set_peft_model_state_dict(model, weights).unexpected_keys
        missing: list[str] = []
    else:
        missing, unexpected = model.load_state_dict(weights, strict=False)
        # a tied output head is saved once, as the input embedding
        tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
        missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit this model (missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]}); was it trained on this arm?")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _task_of(rows: pl.DataFrame) -> str:
    tasks = rows["task"].unique().to_list()
    return tasks[0] if len(tasks) == 1 else ",".join(sorted(tasks))


def _save_final(model, tokenizer, info: ModcInfo, out_dir: Path) -> None:
    """Weights (safetensors / peft adapter), tokenizer and modc.json into a temp dir, then one
    rename onto ``out_dir`` (which drops the resume checkpoint inside it)."""
    with atomic_dir(out_dir) as tmp:
        # A peft adapter over a resized vocabulary: peft would also save both full embedding
        # matrices (for SmolLM2-135M 227 MB instead of ~1 MB). Not needed: the trained mode-token
        # rows are in the adapter and fit_embeddings rebuilds every other new row exactly.
        extra = {"save_embedding_layers": False} if hasattr(model, "peft_config") else {}
        model.save_pretrained(tmp, safe_serialization=True, **extra)
        add_bos_when_encoding(tokenizer)  # plain transformers / TRL then encode as training did
        tokenizer.save_pretrained(tmp)
        write_modc(tmp, info)


def split_steps(steps: int, n: int) -> list[int]:
    """``steps`` split into ``n`` parts as evenly as possible (they sum to ``steps``)."""
    if n <= 0:
        raise ValueError(f"need at least one expert, got {n}")
    return [steps // n + (1 if i < steps % n else 0) for i in range(n)]


def train_experts(
    train_rows: pl.DataFrame,
    val_rows: pl.DataFrame,
    *,
    modes: Sequence[str],
    label_source: str,
    arm: str,
    model_cfg: ModelParams,
    train_cfg: TrainParams,
    steps: int,
    out_dir: str | Path,
    tokenizer_texts: Sequence[str] | None = None,
    progress: bool = True,
    extra_info: dict | None = None,
    autotune_cache: str | Path | None = None,
    timer: autotune.Timer = autotune.wall_timer,
    shared_steps: int = 0,
) -> dict[str, TrainResult]:
    """One expert per mode in ``out_dir/<mode_slug>/``; their steps sum to ``steps``.

    ``shared_steps`` > 0 (a shared start): first one model trains that many steps on all the
    arm's rows (like the standard model), then every expert starts from its weights and trains
    on its own mode's rows; the experts split the remaining ``steps - shared_steps``, so the
    group's compute still equals the standard model's. The shared model is kept in
    ``out_dir/shared`` while the experts train (an interrupted run reuses it) and removed once
    the group is complete; its result is in the group's modc.json (``train.shared``). Under
    ``pass_at_n`` its CE warm-up happens in the shared steps (the experts get none).

    Writes the group ``out_dir/modc.json`` (variant 'experts') last, so a group with modc.json
    is complete. Every mode must have training rows (checked before any training).
    With ``train.objective: pass_at_n`` the CE warm-up is split like the steps, so the experts
    together see as many cross-entropy examples as the standard model.
    Returns {mode: TrainResult}.
    """
    out_dir = Path(out_dir)
    modes = list(modes)
    check_schema(train_rows, "train rows")
    present = set(train_rows["mode"].unique().to_list())
    empty = [m for m in modes if m not in present]
    if empty:
        raise ValueError(
            f"no training rows for mode(s) {empty} in arm {arm!r} (label source "
            f"{label_source!r}); modes present: {sorted(present)}"
        )
    if tokenizer_texts is None:
        tokenizer_texts = [*train_rows["prompt"], *train_rows["completion"], *val_rows["prompt"], *val_rows["completion"]]
    if not 0 <= shared_steps < steps:
        raise ValueError(f"shared_steps ({shared_steps}) must be in [0, steps={steps}): the experts "
                         "need steps of their own")
    per_mode_steps = split_steps(steps - shared_steps, len(modes))
    warmups = split_steps(0 if shared_steps else train_cfg.pass_at_n.warmup_steps, len(modes))
    if train_cfg.objective == "pass_at_n" and any(w >= s for w, s in zip(warmups, per_mode_steps, strict=True)):
        raise ValueError(
            f"train.pass_at_n.warmup_steps ({train_cfg.pass_at_n.warmup_steps}) split over "
            f"{len(modes)} experts is {warmups}, not below their steps {per_mode_steps}: some "
            "expert would train on cross-entropy only; lower it"
        )
    common = dict(label_source=label_source, arm=arm, model_cfg=model_cfg,
                  tokenizer_texts=tokenizer_texts, progress=progress, extra_info=extra_info,
                  autotune_cache=autotune_cache, timer=timer)
    shared, shared_dir = None, out_dir / "shared"
    if shared_steps:
        done = shared_dir / "modc.json"
        if done.exists() and read_modc(shared_dir).train.get("steps") == shared_steps:
            shared = read_modc(shared_dir).train  # a finished shared start of an interrupted run
        else:
            shared = asdict(train_model(
                train_rows.filter(pl.col("mode").is_in(modes)), val_rows, variant="standard",
                mode=None, modes=modes, train_cfg=train_cfg, steps=shared_steps,
                out_dir=shared_dir, **common))
    results = {}
    for m, n_steps, warmup in zip(modes, per_mode_steps, warmups, strict=True):
        cfg = train_cfg
        if train_cfg.objective == "pass_at_n":
            cfg = train_cfg.model_copy(
                update={"pass_at_n": train_cfg.pass_at_n.model_copy(update={"warmup_steps": warmup})}
            )
        results[m] = train_model(
            train_rows, val_rows, variant="expert", mode=m, modes=modes, train_cfg=cfg,
            steps=n_steps, out_dir=out_dir / mode_slug(m),
            init_from=shared_dir if shared_steps else None, **common,
        )
    info = ModcInfo(
        variant="experts",
        label_source=label_source,
        modes=modes,
        task=_task_of(train_rows),
        arm=arm,
        experts={m: mode_slug(m) for m in modes},
        base={"kind": model_cfg.base, "name_or_path": model_cfg.pretrained.name_or_path if model_cfg.base == "pretrained" else None,
              "hub_id": model_cfg.pretrained.hub_id if model_cfg.base == "pretrained" else None,
              "adapter": model_cfg.base == "pretrained"},
        data_hash=data_hash(train_rows.filter(pl.col("mode").is_in(modes))["id"].to_list()),
        train={
            "steps": sum(r.steps for r in results.values()) + shared_steps,
            "per_mode": {m: asdict(r) for m, r in results.items()},
            "tokens": sum(r.tokens for r in results.values()) + (shared["tokens"] if shared else 0),
            "wall_s": sum(r.wall_s for r in results.values()) + (shared["wall_s"] if shared else 0.0),
            "shared_steps": shared_steps,
            **({"shared": {k: shared[k] for k in ("steps", "tokens", "wall_s", "eval_loss")}}
               if shared else {}),
            **objective_info(train_cfg),
        },
        params={"model": model_cfg.model_dump(), "train": train_cfg.model_dump()},
    )
    for key, value in (extra_info or {}).items():
        setattr(info, key, value)
    ranks = distributed.env_ranks()
    if ranks.main:
        write_modc(out_dir, info)
        shutil.rmtree(shared_dir, ignore_errors=True)  # the group is complete without it
    distributed.barrier(ranks)
    return results
