"""Choose the experts' shared start on a validation split: pass@k of experts trained with each
``shared_steps`` against the standard model, never on test.

    .venv/bin/python research/expert_split.py --root . [--job search_algorithm-skewed-experts]
        [--shared 300 600 900] [--split validation_adversarial] [--work .cache/expert-split]

Slow (about 3 minutes a setting on 2 cores with bf16). Needs a
built pipeline under ``--root`` whose standard model of the experts' arm sampled ``--split`` (the
default profile's policy arms sample ``validation_adversarial``; otherwise the script samples the
standard model itself). For each ``shared_steps`` S it trains the experts group exactly as the
train stage does (``train_experts``: the stage's rows, vocabulary, params and bf16 verdict; one
model S steps on all the arm's rows, then each expert (steps - S) / M on its own mode), samples
``--split`` with the sample stage's settings (``sample_model``, n per mode), and prints per k
the experts' ModC pass@k (k split evenly over the experts), the standard model's, and their
paired bootstrap difference. The choice, fixed before running: the S with the highest mean of
pass@k over k = 1, 2, 4, …, n (every budget counts the same), printed last.
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
from arm_inputs import arm_inputs, counts, print_choice, print_comparison  # noqa: E402

from modc_data.config import load_params  # noqa: E402
from modc_data.evaluation.bootstrap import paired_bootstrap_diff  # noqa: E402
from modc_data.evaluation.passk import default_ks, pass_at_k_curve, pass_at_k_modc  # noqa: E402
from modc_data.modeling.experts import train_experts  # noqa: E402
from modc_data.sampling.run import make_backend, sample_model  # noqa: E402
from modc_data.tasks import task_from_params  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("."))
    ap.add_argument("--job", default="search_algorithm-skewed-experts")
    ap.add_argument("--shared", type=int, nargs="+", default=[300, 600, 900])
    ap.add_argument("--split", default="validation_adversarial")
    ap.add_argument("--work", type=Path, default=Path(".cache/expert-split"))
    args = ap.parse_args()
    if args.split.startswith("test"):
        raise SystemExit(f"--split {args.split}: settings are chosen on validation splits, never on test")
    root = args.root.resolve()
    params = load_params(root / "params.yaml")
    if args.job not in params.train_jobs or params.train_jobs[args.job].variant != "experts":
        raise SystemExit(f"--job {args.job!r} is not an experts job of {root / 'params.yaml'}")
    job = params.train_jobs[args.job]
    arm = params.arms[job.arm]
    std_key = params.model_key(params.standard_arm(job.arm), "standard")
    steps = job.steps or params.train.steps
    bad = [s for s in args.shared if not 0 < s < steps]
    if bad:
        raise SystemExit(f"--shared {bad}: each must lie strictly between 0 and the job's {steps} steps")
    art = root / "artifacts"
    train_rows, val_rows, texts = arm_inputs(root, params, job.arm)
    modes = sorted(train_rows["mode"].unique().to_list())
    problems = pl.read_parquet(art / "data" / "problems.parquet").filter(pl.col("split") == args.split)
    problems = problems.sort("problem_id")
    cap = params.sample.policies.validation_problems
    if cap is not None:
        problems = problems.head(cap)
    task = task_from_params(params)
    backend = make_backend(params.sample, autotune_cache=art / "cache" / "autotune.json")

    std = pl.DataFrame()
    std_path = art / "samples" / f"{std_key}.parquet"
    if std_path.exists():
        std = pl.read_parquet(std_path).filter(pl.col("split") == args.split)
    if std.is_empty():
        print(f"sampling the standard model {std_key} on {args.split} ...", flush=True)
        std = sample_model(art / "models" / std_key, problems, task=task,
                           model_key=std_key, arm=job.arm, variant="standard", modes=None,
                           cfg=params.sample, backend=backend, progress=False)
    # only the problems both the split (capped) and the standard model's samples cover
    keep = sorted(set(std["problem_id"].to_list()) & set(problems["problem_id"].to_list()))
    problems = problems.filter(pl.col("problem_id").is_in(keep))
    ids, n_s, c_s = counts(std.filter(pl.col("problem_id").is_in(keep)), [""])
    ks = default_ks(int(n_s.min()))
    p_std = pass_at_k_curve(n_s[:, 0], c_s[:, 0], ks)
    print(f"{args.job}: {len(ids)} {args.split} problems, n = {int(n_s.min())}, ks {ks}; "
          f"standard ({std_key}) pass@k " + " ".join(f"{v:.3f}" for v in p_std.mean(0)), flush=True)

    common = dict(label_source=arm.label_source, arm=job.arm, model_cfg=params.model,
                  train_cfg=job.train_params(params.train), steps=steps, tokenizer_texts=texts,
                  autotune_cache=art / "cache" / "autotune.json", progress=False)
    scores = {}
    for s in args.shared:
        t0 = time.perf_counter()
        out = args.work / f"shared-{s}"
        if not (out / "modc.json").exists():
            train_experts(train_rows, val_rows, modes=modes, out_dir=out, shared_steps=s, **common)
        t1 = time.perf_counter()
        samples = sample_model(out, problems, task=task, model_key=args.job, arm=job.arm,
                               variant="experts", modes=modes, cfg=params.sample, backend=backend,
                               progress=False)
        e_ids, n_e, c_e = counts(samples, modes)
        if e_ids != ids:
            raise SystemExit("experts and standard samples cover different problems")
        p_exp = pass_at_k_modc(n_e, c_e, ks)
        diff = paired_bootstrap_diff(p_exp, p_std, n_resamples=params.evaluate.bootstrap,
                                     ci=params.evaluate.ci, seed=params.evaluate.seed)
        scores[s] = float(p_exp.mean())
        print(f"\nshared_steps {s} (train {t1 - t0:.0f} s, sample {time.perf_counter() - t1:.0f} s): "
              f"mean pass@k over ks {scores[s]:.4f} (standard {p_std.mean():.4f})", flush=True)
        print_comparison(ks, p_exp, p_std, diff, ("experts", "standard"))
    print_choice(args.split, "shared_steps ", scores)


if __name__ == "__main__":
    main()
