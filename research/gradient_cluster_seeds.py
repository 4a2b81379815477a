"""Gradient-cluster ARI against the true search algorithm for reference seeds 0, 1 and 2.

    .venv/bin/python research/gradient_cluster_seeds.py --root . [--seeds 0 1 2]
        [--checkpoints 400 800 1200] [--layers all 'layers\\.0\\.' 'layers\\.3\\.|model\\.norm']
        [--rows 2000] [--dim 1024] [--work .cache/gc-seeds]

Slow (about 20 minutes on 2 cores). Needs a built
pipeline under ``--root`` (``artifacts/datasets/<rows_source>/<mix>.parquet`` of
``gradient_cluster.rows_source`` and its first mix, ``artifacts/data/problems.parquet``,
``params.yaml``). For each seed it trains the reference arm's standard model exactly as the train
stage does (``train_model``, the stage's rows, vocabulary, params and bf16 verdict) but with
``train.seed`` = that seed, keeping the weights at each ``--checkpoints`` step: the run is
stopped there (``stop_after``) and resumed from its own resume checkpoint, which resumes bit for
bit, so the snapshots are the intermediate states of one ordinary run. Then, for every layer
set (a regex over parameter names; ``all``: every parameter), it featurises the rows under each
checkpoint (``ensemble.featurize_references``, one resumable store each under ``--work``) and
prints, per seed and layer set:

- ``single@<step>``: k-means (C = ``gradient_cluster.n_clusters``) on one checkpoint's features;
- ``ensemble``: k-means on all checkpoints' features combined (``ensemble.combine``);
- ARI against the true mode on the train rows clustered and on ``test_adversarial`` (assigned
  to the train centres, as the stage assigns non-train rows); the silhouette of the train rows;
  and the stability of the partition across the checkpoints (``partition_stability``: mean
  pairwise ARI of their partitions, no true labels).

``--precondition adam --layers all --checkpoints 400 800 1000`` instead featurises with LESS's
Adam preconditioning (each checkpoint's optimizer moments, kept from the resume checkpoint; the
finished model keeps none, hence intermediate checkpoints only).

The recipe to use is chosen without true labels (stability, then silhouette); the ARIs are
printed beside it as the diagnostic. The last lines print the label-free choice per seed and
whether every seed reaches ARI >= 0.6 on ``test_adversarial`` under one fixed recipe.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import torch  # noqa: E402
from arm_inputs import arm_inputs  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

from modc_data.config import load_params  # noqa: E402
from modc_data.labeling.clustering import assign_to_centers, cluster_features  # noqa: E402
from modc_data.labeling.ensemble import (  # noqa: E402
    combine,
    featurize_references,
    partition_stability,
)
from modc_data.labeling.gradient_features import length_order  # noqa: E402
from modc_data.labeling.gradients import (  # noqa: E402
    encode_pairs,
    gradient_params,
    gradients_vmap,
)
from modc_data.labeling.projection import RademacherProjection  # noqa: E402
from modc_data.modeling.load import load_checkpoint  # noqa: E402
from modc_data.modeling.train import CHECKPOINT_DIR, TrainingInterrupted, train_model  # noqa: E402

WEIGHTS = "trainable.safetensors"  # the resume checkpoint's weights (modeling.train)
STATE = "state.pt"  # its optimizer state (our own file, read with weights_only=True)
GROUP = 256  # rows projected together (the projection regenerates its matrix once a call)


def adam_features(model, tokenizer, pairs, state_path: Path, dim: int, seed: int, chunk: int) -> np.ndarray:
    """LESS's Adam-preconditioned gradient features (Xia et al., 2024): each per-example
    gradient g becomes m' / sqrt(v' + eps) with m' = b1 m + (1 - b1) g and v' = b2 v + (1 - b2) g^2,
    m and v the optimizer's moments at that checkpoint, then the same projection as featurize.
    Benchmark-only (no resumable store): the question is whether it helps at all."""
    params = gradient_params(model)
    st = torch.load(state_path, weights_only=True, map_location="cpu")["optimizer"]
    (b1, b2), eps = st["param_groups"][0]["betas"], st["param_groups"][0]["eps"]
    order = st["param_groups"][0]["params"]
    if len(order) != len(params):
        raise SystemExit(f"{state_path}: {len(order)} optimizer tensors for {len(params)} parameters")
    m = torch.cat([st["state"][i]["exp_avg"].reshape(-1) for i in order])
    v = torch.cat([st["state"][i]["exp_avg_sq"].reshape(-1) for i in order])
    examples = encode_pairs(tokenizer, pairs, model.config.max_position_embeddings)
    rows = length_order(examples)
    proj = RademacherProjection(int(m.numel()), dim, seed)
    out = np.zeros((len(examples), dim), dtype=np.float32)
    pad = tokenizer.pad_token_id or 0
    for g0 in range(0, len(rows), GROUP):
        idx = rows[g0:g0 + GROUP]
        grads = torch.cat([gradients_vmap(model, [examples[i] for i in idx[a:a + chunk]], pad)
                           for a in range(0, len(idx), chunk)])
        grads = (b1 * m + (1 - b1) * grads) / torch.sqrt(b2 * v + (1 - b2) * grads**2 + eps)
        out[idx] = proj.project(grads).numpy()
    return out


def train_with_snapshots(root: Path, params, job, seed: int, checkpoints: list[int], out: Path) -> Path:
    """The reference standard model ``job`` trained with ``seed`` in ``out/model`` and its
    snapshots ``out/step-<s>.safetensors`` and ``.state.pt`` (reused when present)."""
    steps = job.steps or params.train.steps
    train_cfg = job.train_params(params.train).model_copy(update={"seed": seed})
    bad = [c for c in checkpoints if c < steps and c % train_cfg.save_every]
    if bad:
        raise SystemExit(f"--checkpoints {bad} are not multiples of train.save_every "
                         f"({train_cfg.save_every}): the run can only be stopped there")
    model_dir = out / "model"
    snapshots = [out / f"step-{c}.{ext}" for c in checkpoints if c < steps for ext in ("safetensors", "state.pt")]
    if model_dir.exists() and all(p.exists() for p in snapshots):
        return model_dir
    shutil.rmtree(out, ignore_errors=True)
    train_rows, val_rows, texts = arm_inputs(root, params, job.arm)
    kw = dict(variant="standard", mode=None, modes=sorted(train_rows["mode"].unique().to_list()),
              label_source=job.label_source, arm=job.arm, model_cfg=params.model,
              train_cfg=train_cfg, steps=steps, out_dir=model_dir, tokenizer_texts=texts,
              autotune_cache=root / "artifacts" / "cache" / "autotune.json", progress=False)
    for c in sorted(checkpoints):
        if c >= steps:
            continue
        try:
            train_model(train_rows, val_rows, stop_after=c, **kw)
        except TrainingInterrupted:
            pass
        shutil.copyfile(model_dir / CHECKPOINT_DIR / WEIGHTS, out / f"step-{c}.safetensors")
        shutil.copyfile(model_dir / CHECKPOINT_DIR / STATE, out / f"step-{c}.state.pt")
    r = train_model(train_rows, val_rows, **kw)
    print(f"  seed {seed}: trained {steps} steps in {r.wall_s:.0f} s "
          f"({'bf16' if r.bf16 else 'fp32'}), eval loss {r.eval_loss:.4f}", flush=True)
    return model_dir


def load_references(model_dir: Path, out: Path, checkpoints: list[int], steps: int):
    models, tokenizer = [], None
    for c in checkpoints:
        model, tokenizer, _ = load_checkpoint(model_dir, dtype=torch.float32, trainable=True)
        if c < steps:
            weights = load_file(str(out / f"step-{c}.safetensors"))
            missing, _ = model.load_state_dict(weights, strict=False)
            if [m for m in missing if not m.startswith("lm_head")]:  # tied to the embeddings
                raise SystemExit(f"snapshot step-{c} lacks weights {missing[:3]}")
        models.append(model)
    return models, tokenizer


def score(feats: np.ndarray, n_train: int, truth: list[str], splits: list[str], c: int, seed: int) -> dict:
    res = cluster_features(feats[:n_train], c, n_init=10, seed=seed)
    labels, _ = assign_to_centers(feats[n_train:], res.centers)
    labels = np.concatenate([res.labels, labels])
    out = {"silhouette": round(float(next(iter(res.silhouette.values()))), 4)}
    for split in ("train", "test_adversarial"):
        idx = [i for i, s in enumerate(splits) if s == split]
        out[f"ari_{split}"] = round(float(adjusted_rand_score([truth[i] for i in idx], labels[idx])), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("."))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--checkpoints", type=int, nargs="+", default=[400, 800, 1200])
    ap.add_argument("--layers", nargs="+", default=["all", r"layers\.0\.", r"layers\.3\.|model\.norm"])
    ap.add_argument("--rows", type=int, default=2000, help="train rows clustered (seeded sample)")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--combine", choices=["concat", "mean"], default="concat")
    ap.add_argument("--work", type=Path, default=Path(".cache/gc-seeds"))
    ap.add_argument("--json", type=Path, help="also write every figure here")
    ap.add_argument("--precondition", choices=["none", "adam"], default="none",
                    help="adam: LESS's Adam-preconditioned gradients (every checkpoint must be "
                    "an intermediate one, whose optimizer state is kept)")
    args = ap.parse_args()
    root = args.root.resolve()
    params = load_params(root / "params.yaml")
    cfg = params.gradient_cluster
    # the params check guarantees the reference arm's standard job
    job = params.train_jobs[params.model_key(cfg.reference_arm, "standard")]
    steps = job.steps or params.train.steps
    if args.precondition == "adam" and max(args.checkpoints) >= steps:
        raise SystemExit("--precondition adam: every --checkpoints step must be below the run's "
                         "steps (the finished model keeps no optimizer state)")
    if not isinstance(cfg.n_clusters, int):
        raise SystemExit("gradient_cluster.n_clusters must be a number for this benchmark")
    rows_path = root / "artifacts" / "datasets" / cfg.rows_source / f"{cfg.mixes[0]}.parquet"
    if not rows_path.exists():
        raise SystemExit(f"{rows_path} is missing: run `make repro` (or dvc repro) under {root} first")
    rows = pl.read_parquet(rows_path)
    train = rows.filter(pl.col("split") == "train")
    train = train.sample(n=min(args.rows, train.height), seed=cfg.seed)
    test = rows.filter(pl.col("split") == "test_adversarial")
    if test.height == 0:
        raise SystemExit(f"{rows_path} has no test_adversarial rows")
    ordered = pl.concat([train, test])
    pairs = list(zip(ordered["prompt"], ordered["completion"], strict=True))
    truth, splits = ordered["mode"].to_list(), ordered["split"].to_list()
    print(f"rows: {train.height} train + {test.height} test_adversarial from {rows_path.name}; "
          f"C = {cfg.n_clusters}; checkpoints {args.checkpoints} of {steps} steps; dim {args.dim}; "
          f"combine {args.combine}; torch threads {torch.get_num_threads()}", flush=True)

    results: dict = {}
    for seed in args.seeds:
        out = args.work / f"seed-{seed}"
        t0 = time.perf_counter()
        model_dir = train_with_snapshots(root, params, job, seed, args.checkpoints, out)
        models, tokenizer = load_references(model_dir, out, args.checkpoints, steps)
        for layers in args.layers:
            pattern = None if layers == "all" else layers
            if args.precondition == "adam":
                if pattern is not None:
                    raise SystemExit("--precondition adam takes --layers all only")
                feats = [adam_features(m, tokenizer, pairs, out / f"step-{c}.state.pt", args.dim,
                                       cfg.seed, cfg.chunk_size)
                         for c, m in zip(args.checkpoints, models, strict=True)]
            else:
                feats = featurize_references(models, tokenizer, pairs, out / "features", dim=args.dim,
                                             seed=cfg.seed, layers=pattern, chunk_size=cfg.chunk_size)
            n = train.height
            row = {f"single@{c}": score(f, n, truth, splits, cfg.n_clusters, cfg.seed)
                   for c, f in zip(args.checkpoints, feats, strict=True)}
            row["ensemble"] = score(combine(feats, args.combine), n, truth, splits, cfg.n_clusters, cfg.seed)
            stab = partition_stability([f[:n] for f in feats], cfg.n_clusters, seed=cfg.seed)
            row["stability"] = round(stab["stability"], 4)
            results.setdefault(str(seed), {})[layers] = row
            print(f"seed {seed} layers {layers!r}: stability {row['stability']:+.3f}", flush=True)
            for name, r in row.items():
                if name != "stability":
                    print(f"    {name:14s} ARI train {r['ari_train']:+.3f}  test_adversarial "
                          f"{r['ari_test_adversarial']:+.3f}  silhouette {r['silhouette']:.3f}", flush=True)
        print(f"  seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)

    # The label-free choice: the layer set whose checkpoints agree most (stability), per seed.
    print("\nlabel-free choice (highest stability across checkpoints), ensemble of all checkpoints:")
    for seed, by_layers in results.items():
        best = max(by_layers, key=lambda k: (by_layers[k]["stability"], by_layers[k]["ensemble"]["silhouette"]))
        e = by_layers[best]["ensemble"]
        print(f"  seed {seed}: layers {best!r} -> ARI test_adversarial {e['ari_test_adversarial']:+.3f} "
              f"(train {e['ari_train']:+.3f})")
    print("\nper fixed recipe, ARI on test_adversarial for every seed (bar: >= 0.6 for all):")
    for layers in args.layers:
        for name in [f"single@{c}" for c in args.checkpoints] + ["ensemble"]:
            aris = [results[str(s)][layers][name]["ari_test_adversarial"] for s in args.seeds]
            flag = "meets" if min(aris) >= 0.6 else "misses"
            print(f"  {layers!r:28s} {name:14s} " + "  ".join(f"{a:+.3f}" for a in aris) + f"  {flag}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
