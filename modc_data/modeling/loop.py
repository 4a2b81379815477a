"""The optimisation loop of one model, on ``accelerate.Accelerator``.

    run = fit(accelerator, model, optimizer, scheduler, examples, val_examples, order, ...)

Exactly ``steps`` optimizer steps, step s on the rows ``order[s]`` (``train_data.batch_order``),
each batch cut into length-sorted micro-batches whose losses are weighted by their share of the
batch's target tokens, so the summed gradient is the whole batch's. Under N processes each takes
``batch_size / N`` rows of every step; ``Accelerator`` wraps the model for the engine the launch
chose (DDP, FSDP, DeepSpeed), syncs gradients only after a step's last micro-batch, and reduces
the counts. bf16 autocast and the thread count are ours (``train.bf16``, ``train.threads``):
they are measured when training starts, and accelerate's mixed precision stays off.

Why not ``transformers.Trainer``: the step stream must be a fixed number of optimizer steps drawn
from a seeded index stream independent of dataset size, resumable bit-exactly, with the
token-weighted micro-batches above; Trainer's epochs-and-dataloader model makes each of these a
workaround. What is here: the loop, resume and periodic checkpoints, the evaluation loss. What is
not: data preparation (``train_data``), files (``checkpoint``), model building (``train``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, broadcast_object_list
from tqdm.auto import tqdm

from modc_data import autotune
from modc_data.modeling.checkpoint import RESUME_STATE, load_resume, save_resume
from modc_data.modeling.format import IGNORE_INDEX
from modc_data.modeling.objectives import completion_logprob, pass_at_n_loss
from modc_data.modeling.precision import choose_bf16, shape_key
from modc_data.modeling.train_data import collate, count_targets, micro_batches
from modc_data.params_training import TrainParams

SHARDED = (DistributedType.FSDP, DistributedType.DEEPSPEED)  # engines that shard the weights


class TrainingInterrupted(RuntimeError):
    """Raised by ``fit(stop_after=k)`` to simulate a crash after step k (tests)."""


@dataclass
class Run:
    """What the loop did: counted over every process."""

    tokens: int
    wall_s: float
    eval_loss: float
    bf16: bool
    threads: int
    autotune: dict
    losses: list[float] = field(default_factory=list)


def accelerator_for(train_cfg: TrainParams, steps: int) -> Accelerator:
    """The ``Accelerator`` of this process, for the engine the launch chose; refuses what that
    engine cannot do here before any model is built."""
    acc = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="no")
    if train_cfg.processes > 1 and acc.num_processes != train_cfg.processes:
        raise ValueError(
            f"train.processes is {train_cfg.processes} but this process is one of "
            f"{acc.num_processes} joined ({acc.distributed_type.value}): the launch started "
            "processes that did not join one group. An accelerate config with use_cpu: true does "
            "that on a CPU; leave train.accelerate_config unset there (the stage launches gloo "
            "processes itself) or use distributed_type MULTI_GPU or FSDP"
        )
    if train_cfg.batch_size % acc.num_processes:
        raise ValueError(
            f"train.batch_size ({train_cfg.batch_size}) must be a multiple of the {acc.num_processes} "
            "processes training it (train.processes): each rank takes an equal share of a batch"
        )
    if acc.distributed_type in SHARDED and train_cfg.save_every < steps:
        raise ValueError(
            f"train.save_every ({train_cfg.save_every}) < steps ({steps}) under "
            f"{acc.distributed_type.value}: resume checkpoints hold unsharded weights only; set "
            "train.save_every to the steps, or train under DDP"
        )
    if acc.distributed_type == DistributedType.DEEPSPEED and train_cfg.micro_batches > 1:
        raise ValueError("train.micro_batches must be 1 under DeepSpeed (it accumulates by itself)")
    return acc


def sum_all(acc: Accelerator, value: float | int) -> float | int:
    """``value`` summed over the processes (itself, unchanged, in one process)."""
    if acc.num_processes == 1:
        return value
    return acc.reduce(torch.tensor([float(value)], dtype=torch.float64, device=acc.device), "sum").item()


def from_main(acc: Accelerator, obj):
    """The main process's ``obj`` on every process."""
    if acc.num_processes == 1:
        return obj
    return broadcast_object_list([obj if acc.is_main_process else None], from_process=0)[0]


