"""Gradient features of a tiny model, as rank r of N (run by tests/test_distributed.py).

    python tests/ddp_features.py OUT [--processes 2] [--stop-shard-after K]

With ``--processes N`` (N > 1) it re-runs itself under ``accelerate launch`` (as the
gradient_cluster stage does) and each rank featurizes its shard; rank 0 merges them into OUT.
"""

from __future__ import annotations

import argparse
import sys

import torch

from modc_data.labeling.gradient_features import featurize
from modc_data.modeling import launch
from tests.test_gradients import PAIRS
from tests.tiny_models import tiny_llama, tiny_tokenizer


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--processes", type=int, default=1)
    args = ap.parse_args()
    if launch.should_launch(args.processes):
        return launch.relaunch(sys.argv, args.processes)
    torch.set_num_threads(1)
    procs = launch.state()
    tok = tiny_tokenizer()
    feats, info = featurize(tiny_llama(tok, seed=6), tok, PAIRS * 3, args.out, dim=16, seed=1,
                            chunk_size=4, shard=(procs.process_index, procs.num_processes),
                            barrier=procs.wait_for_everyone)
    assert feats.shape == (15, 16), feats.shape  # every rank sees the merged store
    print(f"rank {procs.process_index}: shards {info.get('shards', 1)} resumed {info['rows_resumed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
