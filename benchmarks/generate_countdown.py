"""Countdown generation throughput: problems with both reference traces per second.

    python benchmarks/generate_countdown.py

Figures: the generation worker (``draw_chunk``: draw, DFS + BFS traces, row) on 1 and on 2
processes, with caches cold at the start, and ``generate_problems`` end to end (default params,
2 workers: de-duplication, split filling and the polars frame included), plus its breakdown.
"""

from __future__ import annotations

import multiprocessing
import time

from modc_data.generate import CHUNK, draw_chunk, generate_problems, solvability_breakdown, spec_of
from modc_data.params_blocks import CountdownParams
from modc_data.tasks.countdown_search import explore

N_CHUNKS = 64  # 131,072 candidate problems


def worker_rate(processes: int, spec) -> float:
    jobs = [(0, i, spec) for i in range(N_CHUNKS)]
    explore.cache_clear()  # fork copies the parent's cache: start cold
    t = time.perf_counter()
    if processes == 1:
        for job in jobs:
            draw_chunk(job)
    else:
        with multiprocessing.get_context().Pool(processes) as pool:
            for _ in pool.imap(draw_chunk, jobs):
                pass
    return N_CHUNKS * CHUNK / (time.perf_counter() - t)


def main() -> None:
    cfg = CountdownParams()
    spec = spec_of(cfg)
    for p in (1, 2):
        print(f"worker draw_chunk, {p} process(es): {worker_rate(p, spec):10,.0f} problems/s")

    explore.cache_clear()
    t = time.perf_counter()
    df = generate_problems(cfg.model_copy(update={"workers": 2}), seed=0)
    dt = time.perf_counter() - t
    print(
        f"generate_problems (defaults, 2 workers): {df.height:,} problems in {dt:.2f} s "
        f"= {df.height / dt:,.0f} problems/s"
    )
    for split, info in solvability_breakdown(df).items():
        shares = " ".join(f"{k}={v:.3f}" for k, v in info["share"].items())
        print(f"  {split:24s} n={info['n']:6d} {shares}")


if __name__ == "__main__":
    main()
