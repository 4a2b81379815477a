"""Hub-layout repos built in a staging directory: what files a dataset or model repo holds.

Dataset repo (one per task): ``<config>/<split>-00000-of-00001.parquet`` for each config, one per
arm, named ``<label_source>-<mix>`` (the naming ``datasets``' ``push_to_hub(config_name=...)``
uses), so each model card can point at the exact rows it was trained on, plus a README.md whose YAML
lists ``configs`` with ``data_files``, so ``datasets.load_dataset(repo, config)`` works from a
folder or the Hub. Model repo: safetensors weights, tokenizer, ``modc.json`` (and one sub-folder
per mode for an experts group), ``figures/*.png`` and a model card.

Every check that can refuse a release (failed/missing validation, missing evaluation, pickled
weights, local adapter base) runs in ``check_*`` functions before anything is built.
Left out: where the staged folder goes (``targets.py``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from modc_data.errors import ModcError
from modc_data.modeling.format import completion_text
from modc_data.modeling.modc_json import MODC_FILE, ModcInfo, read_modc, write_modc
from modc_data.publish import cards, model_card
from modc_data.schema import check_schema

RepoType = Literal["dataset", "model"]

# Files never published from a checkpoint dir: pickles (arbitrary code on load) and the
# training-resume state (optimizer, RNG) that is ours, not the user's.
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".tmp")
_SKIP_DIRS = ("checkpoint", "runs", ".cache")


class PublishError(ModcError, RuntimeError):
    """A release that must not go out; the message names the file and the fix."""


@dataclass(frozen=True)
class FileEntry:
    size: int  # bytes
    sha256: str


@dataclass
class StagedRepo:
    """A repo fully built in ``path``, ready to hand to a target."""

    repo_type: RepoType
    repo_id: str  # "<namespace>/<name>"
    path: Path
    commit_message: str


def manifest(root: str | Path) -> dict[str, FileEntry]:
    """Repo-relative posix path -> (size, sha256) of every file under ``root`` (sorted)."""
    root = Path(root)
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h = hashlib.sha256()
            with p.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            out[p.relative_to(root).as_posix()] = FileEntry(p.stat().st_size, h.hexdigest())
    return out


# --------------------------------------------------------------------------- input checks
def read_validation_report(path: str | Path | None, label_source: str) -> dict[str, Any]:
    """Read a validation report JSON; refuse a missing, unreadable or failed one."""
    if path is None or not Path(path).exists():
        raise PublishError(
            f"dataset '{label_source}': validation report {path} is missing; run the validate "
            "stage first (datasets are only published after their suite passes)"
        )
    try:
        report = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise PublishError(f"{path}: validation report is not valid JSON ({err})") from None
    if not isinstance(report, dict) or report.get("success") is not True:
        raise PublishError(
            f"dataset '{label_source}': validation report {path} says success="
            f"{report.get('success') if isinstance(report, dict) else report!r}; refusing to "
            "publish data that failed validation (fix the data or the declared mix and re-run "
            "the validate stage)"
        )
    return report


def read_summary(path: str | Path | None) -> dict[str, Any]:
    """Read evaluation summary.json ({key: {split: {arm: curves}}}); missing -> PublishError."""
    if path is None or not Path(path).exists():
        raise PublishError(
            f"evaluation summary {path} is missing; run the evaluate stage before publishing "
            "models (model cards report its pass@k)"
        )
    data = json.loads(Path(path).read_text())
    # tolerate a wrapper object ({"results": {...}}) around the per-key mapping
    return data.get("results", data) if isinstance(data, dict) else {}


def check_evaluated(summary: Mapping[str, Any], key: str, arm: str, where: str) -> dict:
    """``summary[key]`` when it holds pass@k curves of ``arm`` for at least one split."""
    entry = summary.get(key)
    if not isinstance(entry, dict) or not any(
        isinstance(s, dict) and isinstance(s.get(arm), dict) and s[arm].get("k")
        for s in entry.values()
    ):
        raise PublishError(
            f"model {where}: no evaluation of arm '{arm}' under key '{key}' in summary.json "
            f"(keys there: {sorted(summary)}); evaluate this model before publishing it"
        )
    for split, arms in entry.items():
        for a, c in arms.items():
            if isinstance(c, dict) and len(c.get("k", [])) != len(c.get("pass_at_k", [])):
                raise PublishError(f"summary.json {key}/{split}/{a}: k and pass_at_k differ in length")
    return entry


def _checkpoint_dirs(path: Path, info: ModcInfo) -> list[Path]:
    if info.variant == "experts":
        return [path / rel for rel in info.experts.values()]
    return [path]


def check_checkpoint(path: str | Path) -> ModcInfo:
    """modc.json of a checkpoint (or experts group) that can be published; else PublishError."""
    path = Path(path)
    try:
        info = read_modc(path)
    except (FileNotFoundError, ValueError) as err:
        raise PublishError(str(err)) from None
    for d in _checkpoint_dirs(path, info):
        if not any(d.glob("*.safetensors")):
            raise PublishError(
                f"{d}: no *.safetensors weights; only safetensors checkpoints are published "
                "(save with save_pretrained(..., safe_serialization=True))"
            )
    return info


def hub_base_id(info: ModcInfo, adapter_base: str | None, allow_local: bool = False) -> str | None:
    """Hub id of a pretrained base (``None`` for scratch models).

    An adapter trained over a local copy of a Hub model keeps the Hub id from ``modc.json``
    (``base.hub_id``, from ``model.pretrained.hub_id``, or ``base.name_or_path``). A purely
    local base cannot go to the Hub; with ``allow_local`` (the ``local`` target, a folder on
    this machine) its path is kept instead, which loads wherever that path exists.
    """
    candidates = [info.base.get("hub_id"), info.base.get("name_or_path"), adapter_base]
    for c in candidates:
        if isinstance(c, str) and c and not Path(c).exists() and not c.startswith(("/", ".")):
            return c
    if adapter_base is None:
        return None  # a full model loads without its base; the card just names none
    if allow_local:
        return next(c for c in candidates if isinstance(c, str) and c)
    raise PublishError(
        f"base model {candidates} is a local path; an adapter repo must name its base by Hub id "
        "(set modc.json base.hub_id or train from a Hub id)"
    )


# --------------------------------------------------------------------------- dataset repo
def _features():
    import datasets

    return datasets.Features({
        "id": datasets.Value("string"), "problem_id": datasets.Value("string"),
        "task": datasets.Value("string"), "prompt": datasets.Value("string"),
        "completion": datasets.Value("string"), "answer": datasets.Value("string"),
        "mode": datasets.Value("string"), "label_source": datasets.Value("string"),
        "split": datasets.Value("string"), "correct": datasets.Value("bool"),
        "meta": datasets.Value("string"),
    })


def _mode_shares(df: pl.DataFrame, splits: list[str]) -> dict[str, dict[str, float]]:
    """split -> {mode: share of the split's rows}, splits in ``splits`` order."""
    out: dict[str, dict[str, float]] = {s: {} for s in splits}
    for split, mode, n in df.group_by("split", "mode").len().sort("mode").iter_rows():
        out[split][mode] = n
    return {s: {m: n / sum(c.values()) for m, n in c.items()} for s, c in out.items()}


def build_dataset_repo(
    out_dir: str | Path,
    *,
    repo_id: str,
    task: str,
    datasets_by_config: Mapping[str, str | Path],
    reports: Mapping[str, Mapping[str, Any]],
    license: str,
    params: Mapping[str, Any],
    revision: Mapping[str, Any],
    example_config: str | None = None,
) -> StagedRepo:
    """Write parquet shards and the dataset card of one task's repo into ``out_dir``.

    ``datasets_by_config``: config ``<label_source>-<mix>`` -> labeled parquet (ROW_SCHEMA, all
    splits); ``reports``: config -> its (passed) validation report; ``example_config``: the
    config the card's loading example uses.
    """
    import datasets

    out = Path(out_dir)
    split_order = ["train", "validation", "test", "test_adversarial", "validation_adversarial"]
    configs: dict[str, dict[str, Any]] = {}
    from datasets.info import DatasetInfosDict

    infos = DatasetInfosDict()
    for source, path in sorted(datasets_by_config.items()):
        df = pl.read_parquet(path)
        check_schema(df, str(path))
        if df.height == 0:
            raise PublishError(f"{path}: dataset '{source}' has no rows")
        label_source = df["label_source"][0]
        splits = sorted(df["split"].unique().to_list(),
                        key=lambda s: (split_order.index(s) if s in split_order else 99, s))
        split_dict = datasets.SplitDict()
        data_files = []
        for split in splits:
            # the completion carries its separating space: prompt + completion is the trained
            # text, as TRL's prompt-completion format (and any plain concatenation) expects
            part = df.filter(pl.col("split") == split).sort("id").with_columns(
                pl.col("completion").map_elements(completion_text, return_dtype=pl.String))
            rel = f"{source}/{split}-00000-of-00001.parquet"
            (out / source).mkdir(parents=True, exist_ok=True)
            # string (not large_string) columns so the loaded features equal the card's
            ds = datasets.Dataset(part.to_arrow()).cast(_features())
            ds.to_parquet(str(out / rel))
            data_files.append({"split": split, "path": f"{source}/{split}-*"})
            split_dict.add(datasets.SplitInfo(name=split, num_bytes=ds.data.nbytes,
                                              num_examples=part.height))
        infos[source] = datasets.DatasetInfo(
            features=_features(), splits=split_dict,
            download_size=sum(p.stat().st_size for p in (out / source).glob("*.parquet")),
            dataset_size=sum(s.num_bytes for s in split_dict.values()),
        )
        rep = reports.get(source, {})
        configs[source] = {
            "label_source": label_source,
            "mix": source.removeprefix(f"{label_source}-") if source != label_source else "",
            "splits": {s: int((df["split"] == s).sum()) for s in splits},
            "shares": _mode_shares(df, splits),
            "data_files": data_files,
            "validation": {"success": rep.get("success"), "dataset": rep.get("dataset", source)},
        }
    card = cards.dataset_card(repo_id=repo_id, task=task, configs=configs, dataset_infos=infos,
                              license=license, params=params, revision=revision,
                              example_config=example_config)
    (out / "README.md").write_text(str(card))
    return StagedRepo("dataset", repo_id, out,
                      f"modc-data: {task} dataset ({', '.join(sorted(configs))})")


# --------------------------------------------------------------------------- model repo
def _copy_checkpoint(src: Path, dst: Path) -> None:
    """Copy a checkpoint dir minus pickles and training-resume state."""
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if any(part in _SKIP_DIRS for part in rel.parts) or not p.is_file():
            continue
        if p.suffix in _PICKLE_SUFFIXES or p.name.startswith("optimizer"):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dst / rel)


