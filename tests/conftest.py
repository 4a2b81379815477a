"""Test-wide settings: offline, no telemetry, a private HF cache, and few threads.

Tests never reach the network: they build tiny models and data themselves.
"""

import os
import tempfile

_HF_HOME = tempfile.mkdtemp(prefix="modc-hf-home-")
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
