"""End to end: the real `dvc repro` on the smoke profile, in a throw-away copy of the repo.

Checks what a user relies on: every stage's outputs appear, metrics and plots are readable by
DVC, a second `dvc repro` does nothing, and a validation-only param change reruns validation
and nothing else.
"""

import json

import polars as pl
import yaml

from tests.smoke import copy_repo, run


def test_repro_builds_every_artifact(smoke_repo):
    root, log = smoke_repo
    art = root / "artifacts"
    problems = pl.read_parquet(art / "data" / "problems.parquet")
    assert set(problems["split"]) >= {"train", "validation", "test", "test_adversarial"}
    for source in ("search_algorithm", "random", "gradient_cluster", "teacher_id"):
        assert list((art / "datasets" / source).glob("*.parquet")), source
    for arm in yaml.safe_load((root / "params.yaml").read_text())["arms"]:
        report = json.loads((art / "validation" / f"{arm}.json").read_text())
        assert report["success"] is True, arm
    assert (art / "models" / "search_algorithm-skewed" / "prefix" / "modc.json").exists()
    assert (art / "eval" / "results.md").read_text().count("|") > 10
    summary = json.loads((art / "eval" / "summary.json").read_text())
    assert "search_algorithm/skewed" in summary
    assert list((art / "eval" / "figures").glob("*.png"))
    assert (art / "hub").is_dir()


def test_metrics_and_plots_visible_to_dvc(smoke_repo):
    root, _ = smoke_repo
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], root))
    text = json.dumps(metrics)
    assert "only_dfs" in text and "only_bfs" in text
    plots = json.loads(run(["dvc", "plots", "show", "--json"], root))
    assert plots, "dvc plots show returned nothing"


def test_second_repro_does_nothing_and_validation_param_reruns_only_validation(smoke_repo, tmp_path):
    root = copy_repo(smoke_repo[0], tmp_path / "repo")  # it edits params.yaml
    again = run(["dvc", "repro"], root)
    assert "Running stage" not in again
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["validation"]["tolerance"] = params["validation"]["tolerance"] + 0.01
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rerun = run(["dvc", "repro"], root)
    ran = {line.split("'")[1] for line in rerun.splitlines() if line.startswith("Running stage")}
    assert any(name.startswith("validate@") for name in ran), rerun
    # Only validation re-runs, plus publish, whose dataset card quotes the validation report;
    # nothing is regenerated, relabeled, retrained, resampled or re-evaluated.
    assert all(name.startswith("validate@") or name == "publish" for name in ran), ran


def test_verifier_edit_marks_sample_and_evaluate_changed(smoke_repo, tmp_path):
    """The verifier that sets `correct` is a dep of sampling and evaluation (issue: stale
    results must not look up to date)."""
    root = copy_repo(smoke_repo[0], tmp_path / "repo")
    assert json.loads(run(["dvc", "status", "--json"], root)) == {}
    with open(root / "modc_data" / "tasks" / "countdown.py", "a") as f:
        f.write("\n# a verifier edit\n")
    status = json.loads(run(["dvc", "status", "--json"], root))

    def verifier_changed(stage):
        return any("modc_data/tasks" in c.get("changed deps", {})
                   for c in status.get(stage, []) if isinstance(c, dict))

    samples = [s for s in status if s.startswith("sample@")]
    assert len(samples) == len(yaml.safe_load((root / "params.yaml").read_text())["train_jobs"])
    assert all(verifier_changed(s) for s in samples), status
    assert verifier_changed("evaluate"), status
