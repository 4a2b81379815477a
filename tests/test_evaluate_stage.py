"""The evaluate stage on a profile with no group of models to compare (profiles/champ.yaml: a
reference model for gradient clusters only): results.md holds the label sections from the real
reports written beside it, and the other outputs exist, empty."""

import importlib.util
import json
from pathlib import Path

from modc_data import pipeline
from modc_data.evaluation import build
from modc_data.profiles import load_profile

ROOT = Path(__file__).resolve().parents[1]


def _stage(name: str):
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_labels_only_results(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "ARTIFACTS", tmp_path)
    params = load_profile(ROOT / "profiles" / "champ.yaml", pipeline=True)
    (tmp_path / "metrics" / "gradient_cluster").mkdir(parents=True)
    (tmp_path / "metrics" / "distill").mkdir(parents=True)
    table = {"n": 9, "contingency": {"cluster:0": {"teacher:a": 9}},
             "ari": {m: {"value": 0.5, "low": 0.1, "high": 0.9} for m in ("gradient", "random")}}
    (tmp_path / "metrics" / "gradient_cluster" / "champ.json").write_text(json.dumps(
        {"n_clusters": 4, "silhouette": {"4": 0.02}, "n_train_rows": 9, "agreement": {},
         "baselines": {"original mode (mode)": table}}))
    (tmp_path / "metrics" / "distill" / "champ.json").write_text(json.dumps(
        {"problems": 3, "teachers": {"teacher:a": {"samples": 5, "correct": 2, "pass_rate": 0.4,
                                                   "kept": 2, "rejected_unverifiable": 1}}}))
    stage = _stage("evaluate")
    assert build.arm_specs(params, tmp_path) == {}
    stage.main(params, [])
    out = tmp_path / "eval"
    results = (out / "results.md").read_text()
    assert "No group of models to compare" in results and "teacher_id-champ-standard" in results
    assert "| original mode (mode) | 9 | +0.500 [+0.100, +0.900] | +0.500" in results
    assert "| teacher:a | 5 | 2 | 0.400 | 2 |" in results
    assert json.loads((out / "summary.json").read_text()) == {}
    assert (out / "figures").is_dir() and (out / "plots").is_dir()


def test_a_tagged_rl_modc_model_without_its_own_standard_is_compared_with_the_rl_standard():
    """profiles/rl.yaml's binding-kept prefix model (tag `bind`, no standard of its own) is
    evaluated against the standard model RL'd by the same method at the same RL compute."""
    evaluate = build
    params = load_profile(ROOT / "profiles" / "rl.yaml", pipeline=True)
    assert evaluate.rl_standard(params, "search_algorithm-skewed-bind-prefix") == \
        "search_algorithm-skewed-grpo-standard"
    assert evaluate.rl_standard(params, "search_algorithm-skewed-passk-experts") == \
        "search_algorithm-skewed-passk-standard"
    assert evaluate.rl_standard(params, "search_algorithm-skewed-prefix") is None  # not RL'd
    jobs = dict(params.rl_jobs)
    key = "search_algorithm-skewed-bind-prefix"
    jobs[key] = jobs[key].model_copy(update={"steps": 80})  # unequal RL compute
    slower = params.model_copy(update={"rl_jobs": jobs})
    assert evaluate.rl_standard(slower, "search_algorithm-skewed-bind-prefix") is None
