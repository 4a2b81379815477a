"""``publish_all``: check every input, build every repo in a staging dir, hand each to a target.

Called by ``stages/publish.py`` and ``modc publish`` with explicit inputs (no paths of its own).
All refusals (failed or missing validation, missing evaluation, unpublishable checkpoints) are
raised as ``PublishError`` before anything is built or pushed, so a refused release leaves every
published repo as it was.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from tqdm.auto import tqdm

from modc_data.params_blocks import PublishParams
from modc_data.publish import cards
from modc_data.publish.layout import (
    PublishError,
    StagedRepo,
    build_dataset_repo,
    build_model_repo,
    check_checkpoint,
    check_evaluated,
    manifest,
    read_summary,
    read_validation_report,
)
from modc_data.publish.model_card import VARIANT_ARM
from modc_data.publish.targets import PublishOutcome, Target, get_target


@dataclass
class ModelRelease:
    """One checkpoint dir (or experts group dir) to publish as one model repo."""

    checkpoint: str | Path
    summary_key: str  # '<label_source>/<mix>' in summary.json
    name: str = ""  # repo name under the namespace; default model_repo_name(...)
    figures: list[str | Path] = field(default_factory=list)  # PNGs shown in the card
    # validated per-k allocation to write into the published modc.json (ModcInfo.allocation;
    # evaluation's details.json "policies"); empty: the checkpoint's own (uniform if none)
    allocation: dict[str, dict[str, Any]] = field(default_factory=dict)
    # why this is a reduced-strength demo model (empty: full strength); into modc.json and the card
    reduced_strength: str = ""


@dataclass
class ReleaseInputs:
    """Everything ``publish_all`` reads, as a JSON-able record (``modc publish --inputs``)."""

    task: str
    # config '<label_source>-<mix>' (an arm key) -> labeled parquet / its validation report JSON
    datasets: dict[str, str] = field(default_factory=dict)
    validation_reports: dict[str, str] = field(default_factory=dict)
    models: list[ModelRelease] = field(default_factory=list)
    summary: str | None = None  # evaluation summary.json
    params: dict[str, Any] = field(default_factory=dict)
    revision: dict[str, Any] = field(default_factory=dict)  # git commit, dvc.lock hashes

    @classmethod
    def from_json(cls, path: str | Path) -> ReleaseInputs:
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise PublishError(f"{path}: release inputs are not valid JSON ({err}); pass the "
                               "release.json the publish stage wrote") from None
        try:
            data["models"] = [ModelRelease(**m) for m in data.get("models", [])]
            return cls(**data)
        except TypeError as err:
            raise PublishError(f"{path}: malformed release inputs: {err}") from None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)


def dataset_repo_name(task: str) -> str:
    return f"modc-{task}"


def model_repo_name(task: str, summary_key: str, variant: str) -> str:
    """``modc-countdown-search_algorithm-balanced-prefix`` for key 'search_algorithm/balanced';
    ``…-search_algorithm-skewed-pass32-prefix`` for the tagged group 'search_algorithm/skewed+pass32'."""
    return f"modc-{task}-{summary_key.replace('/', '-').replace('+', '-')}-{variant}"


def _example_config(datasets: Mapping[str, Any], mix: str) -> str | None:
    """The config of ``publish.dataset_mix`` (search_algorithm's first) for the card's example."""
    names = sorted(datasets, key=lambda c: (not c.startswith("search_algorithm"), c))
    return next((c for c in names if c.endswith(f"-{mix}")), names[0] if names else None)


def _example_prompt(dataset: str | Path) -> str:
    """A test-split prompt of a published config (the first by id), for the model cards."""
    df = pl.read_parquet(dataset, columns=["id", "prompt", "split"])
    test = df.filter(pl.col("split").str.starts_with("test")).sort("id")
    return (test if test.height else df.sort("id"))["prompt"][0]


def _dry_run_lines(repo: StagedRepo, where: str) -> list[str]:
    files = manifest(repo.path)
    lines = [f"[dry-run] {repo.repo_type} {repo.repo_id} -> {where} "
             f"({len(files)} files, {sum(e.size for e in files.values())} bytes)"]
    lines += [f"[dry-run]   {p}  {e.size} bytes" for p, e in files.items()]
    return lines


def publish_all(
    *,
    task: str,
    datasets: Mapping[str, str | Path],
    validation_reports: Mapping[str, str | Path],
    models: Sequence[ModelRelease],
    summary_path: str | Path | None,
    params: Mapping[str, Any],
    revision: Mapping[str, Any],
    publish: PublishParams,
    dry_run: bool = False,
    target: Target | None = None,
    log: Callable[[str], None] = print,
) -> list[PublishOutcome]:
    """Publish one dataset repo for ``task`` (a config per arm) and one repo per model.

    ``datasets``/``validation_reports``: config ``<label_source>-<mix>`` -> parquet / report
    JSON path; every model's training config must be among them when any dataset is given, so
    its card points at rows that are published;
    ``models``: checkpoints with their summary.json key; ``params``/``revision``: recorded in
    every card; ``publish``: target name, namespace, local_dir, endpoint, private, license;
    ``target`` overrides the one ``publish`` names. Returns one outcome per repo.
    Raises PublishError (nothing written) when a dataset's validation failed or is missing, or
    a model has no evaluation in summary.json.
    """
    ns = publish.namespace
    # ---- every refusal first, before building anything
    missing = sorted(set(datasets) - set(validation_reports))
    if missing:
        raise PublishError(f"datasets {missing} have no validation report; run the validate stage")
    reports = {s: read_validation_report(validation_reports[s], s) for s in datasets}
    for source, path in datasets.items():
        if not Path(path).exists():
            raise PublishError(f"dataset '{source}': {path} is missing; run the label stage")
    summary = read_summary(summary_path) if models else {}
    checked = []
    for m in models:
        info = check_checkpoint(m.checkpoint)
        arm = VARIANT_ARM.get(info.variant, info.variant)
        entry = check_evaluated(summary, m.summary_key, arm, str(m.checkpoint))
        for f in m.figures:
            if not Path(f).exists():
                raise PublishError(f"model {m.checkpoint}: figure {f} is missing")
        config = cards.dataset_config(m.summary_key)
        if datasets and config not in datasets:
            raise PublishError(
                f"model {m.checkpoint}: trained on config '{config}', which this release does "
                f"not publish (configs: {sorted(datasets)}); publish that arm's dataset too"
            )
        name = m.name or model_repo_name(task, m.summary_key, info.variant)
        checked.append((m, f"{ns}/{name}", entry))

    target = target or get_target(publish.target, local_dir=publish.local_dir,
                                  endpoint=publish.endpoint, private=publish.private)
    if not dry_run:
        target.check()  # offline or unreachable: one line, before anything is built or sent
    dataset_repo_id = f"{ns}/{dataset_repo_name(task)}"
    outcomes: list[PublishOutcome] = []

    def ship(repo: StagedRepo) -> None:
        where = target.location(repo.repo_type, repo.repo_id)
        if dry_run:
            for line in _dry_run_lines(repo, where):
                log(line)
            outcomes.append(PublishOutcome(repo.repo_type, repo.repo_id, where, "dry_run",
                                           [(p, e.size) for p, e in manifest(repo.path).items()]))
            return
        out = target.publish(repo)
        log(f"{out.status}: {repo.repo_type} {repo.repo_id} -> {out.location}")
        outcomes.append(out)

    prompts = {c: _example_prompt(path) for c, path in datasets.items()}  # one read per config
    jobs = (1 if datasets else 0) + len(checked)
    with tqdm(total=jobs, desc="publish", unit="repo") as bar:
        if datasets:
            with tempfile.TemporaryDirectory(prefix="modc-publish-") as tmp:
                ship(build_dataset_repo(
                    tmp, repo_id=dataset_repo_id, task=task, datasets_by_config=datasets,
                    reports=reports, license=publish.license, params=params, revision=revision,
                    example_config=_example_config(datasets, publish.dataset_mix),
                ))
            bar.update()
        for m, repo_id, entry in checked:
            with tempfile.TemporaryDirectory(prefix="modc-publish-") as tmp:
                ship(build_model_repo(
                    tmp, repo_id=repo_id, checkpoint=m.checkpoint, summary_key=m.summary_key,
                    summary_entry=entry, dataset_repo_id=dataset_repo_id, figures=m.figures,
                    license=publish.license, params=params, revision=revision,
                    allow_local_base=publish.target == "local", allocation=m.allocation,
                    reduced_strength=m.reduced_strength,
                    example_prompt=prompts.get(cards.dataset_config(m.summary_key), "<your prompt>"),
                ))
            bar.update()
    return outcomes


def publish_inputs(inputs: ReleaseInputs, publish: PublishParams, **kw: Any) -> list[PublishOutcome]:
    """``publish_all`` over a ``ReleaseInputs`` record."""
    return publish_all(task=inputs.task, datasets=inputs.datasets,
                       validation_reports=inputs.validation_reports, models=inputs.models,
                       summary_path=inputs.summary, params=inputs.params,
                       revision=inputs.revision, publish=publish, **kw)