def write_generation_config(d: Path, sample: Mapping[str, Any]) -> None:
    """``generation_config.json`` in ``d`` with the sampling settings evaluation used, so
    ``model.generate(**inputs)`` samples as the results in the card were sampled. Keeps what
    ``save_pretrained`` already wrote there (special token ids) and fills in the tokenizer's."""
    from transformers import AutoTokenizer, GenerationConfig

    cfg = (GenerationConfig.from_pretrained(d) if (d / "generation_config.json").exists()
           else GenerationConfig())
    tok = AutoTokenizer.from_pretrained(d)
    cfg.bos_token_id = tok.bos_token_id if cfg.bos_token_id is None else cfg.bos_token_id
    cfg.eos_token_id = tok.eos_token_id if cfg.eos_token_id is None else cfg.eos_token_id
    if cfg.pad_token_id is None:
        cfg.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    temperature = float(sample.get("temperature", 1.0))
    cfg.do_sample = temperature > 0  # temperature 0: evaluation decoded greedily
    if cfg.do_sample:
        cfg.temperature = temperature
        cfg.top_p = float(sample.get("top_p", 1.0))
        cfg.top_k = 0  # no top-k cut (transformers' default is 50): evaluation used none
    cfg.max_new_tokens = int(sample.get("max_new_tokens", 128))
    cfg._from_model_config = False  # ours, not derived from config.json: generate uses it as is
    cfg.save_pretrained(d)


