"""The hub target against a loopback HTTP server that stands in for the Hugging Face Hub.

The stand-in answers the routes huggingface_hub 2.4 calls for our publish path (read from its
hf_api.py / _commit_api.py): POST /api/repos/create, GET /api/{type}s/{repo}/tree/main,
POST /api/validate-yaml, POST /api/{type}s/{repo}/preupload/main (always uploadMode 'regular',
HF_HUB_DISABLE_XET=1) and POST /api/{type}s/{repo}/commit/main (NDJSON, base64 file contents).
It stores the files it receives so the test can assert on exactly what arrived.

Publishing runs as a user runs it -- `modc publish`, or the publish stage through `dvc repro` --
in a subprocess whose environment is real: HF_HUB_OFFLINE=0 set by the user opts in to the
network, HF_HUB_OFFLINE=1 (or unset: the stages default it to 1) fails with one line before
any request. Nothing patches huggingface_hub's offline flag.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from huggingface_hub.utils import sha

from modc_data.params_blocks import PublishParams
from modc_data.publish import publish_all
from modc_data.publish.layout import manifest
from tests.smoke import copy_repo
from tests.test_publish import FAKE_TOKEN, make_release

REPO = Path(__file__).resolve().parents[1]

REPO_ROUTE = re.compile(r"^/api/(models|datasets)/([^/]+/[^/]+)/(tree|preupload|commit|revision)/main")


class HubStandIn(BaseHTTPRequestHandler):
    """Minimal Hub API: repos -> {path: bytes}; records commits and auth headers."""

    repos: dict[tuple[str, str], dict[str, bytes]]
    commits: list[tuple[str, str, list[str]]]
    auth: list[str]

    def log_message(self, *args):  # keep test output clean
        pass

    def _json(self, obj, status=200):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def do_HEAD(self):  # the publish pre-flight: is anyone there?
        self.auth.append(self.headers.get("authorization", ""))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        self.auth.append(self.headers.get("authorization", ""))
        m = REPO_ROUTE.match(self.path)
        if not m:
            return self._json({"error": f"unknown route {self.path}"}, 404)
        kind, repo_id, op = m.group(1)[:-1], m.group(2), m.group(3)
        files = self.repos.get((kind, repo_id))
        if files is None:
            return self._json({"error": "Repository not found"}, 404)
        if op == "tree":
            return self._json([{"type": "file", "path": p, "size": len(b), "oid": sha.git_hash(b)}
                               for p, b in sorted(files.items())])
        return self._json({"id": repo_id, "sha": hashlib.sha1(repr(sorted(files)).encode()).hexdigest()})

    def do_POST(self):
        self.auth.append(self.headers.get("authorization", ""))
        body = self._body()
        if self.path == "/api/validate-yaml":
            return self._json({})
        if self.path == "/api/repos/create":
            p = json.loads(body)
            kind, repo_id = p.get("type") or "model", f"{p['organization']}/{p['name']}"
            prefix = "" if kind == "model" else f"{kind}s/"
            url = f"http://{self.headers['host']}/{prefix}{repo_id}"
            if (kind, repo_id) in self.repos:  # the Hub answers 409 with the repo's url
                return self._json({"error": "You already created this repo", "url": url}, 409)
            self.repos[(kind, repo_id)] = {}
            return self._json({"url": url})
        m = REPO_ROUTE.match(self.path)
        if not m or (m.group(1)[:-1], m.group(2)) not in self.repos:
            return self._json({"error": "Repository not found"}, 404)
        kind, repo_id, op = m.group(1)[:-1], m.group(2), m.group(3)
        files = self.repos[(kind, repo_id)]
        if op == "preupload":
            req = json.loads(body)["files"]
            return self._json({"files": [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                 "oid": sha.git_hash(files[f["path"]]) if f["path"] in files else None}
                for f in req]})
        if op == "commit":
            lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
            changed = []
            for item in lines:
                if item["key"] == "file":
                    v = item["value"]
                    assert v["encoding"] == "base64"
                    files[v["path"]] = base64.b64decode(v["content"])
                    changed.append(v["path"])
                elif item["key"] == "deletedFile":
                    files.pop(item["value"]["path"], None)
                    changed.append("-" + item["value"]["path"])
            self.commits.append((kind, repo_id, changed))
            oid = hashlib.sha1(f"{repo_id}{len(self.commits)}".encode()).hexdigest()
            prefix = "" if kind == "model" else f"{kind}s/"
            url = f"http://{self.headers['host']}/{prefix}{repo_id}/commit/{oid}"
            return self._json({"commitUrl": url, "commitOid": oid})
        return self._json({"error": "unsupported"}, 400)


@pytest.fixture
def hub():
    """(endpoint, state) of a fresh stand-in Hub on 127.0.0.1 (OS-chosen port)."""
    state = {"repos": {}, "commits": [], "auth": []}
    handler = type("Handler", (HubStandIn,), state)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()
    server.server_close()


def _env(offline: str | None, **extra: str) -> dict[str, str]:
    """A user's environment: HF_HUB_OFFLINE as given (None: unset), a token, no Xet."""
    env = {k: v for k, v in os.environ.items() if k not in {"HF_HUB_OFFLINE", "TQDM_DISABLE"}}
    env.update(HF_TOKEN=FAKE_TOKEN, HF_HUB_DISABLE_XET="1", PYTHONPATH=str(REPO),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}", **extra)
    if offline is not None:
        env["HF_HUB_OFFLINE"] = offline
    return env


