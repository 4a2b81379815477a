"""Model cards (README.md with YAML metadata) for published model repos.

What goes in: one checkpoint's ``ModcInfo``, its summary.json entry (pass@k curves per split and
arm), and the params and revision dicts that made it. What comes out: a ``huggingface_hub``
``ModelCard`` whose text is deterministic (no timestamps): model-index results copied from
summary.json, the validated allocation, and usage snippets (modc-data's sampler, plain
transformers / peft, vLLM multi-LoRA serving).

Left out: dataset cards and the card text both kinds share (``cards.py``), reading files and
laying out repos (``layout.py``), pushing (``targets.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from modc_data.publish.cards import build_section, dataset_config, md_table

# summary.json arm names (evaluation) -> what a reader calls them
ARM_TITLES = {"standard": "standard", "experts": "ModC experts", "prefix": "ModC prefix"}
VARIANT_ARM = {"standard": "standard", "experts": "experts", "prefix": "prefix", "expert": "experts"}


def eval_results(
    summary_entry: Mapping[str, Any],
    arms: Sequence[str],
    *,
    dataset_repo_id: str,
    dataset_config: str,
    dataset_name: str,
) -> list[EvalResult]:
    """model-index entries: pass@k for each split, arm in ``arms`` and evaluated k.

    ``summary_entry`` is ``summary[key]``: {split: {arm: {"k": [...], "pass_at_k": [...]}}}.
    Values are copied, not recomputed, so they equal summary.json exactly.
    """
    out = []
    for split in sorted(summary_entry):
        for arm in arms:
            curve = summary_entry[split].get(arm)
            if curve is None:
                continue
            for k, value in zip(curve["k"], curve["pass_at_k"], strict=True):
                out.append(EvalResult(
                    task_type="text-generation",
                    dataset_type=dataset_repo_id,
                    dataset_name=dataset_name,
                    dataset_config=dataset_config,
                    dataset_split=split,
                    metric_type=f"pass@{int(k)}",
                    metric_name=f"pass@{int(k)} ({ARM_TITLES.get(arm, arm)})",
                    metric_config=arm,
                    metric_value=float(value),
                ))
    return out


def _results_tables(summary_entry: Mapping[str, Any], arms: Sequence[str]) -> str:
    parts = []
    for split in sorted(summary_entry):
        curves = {a: summary_entry[split][a] for a in arms if a in summary_entry[split]}
        ks = sorted({int(k) for c in curves.values() for k in c["k"]})
        rows = []
        for k in ks:
            row = [k]
            for a in curves:
                c = curves[a]
                ck = [int(x) for x in c["k"]]
                if k not in ck:
                    row.append("")
                    continue
                i = ck.index(k)
                lo, hi = c.get("ci_low"), c.get("ci_high")
                ci = f" [{lo[i]:.3f}, {hi[i]:.3f}]" if lo and hi else ""
                row.append(f"{c['pass_at_k'][i]:.3f}{ci}")
            rows.append(row)
        parts += [f"### split `{split}`", "",
                  md_table(["k", *(ARM_TITLES.get(a, a) for a in curves)], rows), ""]
    return "\n".join(parts)


def _allocation_section(allocation: Mapping[str, Mapping[str, Any]], arms: list[str]) -> list[str]:
    """Markdown lines for the validated per-k allocation in modc.json (none: uniform); arms
    listed in ``arms`` order."""
    if not allocation:
        return ["`split='auto'` splits k evenly across the modes (no validated allocation shipped).",
                ""]
    lines = [
        "Validated allocation (`split='auto'`; chosen on validation splits, never on test): "
        "samples per arm at each k, `free` = no mode token.",
        "",
        "| k | policy | samples per arm | validation pass@k |",
        "|---|---|---|---|",
    ]
    for k in sorted(allocation, key=int):
        e = allocation[k]
        got = e.get("counts", {})
        counts = ", ".join(f"{a}={got[a]}" for a in arms if got.get(a))
        policy = e.get("policy", "?")
        if policy == "preference":  # per prompt from the model's first-token q(m|x)
            policy = f"preference (free share {e.get('free_share'):g}, β = {e.get('beta'):g})"
            counts = (f"per prompt: round(f·k) free, the rest ∝ q̃(m\\|x)^β; without first-token "
                      f"probabilities {e.get('fallback')}: {counts}")
        val = e.get("validation")
        lines.append(f"| {k} | {policy} | {counts} | "
                     f"{'' if val is None else f'{val:.3f}'} |")
    both = [(k, allocation[k]["with_standard"]) for k in sorted(allocation, key=int)
            if allocation[k].get("with_standard")]
    if both:
        lines += [
            "",
            "With the arm's standard model loaded beside it "
            "(`ModCSampler.from_pretrained(repo, standard=<the arm's standard model>)`), "
            "`split='auto'` follows the split validated over both models' arms where it spends "
            "samples on the standard model:",
            "",
            *(f"- k={k}: {b.get('policy')}, "
              + ", ".join(f"{a}={m}" for a, m in b.get("counts", {}).items() if m)
              + (f" (validation {b['validation']:.3f})" if b.get("validation") is not None else "")
              for k, b in both),
        ]
    return [*lines, ""]


def plain_transformers_section(repo_id: str, info: Any, example_prompt: str,
                               adapter: bool, base_model: str | None = None) -> list[str]:
    """Markdown lines: the prompt format and a snippet that samples this model with plain
    ``transformers`` (and ``peft`` for an adapter), without modc-data. The sampling settings
    are passed as the folder's ``generation_config.json`` explicitly: an adapter loaded with
    peft otherwise generates with its base's settings."""
    experts_adapters = adapter and info.variant == "experts"
    if experts_adapters:
        # peft's AutoPeftModel would pass subfolder= to the base too: load the base, then
        # each expert's adapter from its sub-folder
        imports = ["from peft import PeftModel",
                   "from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig"]
        model_line = (f"model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("
                      f"{base_model!r}), repo{{sub}})")
    elif adapter:
        imports = ["from peft import AutoPeftModelForCausalLM  # its base: adapter_config.json",
                   "from transformers import AutoTokenizer, GenerationConfig"]
        model_line = "model = AutoPeftModelForCausalLM.from_pretrained(repo{sub})"
    else:
        imports = ["from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig"]
        model_line = "model = AutoModelForCausalLM.from_pretrained(repo{sub})"
    sample = [
        'inputs = tokenizer([prefix + problem], return_tensors="pt")',
        "gen.num_return_sequences = 2  # k/M samples of this mode",
        "out = model.generate(**inputs, generation_config=gen)",
        'for seq in out[:, inputs["input_ids"].shape[1]:]:',
        "    print(mode, tokenizer.decode(seq, skip_special_tokens=True))",
    ]
    load = ["tokenizer = AutoTokenizer.from_pretrained(repo{sub})", model_line,
            "gen = GenerationConfig.from_pretrained(repo{sub})"]
    if info.variant == "experts":
        how = ("Each expert is in its own sub-folder; sample each mode's expert on the plain "
               "prompt and split k across them.")
        body = [f"for mode, folder in {dict(info.experts)!r}.items():",
                *("    " + x.format(sub=", subfolder=folder") for x in load),
                '    prefix = ""', *("    " + x for x in sample)]
    elif info.variant == "prefix":
        how = ("Put the mode token and a space before the prompt (" + ", ".join(
            f"`{t} `" for t in info.mode_tokens.values()) + ") and split k across the modes.")
        body = [*(x.format(sub="") for x in load),
                f"for mode, token in {dict(info.mode_tokens)!r}.items():",
                '    prefix = token + " "', *("    " + x for x in sample)]
    else:
        how = "The prompt goes in as it is."
        body = [*(x.format(sub="") for x in load), 'mode, prefix = None, ""', *sample]
    return [
        "## Use it with plain transformers",
        "",
        f"{how} The saved tokenizer adds the BOS token training put first; "
        "`generation_config.json` holds the sampling settings the results above were "
        "sampled with (temperature, top-p, no top-k, max new tokens).",
        "",
        "```python",
        "import torch",
        *imports,
        "",
        f'repo = "{repo_id}"',
        f"problem = {example_prompt!r}",
        "torch.manual_seed(0)",
        *body,
        "```",
        "",
    ]


