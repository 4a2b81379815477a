"""RL one tiny model in one process or as N ranks (run by tests/test_rl.py).

    python tests/ddp_rl.py START OUT [--processes 2] [--variant prefix]

With ``--processes N`` (N > 1) it re-runs itself under ``accelerate launch`` exactly as the rl
stage does (``modeling.launch.relaunch``); rank 0 prints the RL record as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from modc_data.modeling import launch
from modc_data.rl.grpo import RLSettings, rl_checkpoint
from modc_data.tasks import get_task
from tests.test_rl import SETTINGS, _even_length, _problems
from tests.tiny_models import make_tiny_checkpoint


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("start", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--variant", default="prefix", choices=["standard", "prefix", "experts"])
    args = ap.parse_args()
    if launch.should_launch(args.processes):
        if not (args.start / "modc.json").exists():
            make_tiny_checkpoint(args.start, args.variant, ["bfs", "dfs"])
        return launch.relaunch(sys.argv, args.processes)
    if not (args.start / "modc.json").exists():
        make_tiny_checkpoint(args.start, args.variant, ["bfs", "dfs"])
    record = rl_checkpoint(args.start, args.out, _problems(), get_task("countdown"),
                           RLSettings(**SETTINGS), reward=_even_length)
    if launch.state().is_main_process:
        print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
