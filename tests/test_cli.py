"""Clear errors where a person meets them: the real `modc` CLI and real stage scripts, run in a
subprocess. Each expected failure exits 2 with one line that names the input and the fix;
an unexpected exception keeps its traceback.

(Unknown repos and configs on a Hub are in test_hub_download.py, the offline / unreachable Hub
at publish time in test_hub_target.py.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modc_data.profiles import compose, write_params
from tests.tiny_models import make_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _run(args, cwd=REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def _one_line(r: subprocess.CompletedProcess, prefix: str) -> str:
    """The single error line of an expected failure (exit 2, no traceback)."""
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = [line for line in r.stderr.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, r.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "no_modc").mkdir()
    (root / "no_modc" / "config.json").write_text("{}")
    bad = make_tiny_checkpoint(root / "bad_modc", "prefix", ["dfs", "bfs"])
    (bad / "modc.json").write_text('{"variant": "prefix", "modes": ["dfs"], "oops": 1}')
    broken = make_tiny_checkpoint(root / "broken_config", "prefix", ["dfs", "bfs"])
    (broken / "config.json").write_text("{ not json")
    return root


CLI_CASES = {
    "bad --split JSON": (["sample", "m", "--prompt", "p", "--split", "{dfs: 1}"],
                         ["--split '{dfs: 1}': not valid JSON", "'uniform', 'free', 'standard' (with --standard) or a JSON object"]),
    "--split not an object": (["sample", "m", "--prompt", "p", "--split", "[1, 2]"],
                              ["--split '[1, 2]': not a JSON object of numbers"]),
    "folder without modc.json": (["sample", "{root}/no_modc", "--prompt", "p"],
                                 ["no_modc: no modc.json; this is not a modc-data checkpoint"]),
    "malformed modc.json": (["sample", "{root}/bad_modc", "--prompt", "p"],
                            ["bad_modc/modc.json: malformed modc.json", "re-download or re-train"]),
    "neither folder nor repo id": (["download", "no/such/folder"],
                                   ["no/such/folder: no such folder, and not a Hub repo id"]),
    "missing --inputs file": (["publish", "--inputs", "{root}/release.json"],
                              ["release.json: no such file", "dvc repro"]),
    "release inputs not JSON": (["publish", "--inputs", "{root}/no_modc/config.json"],
                                ["malformed release inputs"]),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_expected_failures_are_one_line_exit_2(case, folders):
    args, says = CLI_CASES[case]
    args = [a.replace("{root}", str(folders)) for a in args]
    line = _one_line(_run(["-m", "modc_data.cli", *args]), f"modc {args[0]}: error: ")
    for s in says:
        assert s in line, line


def test_cli_bad_arguments_name_the_argument():
    r = _run(["-m", "modc_data.cli", "sample", "somewhere"])
    assert r.returncode == 2 and "the following arguments are required: --prompt" in r.stderr


def test_cli_unexpected_error_keeps_its_traceback(folders):
    """A checkpoint whose config.json is corrupt is not a mistake we foresaw: full traceback."""
    r = _run(["-m", "modc_data.cli", "sample", str(folders / "broken_config"), "--prompt", "p",
              "-k", "2", "--max-new-tokens", "2"])
    assert r.returncode == 1 and "Traceback (most recent call last)" in r.stderr, r.stderr[-2000:]


STAGE = '''
import sys
from modc_data import pipeline
from modc_data.errors import InputError

def main(params, argv):
    what = argv[0]
    if what == "input":
        raise InputError("data.parquet: column 'mode' is missing; re-run the label stage")
    if what == "missing":
        open("artifacts/nowhere.parquet")
    if what == "bug":
        raise ValueError("an internal invariant broke")

pipeline.run(main)
'''


def test_pipeline_run_one_line_for_expected_traceback_for_bugs(tmp_path):
    profile = yaml.safe_dump(compose(REPO / "profiles" / "smoke.yaml"), sort_keys=False)
    (tmp_path / "params.yaml").write_text(profile)
    (tmp_path / "stage.py").write_text(STAGE)
    line = _one_line(_run(["stage.py", "input"], cwd=tmp_path), "[stage] error: ")
    assert "data.parquet: column 'mode' is missing; re-run the label stage" in line
    line = _one_line(_run(["stage.py", "missing"], cwd=tmp_path), "[stage] error: ")
    assert "artifacts/nowhere.parquet: no such file" in line and "dvc repro" in line
    r = _run(["stage.py", "bug"], cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" in r.stderr and "an internal invariant broke" in r.stderr
    (tmp_path / "params.yaml").write_text(profile.replace("seed: 1234", "seed: one"))  # bad params
    r = _run(["stage.py", "input"], cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "[stage] error: params.yaml: invalid params" in r.stderr and "seed" in r.stderr


def test_real_stages_bad_argument_and_missing_inputs(tmp_path):
    """A train job that does not exist, and publishing before anything was trained."""
    write_params(REPO / "profiles" / "smoke.yaml", tmp_path / "params.yaml")
    for stage in ("train", "publish"):
        shutil.copy(REPO / "stages" / f"{stage}.py", tmp_path / f"{stage}.py")
    line = _one_line(_run(["train.py", "no-such-job"], cwd=tmp_path), "[train] error: ")
    assert "usage: train.py <job>; jobs are [" in line and "search_algorithm-skewed-prefix" in line
    line = _one_line(_run(["publish.py"], cwd=tmp_path), "[publish] error: ")
    assert "no modc.json" in line and "train" in line
    assert not (tmp_path / "artifacts" / "hub").exists()
