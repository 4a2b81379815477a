"""Train one tiny model, in one process or as N ranks (run by tests/test_distributed.py).

    python tests/ddp_train.py OUT --steps 8 [--processes 2] [--stop-after 4] [--variant prefix]
                              [--config accelerate.yaml]

With ``--processes N`` (N > 1) it re-runs itself under ``accelerate launch`` exactly as the train
stage does (``modeling.launch.relaunch``, with ``--config`` under that accelerate config file); exit 3 means TrainingInterrupted (--stop-after).
"""

from __future__ import annotations

import argparse
import json
import sys

from modc_data.modeling import launch
from modc_data.modeling.experts import train_experts
from modc_data.modeling.train import TrainingInterrupted, train_model
from modc_data.params_training import ModelParams, TrainParams
from tests.tiny_models import TINY_SCRATCH, TINY_TEXTS, tiny_rows

MODES = ["dfs", "bfs"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--stop-after", type=int, default=None)
    ap.add_argument("--variant", default="standard", choices=["standard", "prefix", "experts"])
    ap.add_argument("--config", default=None, help="an accelerate config file to launch under")
    args = ap.parse_args()
    if launch.should_launch(args.processes, args.config):
        return launch.relaunch(sys.argv, args.processes, config_file=args.config)
    train, val = tiny_rows(48, MODES, "train", seed=0), tiny_rows(16, MODES, "validation", seed=1)
    cfg = TrainParams(batch_size=8, lr=3e-3, warmup_steps=2, save_every=4, eval_batches=2,
                      threads=1, bf16="off", processes=args.processes, accelerate_config=args.config)
    common = dict(label_source="search_algorithm", arm="tiny", model_cfg=ModelParams(scratch=TINY_SCRATCH),
                  train_cfg=cfg, steps=args.steps, out_dir=args.out, tokenizer_texts=TINY_TEXTS,
                  progress=False)
    try:
        if args.variant == "experts":
            results = train_experts(train, val, modes=MODES, **common)
        else:
            results = {args.variant: train_model(train, val, variant=args.variant, mode=None,
                                                 modes=MODES, stop_after=args.stop_after, **common)}
    except TrainingInterrupted:
        return 3
    if launch.state().is_main_process:
        print(json.dumps({k: {"tokens": r.tokens, "losses": r.losses, "processes": r.processes,
                              "engine": r.engine}
                          for k, r in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