def vllm_section(repo_id: str, info: Any, base_model: str | None, lora_rank: int | None
                 ) -> list[str]:
    """Markdown lines: serving LoRA experts with vLLM's multi-LoRA server (adapters only)."""
    if info.variant != "experts" or not base_model or not lora_rank:
        return []
    modules = " ".join(f"{m}={repo_id}/{d}" for m, d in info.experts.items())
    # --max-lora-rank takes only these values (vLLM's choices); the smallest that fits
    rank = min((c for c in (1, 8, 16, 32, 64, 128, 256, 320, 512) if c >= lora_rank), default=lora_rank)
    return [
        "## Serve the experts with vLLM",
        "",
        "The experts are LoRA adapters over one base, which vLLM serves side by side; a "
        "request names its mode's adapter as the model:",
        "",
        "```bash",
        f"vllm serve {base_model} --enable-lora --max-lora-rank {rank} "
        f"--lora-modules {modules}",
        "```",
        "",
        "modc-data's `openai` sampling backend splits k across them: `sample.backend: openai`, "
        "`sample.openai.served_names: {<expert folder>: <mode>}`.",
        "",
    ]


def model_card(
    *,
    repo_id: str,
    info: Any,
    summary_key: str,
    summary_entry: Mapping[str, Any],
    dataset_repo_id: str,
    license: str,
    library_name: str,
    base_model: str | None,
    figures: Sequence[str],
    params: Mapping[str, Any],
    revision: Mapping[str, Any],
    example_prompt: str = "<your prompt>",
    lora_rank: int | None = None,
) -> ModelCard:
    """Model card of one released checkpoint (``info`` is its ``ModcInfo``).

    model-index holds pass@k of this model's arm and of the standard baseline (``metric_config``
    names the arm), every split and k in ``summary_entry``; ``figures`` are repo-relative PNGs.
    """
    arm = VARIANT_ARM.get(info.variant, info.variant)
    arms = [arm] if arm == "standard" else [arm, "standard"]
    config = dataset_config(summary_key)
    mix = summary_key.partition("/")[2]
    data = ModelCardData(
        model_name=repo_id,
        base_model=base_model,
        library_name=library_name,
        datasets=[dataset_repo_id],
        license=license,
        pipeline_tag="text-generation",
        tags=["mode-conditioning", "modc", info.task, info.label_source, info.variant],
        eval_results=eval_results(
            summary_entry, arms, dataset_repo_id=dataset_repo_id,
            dataset_config=config, dataset_name=f"{info.task} ({summary_key})",
        ),
    )
    modes = ", ".join(f"`{m}`" for m in info.modes) or "none (standard model)"
    what = {
        "experts": "a group of experts, one full model per mode, in one sub-folder each "
                   f"({', '.join(f'`{d}/`' for d in info.experts.values())}); the sampler splits "
                   "the budget across them",
        "prefix": "one model conditioned on a mode token before the prompt ("
                  + ", ".join(f"`{t}`" for t in info.mode_tokens.values()) + ")",
        "standard": "the standard baseline: one model trained on all rows, no mode conditioning",
        "expert": f"a single expert for mode `{info.mode}`",
    }.get(info.variant, info.variant)
    body = "\n".join([
        f"# {repo_id}",
        "",
        *([f"> **Reduced-strength demo model**: {info.reduced_strength}. Its results show "
           "the pipeline runs end to end, not what the method reaches at full strength.", ""]
          if info.reduced_strength else []),
        f"A mode-conditioned (ModC) {info.task} model: {what}.",
        f"Label source `{info.label_source}`, training mix `{mix}`, modes: {modes}. "
        f"Trained on the `train` split of config `{config}` of "
        f"[`{dataset_repo_id}`](https://huggingface.co/datasets/{dataset_repo_id}): "
        f'`load_dataset("{dataset_repo_id}", "{config}", split="train")`.',
        "",
        "## Results",
        "",
        "Unbiased pass@k with bootstrap confidence intervals. ModC arms split k evenly across "
        "modes (k/M samples per mode).",
        "",
        _results_tables(summary_entry, arms),
        *[f"![pass@k]({f})" for f in figures],
        "",
        "## Usage",
        "",
        "```python",
        "from modc_data.sampler import ModCSampler",
        "",
        f'sampler = ModCSampler.from_pretrained("{repo_id}")',
        "# k samples per prompt, split by the validated allocation below (split='auto'),",
        "# or split='uniform' / 'free' / {arm: weight}; each tagged with its mode",
        'for mode, completion in sampler.sample(["<your prompt>"], k=8)[0]:',
        "    print(mode, completion)",
        "```",
        "",
        *_allocation_section(info.allocation, ["free", *info.modes]),
        "Command line: `modc sample " + repo_id + ' --prompt "..." -k 8`.',
        "",
        *plain_transformers_section(repo_id, info, example_prompt, library_name == "peft", base_model),
        *vllm_section(repo_id, info, base_model, lora_rank),
        "Training record (from `modc.json`):",
        "",
        "```json",
        json.dumps({"train": info.train, "data_hash": info.data_hash, "base": info.base},
                   indent=2, sort_keys=True),
        "```",
        "",
        build_section(params, revision),
        "",
    ])
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
