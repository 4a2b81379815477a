"""Publishing: Hub-layout dataset and model repos with cards, to a local folder or the Hub.

``publish_all`` is the entry point (stages/publish.py, ``modc publish``); see ``layout`` (what a
repo holds), ``cards`` and ``model_card`` (README metadata and text) and ``targets`` (where it
goes).
"""

from modc_data.publish.layout import PublishError, StagedRepo
from modc_data.publish.release import (
    ModelRelease,
    ReleaseInputs,
    dataset_repo_name,
    model_repo_name,
    publish_all,
    publish_inputs,
)
from modc_data.publish.targets import HubTarget, LocalTarget, PublishOutcome, Target, get_target

__all__ = [
    "HubTarget", "LocalTarget", "ModelRelease", "PublishError", "PublishOutcome", "ReleaseInputs",
    "StagedRepo", "Target", "dataset_repo_name", "get_target", "model_repo_name", "publish_all",
    "publish_inputs",
]
