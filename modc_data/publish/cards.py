"""Dataset cards (README.md with YAML metadata) for published dataset repos, and the pieces of
card text that model cards share with them (markdown tables, the "How it was built" section,
a training mix's dataset config name).

What goes in: per-config shares / split sizes / validation dicts already read by the caller, plus
the params and revision dicts that made the artifacts. What comes out: a ``huggingface_hub``
``DatasetCard`` whose text is deterministic (no timestamps), so publishing the same artifacts
twice produces byte-identical cards and the no-op check can see it.

Left out: model cards (``model_card.py``), reading files and laying out repos (``layout.py``),
pushing (``targets.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from huggingface_hub import DatasetCard, DatasetCardData

from modc_data.tasks.packaged import data_sources

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


def yaml_block(data: Any) -> str:
    return "```yaml\n" + yaml.safe_dump(data, sort_keys=True, default_flow_style=False).rstrip() + "\n```"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def build_section(params: Mapping[str, Any], revision: Mapping[str, Any]) -> str:
    return "\n".join([
        "## How it was built",
        "",
        "Built by the modc-data pipeline (`dvc repro`). Revision (git commit and the `dvc.lock` "
        "hashes of the inputs):",
        "",
        yaml_block(dict(revision)),
        "",
        "Parameters:",
        "",
        yaml_block(dict(params)),
    ])


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

    sources = md_table(
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
            md_table(
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
        build_section(params, revision),
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
