"""LoRA checkpoints merged into full model folders, for servers that cannot load them as adapters.

vLLM's LoRA loader knows LoRA matrices only, not peft's ``trainable_token_indices`` (the prefix
variant's trained mode-token embedding rows), so such a checkpoint is merged
(``peft.merge_and_unload``) into a full model folder once and that folder is served.

    merged = merged_checkpoint("artifacts/models/arm/prefix", ".cache/merged")

The folder is cached under ``cache_dir`` by a hash of the adapter's files and its base's name
(and config, when local), so a retrained adapter gets a new folder and an unchanged one is reused;
it is written to a temporary sibling and renamed into place, so a crash leaves no half folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import torch

from modc_data.artifacts import atomic_dir
from modc_data.modeling.load import ADAPTER_CONFIG, load_checkpoint
from modc_data.modeling.modc_json import MODC_FILE, read_modc, write_modc

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).exists()


def has_trained_rows(path: str | Path) -> bool:
    """True when a LoRA checkpoint also trained whole embedding rows or modules (peft
    ``trainable_token_indices`` / ``modules_to_save``), which a LoRA-only server cannot apply."""
    if not is_adapter(path):
        return False
    cfg = json.loads((Path(path) / ADAPTER_CONFIG).read_text())
    return bool(cfg.get("trainable_token_indices") or cfg.get("modules_to_save"))


def adapter_base(path: str | Path) -> str:
    """The base model an adapter checkpoint was trained on (modc.json, else adapter config)."""
    path = Path(path)
    base = None
    if (path / MODC_FILE).exists():
        base = read_modc(path).base.get("name_or_path")
    base = base or json.loads((path / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{path}: LoRA adapter names no base model")
    return str(base)


def _content_hash(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        h.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    base = adapter_base(path)
    h.update(b"\0base\0" + base.encode())
    base_cfg = Path(base) / "config.json"
    if base_cfg.exists():  # a local base: its config too (weights are not re-read for a 7B)
        h.update(base_cfg.read_bytes())
    return h.hexdigest()[:16]


def merged_checkpoint(adapter_dir: str | Path, cache_dir: str | Path) -> Path:
    """Full-model folder (weights, tokenizer, modc.json) of the LoRA checkpoint ``adapter_dir``.

    Merged in float32 and saved in the base's dtype; reused when already cached. modc.json is
    the adapter's, with ``base.adapter`` false and ``base.merged_from`` naming the adapter.
    """
    adapter_dir = Path(adapter_dir)
    if not is_adapter(adapter_dir):
        raise ValueError(f"{adapter_dir}: not a LoRA checkpoint (no {ADAPTER_CONFIG})")
    out = Path(cache_dir) / f"{adapter_dir.name}-{_content_hash(adapter_dir)}"
    if (out / MODC_FILE).exists():
        return out
    model, tok, info = load_checkpoint(adapter_dir, dtype=torch.float32)
    merged = model.merge_and_unload()
    saved_dtype = getattr(merged.config, "dtype", None) or getattr(
        merged.config, "torch_dtype", None
    )
    if isinstance(saved_dtype, str):
        saved_dtype = _DTYPES.get(saved_dtype)
    if isinstance(saved_dtype, torch.dtype) and saved_dtype != torch.float32:
        merged.to(saved_dtype)
    with atomic_dir(out) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        base = {**info.base, "adapter": False, "merged_from": str(adapter_dir.resolve())}
        write_modc(tmp, replace(info, base=base))
    return out
