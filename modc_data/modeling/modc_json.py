"""``modc.json``: what a checkpoint directory holds, for humans and for loaders.

Written next to every checkpoint by training, read by sampling, publishing and ``ModCSampler``.
A *group* directory (``.../experts``) holds one ``modc.json`` with ``variant: experts`` and one
sub-directory per mode (``experts[mode]`` is its relative path), each a full expert checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from modc_data.artifacts import write_text
from modc_data.errors import InputError

MODC_FILE = "modc.json"
Variant = Literal["standard", "expert", "prefix", "experts"]


@dataclass
class ModcInfo:
    variant: Variant
    label_source: str
    modes: list[str]  # the modes this checkpoint can be sampled under ([] for standard)
    task: str = "countdown"
    arm: str = ""
    mode: str | None = None  # an expert's own mode
    mode_tokens: dict[str, str] = field(default_factory=dict)  # prefix: mode -> special token
    experts: dict[str, str] = field(default_factory=dict)  # group: mode -> relative dir
    base: dict[str, Any] = field(default_factory=dict)  # kind, name_or_path, adapter
    data_hash: str = ""
    train: dict[str, Any] = field(default_factory=dict)  # steps, examples, tokens, eval_loss …
    params: dict[str, Any] = field(default_factory=dict)
    revision: dict[str, Any] = field(default_factory=dict)  # git commit, dvc.lock hash
    # prefix: True when trained to also sample with no mode token (it then emits one itself)
    free_sampling: bool = False
    # validated budget allocation per k (str): {"policy": name, "counts": {arm: samples}, ...};
    # arms are "free" and the modes. Written by evaluation (allocation_report.shipped_policy),
    # applied by ModCSampler.sample(split="auto"). Empty: not validated, "auto" is uniform.
    allocation: dict[str, dict[str, Any]] = field(default_factory=dict)
    # empty: trained at the profile's full strength; else why it is a reduced-strength demo
    # model (written by publish, e.g. "trained 200 optimizer steps; this profile's models 1200")
    reduced_strength: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def write_modc(directory: str | Path, info: ModcInfo) -> Path:
    """Write ``modc.json`` atomically (temp file + rename)."""
    return write_text(info.to_json(), Path(directory) / MODC_FILE)


def read_modc(directory: str | Path) -> ModcInfo:
    """Read ``modc.json``; a missing or malformed file is a clear FileNotFoundError/InputError."""
    path = Path(directory) / MODC_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{directory}: no {MODC_FILE}; this is not a modc-data checkpoint "
            "(train it with the train stage or pass a directory that has modc.json)"
        )
    try:
        data = json.loads(path.read_text())
        return ModcInfo(**data)
    except (json.JSONDecodeError, TypeError) as err:
        raise InputError(f"{path}: malformed {MODC_FILE} ({err}); re-download or re-train the "
                         "checkpoint") from None
