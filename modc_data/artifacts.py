"""Writing pipeline outputs safely, and recording what made them.

Every writer here goes to a temporary sibling first and renames it into place, so an interrupted
stage never leaves a half-written file where a finished one used to be.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl

OFFLINE_ENV = {
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def set_offline_env() -> None:
    """Default the no-network, no-telemetry variables (a user's explicit setting wins)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("HF_HOME", str(Path(".hf_home").resolve()))


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_atomic(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it into place: the
    project's one way to write a file, so a crash never leaves a half-written one behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        write(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def write_parquet(df: pl.DataFrame, path: str | Path) -> Path:
    return write_atomic(path, df.write_parquet)


def write_json(data: Any, path: str | Path) -> Path:
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_text(text: str, path: str | Path) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, path)


def replace_dir(src: str | Path, dst: str | Path) -> Path:
    """Put the finished folder ``src`` in the place of ``dst`` by renames only (same
    filesystem), so ``dst`` is never half-written: the old ``dst`` is moved aside, then removed;
    if the second rename fails the old one is put back."""
    src, dst = Path(src), Path(dst)
    old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        os.replace(dst, old)
    try:
        os.replace(src, dst)
    except OSError:
        if old.exists():
            os.replace(old, dst)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return dst


def frame_hash(df: pl.DataFrame, columns: list[str] | None = None) -> str:
    """Order-independent content hash of selected columns (default: ``id``)."""
    cols = columns or ["id"]
    h = hashlib.sha256()
    for row in sorted(df.select(cols).iter_rows()):
        h.update(repr(row).encode())
    return h.hexdigest()[:16]


def revision_info(root: str | Path = ".") -> dict[str, Any]:
    """Git commit (and whether the tree was dirty) and the dvc.lock hash, for provenance."""
    root = Path(root)
    info: dict[str, Any] = {}
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()
        info["git_dirty"] = bool(dirty)
    except (OSError, subprocess.CalledProcessError):
        info["git_commit"] = None
    lock = root / "dvc.lock"
    if lock.exists():
        info["dvc_lock_sha256"] = hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    return info


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
