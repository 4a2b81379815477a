"""Dataset and model cards (README.md with YAML metadata) for published repos.

What goes in: frames / shares / summary.json dicts already read by the caller, plus the params and
revision dicts that made the artifacts. What comes out: ``huggingface_hub`` ``DatasetCard`` and
``ModelCard`` objects whose text is deterministic (no timestamps), so publishing the same
artifacts twice produces byte-identical cards and the no-op check can see it.

Left out: reading files and laying out repos (``layout.py``), pushing (``targets.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData

from modc_data.tasks.packaged import data_sources

# summary.json arm names (evaluation) -> what a reader calls them
ARM_TITLES = {"standard": "standard", "experts": "ModC experts", "prefix": "ModC prefix"}
VARIANT_ARM = {"standard": "standard", "experts": "experts", "prefix": "prefix", "expert": "experts"}

LABEL_SOURCE_TEXT = {
    "search_algorithm": "the search algorithm that wrote the trace (Countdown: `dfs` or `bfs`)",
    "teacher_id": "the teacher model that wrote the solution (`teacher:<name>`)",
    "gradient_cluster": (
        "k-means clusters (`cluster:<i>`) of per-example gradients of log p(y|x) under a "
        "reference model, after a Rademacher random projection"
    ),
    "random": "a seeded random partition (`random:<i>`); the control with no real mode signal",
}


def dataset_config(summary_key: str) -> str:
    """Dataset config of a training mix: summary key 'search_algorithm/skewed' ->
    'search_algorithm-skewed' (the arm key). One config per arm, so each model card can point
    at exactly the rows it was trained on. A tagged group's key ('search_algorithm/skewed+pass32':
    another objective on the same rows) names the same config."""
    return summary_key.split("+", 1)[0].replace("/", "-")


def size_category(n_rows: int) -> str:
    """Hub ``size_categories`` bucket for a row count."""
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n_rows < bound:
            return name
    return "10M<n<100M"


def _yaml_block(data: Any) -> str:
    return "```yaml\n" + yaml.safe_dump(data, sort_keys=True, default_flow_style=False).rstrip() + "\n```"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _build_section(params: Mapping[str, Any], revision: Mapping[str, Any]) -> str:
    return "\n".join([
        "## How it was built",
        "",
        "Built by the modc-data pipeline (`dvc repro`). Revision (git commit and the `dvc.lock` "
        "hashes of the inputs):",
        "",
        _yaml_block(dict(revision)),
        "",
        "Parameters:",
        "",
        _yaml_block(dict(params)),
    ])


# --------------------------------------------------------------------------- dataset card
def dataset_card(
    *,
    repo_id: str,
    task: str,
    configs: Mapping[str, Mapping[str, Any]],
    dataset_infos: Any,
    license: str,
    params: Mapping[str, Any],
    revision: Mapping[str, Any],
    example_config: str | None = None,
) -> DatasetCard:
    """Dataset card for one task's repo.

    ``configs``: config ``<label_source>-<mix>`` -> {"label_source", "mix", "splits": {split:
    n_rows}, "shares": {split: {mode: share}}, "data_files": [{"split", "path"}],
    "validation": {"success": bool, "dataset": str}}; ``example_config``: the loading example's.
    ``dataset_infos``: a ``datasets.DatasetInfosDict`` (features and split sizes per config).
    """
    total = sum(sum(c["splits"].values()) for c in configs.values())
    data = DatasetCardData(
        pretty_name=f"ModC mode-labeled {task}",
        license=license,
        task_categories=["text-generation"],
        size_categories=[size_category(total)],
        tags=["mode-conditioning", "modc", "pass-at-k", task,
              *sorted({c.get("label_source", n) for n, c in configs.items()})],
        configs=[
            {"config_name": name, "data_files": list(c["data_files"])}
            for name, c in sorted(configs.items())
        ],
    )
    dataset_infos.to_dataset_card_data(data)

    sources = _md_table(
        ["config", "label source", "mix", "modes", "rows per split", "what a mode is"],
        [
            [
                f"`{name}`",
                f"`{c.get('label_source', name)}`",
                f"`{c['mix']}`" if c.get("mix") else "",
                ", ".join(f"`{m}`" for m in sorted({m for s in c["shares"].values() for m in s})),
                ", ".join(f"{s}: {n}" for s, n in c["splits"].items()),
                LABEL_SOURCE_TEXT.get(c.get("label_source", name), name),
            ]
            for name, c in sorted(configs.items())
        ],
    )
    balance = []
    for name, c in sorted(configs.items()):
        v = c.get("validation", {})
        balance += [
            f"### `{name}`",
            "",
            f"Validation (great-expectations suite `{v.get('dataset', name)}`): "
            f"{'passed' if v.get('success') else 'FAILED'}.",
            "",
            _md_table(
                ["split", "mode", "share"],
                [[s, f"`{m}`", f"{share:.3f}"] for s, shares in c["shares"].items()
                 for m, share in sorted(shares.items())],
            ),
            "",
        ]
    origin = []
    for src in data_sources(dict(params)):
        origin += [f"- **{src['name']}**: `pip install {src['package']}`; licence: "
                   f"{src['license']}. Teachers: {src['teachers']}. Verification: "
                   f"{src['verification']}."]
    teachers = (params.get("distill") or {}).get("teachers") or []
    origin += [f"- Model teacher `teacher:{t['name']}`: `{t['path']}`, sampled by the pipeline "
               f"(temperature {params['distill'].get('temperature')})"
               for t in teachers if t.get("kind") == "model"]
    if origin:
        origin = ["## Sources", "", *origin, "",
                  "Rows per split and each teacher's share of them are in the tables above and "
                  "below; the distillation report (samples, correct, unverifiable, rejected per "
                  "teacher) is in the run's `results.md`.", ""]
    first = example_config if example_config in configs else sorted(configs)[0]
    body = "\n".join([
        f"# ModC mode-labeled {task} data",
        "",
        "Rows of (prompt, completion) with a **mode** label: which reasoning mode the completion "
        "follows. Mode-conditioning (ModC) trains either one expert per mode or one model with a "
        "mode token (`<mode:dfs> ` before the prompt), then splits the test-time sampling budget "
        "evenly across modes instead of sampling the collapsed mixture; pass@k improves when "
        "per-mode success rates differ across problems.",
        "",
        "## Configs: one per label source and training mix",
        "",
        "Each config is `<label source>-<mix>`: the rows labeled by one label source, with the "
        "training split drawn at one mix of mode shares (`balanced`, or a `skewed` ablation). "
        "Every model trained here names in its card the config it was trained on; its `train` "
        "split is exactly those training rows. The mixes of one label source draw on the same "
        "problems, but their splits can differ in rows (see the sizes below).",
        "",
        sources,
        "",
        "Columns: `id` (content hash of task, prompt, completion), `problem_id` (hash of the "
        "problem; splits never share one), `task`, `prompt` (no mode token), `completion`, "
        "`answer`, `mode`, `label_source`, `split`, `correct` (verifier verdict), `meta` "
        "(JSON string: budget, nodes expanded, teacher id, cluster distance ...).",
        "",
        *origin,
        "## Mode balance per split",
        "",
        *balance,
        _build_section(params, revision),
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'ds = load_dataset("{repo_id}", "{first}")',
        'row = ds["train"][0]',
        'print(row["mode"], row["prompt"], row["completion"])',
        "```",
        "",
        *trl_section(repo_id, first),
    ])
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def trl_section(repo_id: str, config: str) -> list[str]:
    """Markdown lines: the text format of the rows and a TRL ``SFTTrainer`` snippet that trains
    on a config as it is (``MODEL``: the one name a user fills in)."""
    return [
        "## Train on it with TRL",
        "",
        "`prompt` + `completion` is the exact text the models here were trained on: every "
        "`completion` starts with its separating space, so joining the two needs nothing "
        "between them (TRL's prompt-completion format). Training also put the tokenizer's BOS "
        "token first and EOS last; the models published beside this dataset save a tokenizer "
        "that adds BOS, and `SFTTrainer` appends EOS. A mode-prefix (ModC) model sees its mode "
        "token and a space before the prompt: `<mode:dfs> ` + prompt.",
        "",
        "```python",
        "from datasets import load_dataset",
        "from trl import SFTConfig, SFTTrainer",
        "",
        'MODEL = "HuggingFaceTB/SmolLM2-135M"  # any causal LM: a Hub id or a local folder',
        f'train = load_dataset("{repo_id}", "{config}", split="train")',
        "# a prefix (ModC) model: each row's mode token before its prompt",
        'prefixed = train.map(lambda row: {"prompt": f"<mode:{row[\'mode\']}> {row[\'prompt\']}"})',
        "trainer = SFTTrainer(",
        "    model=MODEL,",
        "    train_dataset=train,  # or prefixed",
        '    args=SFTConfig(output_dir="sft-out", max_steps=3, per_device_train_batch_size=8,',
        "                   report_to=[]),",
        ")",
        "trainer.train()",
        "```",
        "",
        "For a prefix model, add the mode tokens to the tokenizer first, so each is one token "
        "as in training: `tokenizer.add_tokens([\"<mode:dfs>\", ...], special_tokens=True)`, "
        "then `model.resize_token_embeddings(len(tokenizer))`, and pass both to `SFTTrainer` "
        "(`model=model, processing_class=tokenizer`).",
        "",
    ]


# --------------------------------------------------------------------------- model card
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
                  _md_table(["k", *(ARM_TITLES.get(a, a) for a in curves)], rows), ""]
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
        _build_section(params, revision),
        "",
    ])
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
