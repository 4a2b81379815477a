"""GRPO after SFT on TRL: one modc checkpoint in, one modc checkpoint out.

What it handles: the RL prompts (a prefix model's prompts carry a mode token, modes drawn
uniformly in a seeded order; an expert's carry none), TRL's ``GRPOTrainer`` (or the pass@k one)
with the task's verifier as reward, resuming from TRL's own checkpoints after an interruption,
and the output folder every later step reads like a trained one: model or LoRA adapter in
safetensors, tokenizer, ``modc.json`` copied from the start with an ``rl`` record (method,
settings, steps, completions and tokens generated). Experts are RL'd one by one, the steps split
between them as training splits them (equal compute). What it leaves out: which checkpoints to
RL and how results compare (params and evaluation).
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from modc_data.artifacts import atomic_dir
from modc_data.modeling.format import prompt_text
from modc_data.modeling.modc_json import ModcInfo, read_modc, write_modc
from modc_data.rl.rewards import BindingReward, VerifierReward
from modc_data.tasks import Task

STATE_DIR = "_rl_state"  # TRL's checkpoints while a run is under way (removed when it ends)


@dataclass(frozen=True)
class RLSettings:
    """One RL run's settings (params: ``rl_jobs.<key>``)."""

    method: str = "grpo"  # grpo (mean reward) or passk (pass@k advantages)
    binding: bool = False  # reward only completions that also follow the requested mode
    steps: int = 20  # optimizer steps (split between experts)
    prompts_per_step: int = 4
    group_size: int = 8  # completions per prompt (GRPO's G)
    passk_k: int = 4  # passk: the k optimised
    temperature: float = 1.0
    beta: float = 0.0  # KL coefficient against the starting model (0: no reference model)
    lr: float = 1e-5
    max_new_tokens: int = 100
    save_every: int = 10
    seed: int = 0
    bf16: bool = False  # bf16 mixed precision (TRL's default is on: emulated, slow, on most CPUs)
    gradient_checkpointing: bool = False  # memory for time; TRL's default is on

    def __post_init__(self) -> None:
        if self.method not in ("grpo", "passk"):
            raise ValueError(f"rl method must be grpo or passk, got {self.method!r}")
        if self.method == "passk" and not 1 <= self.passk_k <= self.group_size:
            raise ValueError(f"rl passk_k={self.passk_k} must be in [1, group_size={self.group_size}]")
        if self.group_size < 2:
            raise ValueError("rl group_size must be >= 2 (GRPO compares completions of a prompt)")


def rl_prompts(problems: list[dict[str, Any]], modes: list[str] | None, seed: int
               ) -> list[dict[str, Any]]:
    """RL dataset rows: each problem's columns, ``prompt`` as the model reads it and ``mode``.

    ``modes`` None or empty: plain prompts (standard models, experts). Else every problem gets one
    mode, the modes dealt round-robin over a seeded shuffle of the problems, so each is drawn
    equally often (uniform over modes, as ModC's test-time split)."""
    order = list(range(len(problems)))
    random.Random(seed).shuffle(order)
    out: list[dict[str, Any] | None] = [None] * len(problems)
    for j, i in enumerate(order):
        mode = modes[j % len(modes)] if modes else None
        row = dict(problems[i])
        row["prompt"], row["mode"] = prompt_text(row["prompt"], mode), mode
        out[i] = row
    return out  # type: ignore[return-value]


