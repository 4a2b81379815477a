"""Test-wide settings: offline, no telemetry, a private HF cache, and few threads; and the
session-wide smoke pipeline (``smoke_repo``).

Tests never reach the network: they build tiny models and data themselves (servers they start
listen on 127.0.0.1 only).
"""

import atexit
import os
import shutil
import tempfile

import pytest

_HF_HOME = tempfile.mkdtemp(prefix="modc-hf-home-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
for key, value in {
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_XET": "1",
    "HF_HOME": _HF_HOME,
    "TOKENIZERS_PARALLELISM": "false",
    "TQDM_DISABLE": "1",
}.items():
    os.environ[key] = value

import torch  # noqa: E402  (after the environment is set)

torch.set_num_threads(1)

from hypothesis import HealthCheck, settings  # noqa: E402

# Property tests check correctness, not speed: on a shared 2-core CI box a single example can
# exceed hypothesis' default 200 ms deadline. Speed is measured by benchmarks/, not tests.
settings.register_profile(
    "modc", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("modc")


@pytest.fixture(scope="session")
def smoke_repo(tmp_path_factory):
    """(root, log) of the real `dvc repro` on profiles/smoke.yaml, built once per session.

    Shared: a test that edits it must be the last user (tests/test_pipeline.py's last test
    does); others work on ``tests.smoke.copy_repo(root, tmp_path / ...)``.
    """
    from tests import smoke

    return smoke.build(tmp_path_factory.mktemp("pipeline") / "repo")


@pytest.fixture
def bf16_candidate(monkeypatch):
    """bf16 offered as a candidate even on a CPU without native bf16 (it is then emulated, and
    slow, but the tests that use this inject the timer): the choice logic is what is tested."""
    import modc_data.modeling.precision as precision

    monkeypatch.setattr(precision, "use_bf16", lambda setting, device: setting != "off")
