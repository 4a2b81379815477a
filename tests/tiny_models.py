"""Tiny tokenizers, models and checkpoints for tests (any test file may import these).

Everything is built locally in well under a second: a word tokenizer over a handful of
Countdown-like texts and a 2-layer, 32-wide Llama with random weights.

    from tests.tiny_models import make_tiny_checkpoint
    ckpt = make_tiny_checkpoint(tmp_path / "prefix", variant="prefix", modes=["dfs", "bfs"])
    model, tok, info = load_checkpoint(ckpt)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from modc_data.modeling.modc_json import ModcInfo, write_modc
from modc_data.modeling.models import build_scratch_model
from modc_data.modeling.tokenizer import add_mode_tokens, build_word_tokenizer
from modc_data.params_training import ScratchModelParams
from modc_data.schema import mode_slug, mode_token

TINY_TEXTS: tuple[str, ...] = (
    "numbers 3 7 9 target 22",
    "numbers 2 5 8 target 18",
    "numbers 1 4 6 target 10",
    "7 + 9 = 16 , 16 + 3 = 19 , 22 - 3 = 19 goal",
    "8 * 2 = 16 , 16 + 5 = 21 , 18 = 18 goal",
    "6 + 4 = 10 , 10 * 1 = 10 goal",
    "answer ( 7 + 9 ) + 3 fail",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25",
    "+ - * / = ( ) , goal fail answer numbers target",
)
TINY_SCRATCH = ScratchModelParams(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=128,
)
# vLLM's CPU attention takes head sizes 32, 64, 80, …: 2 heads of 32 (still ~40k parameters).
VLLM_SCRATCH = ScratchModelParams(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    max_position_embeddings=128,
)


def tiny_tokenizer(texts: Sequence[str] = TINY_TEXTS, modes: Sequence[str] = ()):
    """Word tokenizer over ``texts``; ``modes`` become single special tokens ``<mode:m>``."""
    tok = build_word_tokenizer(texts)
    if modes:
        add_mode_tokens(tok, modes)
    return tok


def tiny_llama(tokenizer, seed: int = 0, scratch: ScratchModelParams = TINY_SCRATCH):
    """A ~20k-parameter LlamaForCausalLM sized to ``tokenizer``; eager attention (CPU tests)."""
    return build_scratch_model(scratch, tokenizer, seed, attn_implementation="eager")


def save_tiny_base(
    directory: str | Path,
    texts: Sequence[str] = TINY_TEXTS,
    seed: int = 0,
    scratch: ScratchModelParams = TINY_SCRATCH,
) -> Path:
    """A plain transformers checkpoint (no modc.json): stands in for a Hub base in LoRA tests."""
    directory = Path(directory)
    tok = tiny_tokenizer(texts)
    tiny_llama(tok, seed, scratch).save_pretrained(directory, safe_serialization=True)
    tok.save_pretrained(directory)
    return directory


def make_tiny_checkpoint(
    directory: str | Path,
    variant: str = "standard",
    modes: Sequence[str] = (),
    texts: Sequence[str] = TINY_TEXTS,
    *,
    label_source: str = "search_algorithm",
    arm: str = "tiny",
    task: str = "countdown",
    seed: int = 0,
    scratch: ScratchModelParams = TINY_SCRATCH,
) -> Path:
    """Write a random-weight modc-data checkpoint of ``variant`` to ``directory``; return it.

    standard: ``modes`` ignored. expert: ``modes[0]`` is the expert's mode. prefix: one mode
    token per mode. experts: a group dir with one expert sub-directory per mode (mode_slug).
    """
    directory = Path(directory)
    modes = list(modes)
    if variant in ("expert", "prefix", "experts") and not modes:
        raise ValueError(f"variant {variant!r} needs at least one mode")
    if variant == "experts":
        for i, m in enumerate(modes):
            make_tiny_checkpoint(
                directory / mode_slug(m), "expert", [m], texts,
                label_source=label_source, arm=arm, task=task, seed=seed + i, scratch=scratch,
            )
        info = ModcInfo(
            variant="experts", label_source=label_source, modes=modes, task=task, arm=arm,
            experts={m: mode_slug(m) for m in modes}, base={"kind": "scratch"},
        )
        write_modc(directory, info)
        return directory

    tok = tiny_tokenizer(texts, modes if variant == "prefix" else ())
    model = tiny_llama(tok, seed, scratch)
    model.save_pretrained(directory, safe_serialization=True)
    tok.save_pretrained(directory)
    info = ModcInfo(
        variant=variant,  # type: ignore[arg-type]
        label_source=label_source,
        modes=[] if variant == "standard" else (modes if variant == "prefix" else modes[:1]),
        task=task,
        arm=arm,
        mode=modes[0] if variant == "expert" else None,
        mode_tokens={m: mode_token(m) for m in modes} if variant == "prefix" else {},
        base={"kind": "scratch", "name_or_path": None, "adapter": False},
        train={"steps": 0},
    )
    write_modc(directory, info)
    return directory


def tiny_rows(
    n: int = 40,
    modes: Sequence[str] = ("dfs", "bfs"),
    split: str = "train",
    seed: int = 0,
    label_source: str = "search_algorithm",
):
    """``n`` schema-exact Countdown-like rows (two-number sums), modes assigned round-robin.

    Every word is in ``TINY_TEXTS``, so tiny checkpoints' tokenizers cover these rows. The
    completion depends on the mode ("a + b" for the first mode, "b + a" for the others), so a
    model can learn a mode-dependent answer.
    """
    import random

    from modc_data.schema import make_rows, problem_id

    rng = random.Random(seed)
    records = []
    for i in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        m = modes[i % len(modes)]
        first, second = (a, b) if m == modes[0] else (b, a)
        records.append(
            {
                "problem_id": problem_id("countdown", f"{a} {b} -> {a + b} #{seed}-{i}"),
                "task": "countdown",
                "prompt": f"numbers {a} {b} target {a + b}",
                "completion": f"{first} + {second} = {a + b} goal",
                "answer": f"{first} + {second}",
                "mode": m,
                "label_source": label_source,
                "split": split,
                "correct": True,
                "meta": {"index": i},
            }
        )
    return make_rows(records)


def make_tiny_lora_checkpoint(
    directory: str | Path,
    base_dir: str | Path,
    variant: str = "prefix",
    modes: Sequence[str] = ("dfs", "bfs"),
    *,
    seed: int = 0,
    r: int = 4,
) -> Path:
    """A LoRA modc-data checkpoint over the plain checkpoint ``base_dir`` (``save_tiny_base``).

    prefix: LoRA on q/v plus trained mode-token rows (peft ``trainable_token_indices``), as the
    train stage makes them. expert: LoRA only, ``modes[0]`` its mode. experts: a group of those.
    Trainable weights are perturbed at random so the adapter really changes the base's outputs.
    """
    import torch

    from modc_data.modeling.models import load_pretrained_base
    from modc_data.params_training import LoraParams, PretrainedModelParams

    directory = Path(directory)
    modes = list(modes)
    base = {"kind": "pretrained", "name_or_path": str(base_dir), "adapter": True}
    if variant == "experts":
        for i, m in enumerate(modes):
            make_tiny_lora_checkpoint(directory / mode_slug(m), base_dir, "expert", [m], seed=seed + i, r=r)
        info = ModcInfo(
            variant="experts", label_source="search_algorithm", modes=modes, task="countdown",
            arm="tiny", experts={m: mode_slug(m) for m in modes}, base=base,
        )
        write_modc(directory, info)
        return directory
    cfg = PretrainedModelParams(
        name_or_path=str(base_dir), lora=LoraParams(r=r, alpha=2 * r, target_modules=["q_proj", "v_proj"])
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, tok = load_pretrained_base(cfg, modes if variant == "prefix" else ())
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(0.3 * torch.randn_like(p))
    model.save_pretrained(directory, safe_serialization=True)
    tok.save_pretrained(directory)
    info = ModcInfo(
        variant=variant,  # type: ignore[arg-type]
        label_source="search_algorithm",
        modes=modes if variant == "prefix" else modes[:1],
        task="countdown",
        arm="tiny",
        mode=modes[0] if variant == "expert" else None,
        mode_tokens={m: mode_token(m) for m in modes} if variant == "prefix" else {},
        base=base,
        train={"steps": 0},
    )
    write_modc(directory, info)
    return directory
