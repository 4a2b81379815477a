"""Row schema of a mode-labeled dataset (DESIGN.md) and the stable ids rows are keyed by.

What goes in: task name, prompt, completion and labels. What comes out: polars frames whose
columns and dtypes are exactly ``ROW_SCHEMA``; ``meta`` is a JSON-encoded string so that every
label source can store its own details without changing the parquet schema.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl

from modc_data.errors import InputError

# Model key of a free-sampling prefix model's samples drawn with no mode token: "<job key>:free"
# (written by sampling.run, read by evaluation.policy_sections).
FREE_MODEL_SUFFIX = ":free"

ROW_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "problem_id": pl.String(),
    "task": pl.String(),
    "prompt": pl.String(),
    "completion": pl.String(),
    "answer": pl.String(),
    "mode": pl.String(),
    "label_source": pl.String(),
    "split": pl.String(),
    "correct": pl.Boolean(),
    "meta": pl.String(),  # JSON object: budget, nodes expanded, teacher id, cluster distance …
}

LABEL_SOURCES = ("search_algorithm", "teacher_id", "gradient_cluster", "random")
SPLITS = ("train", "validation", "test", "test_adversarial", "validation_adversarial")


def _digest(*parts: str, length: int = 16) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\x1f")  # unit separator: ("ab","c") and ("a","bc") hash differently
    return h.hexdigest()[:length]


def problem_id(task: str, problem_key: str) -> str:
    """Stable hash of a problem (e.g. ``"3 7 9 -> 22"`` for Countdown)."""
    return _digest("problem", task, problem_key)


def row_id(task: str, prompt: str, completion: str) -> str:
    """Stable content hash of (task, prompt, completion)."""
    return _digest("row", task, prompt, completion)


def make_rows(records: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Build a schema-exact frame; ``id`` is derived when absent and ``meta`` dicts are encoded."""
    out = []
    for r in records:
        r = dict(r)
        meta = r.get("meta") or {}
        r["meta"] = meta if isinstance(meta, str) else json.dumps(meta, sort_keys=True)
        r.setdefault("id", row_id(r["task"], r["prompt"], r["completion"]))
        out.append({k: r.get(k) for k in ROW_SCHEMA})
    return pl.DataFrame(out, schema=ROW_SCHEMA)


def empty_rows() -> pl.DataFrame:
    return pl.DataFrame(schema=ROW_SCHEMA)


def check_schema(df: pl.DataFrame, where: str) -> None:
    """Raise InputError (a ValueError) naming the column when ``df`` does not match ROW_SCHEMA."""
    for col, dtype in ROW_SCHEMA.items():
        if col not in df.columns:
            raise InputError(f"{where}: missing column {col!r} (expected {dtype})")
        if df.schema[col] != dtype:
            raise InputError(f"{where}: column {col!r} has type {df.schema[col]}, expected {dtype}")


def group_key(label_source: str, mix: str, tag: str | None = None) -> str:
    """Key of a compared group of models in results and summary.json: ``<label_source>/<mix>``,
    ``+<tag>`` for a tagged group (train_jobs' ``tag``: e.g. another objective on the same rows)."""
    return f"{label_source}/{mix}" + (f"+{tag}" if tag else "")


def mode_slug(mode: str) -> str:
    """File-system-safe name of a mode label: ``teacher:dfs-expert`` -> ``teacher-dfs-expert``."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in mode)


def mode_token(mode: str) -> str:
    """Special token that conditions a prefix model on ``mode``."""
    return f"<mode:{mode}>"
