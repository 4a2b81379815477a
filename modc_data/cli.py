"""``modc``: download, publish and sample mode-conditioned datasets and models; convert GGUF files.

    modc download modc/modc-countdown --config search_algorithm-balanced --local-dir data/
    modc publish --params params.yaml --inputs release.json [--dry-run] [--target local|hub]
    modc sample modc/modc-countdown-search_algorithm-balanced-prefix --prompt "..." -k 8
    modc convert-gguf model.gguf models/my-base   # then model.pretrained.name_or_path: models/my-base
    modc power --half-width 0.02 --seeds 1 3 --seed-sd 0.03   # problems a design needs (details.json)

``publish`` reads its explicit inputs (dataset/report/checkpoint/summary paths, as written by
``ReleaseInputs.to_json``) from ``--inputs``; ``stages/publish.py`` calls the same library code.
Exit status: 0 ok; 2 an expected failure -- bad arguments, a missing or malformed input, an
unknown repo or config, an unreachable endpoint, a refused release -- with one line on stderr
naming the input and the fix. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from modc_data.errors import InputError, ModcError, hub_errors, missing_file_message

SPLIT_HELP = ("'auto' (the validated allocation in modc.json), 'uniform', 'free', 'standard' "
              "(with --standard) or a JSON object of arm weights (the modes, and 'free' and "
              "'standard' where allowed), e.g. "
              "'{\"dfs\": 3, \"bfs\": 1}'")


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
        ds = _load_dataset(args.repo, args.config, args.revision)
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

    _check_repo_id(args.repo)
    try:
        with hub_errors(args.repo, "model"):
            path = snapshot_download(args.repo, revision=args.revision, local_dir=args.local_dir,
                                     ignore_patterns=["*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt"])
    except InputError as err:
        if args.repo_type == "auto" and "no model repo" in str(err):
            raise InputError(f"{err}; for a dataset pass --config <name> (or --repo-type "
                             "dataset)") from None
        raise
    print(path)
    return 0


def _check_repo_id(repo: str) -> None:
    """A name that is neither an existing folder nor a valid Hub id is a one-line error."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError:
        raise InputError(f"{repo}: no such folder, and not a Hub repo id ('<namespace>/<name>'); "
                         "pass an existing folder or a repo id") from None


def _load_dataset(repo: str, config: str | None, revision: str | None):
    """``datasets.load_dataset`` with the config checked first, so a typo names the choices."""
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    if not Path(repo).exists():
        _check_repo_id(repo)
    with hub_errors(repo, "dataset"):
        try:
            names = datasets.get_dataset_config_names(repo, revision=revision)
        except DatasetNotFoundError:
            raise InputError(f"{repo}: no dataset of that name (a local Hub-layout folder or a "
                             "Hub dataset repo); check the id, HF_ENDPOINT and HF_TOKEN") from None
        if config is None and len(names) > 1:
            raise InputError(f"{repo}: pick one of its configs with --config: {', '.join(names)}")
        if config is not None and config not in names:
            raise InputError(f"--config {config!r}: {repo} has no such config; its configs are: "
                             f"{', '.join(names)}")
        return datasets.load_dataset(repo, config, revision=revision)


def _publish(args: argparse.Namespace) -> int:
    from modc_data.config import load_params
    from modc_data.publish import ReleaseInputs, publish_inputs

    params = load_params(args.params)
    publish = params.publish
    if args.target:
        publish = publish.model_copy(update={"target": args.target})
    if args.local_dir:
        publish = publish.model_copy(update={"local_dir": args.local_dir})
    # PublishError (a refused release) is a ModcError: one line and exit 2, from main()
    inputs = ReleaseInputs.from_json(args.inputs)
    outcomes = publish_inputs(inputs, publish, dry_run=args.dry_run)
    changed = sum(o.status == "published" for o in outcomes)
    print(f"{len(outcomes)} repos, {changed} published, "
          f"{sum(o.status == 'unchanged' for o in outcomes)} unchanged"
          + (" (dry run: nothing written)" if args.dry_run else ""))
    return 0


def _sample(args: argparse.Namespace) -> int:
    split = _parse_split(args.split)  # before the heavy imports: a typo fails at once
    from modc_data.sampler import ModCSampler

    sampler = ModCSampler.from_pretrained(args.model, backend=args.backend,
                                          standard=args.standard)
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


