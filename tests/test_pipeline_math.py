"""End to end, the bring-your-own path: the real `dvc repro` on profiles/math-smoke.yaml.

A throw-away copy of the repo gets the demo inputs a user would bring (local problem files, a
multi-teacher solutions table, a saved "pretrained" base over the real SmolLM2 BPE vocabulary),
then DVC runs every stage: math problems loaded with `datasets`, teacher-ID labels, GX
validation, LoRA standard / experts / prefix, gradient-cluster labels from the LoRA reference,
hf sampling, evaluation and publishing to the local hub folder. Tiny models solve nothing, so
accuracy is not asserted; files, schema, modes, cards and finite metrics are.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import pytest
from huggingface_hub import ModelCard

from modc_data.schema import ROW_SCHEMA, mode_token
from tests.smoke import built_profile, finite, run

pytest.importorskip("gguf", reason="the demo base needs the SmolLM2 tokenizer (make setup installs gguf)")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    def demo_inputs(dst):
        run([sys.executable, "-m", "modc_data.tasks.math_demo", "data/math-smoke"], dst)

    return built_profile(tmp_path_factory, "math-smoke", before=demo_inputs)



def test_problems_and_teacher_labels(repo):
    root, log, params = repo
    art = root / "artifacts"
    problems = pl.read_parquet(art / "data" / "problems.parquet")
    assert set(problems["task"]) == {"math"}
    counts = dict(problems.group_by("split").len().iter_rows())
    assert counts["validation"] == params["math"]["validation"] and counts["test"] == 40
    assert problems["answer"].str.len_chars().min() > 0
    assert "\\boxed{}" in problems["prompt"][0]
    rows = pl.read_parquet(art / "datasets" / "teacher_id" / "distilled.parquet")
    assert dict(rows.schema) == dict(ROW_SCHEMA)
    assert set(rows["mode"]) == {"teacher:alice", "teacher:bob"}
    assert rows["correct"].all() and set(rows["label_source"]) == {"teacher_id"}
    assert set(rows["split"]) == {"train", "validation"}
    assert rows["problem_id"].is_in(problems["problem_id"].implode()).all()
    report = json.loads((art / "metrics" / "distill" / "distilled.json").read_text())
    rates = [t["pass_rate"] for t in report["teachers"].values()]
    assert len(rates) == 2 and all(0 < r < 1 for r in rates)  # the demo teachers err sometimes


def test_gradient_clusters_from_the_lora_reference(repo):
    root, _, params = repo
    art = root / "artifacts"
    rows = pl.read_parquet(art / "datasets" / "gradient_cluster" / "distilled.parquet")
    assert set(rows["mode"]) == {"cluster:0", "cluster:1"}
    assert set(rows["label_source"]) == {"gradient_cluster"}
    report = json.loads((art / "metrics" / "gradient_cluster" / "distilled.json").read_text())
    assert report["n_clusters"] == 2 and finite(report)
    assert report["n_train_rows"] == params["gradient_cluster"]["max_examples"]
    # the reference is a LoRA adapter over the saved base: its adapter weights gave the features
    ref = json.loads((art / "models" / "teacher_id-distilled-standard" / "modc.json").read_text())
    assert ref["base"]["adapter"] is True


def test_validation_passes_for_every_arm(repo):
    root, _, params = repo
    for arm in params["arms"]:
        report = json.loads((root / "artifacts" / "validation" / f"{arm}.json").read_text())
        assert report["success"] is True, arm


def test_lora_models_over_one_shared_base(repo):
    root, _, _ = repo
    models = root / "artifacts" / "models"
    base = str(Path("data/math-smoke/base"))
    arm = "teacher_id-distilled"
    for d in (models / f"{arm}-standard", models / f"{arm}-prefix",
              *sorted((models / f"{arm}-experts").iterdir())):
        if not d.is_dir():
            continue
        adapter = json.loads((d / "adapter_config.json").read_text())
        assert adapter["base_model_name_or_path"] == base, d
        assert (d / "adapter_model.safetensors").exists() and not list(d.glob("*.bin")), d
    experts = json.loads((models / f"{arm}-experts" / "modc.json").read_text())
    assert set(experts["experts"]) == {"teacher:alice", "teacher:bob"}
    # prefix: mode tokens were added to the real BPE vocabulary (49,152 tokens) as new ids
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(models / f"{arm}-prefix")
    ids = tok.convert_tokens_to_ids([mode_token("teacher:alice"), mode_token("teacher:bob")])
    assert all(i >= 49152 for i in ids) and len(set(ids)) == 2


def test_samples_for_every_model_and_mode(repo):
    root, _, params = repo
    n = params["sample"]["n"]
    for job, spec in params["train_jobs"].items():
        s = pl.read_parquet(root / "artifacts" / "samples" / f"{job}.parquet")
        modes = 1 if spec["variant"] == "standard" else 2
        assert s.height == params["sample"]["max_problems"] * n * modes, job
        assert s["completion"].null_count() == 0 and s["correct"].dtype == pl.Boolean
        assert s["n_tokens"].max() <= params["sample"]["max_new_tokens"]


def test_evaluation_and_published_cards(repo):
    root, _, params = repo
    art = root / "artifacts"
    summary = json.loads((art / "eval" / "summary.json").read_text())
    assert {"teacher_id/distilled", "gradient_cluster/distilled"} <= set(summary)
    metrics = json.loads((art / "eval" / "metrics.json").read_text())
    assert metrics and finite(metrics)
    assert "Samples verified by task `math`" in (art / "eval" / "results.md").read_text()
    hub = art / "hub"
    ds = list((hub / "datasets" / "modc").iterdir())
    assert len(ds) == 1 and (ds[0] / "README.md").exists()
    cards = {p.parent.name: ModelCard.load(p) for p in (hub / "models" / "modc").glob("*/README.md")}
    assert len(cards) == len(params["train_jobs"])
    for name, card in cards.items():
        assert card.data.library_name == "peft", name
        assert card.data.base_model == "data/math-smoke/base", name  # local target: local base
