"""The smoke pipeline, built once per test session: a throw-away copy of the repo on which the
real `dvc repro` ran with profiles/smoke.yaml (the ``smoke_repo`` fixture in conftest.py).

Tests that change the copy (params, remotes, published folders) work on ``copy_repo(...)`` of it,
so they do not depend on the order tests run in.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

from modc_data.profiles import write_params

ROOT = Path(__file__).resolve().parents[1]


def env(**extra: str) -> dict[str, str]:
    """This process's environment with the venv's `dvc`/`python` first on PATH."""
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e['PATH']}"
    e.pop("TQDM_DISABLE", None)
    e.update(extra)
    return e


def run(args, cwd, timeout=1500, **extra_env: str) -> str:
    """Run a command; its stdout+stderr, or an AssertionError with both when it fails."""
    proc = subprocess.run(args, cwd=cwd, env=env(**extra_env), capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"{args} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


def copy_tracked(dst: Path) -> Path:
    """The repo's tracked and unignored files, copied to ``dst`` (what a fresh clone holds)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    return dst


def build(dst: Path, profile: str = "smoke", before=None) -> tuple[Path, str]:
    """Copy the repo's tracked and unignored files to ``dst``, commit them, `dvc repro` on
    ``profiles/<profile>.yaml``; ``before(dst)`` runs first (e.g. writes a profile's inputs)."""
    copy_tracked(dst)
    write_params(ROOT / "profiles" / f"{profile}.yaml", dst / "params.yaml")  # composed
    if before is not None:
        before(dst)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "smoke"]):
        subprocess.run(cmd, cwd=dst, check=True, capture_output=True)
    # PYTHONPATH: the stages import this copy's modc_data, whichever checkout is pip-installed
    return dst, run(["dvc", "repro"], dst, PYTHONPATH=str(dst))


def copy_repo(src: Path, dst: Path) -> Path:
    """A private copy of a built smoke repo (git, DVC cache, outputs) that a test may change."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def built_profile(tmp_path_factory, profile: str, before=None) -> tuple[Path, str, dict]:
    """(repo, `dvc repro` log, its params) of ``profiles/<profile>.yaml`` built by ``build``."""
    import yaml

    dst, log = build(tmp_path_factory.mktemp(profile) / "repo", profile, before=before)
    return dst, log, yaml.safe_load((dst / "params.yaml").read_text())


def finite(x) -> bool:
    """True when every float in a JSON-like value (dicts, lists) is finite."""
    if isinstance(x, dict):
        return all(finite(v) for v in x.values())
    if isinstance(x, list):
        return all(finite(v) for v in x)
    return not isinstance(x, float) or math.isfinite(x)


def free_port() -> int:
    """A loopback TCP port nothing listens on now (for a server a test starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(url: str, proc, log_path, timeout_s: float = 120, what: str = "server") -> None:
    """Block until ``{url}/health`` answers 200; RuntimeError with the log's tail when the
    server process ends first or ``timeout_s`` passes."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start:\n{Path(log_path).read_text()[-4000:]}")
        time.sleep(0.5)
