"""What a downloader runs, against a real Hub mirror: the smoke pipeline's published local hub
folder, each repo made a git repo, served read-only by olah (a Hugging Face mirror server,
started offline on 127.0.0.1 by the test) to the real huggingface_hub / datasets clients in a
fresh process with HF_ENDPOINT pointed at it and HF_HUB_OFFLINE unset.

olah lives in .venv-olah (`make setup`): it pins psutil 5.x, older than the main environment's.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import polars as pl
import pytest

from tests.smoke import ROOT

OLAH = ROOT / ".venv-olah" / "bin" / "olah-cli"
pytestmark = pytest.mark.skipif(not OLAH.exists(),
                                reason="needs .venv-olah with olah 0.5.4: run `make setup`")
NS = "modc"
DATASET = f"{NS}/modc-countdown"
CONFIG = "search_algorithm-skewed"
PREFIX = f"{NS}/modc-countdown-search_algorithm-skewed-prefix"
EXPERTS = f"{NS}/modc-countdown-search_algorithm-balanced-experts"


def _git_repo(path: Path) -> None:
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "release"]):
        subprocess.run(cmd, cwd=path, check=True, capture_output=True)


@pytest.fixture(scope="module")
def mirror(smoke_repo, tmp_path_factory):
    """(endpoint, smoke root): olah serving artifacts/hub/{datasets,models}/<ns>/<repo>."""
    root = tmp_path_factory.mktemp("olah")
    hub = smoke_repo[0] / "artifacts" / "hub"
    for kind in ("datasets", "models"):
        shutil.copytree(hub / kind, root / "mirrors" / kind)
        for repo in (root / "mirrors" / kind / NS).iterdir():
            _git_repo(repo)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # offline: answer from the mirrors only; the upstream is a loopback discard port anyway
    (root / "olah.toml").write_text(f"""
[basic]
host = "127.0.0.1"
port = {port}
repos-path = "{root / 'cache'}"
mirrors-path = ["{root / 'mirrors'}"]
hf-netloc = "127.0.0.1:9"
hf-lfs-netloc = "127.0.0.1:9"
[accessibility]
offline = true
""")
    log = (root / "olah.log").open("w")
    proc = subprocess.Popen([str(OLAH), "-c", str(root / "olah.toml")], cwd=root, stdout=log,
                            stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/api/models/{PREFIX}/revision/main", timeout=5)
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"olah did not start:\n{(root / 'olah.log').read_text()[-3000:]}")
                time.sleep(0.3)
        yield endpoint, smoke_repo[0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _client_env(endpoint: str, hf_home: Path) -> dict[str, str]:
    """A downloader's environment: online, our mirror as the Hub, an empty cache."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"}}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(hf_home), HF_HUB_DISABLE_XET="1",
               PYTHONPATH=str(ROOT))
    return env


def _modc(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modc_data.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_load_dataset_sampler_and_modc_download_through_the_mirror(mirror, tmp_path):
    endpoint, smoke = mirror
    env = _client_env(endpoint, tmp_path / "hf_home")
    code = f"""
import json, collections, datasets
from modc_data.sampler import ModCSampler
ds = datasets.load_dataset({DATASET!r}, {CONFIG!r})
out = {{"splits": sorted(ds), "train_ids": sorted(ds["train"]["id"])}}
for repo in ({PREFIX!r}, {EXPERTS!r}):
    s = ModCSampler.from_pretrained(repo)
    res = s.sample(["numbers 3 7 9 target 22"], k=8, split="uniform", max_new_tokens=4)[0]
    kk = max(s.info.allocation, key=int) if s.info.allocation else "8"  # a validated k
    auto = s.sample(["numbers 3 7 9 target 22"], k=int(kk), max_new_tokens=4)[0]
    out[repo] = {{"modes": s.modes, "path": str(s.path),
                 "per_mode": collections.Counter(m for m, _ in res),
                 "auto": collections.Counter("free" if m is None else m for m, _ in auto),
                 "shipped": s.info.allocation.get(kk)}}
print(json.dumps(out))
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    rows = pl.read_parquet(smoke / "artifacts" / "datasets" / "search_algorithm" / "skewed.parquet")
    assert got["train_ids"] == sorted(rows.filter(pl.col("split") == "train")["id"])
    assert "train" in got["splits"] and "test" in got["splits"]
    for repo in (PREFIX, EXPERTS):
        modes = got[repo]["modes"]
        assert len(modes) == 2 and got[repo]["per_mode"] == {m: 4 for m in modes}, got[repo]
        # split="auto" (the default) follows the allocation shipped in the downloaded modc.json
        # (the free-sampling prefix model's, validated by the evaluate stage); none: uniform
        shipped = got[repo]["shipped"]
        want = ({a: m for a, m in shipped["counts"].items() if m} if shipped else {m: 4 for m in modes})
        assert got[repo]["auto"] == want, got[repo]
        assert str(tmp_path / "hf_home") in got[repo]["path"]  # downloaded, not a local folder
    assert got[PREFIX]["shipped"] and not got[EXPERTS]["shipped"]

    # `modc download`: the dataset config as Hub-layout parquet, the model as its files
    r = _modc(env, "download", DATASET, "--config", CONFIG, "--local-dir", str(tmp_path / "ds"))
    assert r.returncode == 0, r.stderr[-3000:]
    train = pl.read_parquet(tmp_path / "ds" / CONFIG / "train-00000-of-00001.parquet")
    assert sorted(train["id"]) == got["train_ids"]
    r = _modc(env, "download", EXPERTS, "--local-dir", str(tmp_path / "model"))
    assert r.returncode == 0, r.stderr[-3000:]
    published = smoke / "artifacts" / "hub" / "models" / EXPERTS
    for f in published.rglob("*"):
        if f.is_file():
            assert (tmp_path / "model" / f.relative_to(published)).read_bytes() == f.read_bytes(), f


def test_unknown_repo_or_config_is_one_line_and_exit_2(mirror, tmp_path):
    endpoint, _ = mirror
    env = _client_env(endpoint, tmp_path / "hf_home")
    cases = [
        (("download", f"{NS}/no-such-model", "--local-dir", str(tmp_path / "x")),
         f"{NS}/no-such-model: no model repo of that id at {endpoint}"),
        (("download", DATASET), "; for a dataset pass --config <name>"),
        (("download", DATASET, "--config", "typo"),
         f"--config 'typo': {DATASET} has no such config; its configs are:"),
        (("sample", f"{NS}/no-such-model", "--prompt", "hi"),
         f"{NS}/no-such-model: no model repo of that id at {endpoint}"),
    ]
    for args, says in cases:
        r = _modc(env, *args)
        errors = [line for line in r.stderr.splitlines() if line.startswith("modc ")]
        assert r.returncode == 2 and len(errors) == 1 and says in errors[0], r.stderr[-3000:]
        assert "Traceback" not in r.stderr
