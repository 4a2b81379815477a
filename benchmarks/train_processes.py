"""Training step time in one process against N ranks (DDP, gloo on a CPU; NCCL on GPUs).

    .venv/bin/python benchmarks/train_processes.py [--steps 30] [--processes 2] [--rounds 2]

Trains the default scratch model (hidden 128, 4 layers; batch ``TrainParams`` default of the
default profile, 32) on Countdown-like rows through the real ``train_model`` path: once in one
process with every free core (``threads: auto``), once as ``--processes`` ranks started by
``accelerate launch`` exactly as ``train.processes`` starts them (the ranks share the cores).
Rounds alternate the two; prints median ms/step of each and the ratio. On a CPU the ranks only
split the same cores, so expect no gain there: the point of ranks is one per GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.train_throughput import countdown_like_rows  # noqa: E402
from modc_data.modeling import launch  # noqa: E402
from modc_data.modeling.train import train_model  # noqa: E402
from modc_data.params_training import ModelParams, TrainParams  # noqa: E402


def rank_main(out: str, steps: int, processes: int) -> None:
    rows = countdown_like_rows(2000, seed=0)
    train, val = rows.head(1800), rows.tail(200)
    cfg = TrainParams(steps=steps, batch_size=32, micro_batches=2, lr=2e-3, warmup_steps=5,
                      save_every=10**6, eval_batches=1, bf16="off", threads="auto",
                      processes=processes)
    r = train_model(train, val, variant="standard", mode=None, modes=["dfs", "bfs"],
                    label_source="search_algorithm", arm="bench", model_cfg=ModelParams(),
                    train_cfg=cfg, steps=steps, out_dir=out, progress=False)
    if launch.state().is_main_process:
        print(json.dumps({"ms_per_step": 1000 * r.wall_s / steps, "threads": r.threads,
                          "processes": r.processes}))


def measure(steps: int, processes: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        cmd = [__file__, "--rank-run", str(Path(d) / "m"), "--steps", str(steps)]
        if processes > 1:
            cmd = launch.launch_command(cmd + ["--processes", str(processes)], processes)
        else:
            cmd = [sys.executable, *cmd]
        env = {**os.environ, "PYTHONPATH": str(ROOT), launch.LAUNCHED: "1"}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode:
            sys.exit(proc.stderr[-3000:])
        return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rank-run", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rank_run:
        rank_main(args.rank_run, args.steps, args.processes)
        return
    times: dict[int, list[float]] = {1: [], args.processes: []}
    for rnd in range(args.rounds):
        for n in (1, args.processes) if rnd % 2 == 0 else (args.processes, 1):
            rec = measure(args.steps, n)
            times[n].append(rec["ms_per_step"])
            print(f"  round {rnd + 1}: {n} process(es), {rec['threads']} thread(s) each: "
                  f"{rec['ms_per_step']:.1f} ms/step", flush=True)
    one, many = statistics.median(times[1]), statistics.median(times[args.processes])
    print(f"\n1 process: {one:.1f} ms/step; {args.processes} processes: {many:.1f} ms/step "
          f"({one / many:.2f}x the speed of one), batch 32, {args.steps} steps, fp32, "
          f"uptime: {os.getloadavg()[0]:.2f} load")


if __name__ == "__main__":
    main()
