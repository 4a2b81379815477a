"""Stage `publish`: Hub-layout dataset and model repos with cards.

    python stages/publish.py [--dry-run]     # reads params.yaml: publish, arms, train_jobs
Target `local` (default) writes artifacts/hub/{datasets,models}/<namespace>/<repo>; `hub` pushes
with huggingface_hub (token from HF_TOKEN or your login). Refuses data that failed validation
and models without an evaluation. Also writes artifacts/hub/release.json, the inputs record
that `modc publish --inputs` takes.
"""

import json
from pathlib import Path

import yaml

from modc_data import pipeline
from modc_data.artifacts import revision_info, write_text
from modc_data.experiment import model_dir
from modc_data.modeling.modc_json import read_modc
from modc_data.pipeline import StageError
from modc_data.publish.release import ModelRelease, PublishError, ReleaseInputs, publish_inputs
from modc_data.schema import mode_slug


def pipeline_stages() -> set[str]:
    """Names of the stages of the pipeline as params.yaml now expands it (``train@<job>`` …),
    in DVC's own view of dvc.yaml."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        return {s.addressing for s in repo.index.stages}


def dvc_lock_hashes(lock_path: Path = Path("dvc.lock"), stages: set[str] | None = None
                    ) -> dict[str, str]:
    """md5 of every output that dvc.lock records for ``stages`` (default: the current
    pipeline's): the exact inputs of what we publish. Entries another profile's run left in
    dvc.lock for stages this pipeline does not have are not this run's, and are left out."""
    if not lock_path.exists():
        return {}
    stages = pipeline_stages() if stages is None else stages
    lock = yaml.safe_load(lock_path.read_text()) or {}
    return {
        out["path"]: out.get("md5", "")
        for name, stage in (lock.get("stages") or {}).items() if name in stages
        for out in stage.get("outs", [])
    }


def reduced_strength(params, job) -> str:
    """Why ``job``'s model is a reduced-strength demo model ("" when it is not): it trained
    fewer optimizer steps than the profile's ``train.steps``."""
    steps = job.steps or params.train.steps
    if steps >= params.train.steps:
        return ""
    return (f"trained {steps} optimizer steps where this profile trains a model "
            f"{params.train.steps} (`train.steps`)")


def release_inputs(params) -> ReleaseInputs:
    art = pipeline.ARTIFACTS
    datasets, reports, models = {}, {}, []
    for key, arm in params.arms.items():
        # One config per arm, '<label_source>-<mix>', so every model's card points at its rows.
        datasets[key] = str(art / "datasets" / arm.label_source / f"{arm.mix}.parquet")
        reports[key] = str(art / "validation" / f"{key}.json")
    figures_dir = art / "eval" / "figures"
    # validated allocations of free-sampling prefix models (evaluate: details.json "policies"),
    # fit on each arm's first scored (test, validation) pair
    shipped: dict[str, dict] = {}
    details = art / "eval" / "details.json"
    if details.exists():
        for row in json.loads(details.read_text()).get("policies", []):
            if row.get("allocation") and row["prefix"] not in shipped:
                shipped[row["prefix"]] = row["allocation"]
    for key, job in params.models.items():
        if not params.compared(key):
            # a standard model that no ModC model is compared with (e.g. only a reference for
            # gradient clusters) has no evaluation to ship in its card
            print(f"not published: {key} (no experts or prefix model is compared with it)")
            continue
        ckpt = model_dir(key, art)
        read_modc(ckpt)  # a missing model fails here, naming the train stage to run
        summary_key = job.summary_key
        figs = sorted(str(p) for p in figures_dir.glob(f"passk_{mode_slug(summary_key)}_*.png"))
        models.append(ModelRelease(str(ckpt), summary_key, figures=figs,
                                   allocation=shipped.get(key, {}),
                                   reduced_strength=reduced_strength(params, job)))
    revision = revision_info()
    revision["dvc_lock"] = dvc_lock_hashes()
    return ReleaseInputs(
        task=params.task, datasets=datasets, validation_reports=reports, models=models,
        summary=str(art / "eval" / "summary.json"), params=params.model_dump(mode="json"),
        revision=revision,
    )


def main(params, argv):
    dry_run = "--dry-run" in argv
    inputs = release_inputs(params)
    try:
        outcomes = publish_inputs(inputs, params.publish, dry_run=dry_run)
    except PublishError as err:
        raise StageError(f"publish refused: {err}") from None
    if not dry_run:
        write_text(inputs.to_json() + "\n", Path(params.publish.local_dir) / "release.json")
    for o in outcomes:
        print(f"{o.status:>10}  {o.repo_type:<7} {o.repo_id}  ({len(o.files)} files)")


if __name__ == "__main__":
    pipeline.run(main)
