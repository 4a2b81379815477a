"""Throughput of the hf sampling backend (batched, seeded per row) against one-at-a-time generate.

    .venv/bin/python benchmarks/sampling_throughput.py [--threads 1] [--batch-sizes 256 512 1024]
    .venv/bin/python benchmarks/sampling_throughput.py --checkpoint artifacts/models/<arm>-standard
    .venv/bin/python benchmarks/sampling_throughput.py --dtypes [--train-steps 300] [--rounds 3]

With ``--checkpoint`` (a trained modc checkpoint, e.g. from ``make repro``) it instead compares the
hf backend's decoders and dtypes on real Countdown prompts (``artifacts/data/problems.parquet``),
where traces end at different lengths: transformers ``generate`` in float32, the compact loop that
drops finished rows in float32, and the compact loop with bf16 weights; samples/s each, and the
share of samples identical to ``generate``'s.

With ``--dtypes`` it trains the default model (``ScratchModelParams``) for ``--train-steps`` on
Countdown-like rows (``train_throughput.countdown_like_rows``) so that it ends its traces at
varied lengths, then times each (dtype, decoder) candidate of ``sample.dtype/decoder: auto`` on
batches of 512 rows (alternating rounds, medians), prints the share of samples bf16 changes, and
the verdict the hf backend's ``auto`` reaches on this machine.

Otherwise it builds a ~1M-parameter Llama (hidden 128, 4 layers, vocab ~100, random weights) on the fly.
Every sample is exactly ``--new-tokens`` tokens long (eos is suppressed with ``min_new_tokens``),
so both sides generate the same number of tokens. Prints samples/s and generated tokens/s for the
baseline loop and for each batch size, then the best batched/baseline ratio (target >= 5x).
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from modc_data.modeling.format import encode_prompt
from modc_data.modeling.tokenizer import build_word_tokenizer
from modc_data.sampling.hf import hf_generate

WORDS = [str(i) for i in range(90)] + ["+", "-", "*", "/", "=", ",", "goal", "target", "numbers"]


def build(seed: int = 0, device: str = "cpu"):
    tok = build_word_tokenizer([" ".join(WORDS)])
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=160,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(device).eval()
    return model, tok


def prompts(n_problems: int) -> list[str]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n_problems):
        nums = torch.randint(1, 30, (4,), generator=g).tolist()
        out.append("numbers " + " ".join(map(str, nums[:3])) + f" target {nums[3] + 20}")
    return out


@torch.inference_mode()
def one_at_a_time(model, tok, ids: list[list[int]], n: int, new_tokens: int) -> float:
    """Seconds for n samples of each prompt, one ``generate`` call per sample."""
    t0 = time.perf_counter()
    for p in ids:
        x = torch.tensor([p], device=model.device)
        for _ in range(n):
            model.generate(
                x,
                attention_mask=torch.ones_like(x),
                do_sample=True,
                top_k=0,
                temperature=1.0,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
    return time.perf_counter() - t0


def compare_decoders(checkpoint: str, n_problems: int, threads: int, batch_size: int) -> None:
    """samples/s of generate/fp32, compact/fp32 and compact/bf16 on a trained checkpoint."""
    import polars as pl

    from modc_data.sampling.hf import HFBackend

    problems = pl.read_parquet("artifacts/data/problems.parquet")
    prompts_ = problems.filter(pl.col("split") == "test_adversarial")["prompt"].to_list()[:n_problems]
    seeds = list(range(len(prompts_)))
    torch.set_num_threads(threads)
    print(f"checkpoint {checkpoint}: {len(prompts_)} problems x 64 samples, threads {threads}, "
          f"batch {batch_size}, max_new_tokens 96")
    reference = None
    for decoder, dtype in (("generate", "float32"), ("compact", "float32"), ("compact", "bfloat16")):
        backend = HFBackend(batch_size=batch_size, dtype=dtype, decoder=decoder)
        backend.load(checkpoint)
        t0 = time.perf_counter()
        out = backend.generate(checkpoint, prompts_, mode=None, n=64, seeds=seeds,
                               temperature=1.0, top_p=1.0, max_new_tokens=96)
        secs = time.perf_counter() - t0
        flat = [c for r in out for c in r]
        reference = reference or flat
        same = sum(a == b for a, b in zip(reference, flat, strict=True)) / len(flat)
        mean_len = sum(c.n_tokens for c in flat) / len(flat)
        print(f"{decoder:8s} {dtype:8s}: {len(flat) / secs:7.1f} samples/s "
              f"({len(flat)} in {secs:.1f}s, mean {mean_len:.1f} tokens; identical to generate/"
              f"float32: {same:.1%})")


def compare_dtypes(train_steps: int, n_problems: int, rounds: int, threads: int) -> None:
    """samples/s of float32/bfloat16 x compact/generate on a freshly trained default model."""
    import statistics
    import subprocess
    import tempfile
    from pathlib import Path

    from train_throughput import countdown_like_rows

    from modc_data.modeling.train import train_model
    from modc_data.params_training import ModelParams, ScratchModelParams, TrainParams
    from modc_data.sampling.hf import HFBackend

    print(f"uptime before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    torch.set_num_threads(threads)
    rows = countdown_like_rows(2048)
    texts = [*rows["prompt"], *rows["completion"]]
    prompts_ = rows["prompt"].to_list()[-n_problems:]
    seeds = list(range(len(prompts_)))
    gen = dict(mode=None, n=64, seeds=seeds, temperature=1.0, top_p=1.0, max_new_tokens=96)
    with tempfile.TemporaryDirectory() as d:
        ckpt = Path(d) / "standard"
        r = train_model(rows, rows[:64], variant="standard", mode=None, modes=["dfs", "bfs"],
                        label_source="search_algorithm", arm="bench",
                        model_cfg=ModelParams(scratch=ScratchModelParams()),
                        train_cfg=TrainParams(batch_size=32, threads=threads, save_every=10**6),
                        steps=train_steps, out_dir=ckpt, tokenizer_texts=texts, progress=False)
        print(f"trained {train_steps} steps (eval loss {r.eval_loss:.2f}); {len(prompts_)} prompts x 64 "
              f"samples, batch 512, max_new_tokens 96, threads {threads}")
        names = [(dt, dec) for dt in ("float32", "bfloat16") for dec in ("compact", "generate")]
        backends = {k: HFBackend(batch_size=512, dtype=k[0], decoder=k[1]) for k in names}
        secs: dict[tuple[str, str], list[float]] = {k: [] for k in names}
        outs = {}
        for b in backends.values():  # warm-up (and load) once each
            b.generate(ckpt, prompts_[:8], **{**gen, "seeds": seeds[:8]})
        for rnd in range(rounds):
            for k in names[rnd % 4:] + names[: rnd % 4]:
                t0 = time.perf_counter()
                outs[k] = backends[k].generate(ckpt, prompts_, **gen)
                secs[k].append(time.perf_counter() - t0)
        ref = [c for row in outs[("float32", "generate")] for c in row]
        for k in names:
            flat = [c for row in outs[k] for c in row]
            same = sum(a == b for a, b in zip(ref, flat, strict=True)) / len(flat)
            med = statistics.median(secs[k])
            print(f"{k[0]:8s} {k[1]:8s}: {len(flat) / med:7.1f} samples/s (median of {rounds}; "
                  f"mean {sum(c.n_tokens for c in flat) / len(flat):.1f} tokens; identical to "
                  f"float32/generate: {same:.1%})")
        auto = HFBackend(batch_size=512, dtype="auto", decoder="auto")
        t0 = time.perf_counter()
        auto.generate(ckpt, prompts_[:8], **{**gen, "seeds": seeds[:8]})
        v = auto.settings()["autotune"]
        print(f"auto verdict: {v['choice']} ({v['source']}, {time.perf_counter() - t0:.1f}s incl. "
              f"the measurement; ms per timing batch {v['timings_ms']})")
    print(f"uptime after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", help="compare decoders/dtypes on this trained checkpoint")
    ap.add_argument("--problems", type=int, default=32, help="with --checkpoint or --dtypes")
    ap.add_argument("--dtypes", action="store_true", help="compare dtypes x decoders on a trained model")
    ap.add_argument("--train-steps", type=int, default=300, help="with --dtypes")
    ap.add_argument("--rounds", type=int, default=3, help="with --dtypes")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--new-tokens", type=int, default=60)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--baseline-samples", type=int, default=24)
    ap.add_argument("--n", type=int, default=64, help="samples per problem (batched side)")
    args = ap.parse_args()
    if args.checkpoint:
        compare_decoders(args.checkpoint, args.problems, max(args.threads, 2), 512)
        return
    if args.dtypes:
        compare_dtypes(args.train_steps, args.problems, args.rounds, args.threads)
        return
    torch.set_num_threads(args.threads)
    model, tok = build(device=args.device)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {n_params / 1e6:.2f}M params, vocab {len(tok)}, threads {args.threads}, "
        f"device {args.device}, "
        f"{args.new_tokens} new tokens per sample"
    )

    base_ids = [encode_prompt(tok, p) for p in prompts(max(1, args.baseline_samples // 4))]
    one_at_a_time(model, tok, base_ids[:1], 1, 4)  # warm-up
    n_base = len(base_ids) * 4
    secs = one_at_a_time(model, tok, base_ids, 4, args.new_tokens)
    base_sps = n_base / secs
    print(
        f"one-at-a-time: {base_sps:8.1f} samples/s {base_sps * args.new_tokens:10.0f} tok/s "
        f"({n_base} samples in {secs:.1f}s)"
    )

    best = (0.0, 0)
    first_problem = []  # problem 0 gets the same seed at every batch size
    for bs in args.batch_sizes:
        n_prob = max(1, (2 * bs) // args.n)  # two full batches
        ids = [encode_prompt(tok, p) for p in prompts(n_prob)]
        seeds = list(range(n_prob))
        t0 = time.perf_counter()
        out = hf_generate(
            model,
            tok,
            ids,
            n=args.n,
            seeds=seeds,
            temperature=1.0,
            top_p=1.0,
            max_new_tokens=args.new_tokens,
            batch_size=bs,
            generate_kwargs={"min_new_tokens": args.new_tokens},
        )
        secs = time.perf_counter() - t0
        samples = sum(len(r) for r in out)
        tokens = sum(c.n_tokens for r in out for c in r)
        sps = samples / secs
        print(
            f"hf batched bs={bs:5d}: {sps:8.1f} samples/s {tokens / secs:10.0f} tok/s "
            f"({samples} samples in {secs:.1f}s)"
        )
        best = max(best, (sps, bs))
        first_problem.append(out[0])
    same = all(r == first_problem[0] for r in first_problem)
    print(f"problem 0 samples identical across batch sizes: {same}")
    print(f"best batch size: {best[1]}")
    print(f"speedup (best batched / one-at-a-time): {best[0] / base_sps:.1f}x")


if __name__ == "__main__":
    main()
