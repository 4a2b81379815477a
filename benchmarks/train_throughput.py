"""Training throughput of ``train_model`` on this machine: fp32 against bf16 autocast.

    .venv/bin/python benchmarks/train_throughput.py [--steps 20] [--threads 2] [--batch-size 64]

Trains the default ``ScratchModelParams`` model (hidden 128, 4 layers) on synthetic
Countdown-like rows (~14-token prompts, completions of 6 to 78 tokens like real traces, ~52
tokens a sequence on average) through the real training path, and prints training tokens/s and
ms/step for bf16 off and on (one batch per step), then for bf16 on with the batch cut into
length-sorted micro-batches (``train.micro_batches``; same gradient, less padding). Then
estimates how long the default ``TrainParams.steps`` takes, and how many steps fit when ~14 models
must train in ~25 minutes in total.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import torch

from modc_data.modeling.train import train_model
from modc_data.params_training import ModelParams, ScratchModelParams, TrainParams
from modc_data.schema import make_rows


def countdown_like_rows(n: int, seed: int = 0):
    """Rows shaped like Countdown traces: 3 numbers and a target, ~10 steps of arithmetic."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        nums = [rng.randint(1, 30) for _ in range(3)]
        target = rng.randint(10, 99)
        steps = []
        for _ in range(rng.randint(1, 13)):
            a, b = rng.randint(1, 50), rng.randint(1, 50)
            steps += [str(a), rng.choice("+-*"), str(b), "=", str(a + b), ","]
        mode = "dfs" if i % 2 else "bfs"
        records.append({
            "problem_id": str(i), "task": "countdown",
            "prompt": "numbers " + " ".join(map(str, nums)) + f" target {target} search {mode} budget 8 go",
            "completion": " ".join(steps[:-1]) + " goal",
            "answer": "", "mode": mode, "label_source": "search_algorithm", "split": "train",
            "correct": True, "meta": {},
        })
    return make_rows(records)


def _default_train() -> TrainParams:
    """params.yaml's train block when run from the repo root, else the library defaults."""
    try:
        from modc_data.config import load_params

        return load_params("params.yaml").train
    except (OSError, ValueError):
        return TrainParams()


def main() -> None:
    defaults = _default_train()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=defaults.batch_size,
                    help="default: params.yaml's train.batch_size")
    ap.add_argument("--models", type=int, default=14, help="models in the whole pipeline")
    ap.add_argument("--budget-min", type=float, default=25.0, help="minutes for all training")
    args = ap.parse_args()

    rows = countdown_like_rows(512)
    texts = [*rows["prompt"], *rows["completion"]]
    model_cfg = ModelParams(scratch=ScratchModelParams())
    n_tokens_seq = None
    results = {}
    for bf16, micro in (("off", 1), ("on", 1), ("on", 2), ("on", 3)):
        cfg = TrainParams(batch_size=args.batch_size, threads=args.threads, bf16=bf16,
                          warmup_steps=2, save_every=10**6, eval_batches=1, micro_batches=micro)
        with tempfile.TemporaryDirectory() as d:
            # A short warm-up run first: the first steps pay for oneDNN kernel selection.
            train_model(rows, rows[:64], variant="standard", mode=None, modes=["dfs", "bfs"],
                        label_source="search_algorithm", arm="bench", model_cfg=model_cfg,
                        train_cfg=cfg, steps=3, out_dir=Path(d) / "warm", tokenizer_texts=texts,
                        progress=False)
            t = time.perf_counter()
            r = train_model(rows, rows[:64], variant="standard", mode=None, modes=["dfs", "bfs"],
                            label_source="search_algorithm", arm="bench", model_cfg=model_cfg,
                            train_cfg=cfg, steps=args.steps, out_dir=Path(d) / "m",
                            tokenizer_texts=texts, progress=False)
            total = time.perf_counter() - t
        n_tokens_seq = r.tokens / r.examples
        results[(bf16, micro)] = r
        print(f"bf16={bf16:3s} micro_batches={micro}: {r.tokens_per_s:8.0f} tokens/s  "
              f"{1000 * r.wall_s / r.steps:6.1f} ms/step"
              f"  (batch {args.batch_size}, {n_tokens_seq:.0f} tokens/seq, {args.threads} threads;"
              f" whole call incl. setup+save {total:.1f}s)")

    best = max(results.values(), key=lambda r: r.tokens_per_s)
    per_step = best.wall_s / best.steps
    default_steps = defaults.steps
    print(f"bf16 speed-up: {results[('on', 1)].tokens_per_s / results[('off', 1)].tokens_per_s:.2f}x")
    print(f"micro_batches=2 speed-up (bf16): "
          f"{results[('on', 2)].tokens_per_s / results[('on', 1)].tokens_per_s:.2f}x")
    print(f"default train.steps={default_steps} x batch {args.batch_size}: "
          f"{default_steps * per_step / 60:.1f} min per standard model, "
          f"{args.models * default_steps * per_step / 60:.1f} min for {args.models} models "
          "(experts of a group share the standard's steps, so count a group once)")
    fit = int(args.budget_min * 60 / args.models / per_step)
    print(f"steps per model so that {args.models} models fit in {args.budget_min:.0f} min: ~{fit}")
    # Shared machines skew every figure above: print the load they were taken under.
    print(f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus")


if __name__ == "__main__":
    main()
