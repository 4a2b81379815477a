"""``modc``: download, publish and sample mode-conditioned datasets and models; convert GGUF files.

    modc download modc/modc-countdown --config search_algorithm --local-dir data/
    modc publish --params params.yaml --inputs release.json [--dry-run] [--target local|hub]
    modc sample modc/modc-countdown-search_algorithm-balanced-prefix --prompt "..." -k 8
    modc convert-gguf model.gguf models/my-base   # then model.pretrained.name_or_path: models/my-base

``publish`` reads its explicit inputs (dataset/report/checkpoint/summary paths, as written by
``ReleaseInputs.to_json``) from ``--inputs``; ``stages/publish.py`` calls the same library code.
Exit status: 0 ok, 1 refused or failed (message on stderr), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _download(args: argparse.Namespace) -> int:
    """A dataset (local Hub-layout folder or Hub repo) or a model repo into --local-dir."""
    src = Path(args.repo)
    kind = args.repo_type
    if kind == "auto":
        kind = "dataset" if (src / "README.md").exists() and not (src / "modc.json").exists() \
            and not (src / "config.json").exists() else "model"
        if not src.exists():
            kind = "model" if args.config is None else "dataset"
    if kind == "dataset":
        import datasets

        ds = datasets.load_dataset(args.repo, args.config, revision=args.revision)
        if args.local_dir:
            # Hub layout again (parquet per split), so the copy loads the same way
            out = Path(args.local_dir)
            for split, d in ds.items():
                d.to_parquet(str(out / (args.config or "default") / f"{split}-00000-of-00001.parquet"))
        for split, d in ds.items():
            print(f"{split}: {d.num_rows} rows")
        return 0
    if src.is_dir():
        if not args.local_dir:
            print(f"{src} is already local")
            return 0
        import shutil

        shutil.copytree(src, args.local_dir, dirs_exist_ok=True)
        print(args.local_dir)
        return 0
    from huggingface_hub import snapshot_download

    path = snapshot_download(args.repo, revision=args.revision, local_dir=args.local_dir,
                             ignore_patterns=["*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt"])
    print(path)
    return 0


def _publish(args: argparse.Namespace) -> int:
    from modc_data.config import load_params
    from modc_data.publish import PublishError, ReleaseInputs, publish_inputs

    params = load_params(args.params)
    publish = params.publish
    if args.target:
        publish = publish.model_copy(update={"target": args.target})
    if args.local_dir:
        publish = publish.model_copy(update={"local_dir": args.local_dir})
    try:
        inputs = ReleaseInputs.from_json(args.inputs)
        outcomes = publish_inputs(inputs, publish, dry_run=args.dry_run)
    except PublishError as err:
        print(f"modc publish: refused: {err}", file=sys.stderr)
        return 1
    changed = sum(o.status == "published" for o in outcomes)
    print(f"{len(outcomes)} repos, {changed} published, "
          f"{sum(o.status == 'unchanged' for o in outcomes)} unchanged"
          + (" (dry run: nothing written)" if args.dry_run else ""))
    return 0


def _sample(args: argparse.Namespace) -> int:
    from modc_data.sampler import ModCSampler

    split = json.loads(args.split) if args.split.startswith("{") else args.split
    sampler = ModCSampler.from_pretrained(args.model, backend=args.backend)
    results = sampler.sample(args.prompt, k=args.k, split=split, temperature=args.temperature,
                             max_new_tokens=args.max_new_tokens, seed=args.seed)
    for prompt, samples in zip(args.prompt, results, strict=True):
        for s in samples:
            print(json.dumps({"prompt": prompt, "mode": s.mode, "completion": s.completion}))
    return 0


def _convert_gguf(args: argparse.Namespace) -> int:
    import torch

    from modc_data.modeling.gguf import convert_gguf

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    try:
        out = convert_gguf(args.gguf_file, args.out_dir, dtype=dtype, overwrite=args.overwrite)
    except (FileNotFoundError, FileExistsError, ModuleNotFoundError, ValueError) as err:
        print(f"modc convert-gguf: {err}", file=sys.stderr)
        return 1
    print(f"{out}  (use it as model.pretrained.name_or_path)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="modc", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("download", help="fetch a dataset config or a model (folder or Hub)")
    d.add_argument("repo", help="Hub repo id or a local Hub-layout folder")
    d.add_argument("--config", help="dataset config (label source), e.g. search_algorithm")
    d.add_argument("--local-dir", help="where to put the files")
    d.add_argument("--revision", help="branch, tag or commit on the Hub")
    d.add_argument("--repo-type", choices=["auto", "dataset", "model"], default="auto")
    d.set_defaults(func=_download)

    u = sub.add_parser("publish", help="publish datasets and models (refuses unvalidated data)")
    u.add_argument("--params", default="params.yaml", help="params file (its publish block)")
    u.add_argument("--inputs", required=True, help="release inputs JSON (ReleaseInputs)")
    u.add_argument("--dry-run", action="store_true", help="list repos/files/sizes; write nothing")
    u.add_argument("--target", choices=["local", "hub"], help="override publish.target")
    u.add_argument("--local-dir", help="override publish.local_dir")
    u.set_defaults(func=_publish)

    s = sub.add_parser("sample", help="sample k completions split across the model's arms")
    s.add_argument("model", help="model repo id or folder with modc.json")
    s.add_argument("--prompt", action="append", required=True, help="repeat for several")
    s.add_argument("-k", type=int, default=8, help="samples per prompt (split across modes)")
    s.add_argument("--split", default="auto",
                   help="'auto' (the validated allocation in modc.json), 'uniform', 'free' or "
                        "JSON {arm: weight} (arms: the modes, and 'free' where allowed)")
    s.add_argument("--temperature", type=float, default=1.0)
    s.add_argument("--max-new-tokens", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--backend", choices=["hf", "vllm"], default="hf")
    s.set_defaults(func=_sample)

    g = sub.add_parser("convert-gguf", help="a GGUF model file -> a transformers safetensors folder")
    g.add_argument("gguf_file", help="the .gguf file")
    g.add_argument("out_dir", help="folder to write (model.pretrained.name_or_path)")
    g.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="of the dequantized weights")
    g.add_argument("--overwrite", action="store_true", help="replace a non-empty out_dir")
    g.set_defaults(func=_convert_gguf)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