def rl_one(start: Path, out: Path, problems: list[dict[str, Any]], task: Task,
           settings: RLSettings, *, mode: str | None = None, steps: int | None = None,
           threads: int | None = None, reward: Any = None, callbacks: list | None = None
           ) -> dict[str, Any]:
    """RL the single checkpoint ``start`` (standard, prefix or one expert) into ``out``.

    ``mode``: an expert's own mode (its prompts carry no token; the binding reward asks for it).
    Resumes from ``out/_rl_state`` when an earlier run was interrupted. ``reward``: a TRL reward
    function in place of the task's verifier (or binding) reward; ``callbacks``: TRL/transformers
    trainer callbacks. Returns the ``rl`` record written into ``out/modc.json``."""
    import datasets
    import torch
    from accelerate import PartialState
    from transformers.trainer_utils import get_last_checkpoint
    from trl import GRPOConfig, GRPOTrainer

    from modc_data.modeling.load import load_checkpoint
    from modc_data.rl.passk import passk_trainer_class

    steps = settings.steps if steps is None else steps
    # Under `accelerate launch` (N processes) TRL's trainer runs data-parallel; each process takes
    # its share of the step's rollouts, so a step has the same rollouts as in one process.
    procs = PartialState()
    per_process, rest = divmod(settings.prompts_per_step * settings.group_size, procs.num_processes)
    if rest:
        raise ValueError(f"rl: prompts_per_step x group_size = "
                         f"{settings.prompts_per_step * settings.group_size} rollouts a step do not "
                         f"split over {procs.num_processes} processes; make it a multiple")
    info = read_modc(start)
    prefix_modes = info.modes if info.variant == "prefix" else None
    rows = rl_prompts(problems, prefix_modes, settings.seed)
    if mode is not None:
        rows = [{**r, "mode": mode} for r in rows]
    if settings.binding and not (prefix_modes or mode):
        raise ValueError(f"{start}: the binding reward needs a model with modes (prefix or an "
                         f"expert); this is a {info.variant} model")
    if threads:
        torch.set_num_threads(threads)
    model, tokenizer, _ = load_checkpoint(start, trainable=True)
    model.train()
    if reward is None:
        reward = (BindingReward if settings.binding else VerifierReward)(task)
    state = out / STATE_DIR
    # Resume only a run of the same settings from the same start; anything else starts over.
    fingerprint = json.dumps({**asdict(settings), "steps": steps, "mode": mode,
                              "start": str(start), "start_data": info.data_hash}, sort_keys=True)
    marker = state / "settings.json"
    if procs.is_main_process:
        if state.exists() and (not marker.exists() or marker.read_text() != fingerprint):
            shutil.rmtree(state)
        state.mkdir(parents=True, exist_ok=True)
        marker.write_text(fingerprint)
    procs.wait_for_everyone()
    args = GRPOConfig(
        output_dir=str(state), max_steps=steps, learning_rate=settings.lr,
        per_device_train_batch_size=per_process,
        num_generations=settings.group_size, max_completion_length=settings.max_new_tokens,
        temperature=settings.temperature, top_p=1.0, top_k=0, beta=settings.beta,
        scale_rewards="none" if settings.method == "passk" else "group",
        save_strategy="steps", save_steps=settings.save_every, save_only_model=False,
        logging_steps=1, report_to=[], seed=settings.seed, data_seed=settings.seed,
        use_cpu=not torch.cuda.is_available(), disable_tqdm=False, bf16=settings.bf16,
        gradient_checkpointing=settings.gradient_checkpointing,
    )
    kwargs: dict[str, Any] = dict(model=model, processing_class=tokenizer, reward_funcs=[reward],
                                  args=args, train_dataset=datasets.Dataset.from_list(rows),
                                  callbacks=callbacks)
    if settings.method == "passk":
        trainer = passk_trainer_class()(**kwargs, passk_k=settings.passk_k)
    else:
        trainer = GRPOTrainer(**kwargs)
    result = trainer.train(resume_from_checkpoint=get_last_checkpoint(str(state)))
    history = [h for h in trainer.state.log_history if "num_tokens" in h]
    record = {
        **asdict(settings), "steps": steps, "start": str(start),
        "completions": steps * settings.prompts_per_step * settings.group_size,
        "tokens": int(history[-1]["num_tokens"]) if history else 0,  # TRL's running count
        "mean_reward_first": _mean_reward(history[:1], getattr(reward, "__name__", "")),
        "mean_reward_last": _mean_reward(history[-1:], getattr(reward, "__name__", "")),
        "train_loss": float(result.training_loss),
        "processes": procs.num_processes,
    }
    if procs.is_main_process:
        _write_checkpoint(trainer.model, tokenizer, start, out, _with_rl(info, record))
    procs.wait_for_everyone()
    return record


def _write_checkpoint(model, tokenizer, start: Path, out: Path, info: ModcInfo) -> None:
    """The finished checkpoint, written beside ``out`` and then put in its place (TRL's
    checkpoints in ``out`` go with the old folder)."""
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if (start / "generation_config.json").exists() and not (tmp / "generation_config.json").exists():
            shutil.copy2(start / "generation_config.json", tmp / "generation_config.json")
        write_modc(tmp, info)


def _mean_reward(history: list[dict[str, Any]], name: str) -> float | None:
    for h in history:
        v = h.get(f"rewards/{name}/mean", h.get("reward"))
        if v is not None:
            return float(v)
    return None


def _with_rl(info: ModcInfo, record: dict[str, Any]) -> ModcInfo:
    data = asdict(info)
    data["train"] = {**data.get("train", {}), "rl": record}
    return ModcInfo(**data)


def rl_checkpoint(start: Path, out: Path, problems: list[dict[str, Any]], task: Task,
                  settings: RLSettings, threads: int | None = None, reward: Any = None
                  ) -> dict[str, Any]:
    """RL ``start`` into ``out``: one model, or every expert of an experts group (the steps split
    between them as ``train_experts`` splits SFT steps). Returns the ``rl`` record(s)."""
    from modc_data.modeling.experts import split_steps

    info = read_modc(start)
    if info.variant != "experts":
        out.mkdir(parents=True, exist_ok=True)
        return rl_one(start, out, problems, task, settings, threads=threads, reward=reward)
    out.mkdir(parents=True, exist_ok=True)
    records = {}
    modes = sorted(info.experts)
    for m, steps in zip(modes, split_steps(settings.steps, len(modes)), strict=True):
        records[m] = rl_one(start / info.experts[m], out / info.experts[m], problems, task,
                            settings, mode=m, steps=steps, threads=threads, reward=reward)
    from accelerate import PartialState

    if PartialState().is_main_process:
        for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
            if (start / name).exists():
                shutil.copy2(start / name, out / name)
        total = {"steps": settings.steps, "tokens": sum(r["tokens"] for r in records.values())}
        write_modc(out, _with_rl(info, {**total, "experts": records}))
    PartialState().wait_for_everyone()
    return records
