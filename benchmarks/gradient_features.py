"""Per-example gradient throughput: torch.func vmap vs the autograd loop, and peak memory.

    .venv/bin/python benchmarks/gradient_features.py [--examples 64] [--chunk 32] [--dim 1024]

Model: a scratch Llama of ~1M parameters (hidden 128, 4 layers) with a word vocabulary of
Countdown tokens; data: Countdown-like prompts with ~60-token traces. Prints examples/s of each
method, the speed-up (target: vmap >= 3x loop), the projection's examples/s, the full
``featurize`` examples/s and the process's peak resident memory after each phase
(``resource.getrusage``; torch allocations are invisible to tracemalloc).

Measured (H100 host): cuda chunk 64: loop 46-56, vmap ~1260 ex/s (23-27x); CPU 16 threads 3.3x;
CPU 1 thread only 1.1-1.3x, because there the loop is already compute-bound (same FLOPs), so the
vmap gain comes from using threads or a GPU. Projection to d=1024 costs B * P * d multiply-adds,
as much as the gradients on a CPU.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from modc_data.labeling.gradients import (  # noqa: E402
    encode_pairs,
    featurize,
    gradients_loop,
    gradients_vmap,
)
from modc_data.labeling.projection import RademacherProjection  # noqa: E402
from modc_data.modeling.tokenizer import build_word_tokenizer  # noqa: E402


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_mem(device: str) -> str:
    """Peak memory so far: CPU RSS, plus the CUDA allocator's peak on a GPU."""
    out = f"peak RSS {peak_rss_mib():.0f} MiB"
    if device.startswith("cuda"):
        out += f", peak CUDA {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
    return out


def countdown_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Prompts of 4 numbers and a target; traces of ~60 tokens of 'a op b = c ,' steps."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        nums = rng.integers(1, 50, size=4)
        prompt = f"numbers {' '.join(map(str, nums))} target {rng.integers(10, 100)}"
        steps = []
        while sum(len(s.split()) for s in steps) < 58:
            a, b = rng.integers(1, 100, size=2)
            op = rng.choice(["+", "-", "*", "/"])
            steps.append(f"{a} {op} {b} = {rng.integers(0, 100)} ,")
        pairs.append((prompt, " ".join(steps) + " goal"))
    return pairs


def build_model(tok) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
    )
    return LlamaForCausalLM(cfg)


def rate(fn, n: int, device: str = "cpu") -> float:
    """Examples per second of ``fn()`` processing ``n`` examples (GPU work waited for)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=256, help="examples timed per method")
    ap.add_argument("--chunk", type=int, default=32, help="examples per vmap call")
    ap.add_argument("--dim", type=int, default=1024, help="projection dimension")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (2: this machine and the default train.threads)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = args.device

    pairs = countdown_pairs(args.examples)
    vocab_text = ["numbers target goal + - * / = ,", " ".join(map(str, range(100)))]
    tok = build_word_tokenizer(vocab_text)
    model = build_model(tok).to(dev)
    examples = encode_pairs(tok, pairs)
    n_params = sum(p.numel() for p in model.parameters())
    mean_len = np.mean([len(i) for i, _ in examples])
    print(f"model: {n_params / 1e6:.2f}M params; {len(pairs)} examples, mean {mean_len:.0f} tokens")
    print(f"device: {dev}; threads: {args.threads}; at start: {peak_mem(dev)}")

    gradients_loop(model, examples[:2])  # warm-up (first call pays for lazy initialisation)
    loop_rate = rate(lambda: gradients_loop(model, examples), len(examples), dev)
    print(f"loop : {loop_rate:7.1f} examples/s   {peak_mem(dev)}")

    chunks = [examples[i : i + args.chunk] for i in range(0, len(examples), args.chunk)]
    gradients_vmap(model, chunks[0][:2], tok.pad_token_id)
    vmap_rate = rate(
        lambda: [gradients_vmap(model, c, tok.pad_token_id) for c in chunks], len(examples), dev
    )
    print(f"vmap : {vmap_rate:7.1f} examples/s   {peak_mem(dev)} (chunk {args.chunk})")
    print(f"speed-up vmap/loop: {vmap_rate / loop_rate:.1f}x (target >= 3x)")

    proj = RademacherProjection(n_params, args.dim, seed=0)
    g = gradients_vmap(model, chunks[0], tok.pad_token_id)
    first = len(g) / rate(lambda: proj.project(g), len(g), dev)
    proj_rate = rate(lambda: proj.project(g), len(g), dev)
    print(
        f"projection to d={args.dim}: first chunk {first:.2f} s (generates the matrix), then "
        f"{proj_rate:.0f} examples/s; {peak_mem(dev)}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        feat_rate = rate(
            lambda: featurize(
                model, tok, pairs, tmp, dim=args.dim, chunk_size=args.chunk, method="vmap"
            ),
            len(pairs),
            dev,
        )
    print(f"featurize (vmap + projection + store): {feat_rate:.1f} examples/s")
    print(f"at end: {peak_mem(dev)}")


if __name__ == "__main__":
    main()
