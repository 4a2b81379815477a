"""Cost of the pass@N objective and its reports: a pass@N training step against a CE step, maj@k and diversity.

    .venv/bin/python benchmarks/objective.py [--steps 15] [--rounds 3] [--threads 2] [--problems 20]

1. Trains the default scratch model (hidden 128, 4 layers) on synthetic Countdown-like rows
   (``train_throughput.countdown_like_rows``) through ``train_model`` with ``train.objective`` ce
   and pass_at_n, rounds alternating between the two, and prints the median ms/step of each.
2. Times exact maj@k (k = 1, 2, 4, … 64) per problem at n = 64 samples, plain and ModC split over
   two modes of 64 samples each, on answers drawn from a few groups, and the diversity metrics
   per problem on 64 completions of ~50 tokens.
Figures on a shared machine are noisy: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train_throughput import countdown_like_rows  # noqa: E402

from modc_data.evaluation.diversity import diversity_per_problem  # noqa: E402
from modc_data.evaluation.majority import answer_groups, maj_at_k, maj_at_k_split  # noqa: E402
from modc_data.modeling.train import train_model  # noqa: E402
from modc_data.params_training import ModelParams, PassAtNParams, ScratchModelParams, TrainParams  # noqa: E402
from modc_data.sampling.run import SAMPLES_SCHEMA  # noqa: E402

KS = [1, 2, 4, 8, 16, 32, 64]


def _ms_per_step(objective: str, rows, texts, args) -> float:
    cfg = TrainParams(batch_size=args.batch_size, threads=args.threads, warmup_steps=2,
                      save_every=10**6, eval_batches=1, objective=objective,
                      pass_at_n=PassAtNParams(N=32))
    with tempfile.TemporaryDirectory() as d:
        r = train_model(rows, rows[:64], variant="standard", mode=None, modes=["dfs", "bfs"],
                        label_source="search_algorithm", arm="bench",
                        model_cfg=ModelParams(scratch=ScratchModelParams()), train_cfg=cfg,
                        steps=args.steps, out_dir=Path(d) / "m", tokenizer_texts=texts, progress=False)
    return 1000 * r.wall_s / r.steps


def _answers(rng, n: int, n_groups: int, p_right: float) -> list[str]:
    return ["right" if rng.random() < p_right else f"w{rng.integers(n_groups)}" for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--problems", type=int, default=20)
    args = ap.parse_args()

    rows = countdown_like_rows(512)
    texts = [*rows["prompt"], *rows["completion"]]
    _ms_per_step("ce", rows, texts, args)  # warm-up: oneDNN kernel selection
    times: dict[str, list[float]] = {"ce": [], "pass_at_n": []}
    for _ in range(args.rounds):
        for objective in times:
            times[objective].append(_ms_per_step(objective, rows, texts, args))
    for objective, ts in times.items():
        print(f"train {objective:9s}: median {statistics.median(ts):6.1f} ms/step over {args.rounds} "
              f"rounds ({', '.join(f'{t:.1f}' for t in ts)}); batch {args.batch_size}")
    print(f"pass_at_n / ce: {statistics.median(times['pass_at_n']) / statistics.median(times['ce']):.2f}x")

    rng = np.random.default_rng(0)
    for n_groups in (2, 8, 32):
        plain, split = [], []
        for _ in range(args.problems):
            a = _answers(rng, 64, n_groups, 0.4)
            t = time.perf_counter()
            maj_at_k(answer_groups([a], [[x == "right" for x in a]]), KS)
            plain.append(time.perf_counter() - t)
            b = [a, _answers(rng, 64, n_groups, 0.2)]
            t = time.perf_counter()
            maj_at_k_split(answer_groups(b, [[x == "right" for x in m] for m in b]), KS)
            split.append(time.perf_counter() - t)
        print(f"maj@k n=64, {n_groups:2d} wrong answers: plain {1000 * statistics.median(plain):7.1f} ms/problem,"
              f" ModC split (2 x 64) {1000 * statistics.median(split):7.1f} ms/problem (median of {args.problems})")

    words = [str(i) for i in range(40)] + list("+-*=,")
    samples = pl.DataFrame([
        {"problem_id": f"p{p}", "split": "test", "model": "m", "arm": "a", "variant": "standard",
         "mode": "", "sample_idx": i, "completion": " ".join(rng.choice(words, size=50)),
         "answer": f"w{rng.integers(8)}", "correct": False, "detected_mode": "dfs", "n_tokens": 50}
        for p in range(args.problems) for i in range(64)
    ], schema=SAMPLES_SCHEMA)
    t = time.perf_counter()
    diversity_per_problem(samples)
    print(f"diversity, 64 samples of 50 tokens: {1000 * (time.perf_counter() - t) / args.problems:.1f} ms/problem")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus")


if __name__ == "__main__":
    main()
