"""The mode shares a labeled dataset is meant to have, written beside it by the stage that made it.

``<dataset>.declared.json`` holds ``{"shares": {mode: share}, "modes": [...]}`` (shares sum to
1), or ``{"shares": null, "modes": [...]}`` when the producer fixes no shares (the rejection
mix): then the modes that must appear are declared alone. The validate stage checks the realised
shares against it, so validation needs no knowledge of each label source's params: a change
of those params reruns the producer, which rewrites this file, which reruns validation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from modc_data.artifacts import write_json


def declared_path(dataset: str | Path) -> Path:
    """``x/<mix>.parquet`` -> ``x/<mix>.declared.json``."""
    dataset = Path(dataset)
    return dataset.with_name(dataset.name.removesuffix(".parquet") + ".declared.json")


def uniform(modes: Iterable[str]) -> dict[str, float]:
    modes = sorted(set(modes))
    return {m: 1.0 / len(modes) for m in modes}


def write_declared(
    dataset: str | Path, shares: dict[str, float] | None, modes: Iterable[str] | None = None
) -> Path:
    modes = sorted(shares) if shares is not None else sorted(modes or [])
    return write_json({"shares": shares, "modes": modes}, declared_path(dataset))


def read_declared(dataset: str | Path) -> tuple[dict[str, float] | None, list[str]]:
    """(declared shares or None, declared modes) of ``dataset``; FileNotFoundError naming the
    file when absent."""
    path = declared_path(dataset)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no declared mode shares beside {dataset}; rerun the stage that made it"
        )
    data = json.loads(path.read_text())
    return data["shares"], data.get("modes") or sorted(data["shares"] or [])
