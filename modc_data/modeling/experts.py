"""The experts of one arm: one model per mode, their steps summing to the standard model's.

    results = train_experts(train_rows, val_rows, modes=["dfs", "bfs"], label_source=...,
                            arm=..., model_cfg=..., train_cfg=..., steps=1200, out_dir=...,
                            shared_steps=900)

With ``shared_steps`` the group first trains one model on every row (the shared start), then
each expert continues from it on its own mode's rows. The group's ``modc.json`` is written last,
so a directory with it is complete. What is not here: training one model (``modeling.train``).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import polars as pl

from modc_data import autotune
from modc_data.modeling.launch import state
from modc_data.modeling.modc_json import ModcInfo, read_modc, write_modc
from modc_data.modeling.train import TrainResult, objective_info, train_model
from modc_data.modeling.train_data import data_hash, task_of
from modc_data.params_training import ModelParams, TrainParams
from modc_data.schema import check_schema, mode_slug


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
        task=task_of(train_rows),
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
    procs = state()
    if procs.is_main_process:
        write_modc(out_dir, info)
        shutil.rmtree(shared_dir, ignore_errors=True)  # the group is complete without it
    procs.wait_for_everyone()
    return results
