"""Choose the RL settings (steps, group size, learning rate) on a validation split, never on test:
pass@k of the standard model after GRPO with each candidate, against the model it started from.

    .venv/bin/python research/rl_settings.py --root . [--start search_algorithm-skewed-standard]
        [--candidates 40:8:2e-4 80:4:2e-4 40:8:1e-3 40:8:1e-5 40:8:3e-5 120:8:1e-5 120:8:3e-5]
        [--split validation_adversarial] [--problems 100] [--n 32] [--work .cache/rl-settings]

A candidate is ``steps:group_size:lr``; ``prompts_per_step`` and the rest come from the profile's
first RL job of ``--start`` (so equal ``steps x group_size`` means equal RL compute). Needs a built
pipeline under ``--root`` with the start's checkpoint (``dvc repro train@<start>``). For each
candidate it runs the rl stage's function (``rl_one``: TRL's GRPOTrainer, the task's verifier as
reward, the stage's train prompts), samples ``--problems`` problems of ``--split`` ``--n`` times
with the sample stage's settings, and prints pass@k per k beside the start's and the paired
bootstrap difference. The choice, fixed before running: the candidate with the highest mean of
pass@k over k = 1, 2, 4, ..., n (every budget counts the same), printed last. About a minute a
candidate of 40 steps on 2 cores with a scratch model (one process; run nothing beside it: two
processes' threads on 2 cores slow each other down tenfold).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl  # noqa: E402
from arm_inputs import counts, print_choice, print_comparison  # noqa: E402

from modc_data.config import load_params  # noqa: E402
from modc_data.evaluation.bootstrap import paired_bootstrap_diff  # noqa: E402
from modc_data.evaluation.passk import default_ks, pass_at_k_curve  # noqa: E402
from modc_data.experiment import model_dir  # noqa: E402
from modc_data.rl.grpo import RLSettings, rl_one  # noqa: E402
from modc_data.sampling.run import make_backend, sample_model  # noqa: E402
from modc_data.tasks import task_from_params  # noqa: E402


def parse_candidate(text: str) -> tuple[int, int, float]:
    try:
        steps, group, lr = text.split(":")
        return int(steps), int(group), float(lr)
    except ValueError:
        raise SystemExit(f"--candidates {text!r}: expected steps:group_size:lr, e.g. 40:8:2e-4") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("."))
    ap.add_argument("--start", default="search_algorithm-skewed-standard")
    ap.add_argument("--candidates", nargs="+",
                    default=["40:8:2e-4", "80:4:2e-4", "40:8:1e-3", "40:8:1e-5", "40:8:3e-5",
                             "120:8:1e-5", "120:8:3e-5"])
    ap.add_argument("--split", default="validation_adversarial")
    ap.add_argument("--problems", type=int, default=100)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--work", type=Path, default=Path(".cache/rl-settings"))
    args = ap.parse_args()
    if args.split.startswith("test"):
        raise SystemExit(f"--split {args.split}: settings are chosen on validation splits, never on test")
    candidates = [parse_candidate(c) for c in args.candidates]
    root = args.root.resolve()
    params = load_params(root / "params.yaml")
    art = root / "artifacts"
    start = model_dir(args.start, art)
    if not (start / "modc.json").exists():
        raise SystemExit(f"{start}: no trained checkpoint; run `dvc repro train@{args.start}` first")
    jobs = [j for j in params.rl_jobs.values() if j.start == args.start and j.method == "grpo"]
    if not jobs:
        raise SystemExit(f"no grpo job in rl_jobs starts from {args.start!r}")
    job = jobs[0]
    task = task_from_params(params)
    problems = pl.read_parquet(art / "data" / "problems.parquet").sort("problem_id")
    prompts = problems.filter(pl.col("split") == "train")
    if job.problems:
        prompts = prompts.head(job.problems)
    val = problems.filter(pl.col("split") == args.split).head(args.problems)
    if val.is_empty():
        raise SystemExit(f"--split {args.split}: no such problems in {art / 'data' / 'problems.parquet'}")
    cfg = params.sample.model_copy(update={"n": args.n})
    backend = make_backend(cfg, autotune_cache=art / "cache" / "autotune.json")
    ks = default_ks(args.n)

    def passk(path: Path) -> tuple[list[str], object]:
        s = sample_model(path, val, task=task, model_key="x", arm="x", variant="standard",
                         modes=None, cfg=cfg, backend=backend, progress=False)
        ids, n, c = counts(s, [""])
        return ids, pass_at_k_curve(n[:, 0], c[:, 0], ks)

    ids0, p0 = passk(start)
    print(f"{args.start} on {args.split}: {len(ids0)} problems, n = {args.n}; start pass@k "
          + " ".join(f"{v:.3f}" for v in p0.mean(0)), flush=True)
    scores = {}
    for steps, group, lr in candidates:
        name = f"{steps}:{group}:{lr:g}"
        settings = RLSettings(method="grpo", steps=steps, prompts_per_step=job.prompts_per_step,
                              group_size=group, temperature=job.temperature, beta=job.beta, lr=lr,
                              max_new_tokens=job.max_new_tokens or params.sample.max_new_tokens,
                              save_every=steps, seed=job.seed)
        out = args.work / name.replace(":", "_")
        t0 = time.perf_counter()
        if not (out / "modc.json").exists():
            out.mkdir(parents=True, exist_ok=True)
            rl_one(start, out, prompts.to_dicts(), task, settings)
        t1 = time.perf_counter()
        ids, p = passk(out)
        if ids != ids0:
            raise SystemExit("the start and the RL'd model were sampled on different problems")
        d = paired_bootstrap_diff(p, p0, n_resamples=params.evaluate.bootstrap,
                                  ci=params.evaluate.ci, seed=params.evaluate.seed)
        scores[name] = float(p.mean())
        print(f"\n{name} (steps:group_size:lr; RL {t1 - t0:.0f} s, sample "
              f"{time.perf_counter() - t1:.0f} s): mean pass@k {scores[name]:.4f} "
              f"(start {p0.mean():.4f})", flush=True)
        print_comparison(ks, p, p0, d, ("RL'd", "start"))
    print_choice(args.split, "", scores)


if __name__ == "__main__":
    main()
