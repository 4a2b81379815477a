"""What the smoke run published, consumed by the tools researchers use instead of modc-data: TRL's
``SFTTrainer`` on a dataset config, plain ``transformers`` on a model in a process where
``modc_data`` cannot be imported, and the cards' own snippets run as they are written (only the
repo id and the model name a user fills in are replaced by local folders).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml
from datasets import load_dataset
from transformers import AutoTokenizer

from modc_data.modeling.format import encode_example, encode_prompt
from modc_data.modeling.load import load_checkpoint
from modc_data.sampling.hf import hf_generate
from tests.smoke import env

trl = pytest.importorskip("trl", reason="trl is in the dev extra (make setup)")

# run first in the child: any `import modc_data` then fails
NO_MODC = "import sys; sys.modules['modc_data'] = None\n"


def _hub(repo: Path) -> tuple[Path, Path]:
    hub = repo / "artifacts" / "hub"
    return hub / "datasets" / "modc", hub / "models" / "modc"


def _dataset_repo(repo: Path) -> Path:
    datasets, _ = _hub(repo[0] if isinstance(repo, tuple) else repo)
    (only,) = datasets.iterdir()
    return only


def _model_repo(repo: Path, suffix: str) -> Path:
    _, models = _hub(repo[0] if isinstance(repo, tuple) else repo)
    return models / f"modc-countdown-search_algorithm-balanced-{suffix}"


def _snippet(card: Path, heading: str) -> str:
    """The first ```python block after ``heading`` in a card."""
    text = card.read_text()
    after = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


def _run_python(code: str, cwd: Path, timeout: int = 600) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env(), capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_trl_keeps_every_prompt_completion_boundary_and_trains(smoke_repo, tmp_path):
    from trl import SFTConfig, SFTTrainer

    ds_repo, model = _dataset_repo(smoke_repo), _model_repo(smoke_repo, "standard")
    config = "search_algorithm-balanced"
    train = load_dataset(str(ds_repo), config, split="train")
    tokenizer = AutoTokenizer.from_pretrained(model)
    trainer = SFTTrainer(
        model=str(model), train_dataset=train, processing_class=tokenizer,
        args=SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=2, per_device_train_batch_size=4,
                       report_to=[], logging_steps=1, use_cpu=True, bf16=False, save_strategy="no"),
    )
    processed = trainer.train_dataset
    assert len(processed) == len(train) > 0
    lost = 0
    for row, got in zip(train, processed, strict=True):
        prompt_ids = tokenizer(row["prompt"])["input_ids"]
        want, labels = encode_example(tokenizer, row["prompt"], row["completion"])
        # TRL's sequence is exactly the one our trainer trains on, and its loss labels (the
        # completion mask folded in) cover exactly our completion: the boundary is where the
        # row says
        ok = (got["input_ids"] == want and got["input_ids"][: len(prompt_ids)] == prompt_ids
              and got["labels"] == labels)
        lost += not ok
    assert lost == 0, f"{lost} of {len(train)} rows lost their prompt/completion boundary"
    out = trainer.train()
    assert math.isfinite(out.training_loss) and trainer.state.global_step == 2


def test_dataset_card_trl_snippet_runs_as_written(smoke_repo, tmp_path):
    ds_repo = _dataset_repo(smoke_repo)
    code = _snippet(ds_repo / "README.md", "## Train on it with TRL")
    card = (ds_repo / "README.md").read_text()
    repo_id = re.search(r'load_dataset\("([^"]+)", "([^"]+)", split="train"\)', code).group(1)
    code = code.replace(f'"{repo_id}"', repr(str(ds_repo)))
    code = re.sub(r'MODEL = "[^"]+"', f"MODEL = {str(_model_repo(smoke_repo, 'standard'))!r}", code)
    code = code.replace("report_to=[])", "report_to=[], use_cpu=True, bf16=False)")
    assert "sft-out" in code and "## Train on it with TRL" in card
    out = _run_python(NO_MODC + code + "\nprint('steps', trainer.state.global_step)\n", tmp_path)
    assert "steps 3" in out


@pytest.mark.parametrize("suffix", ["prefix", "experts"])
def test_model_card_snippet_runs_without_modc_data(smoke_repo, tmp_path, suffix):
    model = _model_repo(smoke_repo, suffix)
    info = json.loads((model / "modc.json").read_text())
    code = _snippet(model / "README.md", "## Use it with plain transformers")
    repo_id = re.search(r'repo = "([^"]+)"', code).group(1)
    out = _run_python(NO_MODC + code.replace(f'"{repo_id}"', repr(str(model))), tmp_path)
    seen = [line.split(" ", 1)[0].strip("'") for line in out.splitlines()]
    modes = info["modes"]
    assert sorted(set(seen)) == sorted(modes) and len(seen) == 2 * len(modes)
    gen = json.loads((model / info["experts"][modes[0]] / "generation_config.json").read_text()
                     if suffix == "experts" else (model / "generation_config.json").read_text())
    sample = yaml.safe_load(((smoke_repo[0] if isinstance(smoke_repo, tuple) else smoke_repo)
                             / "params.yaml").read_text())["sample"]
    assert gen["do_sample"] is True and gen["top_k"] == 0
    assert (gen["max_new_tokens"], gen["temperature"]) == (sample["max_new_tokens"],
                                                           sample["temperature"])


def test_plain_transformers_generates_what_modc_samples(smoke_repo, tmp_path):
    """Greedy decoding of a published prefix model: plain transformers (no modc_data, prompts
    built by the saved tokenizer as the card says) and modc-data's sampler give the same tokens
    under every mode, and the plain prompt ids are the ids training used."""
    model_dir = _model_repo(smoke_repo, "prefix")
    ds = pl.read_parquet(next((_dataset_repo(smoke_repo) / "search_algorithm-balanced").glob(
        "test-*.parquet")))
    prompts = ds.sort("id")["prompt"].unique(maintain_order=True).to_list()[:6]
    info = json.loads((model_dir / "modc.json").read_text())
    child = NO_MODC + textwrap.dedent(f"""
        import json
        from transformers import AutoModelForCausalLM, AutoTokenizer
        tok = AutoTokenizer.from_pretrained({str(model_dir)!r})
        model = AutoModelForCausalLM.from_pretrained({str(model_dir)!r})
        out = {{}}
        for mode, token in {info["mode_tokens"]!r}.items():
            rows = []
            for p in {prompts!r}:
                ids = tok([token + " " + p], return_tensors="pt")
                seq = model.generate(**ids, do_sample=False, max_new_tokens=40)[0]
                rows.append([ids["input_ids"][0].tolist(), seq[ids["input_ids"].shape[1]:].tolist()])
            out[mode] = rows
        print(json.dumps(out))
    """)
    plain = json.loads(_run_python(child, tmp_path).strip().splitlines()[-1])
    model, tokenizer, _ = load_checkpoint(model_dir, dtype=torch.float32)
    eos = tokenizer.eos_token_id
    for mode in info["modes"]:
        ids = [encode_prompt(tokenizer, p, mode) for p in prompts]
        assert [r[0] for r in plain[mode]] == ids
        ours = hf_generate(model, tokenizer, ids, n=1, seeds=[0] * len(ids), temperature=0.0,
                           top_p=1.0, max_new_tokens=40)
        for (_, gen), (completion,) in zip(plain[mode], ours, strict=True):
            cut = gen[: gen.index(eos) + 1] if eos in gen else gen
            assert tokenizer.decode(cut, skip_special_tokens=True) == completion.text


def test_readme_snippets_run_against_a_built_repo(smoke_repo, tmp_path):
    """The README's "Use what is published" snippets, with `artifacts/hub` pointing at the smoke
    run's published folder (same layout, same config and model names as the default run)."""
    root = smoke_repo[0] if isinstance(smoke_repo, tuple) else smoke_repo
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Use what is published"):]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)[:2]
    assert len(blocks) == 2
    hub = str(root / "artifacts" / "hub")
    outs = [_run_python(b.replace('"artifacts/hub', f'"{hub}'), tmp_path) for b in blocks]
    first = outs[0].strip().splitlines()[-1]
    assert first.split(" ", 1)[0] in {"dfs", "bfs"} and "nums " in first
    modes = [line.split(" ", 1)[0] for line in outs[1].strip().splitlines()]
    assert len(modes) == 8 and set(modes) <= {"dfs", "bfs", "None"}


@pytest.mark.parametrize("variant", ["prefix", "experts"])
def test_lora_model_card_snippet_runs_without_modc_data(tmp_path, variant):
    """A LoRA prefix model (new mode-token rows) and LoRA experts over a pretrained base: the
    card's snippet loads them with peft and samples every mode, in a process without
    modc_data."""
    from modc_data.publish.layout import build_model_repo
    from tests.tiny_models import make_tiny_lora_checkpoint, save_tiny_base

    base = save_tiny_base(tmp_path / "base")
    ckpt = make_tiny_lora_checkpoint(tmp_path / variant, base, variant, ["dfs", "bfs"])
    curve = {"k": [1, 2], "pass_at_k": [0.5, 0.6]}
    repo = build_model_repo(
        tmp_path / "pub", repo_id=f"modc/tiny-{variant}", checkpoint=ckpt,
        summary_key="search_algorithm/tiny", summary_entry={"test": {variant: curve, "standard": curve}},
        dataset_repo_id="modc/tiny", figures=[], license="apache-2.0",
        params={"sample": {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8}}, revision={},
        allow_local_base=True, example_prompt="numbers 3 7 9 target 22",
    )
    code = _snippet(repo.path / "README.md", "## Use it with plain transformers")
    out = _run_python(NO_MODC + code.replace(f'"modc/tiny-{variant}"', repr(str(repo.path))), tmp_path)
    seen = [line.split(" ", 1)[0] for line in out.splitlines()]
    assert sorted(set(seen)) == ["bfs", "dfs"] and len(seen) == 4