def lr_lambda(warmup_steps: int, total_steps: int, min_ratio: float = 0.1):
    """Linear warmup to 1, then cosine decay to ``min_ratio`` at ``total_steps`` (nanoGPT)."""

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def _pass_at_n_mean(model, batch: dict[str, torch.Tensor], n: int, device, bf16: bool) -> torch.Tensor:
    """Mean over the slice's rows of ``-log(1 - (1 - p)^n)``, p = the model's probability of the
    row's whole completion (summed log-probs of its label tokens; padding and prompt excluded)."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return pass_at_n_loss(completion_logprob(logits, batch["labels"]), n).mean()


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


def fit(
    acc: Accelerator, model, optimizer, scheduler, train_ex: Sequence, val_ex: Sequence,
    order: torch.Tensor, *, train_cfg: TrainParams, steps: int, pad_id: int, ckpt: Path,
    fingerprint: str, desc: str, progress: bool = True, stop_after: int | None = None,
    autotune_cache: str | Path | None = None, timer: autotune.Timer = autotune.wall_timer,
):
    """Train ``model`` (on ``acc.device``, unwrapped) for ``steps`` steps from the resume
    checkpoint ``ckpt`` when there is one. Returns ``(Run, net)``, ``net`` the model as the
    engine wrapped it (the same object in one process)."""
    device = acc.device
    net, optimizer = acc.prepare(model, optimizer)
    params = [p for p in net.parameters() if p.requires_grad]
    start, stats = 0, {"tokens": 0, "wall_s": 0.0}
    if (ckpt / RESUME_STATE).exists():
        start, stats = load_resume(ckpt, model, optimizer, scheduler, fingerprint)
    else:
        torch.manual_seed(train_cfg.seed)  # dropout RNG (LoRA dropout) starts from the seed

    threads, threads_record = autotune.resolve_threads(train_cfg.threads)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", acc.num_processes))
    if local_world > 1 and train_cfg.threads == "auto":
        # every process sees the same free cores when they start together: share them
        threads = max(1, threads // local_world)
        threads_record = {**threads_record, "threads": threads, "ranks_per_machine": local_world}
    share = train_cfg.batch_size // acc.num_processes  # rows of each batch this process takes
    lo = acc.process_index * share
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
            if acc.is_main_process:  # one process measures (the others wait); all use its verdict
                verdict = choose_bf16(train_cfg.bf16, device, model, first,
                                      shape_key(model, first, sum(p.numel() for p in params)),
                                      cache=autotune_cache, timer=timer)
            verdict = from_main(acc, verdict)
        bf16 = verdict.choice == "on"
        losses = list(stats.get("losses", []))
        bar = tqdm(range(start, steps), initial=start, total=steps,
                   disable=not progress or not acc.is_main_process, desc=desc)
        t0 = time.perf_counter()
        tokens = stats["tokens"]
        for step in bar:
            rows = order[step].tolist()[lo:lo + share]  # this process's share of the global batch
            slices = [collate(part, pad_id) for part in micro_batches([train_ex[i] for i in rows], train_cfg.micro_batches)]
            counts = [count_targets(b["labels"]) for b in slices]
            # the batch's target tokens, over every process: each slice weighs by its share of them
            targets = max(sum_all(acc, sum(counts)), 1)
            pass_n = train_cfg.objective == "pass_at_n" and step >= train_cfg.pass_at_n.warmup_steps
            loss = torch.zeros(())
            for j, (batch, count) in enumerate(zip(slices, counts, strict=True)):
                tokens += int(batch["attention_mask"].sum())
                weight = count / targets
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                last = j == len(slices) - 1
                with acc.no_sync(net) if not last else nullcontext():
                    if pass_n:
                        # A per-example loss: each slice weighs by its share of the batch's rows.
                        share_rows = len(batch["labels"]) / train_cfg.batch_size
                        part = _pass_at_n_mean(net, batch, train_cfg.pass_at_n.N, device, bf16) * share_rows
                    else:
                        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                            # HF's loss is the slice's mean over its target tokens; reweighted to the batch's.
                            part = net(**batch).loss * weight
                    # the engine averages over processes; the parts are already shares of the whole batch
                    acc.backward(part * acc.num_processes)
                loss += part.detach().float().cpu()
            loss = torch.tensor(sum_all(acc, loss.item()))
            losses.append(round(loss.item(), 6))
            acc.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            if done % 10 == 0 or done == steps:
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if done % train_cfg.save_every == 0 and done < steps:
                wall = stats["wall_s"] + time.perf_counter() - t0
                seen = int(stats["tokens"] + sum_all(acc, tokens - stats["tokens"]))
                if acc.is_main_process:  # one writer; the others wait until the checkpoint is whole
                    save_resume(ckpt, model, optimizer, scheduler, done,
                                {"tokens": seen, "wall_s": wall, "bf16": bf16, "losses": losses},
                                fingerprint)
                acc.wait_for_everyone()
            if stop_after is not None and done >= stop_after and done < steps:
                raise TrainingInterrupted(f"stopped after step {done} (stop_after={stop_after})")
        wall_s = stats["wall_s"] + time.perf_counter() - t0
        # tokens: this process's since the start or resume, plus what the checkpoint counted
        tokens = int(stats["tokens"] + sum_all(acc, tokens - stats["tokens"]))
        ev = eval_loss(model, val_ex, train_cfg.batch_size, train_cfg.eval_batches, pad_id, device, bf16)
    finally:
        torch.set_num_threads(prev_threads)
    run = Run(tokens=tokens, wall_s=wall_s, eval_loss=ev, bf16=bf16, threads=threads,
              autotune={"bf16": verdict.record(), "threads": threads_record}, losses=losses)
    return run, net