def _modc_publish(inputs, endpoint: str, tmp_path: Path, offline: str | None = "0"):
    """`modc publish --target hub` of ``inputs`` to ``endpoint`` in a subprocess."""
    params, spec = tmp_path / "params.yaml", tmp_path / "release.json"
    params.write_text(yaml.safe_dump({"publish": {"target": "hub", "endpoint": endpoint}}))
    spec.write_text(inputs.to_json())
    return subprocess.run([sys.executable, "-m", "modc_data.cli", "publish", "--params",
                           str(params), "--inputs", str(spec)], cwd=REPO, env=_env(offline),
                          capture_output=True, text=True, timeout=600)


def _one_error_line(r: subprocess.CompletedProcess, prefix: str) -> str:
    assert r.returncode == 2 and "Traceback" not in r.stderr, (r.returncode, r.stderr[-3000:])
    lines = [line for line in r.stderr.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, r.stderr[-3000:]
    return lines[0]


def test_hub_publish_one_commit_per_repo_then_noop(hub, tmp_path):
    endpoint, state = hub
    inputs = make_release(tmp_path / "in", configs=("search_algorithm-balanced",))
    inputs.models = inputs.models[:1]  # the prefix model
    first = _modc_publish(inputs, endpoint, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 repos, 2 published, 0 unchanged" in first.stdout

    # one commit per repo, and the files that arrived are exactly the staged ones, byte for byte
    assert [(k, r) for k, r, _ in state["commits"]] == [
        ("dataset", "modc/modc-countdown"),
        ("model", "modc/modc-countdown-search_algorithm-balanced-prefix")]
    ds = state["repos"][("dataset", "modc/modc-countdown")]
    assert {"README.md", "search_algorithm-balanced/train-00000-of-00001.parquet",
            "search_algorithm-balanced/test-00000-of-00001.parquet"} <= set(ds)
    model = state["repos"][("model", "modc/modc-countdown-search_algorithm-balanced-prefix")]
    assert {"model.safetensors", "modc.json", "config.json", "README.md"} <= set(model)
    assert json.loads(model["modc.json"])["variant"] == "prefix"
    local = manifest(Path(inputs.models[0].checkpoint))
    assert hashlib.sha256(model["model.safetensors"]).hexdigest() == local["model.safetensors"].sha256
    assert set(model) == {p for p in local if not p.startswith("checkpoint")} | {
        "README.md", "figures/passk_search_algorithm-balanced_test.png"}

    # the token was sent to the server, and never logged or stored
    assert f"Bearer {FAKE_TOKEN}" in state["auth"]
    assert FAKE_TOKEN not in first.stdout + first.stderr
    for files in state["repos"].values():
        assert not any(FAKE_TOKEN.encode() in b for b in files.values())

    # same artifacts again: no new commit
    second = _modc_publish(inputs, endpoint, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "2 repos, 0 published, 2 unchanged" in second.stdout
    assert len(state["commits"]) == 2


def test_hub_publish_updates_changed_and_deletes_stale_files(hub, tmp_path):
    endpoint, state = hub
    inputs = make_release(tmp_path / "in", configs=("search_algorithm-balanced",))
    inputs.models = []
    assert _modc_publish(inputs, endpoint, tmp_path).returncode == 0
    ds = state["repos"][("dataset", "modc/modc-countdown")]
    ds["old/stale.parquet"] = b"left over from an earlier release"
    inputs.revision = {"git_commit": "1" * 40}  # only the card changes
    r = _modc_publish(inputs, endpoint, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert state["commits"][-1][2] == ["README.md", "-old/stale.parquet"]
    assert "1" * 40 in ds["README.md"].decode()


def test_hub_offline_or_unreachable_fails_in_one_line_before_any_request(hub, tmp_path):
    endpoint, state = hub
    inputs = make_release(tmp_path / "in", configs=("search_algorithm-balanced",))
    # set by the user (`modc` itself leaves it unset: downloading is its job)
    line = _one_error_line(_modc_publish(inputs, endpoint, tmp_path, "1"), "modc publish: error: ")
    assert "publish.target is 'hub' but HF_HUB_OFFLINE=1 forbids network access" in line
    assert "HF_HUB_OFFLINE=0 make repro" in line and "publish.target: local" in line
    assert state["auth"] == [] and state["repos"] == {}  # no request reached the server
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    line = _one_error_line(_modc_publish(inputs, dead, tmp_path), "modc publish: error: ")
    assert f"publish.endpoint {dead} is unreachable" in line and "publish.target: local" in line


def test_hub_dry_run_sends_nothing(hub, tmp_path):
    endpoint, state = hub
    inputs = make_release(tmp_path / "in", configs=("search_algorithm-balanced",))
    lines: list[str] = []
    outcomes = publish_all(
        task=inputs.task, datasets=inputs.datasets, validation_reports=inputs.validation_reports,
        models=inputs.models, summary_path=inputs.summary, params={}, revision={},
        publish=PublishParams(target="hub", endpoint=endpoint), dry_run=True, log=lines.append)
    assert {o.status for o in outcomes} == {"dry_run"} and len(outcomes) == 3
    assert state["auth"] == [] and state["repos"] == {}  # no request reached the server
    assert any(endpoint + "/datasets/modc/modc-countdown" in line for line in lines)


def test_makefile_offline_defaults_only_where_unset():
    probe = ["make", "-s", "--no-print-directory", "--eval",
             "_probe: ; @echo $$HF_HUB_OFFLINE $$HF_DATASETS_OFFLINE $$DVC_NO_ANALYTICS", "_probe"]
    for offline, want in ((None, "1 1 1"), ("0", "0 1 1"), ("1", "1 1 1")):
        r = subprocess.run(probe, cwd=REPO, env=_env(offline), capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.split() == want.split(), (offline, r.stdout, r.stderr)


def test_publish_stage_to_the_hub_through_dvc_repro(smoke_repo, hub, tmp_path):
    """`HF_HUB_OFFLINE=0 make repro` with publish.target: hub: the stage pushes every repo; with
    HF_HUB_OFFLINE=1 (or unset) it stops with one line before any request."""
    endpoint, state = hub
    root = copy_repo(smoke_repo[0], tmp_path / "repo")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["publish"].update(target="hub", endpoint=endpoint)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for offline in ("1", None):
        r = subprocess.run([sys.executable, "stages/publish.py"], cwd=root, env=_env(offline),
                           capture_output=True, text=True, timeout=600)
        line = _one_error_line(r, "[publish] error: ")
        assert "HF_HUB_OFFLINE=1 forbids network access" in line, line
    assert state["auth"] == []

    r = subprocess.run(["dvc", "repro", "publish"], cwd=root, env=_env("0"), capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "Running stage 'publish'" in r.stdout
    want = {("dataset", "modc/modc-countdown")} | {
        ("model", f"modc/modc-countdown-{job}") for job in [*params["train_jobs"], *params["rl_jobs"]]}
    assert {(k, repo) for k, repo, _ in state["commits"]} == want
    configs = yaml.safe_load(
        state["repos"][("dataset", "modc/modc-countdown")]["README.md"].decode().split("---")[1])
    assert {c["config_name"] for c in configs["configs"]} == set(params["arms"])