def _fix_adapter_base(d: Path, base_id: str | None) -> None:
    """Point adapter_config.json at the Hub id of the base, not the local dir it was trained on."""
    cfg_path = d / "adapter_config.json"
    if not cfg_path.exists() or base_id is None:
        return
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("base_model_name_or_path") != base_id:
        cfg["base_model_name_or_path"] = base_id
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True))


def build_model_repo(
    out_dir: str | Path,
    *,
    allow_local_base: bool = False,
    repo_id: str,
    checkpoint: str | Path,
    summary_key: str,
    summary_entry: Mapping[str, Any],
    dataset_repo_id: str,
    figures: Sequence[str | Path],
    license: str,
    params: Mapping[str, Any],
    revision: Mapping[str, Any],
    allocation: Mapping[str, Mapping[str, Any]] | None = None,
    reduced_strength: str = "",
    example_prompt: str = "<your prompt>",
) -> StagedRepo:
    """Copy one checkpoint (or experts group) with figures and a model card into ``out_dir``.

    ``allocation``: the validated per-k allocation (evaluation) written into the copy's
    ``modc.json``, where ``ModCSampler.sample(split="auto")`` applies it; its arms must be the
    model's (``"free"`` only for a model that can sample freely). ``reduced_strength``: why
    this is a reduced-strength demo model (empty: full strength), into modc.json and the card.
    Each model folder gets a ``generation_config.json`` with ``params["sample"]``'s settings.
    ``example_prompt``: a test prompt of the model's task, for the card's snippets.
    """
    src, out = Path(checkpoint), Path(out_dir)
    info = check_checkpoint(src)
    _copy_checkpoint(src, out)
    if allocation:
        arms = set(info.modes) | ({"free"} if info.variant == "standard" or info.free_sampling else set())
        used = {a for e in allocation.values() for a, m in (e.get("counts") or {}).items() if m}
        if used - arms:
            raise PublishError(
                f"{src}: the allocation to ship uses arms {sorted(used - arms)} this "
                f"{info.variant} model lacks (its arms: {sorted(arms)}); re-run the evaluate stage"
            )
        both = {a for e in allocation.values()
                for a, m in ((e.get("with_standard") or {}).get("counts") or {}).items() if m}
        if both - arms - {"standard"}:
            raise PublishError(
                f"{src}: the two-model allocation to ship uses arms "
                f"{sorted(both - arms - {'standard'})} this {info.variant} model lacks (its "
                f"arms: {sorted(arms)}, plus 'standard'); re-run the evaluate stage"
            )
        info.allocation = {str(k): dict(v) for k, v in allocation.items()}
    info.reduced_strength = reduced_strength
    write_modc(out, info)
    for d in _checkpoint_dirs(out, info):
        write_generation_config(d, params.get("sample") or {})
    adapter_cfgs = [json.loads(p.read_text()) for d in _checkpoint_dirs(out, info)
                    if (p := d / "adapter_config.json").exists()]
    adapter_base = next((c.get("base_model_name_or_path") for c in adapter_cfgs), None)
    base_id = hub_base_id(info, adapter_base, allow_local=allow_local_base)
    for d in _checkpoint_dirs(out, info):
        _fix_adapter_base(d, base_id)
    fig_rel = []
    for f in figures:
        f = Path(f)
        if not f.exists():
            raise PublishError(f"figure {f} is missing; run the evaluate stage")
        (out / "figures").mkdir(exist_ok=True)
        shutil.copyfile(f, out / "figures" / f.name)
        fig_rel.append(f"figures/{f.name}")
    ranks = [c.get("r") for c in adapter_cfgs]
    card = model_card.model_card(
        repo_id=repo_id, info=info, summary_key=summary_key, summary_entry=summary_entry,
        dataset_repo_id=dataset_repo_id, license=license,
        library_name="peft" if ranks else "transformers",
        base_model=base_id, figures=fig_rel, params=params, revision=revision,
        example_prompt=example_prompt, lora_rank=max(ranks) if ranks else None,
    )
    (out / "README.md").write_text(str(card))
    assert (out / MODC_FILE).exists()
    return StagedRepo("model", repo_id, out, f"modc-data: {info.variant} model ({summary_key})")
