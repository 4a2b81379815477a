"""Gradient features of a tiny model, as rank r of N (run by tests/test_distributed.py).

    python tests/ddp_features.py OUT [--processes 2] [--stop-shard-after K]

With ``--processes N`` (N > 1) it re-runs itself under ``accelerate launch`` (as the
gradient_cluster stage does) and each rank featurizes its shard; rank 0 merges them into OUT.
"""

from __future__ import annotations

import argparse
import sys

import torch

from modc_data.labeling.gradients import featurize
from modc_data.modeling import distributed
from tests.test_gradients import PAIRS
from tests.tiny_models import tiny_llama, tiny_tokenizer


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--processes", type=int, default=1)
    args = ap.parse_args()
    if distributed.should_launch(args.processes):
        return distributed.relaunch(sys.argv, args.processes)
    torch.set_num_threads(1)
    ranks = distributed.init("cpu")
    tok = tiny_tokenizer()
    feats, info = featurize(tiny_llama(tok, seed=6), tok, PAIRS * 3, args.out, dim=16, seed=1,
                            chunk_size=4, shard=(ranks.rank, ranks.world),
                            barrier=lambda: distributed.barrier(ranks))
    assert feats.shape == (15, 16), feats.shape  # every rank sees the merged store
    print(f"rank {ranks.rank}: shards {info.get('shards', 1)} resumed {info['rows_resumed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
