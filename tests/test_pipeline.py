"""End to end: the real `dvc repro` on the smoke profile, in a throw-away copy of the repo.

Checks what a user relies on: every stage's outputs appear, metrics and plots are readable by
DVC, a second `dvc repro` does nothing, and a validation-only param change reruns validation
and nothing else.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("TQDM_DISABLE", None)
    return env


def _run(args, cwd, timeout=1500):
    proc = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    dst = tmp_path_factory.mktemp("pipeline") / "repo"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    shutil.copy2(ROOT / "profiles" / "smoke.yaml", dst / "params.yaml")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "smoke"]):
        subprocess.run(cmd, cwd=dst, check=True, capture_output=True)
    log = _run(["dvc", "repro"], dst)
    return dst, log


def test_repro_builds_every_artifact(repo):
    root, log = repo
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


def test_metrics_and_plots_visible_to_dvc(repo):
    root, _ = repo
    metrics = json.loads(_run(["dvc", "metrics", "show", "--json"], root))
    text = json.dumps(metrics)
    assert "only_dfs" in text and "only_bfs" in text
    plots = json.loads(_run(["dvc", "plots", "show", "--json"], root))
    assert plots, "dvc plots show returned nothing"


def test_second_repro_does_nothing_and_validation_param_reruns_only_validation(repo):
    """Runs last in this module: it edits params.yaml of the shared copy."""
    root, _ = repo
    again = _run(["dvc", "repro"], root)
    assert "Running stage" not in again
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["validation"]["tolerance"] = params["validation"]["tolerance"] + 0.01
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rerun = _run(["dvc", "repro"], root)
    ran = {line.split("'")[1] for line in rerun.splitlines() if line.startswith("Running stage")}
    assert any(name.startswith("validate@") for name in ran), rerun
    # Only validation re-runs, plus publish, whose dataset card quotes the validation report;
    # nothing is regenerated, relabeled, retrained, resampled or re-evaluated.
    assert all(name.startswith("validate@") or name == "publish" for name in ran), ran
