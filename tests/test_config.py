"""Typed params: every profile validates, and malformed params fail with the field named."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modc_data.config import ParamsError, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", ["params.yaml", *sorted(p.name for p in (ROOT / "profiles").glob("*.yaml"))])
def test_every_profile_validates(path):
    full = ROOT / path if path == "params.yaml" else ROOT / "profiles" / path
    params = load_params(full)
    assert params.countdown.budget > 0


def _default() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda d: d["countdown"].update(budget=0), "countdown.budget"),
        (lambda d: d["countdown"].update(budget=-3), "countdown.budget"),
        (lambda d: d["countdown"].update(n_numbers="three"), "countdown.n_numbers"),
        (lambda d: d["train"].update(stepz=10), "train.stepz"),
        (lambda d: d.update(unknown_block={}), "unknown_block"),
        (lambda d: d["labels"]["mixes"].update(bad={"dfs": 0.7, "bfs": 0.7}), "labels.mixes"),
        (lambda d: d["train_jobs"]["search_algorithm-skewed-prefix"].update(mix="nope"), "train_jobs"),
        (lambda d: d["sample"].update(backend="tgi"), "sample.backend"),
        (lambda d: d["train"].update(threads=0), "train.threads"),
        (lambda d: d["sample"].update(threads="all"), "sample.threads"),
        (lambda d: d["gradient_cluster"].update(threads=True), "gradient_cluster.threads"),
        (lambda d: d["sample"].update(decoder="beam"), "sample.decoder"),
    ],
)
def test_malformed_params_name_the_field(edit, field):
    data = _default()
    edit(data)
    with pytest.raises(ParamsError) as err:
        parse_params(data)
    assert field in str(err.value)


def test_stage_fails_before_any_work(tmp_path):
    """A stage run on a bad params.yaml exits non-zero, names the field and writes nothing."""
    data = _default()
    data["countdown"]["budget"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "generate.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode != 0
    assert "countdown.budget" in proc.stderr
    assert not (tmp_path / "artifacts").exists()


def test_yaml_that_is_not_a_mapping(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ParamsError, match="mapping"):
        load_params(bad)