def _power(args: argparse.Namespace) -> int:
    from modc_data.evaluation.power import detectable_difference, half_width, problems_needed

    path = Path(args.details)
    try:
        details = json.loads(path.read_text())
        keys = details["keys"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise InputError(f"{path}: not an evaluate stage's details.json (no 'keys'); run "
                         "the evaluate stage, or pass --details") from None
    # the seed-to-seed spread measured by replicates (an "Across training seeds" row), per k
    measured = {(g, r["split"], r["variant"]): (dict(zip(r["k"], r["sd_seed"], strict=True)), len(r["seeds"]))
                for r in details.get("replicates") or [] for g in r["groups"]}
    shown = 0
    for group, splits in keys.items():
        if args.group and group != args.group:
            continue
        for split, ev in splits.items():
            if args.split and split != args.split:
                continue
            for variant, sds in (ev.get("diff_sd") or {}).items():
                ks = default_ks_of(ev["n"], len(sds))
                seed_sd, seeds_seen = ({}, 0) if args.seed_sd is not None else \
                    measured.get((group, split, variant), ({}, 0))
                given = args.seed_sd or 0.0
                said = (f"seed sd as measured over {seeds_seen} seeds" if seeds_seen
                        else f"seed sd {given:g}")
                print(f"## {group} / {split} / {variant} − standard: {ev['n_problems']} problems "
                      f"now; target half-width {args.half_width:g} ({args.ci:.0%} CI), {said}")
                print("| k | sd over problems | half-width now | detectable now (80% power) | "
                      + " | ".join(f"problems for {s} seed{'s' * (s > 1)}" for s in args.seeds)
                      + " |")
                print("|---|---|---|---|" + "---|" * len(args.seeds))
                for k, sd in zip(ks, sds, strict=True):
                    ssd = seed_sd.get(k, given)
                    need = [problems_needed(sd, args.half_width, s, ssd, args.ci) for s in args.seeds]
                    print(f"| {k} | {sd:.3f} | "
                          f"{half_width(sd, ev['n_problems'], 1, ssd, args.ci):.3f} | "
                          f"{detectable_difference(sd, ev['n_problems'], 1, ssd, args.ci):.3f} | "
                          + " | ".join("unreachable" if n is None else f"{n:,}" for n in need)
                          + " |")
                print()
                shown += 1
    if not shown:
        raise InputError(f"{path}: no ModC comparison matches --group {args.group!r} --split "
                         f"{args.split!r} (groups there: {sorted(keys)})")
    if not args.seed_sd and not measured:
        print("Seed sd 0: one training seed says nothing of seed-to-seed spread; these are lower "
              "bounds. Measure it with replicates (train_jobs.<job>.seed) or pass --seed-sd.")
    return 0


def default_ks_of(n: int, count: int) -> list[int]:
    """The budgets details.json's per-k lists are at (``passk.default_ks``), checked by length."""
    from modc_data.evaluation.passk import default_ks

    ks = default_ks(n)
    if len(ks) != count:
        raise InputError(f"details.json: {count} values per list, but n = {n} gives budgets {ks}; "
                         "was evaluate.ks set? pass the run's own details.json")
    return ks


def _parse_split(text: str) -> str | dict[str, float]:
    if text in ("auto", "uniform", "free", "standard"):
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"--split {text!r}: not valid JSON ({err.msg}, column {err.colno}); "
                         f"give {SPLIT_HELP}") from None
    if not isinstance(value, dict) or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) for w in value.values()):
        raise InputError(f"--split {text!r}: not a JSON object of numbers; give {SPLIT_HELP}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="modc", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("download", help="fetch a dataset config or a model (folder or Hub)")
    d.add_argument("repo", help="Hub repo id or a local Hub-layout folder")
    d.add_argument("--config", help="dataset config '<label_source>-<mix>', e.g. "
                   "search_algorithm-balanced")
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
    s.add_argument("--split", default="auto", help=SPLIT_HELP)
    s.add_argument("--temperature", type=float, default=1.0)
    s.add_argument("--max-new-tokens", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--backend", choices=["hf", "vllm"], default="hf")
    s.add_argument("--standard", default=None,
                   help="the same arm's standard model (repo id or folder) to sample beside it: "
                        "'auto' then follows the allocation validated over both models")
    s.set_defaults(func=_sample)

    g = sub.add_parser("convert-gguf", help="a GGUF model file -> a transformers safetensors folder")
    g.add_argument("gguf_file", help="the .gguf file")
    g.add_argument("out_dir", help="folder to write (model.pretrained.name_or_path)")
    g.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="of the dequantized weights")
    g.add_argument("--overwrite", action="store_true", help="replace a non-empty out_dir")
    g.set_defaults(func=_convert_gguf)

    w = sub.add_parser("power", help="how many test problems and seeds a comparison needs, "
                       "from a run's details.json")
    w.add_argument("--details", default="artifacts/eval/details.json",
                   help="the evaluate stage's details.json of a pilot run")
    w.add_argument("--group", help="a group of results.md, e.g. search_algorithm/skewed")
    w.add_argument("--split", help="e.g. test_adversarial")
    w.add_argument("--half-width", type=float, default=0.02, help="target CI half-width")
    w.add_argument("--seeds", type=int, nargs="+", default=[1, 3], help="seed counts to size for")
    w.add_argument("--seed-sd", type=float, default=None,
                   help="sd of the mean difference between training seeds; default: as measured by "
                   "the replicates in --details ('Across training seeds'), else 0")
    w.add_argument("--ci", type=float, default=0.95)
    w.set_defaults(func=_power)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # bad arguments: argparse's usage line, exit 2
    from modc_data.config import ParamsError

    try:
        return args.func(args)
    except (ParamsError, ModcError) as err:
        print(f"modc {args.command}: error: {err}", file=sys.stderr)
    except FileNotFoundError as err:
        print(f"modc {args.command}: error: {missing_file_message(err)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
