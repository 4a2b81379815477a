"""Typed params: reading ``params.yaml`` (or any profile) into one validated ``Params``.

``load_params(path)`` reads a profile (a whole params file) and validates it. Every model forbids
unknown keys, so a typo fails before any work starts with the field's dotted path, the bad value
and what is allowed (``ParamsError``). Stages call ``load_params`` first and use only their block.

This module holds ``Params`` (the whole file: which block sits under which key), reading and
parsing a file, the report of a failed validation, and what dvc.yaml needs written out in a
profile (``missing_pipeline_keys``). The blocks' own fields are in ``modc_data.params_blocks``,
``modc_data.params_training`` and ``modc_data.params_sampling``; the checks across blocks in
``modc_data.params_checks``; the queries over a loaded profile (model keys, jobs of an arm,
policy splits, ``model_dir``) in ``modc_data.experiment``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from modc_data.experiment import ExperimentQueries
from modc_data.params_blocks import (
    Block,
    CountdownParams,
    GradientClusterParams,
    GsmParams,
    LabelsParams,
    MathDataParams,
    PublishParams,
    ValidationParams,
)
from modc_data.params_checks import ParamsChecks
from modc_data.params_sampling import DistillParams, EvaluateParams, SampleParams
from modc_data.params_training import (
    ArmParams,
    ModelParams,
    RLJobParams,
    TrainJobParams,
    TrainParams,
)

PARAMS_FILE = "params.yaml"


class ParamsError(ValueError):
    """A params file that does not validate; the message names each bad field."""


# --------------------------------------------------------------------------- whole file
# The blocks under their keys; the queries over them come from ExperimentQueries, and the
# checks across them (run by `_references` when the file validates) from ParamsChecks.
class Params(ExperimentQueries, ParamsChecks, Block):
    seed: int = 1234  # seed of problem generation and of every stage that does not set its own
    task: Literal["countdown", "math", "gsm"] = "countdown"  # which task the problems come from: countdown, math or gsm (its block below)
    countdown: CountdownParams = CountdownParams()
    labels: LabelsParams = LabelsParams()
    validation: ValidationParams = ValidationParams()
    arms: dict[str, ArmParams] = Field(default_factory=dict)
    train_jobs: dict[str, TrainJobParams] = Field(default_factory=dict)
    rl_jobs: dict[str, RLJobParams] = Field(default_factory=dict)
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    sample: SampleParams = SampleParams()
    evaluate: EvaluateParams = EvaluateParams()
    gradient_cluster: GradientClusterParams = GradientClusterParams()
    distill: DistillParams = DistillParams()
    math: MathDataParams = MathDataParams()
    gsm: GsmParams = GsmParams()
    publish: PublishParams = PublishParams()

    @model_validator(mode="after")
    def _references(self) -> Params:
        """Cross-references between blocks, checked before any stage does work."""
        errors = self._reference_errors()
        if errors:
            raise ValueError("\n".join(errors))
        return self


# (block, key) of the params lists that decide which optional stages dvc.yaml runs.
STAGE_LISTS = (("labels", "sources"), ("gradient_cluster", "mixes"), ("distill", "mixes"))


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid params:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if not loc:  # a cross-field check: its message names the fields itself
            msg = e["msg"].removeprefix("Value error, ")
            lines.extend(f"  - {line}" for line in msg.splitlines())
            continue
        val = e.get("input")
        shown = repr(val) if not isinstance(val, dict) else "{…}"
        lines.append(f"  - {loc}: {e['msg']} (got {shown[:80]})")
    return "\n".join(lines)


def missing_pipeline_keys(data: dict[str, Any]) -> list[str]:
    """Keys dvc.yaml interpolates that ``data`` (a raw profile) lacks.

    DVC reads the file itself, not these models' defaults, so a profile run by ``dvc repro``
    must write them out: the task and its block, arms, train_jobs, rl_jobs and the stage lists.
    """
    missing = [k for k in ("task", "arms", "train_jobs", "rl_jobs") if k not in data]
    task = data.get("task", "countdown")
    if isinstance(task, str) and task not in data:
        missing.append(f"{task} (the block of task {task!r})")
    for block, key in STAGE_LISTS:
        if not isinstance(data.get(block), dict) or key not in data[block]:
            missing.append(f"{block}.{key}")
    return missing


def parse_params(
    data: dict[str, Any] | None, source: str = PARAMS_FILE, pipeline: bool = False
) -> Params:
    """Validate a params mapping. ``pipeline``: also require what dvc.yaml reads from the file."""
    missing = missing_pipeline_keys(data or {}) if pipeline else []
    if missing:
        raise ParamsError(
            f"{source}: missing " + ", ".join(missing) + ": dvc.yaml reads these from the "
            "profile itself (a stage list runs one stage per entry; write [] for none)"
        )
    try:
        return Params.model_validate(data or {})
    except ValidationError as err:
        raise ParamsError(_format_errors(err, source)) from None


def read_mapping(path: Path) -> dict[str, Any]:
    """The YAML mapping in ``path`` ({} for an empty file); ParamsError naming the file else."""
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found (run from the repo root)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if data is not None and not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data or {}


def load_params(path: str | Path = PARAMS_FILE, pipeline: bool = False) -> Params:
    """Read and validate a params file; raises ParamsError naming every bad field.

    ``pipeline``: the file is a profile ``dvc repro`` runs (see ``missing_pipeline_keys``)."""
    path = Path(path)
    data = read_mapping(path)
    if data and "base" in data:
        raise ParamsError(
            f"{path}: a profile (an overlay of {data['base']}), not a full params file; read it "
            "with modc_data.profiles.load_profile, run it with `make repro PROFILE=<name>`, or "
            "write it out with `python -m modc_data.profiles compose <name>`")
    return parse_params(data, str(path), pipeline=pipeline)
