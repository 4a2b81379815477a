"""The hub target against a loopback HTTP server that stands in for the Hugging Face Hub.

The stand-in answers the routes huggingface_hub 2.4 calls for our publish path (read from its
hf_api.py / _commit_api.py): POST /api/repos/create, GET /api/{type}s/{repo}/tree/main,
POST /api/validate-yaml, POST /api/{type}s/{repo}/preupload/main (always uploadMode 'regular',
HF_HUB_DISABLE_XET=1) and POST /api/{type}s/{repo}/commit/main (NDJSON, base64 file contents).
It stores the files it receives so the test can assert on exactly what arrived.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub.constants
import pytest
from huggingface_hub.utils import sha

from modc_data.config import PublishParams
from modc_data.publish import HubTarget, publish_all
from modc_data.publish.layout import manifest
from tests.test_publish import FAKE_TOKEN, make_release

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
def hub(monkeypatch):
    """(endpoint, state) of a fresh stand-in Hub on 127.0.0.1 (OS-chosen port)."""
    state = {"repos": {}, "commits": [], "auth": []}
    handler = type("Handler", (HubStandIn,), state)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # conftest puts the process offline; the stand-in is loopback, so allow HTTP to it only here
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()
    server.server_close()


def _publish(inputs, endpoint, log):
    return publish_all(
        task=inputs.task, datasets=inputs.datasets, validation_reports=inputs.validation_reports,
        models=inputs.models, summary_path=inputs.summary, params=inputs.params,
        revision=inputs.revision, publish=PublishParams(target="hub", endpoint=endpoint),
        target=HubTarget(endpoint=endpoint), log=log,
    )


def test_hub_publish_one_commit_per_repo_then_noop(hub, tmp_path, capsys):
    endpoint, state = hub
    inputs = make_release(tmp_path / "in", configs=("search_algorithm-balanced",))
    inputs.models = inputs.models[:1]  # the prefix model
    logs: list[str] = []
    first = _publish(inputs, endpoint, logs.append)
    assert [o.status for o in first] == ["published", "published"]

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
    for o in first:
        assert {p for p, _ in o.files} == set(state["repos"][(o.repo_type, o.repo_id)])

    # the token was sent to the server, and never logged or stored
    assert f"Bearer {FAKE_TOKEN}" in state["auth"]
    out = capsys.readouterr()
    assert FAKE_TOKEN not in "\n".join(logs) + out.out + out.err
    for files in state["repos"].values():
        assert not any(FAKE_TOKEN.encode() in b for b in files.values())

    # same artifacts again: no new commit
    second = _publish(inputs, endpoint, logs.append)
    assert [o.status for o in second] == ["unchanged", "unchanged"]
    assert len(state["commits"]) == 2


def test_hub_publish_updates_changed_and_deletes_stale_files(hub, tmp_path):
    endpoint, state = hub
    inputs = make_release(tmp_path / "in", configs=("search_algorithm-balanced",))
    inputs.models = []
    _publish(inputs, endpoint, lambda s: None)
    ds = state["repos"][("dataset", "modc/modc-countdown")]
    ds["old/stale.parquet"] = b"left over from an earlier release"
    inputs.revision = {"git_commit": "1" * 40}  # only the card changes
    _publish(inputs, endpoint, lambda s: None)
    assert state["commits"][-1][2] == ["README.md", "-old/stale.parquet"]
    assert "1" * 40 in ds["README.md"].decode()


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
