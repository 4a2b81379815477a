"""Profiles are overlays of one base, composed the same way by every tool; `make repro
PROFILE=<name>` runs in runs/<name>/ and leaves the checkout's tracked files as they were."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modc_data.config import ParamsError, load_params
from modc_data.profiles import ProfileError, compose, load_profile, merge, workspace
from tests.smoke import copy_tracked, env

ROOT = Path(__file__).resolve().parents[1]


def test_merge_replaces_named_collections_and_merges_blocks():
    base = {"seed": 1, "train": {"steps": 10, "lr": 0.1}, "train_jobs": {"a": {"x": 1}, "b": {}},
            "labels": {"sources": ["s"], "mixes": {"m1": {}, "m2": {}}}}
    over = {"train": {"steps": 3}, "train_jobs": {"c": {"x": 2}}, "labels": {"mixes": {"m3": {}}}}
    out = merge(base, over)
    assert out["train"] == {"steps": 3, "lr": 0.1}  # a block merges key by key
    assert out["train_jobs"] == {"c": {"x": 2}}  # a profile lists its own jobs
    assert out["labels"] == {"sources": ["s"], "mixes": {"m3": {}}}
    assert base["train"]["steps"] == 10  # nothing changed in place


def test_every_profile_is_an_overlay_smaller_than_its_composition():
    for path in sorted((ROOT / "profiles").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        assert raw.get("base") in ("params.yaml", "profiles/champ.yaml"), path
        full = compose(path)
        composed = yaml.safe_dump(full, sort_keys=False, default_flow_style=None)
        assert "base" not in full, path
        assert len(path.read_text().splitlines()) < len(composed.splitlines()), path
        assert load_profile(path, pipeline=True).task == full["task"]
        with pytest.raises(ParamsError, match="a profile .an overlay of .*make repro PROFILE"):
            load_params(path)  # the stages read full params files only


def test_compose_errors_name_the_file(tmp_path):
    (tmp_path / "profiles").mkdir()
    a, b = tmp_path / "profiles" / "a.yaml", tmp_path / "profiles" / "b.yaml"
    a.write_text("base: profiles/b.yaml\nseed: 1\n")
    b.write_text("base: profiles/a.yaml\n")
    with pytest.raises(ProfileError, match="cycle"):
        compose(a)
    b.write_text("base: params.yaml\n")  # no params.yaml there
    with pytest.raises(ParamsError, match=r"params.yaml: params file not found"):
        load_profile(a)


def test_workspace_runs_dvc_and_leaves_the_checkout_clean(tmp_path):
    """A fresh clone's `make repro PROFILE=smoke` path: runs/smoke/ holds the composed params;
    dvc repro runs there without git; the clone's git status stays clean."""
    repo = copy_tracked(tmp_path / "clone")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "c"]):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-m", "modc_data.profiles", "workspace", "smoke"],
                         cwd=repo, capture_output=True, text=True, env=env(PYTHONPATH=str(repo)))
    assert out.returncode == 0, out.stderr
    ws = Path(out.stdout.strip())
    assert ws == repo / "runs" / "smoke" and (ws / "stages" / "train.py").is_file()
    assert yaml.safe_load((ws / "params.yaml").read_text()) == compose(ROOT / "profiles" / "smoke.yaml")
    proc = subprocess.run(["dvc", "repro", "generate"], cwd=ws, capture_output=True, text=True,
                          env=env(PYTHONPATH=str(ws)), timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (ws / "artifacts" / "data" / "problems.parquet").is_file() and (ws / "dvc.lock").is_file()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True,
                            text=True, check=True).stdout
    assert status == "", status
    assert workspace("smoke", repo) == ws  # a second call refreshes the same workspace
    bad = subprocess.run([sys.executable, "-m", "modc_data.profiles", "workspace", "nope"],
                         cwd=repo, capture_output=True, text=True, env=env(PYTHONPATH=str(repo)))
    assert bad.returncode == 2 and "no profile" in bad.stderr and "'smoke'" in bad.stderr
