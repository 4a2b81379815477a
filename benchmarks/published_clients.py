"""The published repos of a built run, consumed by the tools researchers already use.

    python benchmarks/published_clients.py [--root .] [--problems 64] [--k 4]

Needs a finished `dvc repro` under ``--root`` (its ``artifacts/hub``) and ``trl``. Prints:

1. TRL: for every published model, the rows of the dataset config it was trained on, run through
   ``trl.SFTTrainer``'s own tokenization with the model's saved tokenizer (prefix models: with
   ``<mode:m> `` before the prompt, as the dataset card says): how many rows' token ids differ
   from the ids modc-data trained on (a lost prompt/completion boundary shows up there).
2. Plain transformers vs ``ModCSampler`` on a Countdown model: correct rates of k samples per
   (problem, mode) on the first ``--problems`` test prompts, plain transformers run in a child
   process where ``modc_data`` cannot be imported (sampling settings from the published
   ``generation_config.json``), with 95% Wilson intervals.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import polars as pl

NO_MODC = "import sys; sys.modules['modc_data'] = None\n"


def wilson(c: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = c / n
    d = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return mid - half, mid + half


def trl_check(hub: Path) -> None:
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from modc_data.modeling.format import encode_example

    (ds_repo,) = (hub / "datasets").glob("*/*")
    print(f"== TRL {__import__('trl').__version__}: SFTTrainer tokenization of {ds_repo.name}")
    print("| model | config | rows | rows whose ids differ from training |")
    print("|---|---|---|---|")
    for model in sorted((hub / "models").glob("*/*")):
        info = json.loads((model / "modc.json").read_text())
        sub = model / next(iter(info["experts"].values())) if info["variant"] == "experts" else model
        if (sub / "adapter_config.json").exists():
            print(f"| {model.name} | (LoRA adapter: skipped, the base is not local) | | |")
            continue
        config = info["arm"]  # '<label_source>-<mix>': the config the model trained on
        rows = load_dataset(str(ds_repo), config, split="train")
        prefix = info["variant"] == "prefix"
        if prefix:
            rows = rows.map(lambda r: {"prompt": f"<mode:{r['mode']}> {r['prompt']}"})
        tok = AutoTokenizer.from_pretrained(sub)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = SFTTrainer(model=str(sub), train_dataset=rows, processing_class=tok,
                                 args=SFTConfig(output_dir=tmp, max_steps=1, report_to=[],
                                                bf16=False, dataset_num_proc=1))
            got = trainer.train_dataset["input_ids"]
        plain = load_dataset(str(ds_repo), config, split="train")
        differ = 0
        for r, ids in zip(plain, got, strict=True):
            want, _ = encode_example(tok, r["prompt"], r["completion"], r["mode"] if prefix else None)
            differ += ids != want
        print(f"| {model.name} | {config} | {len(got)} | {differ} |")


PLAIN = textwrap.dedent("""
    import json, sys
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    path, prompts, k = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    gen = GenerationConfig.from_pretrained(path)
    torch.manual_seed(0)
    out = []
    for i in range(0, len(prompts), 16):
        batch = prompts[i:i + 16]
        tok.padding_side = "left"
        enc = tok(batch, return_tensors="pt", padding=True)
        seqs = model.generate(**enc, generation_config=gen, num_return_sequences=k)
        texts = tok.batch_decode(seqs[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        out += [texts[j * k:(j + 1) * k] for j in range(len(batch))]
    print(json.dumps(out))
""")


def rate_check(root: Path, hub: Path, n_problems: int, k: int) -> None:
    from modc_data.config import load_params
    from modc_data.sampler import ModCSampler
    from modc_data.tasks.countdown import CountdownTask

    models = sorted((hub / "models").glob("*/*-prefix"))
    # the headline arm's prefix model when there is one (search_algorithm, skewed mix)
    model = next((m for m in models if m.name.endswith("search_algorithm-skewed-prefix")), models[0])
    info = json.loads((model / "modc.json").read_text())
    gen = json.loads((model / "generation_config.json").read_text())
    problems = pl.read_parquet(root / "artifacts" / "data" / "problems.parquet")
    split = "test_adversarial" if (problems["split"] == "test_adversarial").any() else "test"
    rows = problems.filter(pl.col("split") == split).sort("problem_id").head(n_problems)
    prompts = rows["prompt"].to_list()
    task = CountdownTask.from_params(load_params(root / "params.yaml", pipeline=True).countdown)
    print(f"\n== plain transformers vs ModCSampler: {model.name}, {len(prompts)} {split} "
          f"problems, k={k} per mode (temperature {gen.get('temperature')}, top_p "
          f"{gen.get('top_p')}, max_new_tokens {gen.get('max_new_tokens')})")
    print("| mode | client | correct / samples | rate [95% CI] | seconds |")
    print("|---|---|---|---|---|")
    sampler = ModCSampler.from_pretrained(model)
    for mode, token in info["mode_tokens"].items():
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", NO_MODC + PLAIN, str(model),
             json.dumps([f"{token} {p}" for p in prompts]), str(k)],
            capture_output=True, text=True, check=True)
        plain = json.loads(proc.stdout.strip().splitlines()[-1])
        t_plain = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = sampler.sample(prompts, k, split={mode: 1.0}, temperature=gen["temperature"],
                              top_p=gen.get("top_p", 1.0), max_new_tokens=gen["max_new_tokens"])
        t_ours = time.perf_counter() - t0
        for client, texts, secs in (("plain transformers", plain, t_plain),
                                    ("ModCSampler", [[s.completion for s in r] for r in ours], t_ours)):
            c = sum(task.score(row, t)[1] for row, ts in zip(rows.iter_rows(named=True), texts,
                                                             strict=True) for t in ts)
            n = len(prompts) * k
            lo, hi = wilson(c, n)
            print(f"| {mode} | {client} | {c} / {n} | {c / n:.3f} [{lo:.3f}, {hi:.3f}] | {secs:.0f} |")


def main() -> None:
    import datasets
    import transformers

    datasets.disable_progress_bars()  # the tables are what this prints
    transformers.utils.logging.disable_progress_bar()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path("."))
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--skip-trl", action="store_true")
    args = ap.parse_args()
    hub = args.root / "artifacts" / "hub"
    if not hub.is_dir():
        sys.exit(f"{hub}: no published repos; run `dvc repro` first")
    if not args.skip_trl:
        trl_check(hub)
    rate_check(args.root, hub, args.problems, args.k)


if __name__ == "__main__":
    main()
