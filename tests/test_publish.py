"""Publishing to the local target: repos load with datasets / transformers in a fresh process,
cards round-trip, dry-run writes nothing, re-publishing is a no-op, refusals keep the old version,
and a token in the environment never reaches logs or files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from huggingface_hub import DatasetCard, ModelCard

from modc_data.params_blocks import PublishParams
from modc_data.publish import LocalTarget, ModelRelease, PublishError, ReleaseInputs, publish_all
from modc_data.publish.layout import manifest
from modc_data.schema import ROW_SCHEMA, make_rows
from tests.tiny_models import make_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
FAKE_TOKEN = "hf_FakeTokenForLeakCheck0123456789abcdef"
KEY = "search_algorithm/balanced"
SPLITS = ("train", "validation", "test")


# --------------------------------------------------------------------------- tiny release inputs
def make_rows_frame(source: str, modes=("dfs", "bfs"), per_split=6, skewed=False) -> pl.DataFrame:
    """``per_split`` rows per split, modes alternating; ``skewed``: train rows all but one
    ``modes[0]`` (the skewed mix's training rows)."""
    recs = []
    for split in SPLITS:
        for i in range(per_split):
            mode = modes[i % len(modes)]
            if skewed and split == "train":
                mode = modes[1] if i == 0 else modes[0]
            recs.append(dict(
                problem_id=f"{split}-{i}", task="countdown", prompt=f"numbers {i} 3 target {i + 3}",
                completion=f"{i} + 3 = {i + 3} goal ({mode})", answer=f"{i} + 3", mode=mode,
                label_source=source, split=split, correct=True, meta={"budget": 8},
            ))
    return make_rows(recs)


def _png(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([1, 2, 4, 8], [0.1, 0.2, 0.3, 0.4])
    fig.savefig(path)
    plt.close(fig)
    return path


def _curve(base: float) -> dict:
    ks = [1, 2, 4, 8]
    vals = [round(base + 0.05 * i + 0.0123456789, 10) for i in range(len(ks))]
    return {"k": ks, "pass_at_k": vals, "ci_low": [v - 0.02 for v in vals],
            "ci_high": [v + 0.02 for v in vals]}


def make_release(root: Path, configs=("search_algorithm-balanced", "random-balanced")) -> ReleaseInputs:
    """Datasets (one per config '<label_source>-<mix>'; mix 'skewed' skews the train rows) +
    passing reports + prefix model + experts group + summary + figure under root."""
    root.mkdir(parents=True, exist_ok=True)
    datasets, reports = {}, {}
    for c in configs:
        source, _, mix = c.rpartition("-")
        modes = ("dfs", "bfs") if source == "search_algorithm" else ("random:0", "random:1")
        make_rows_frame(source, modes, skewed=mix == "skewed").write_parquet(root / f"{c}.parquet")
        datasets[c] = str(root / f"{c}.parquet")
        (root / f"{c}.report.json").write_text(json.dumps(
            {"success": True, "dataset": c, "mode_shares": {"train": {m: 0.5 for m in modes}}}))
        reports[c] = str(root / f"{c}.report.json")
    prefix = make_tiny_checkpoint(root / "ckpt" / "prefix", "prefix", ["dfs", "bfs"])
    experts = make_tiny_checkpoint(root / "ckpt" / "experts", "experts", ["dfs", "bfs"])
    summary = {KEY: {split: {"standard": _curve(0.1), "experts": _curve(0.2), "prefix": _curve(0.3)}
                     for split in ("test", "test_adversarial")}}
    (root / "summary.json").write_text(json.dumps(summary))
    fig = _png(root / "passk_search_algorithm-balanced_test.png")
    return ReleaseInputs(
        task="countdown", datasets=datasets, validation_reports=reports,
        models=[ModelRelease(str(prefix), KEY, figures=[str(fig)]),
                ModelRelease(str(experts), KEY, figures=[str(fig)])],
        summary=str(root / "summary.json"),
        params={"seed": 1234, "labels": {"mixes": {"balanced": {"dfs": 0.5, "bfs": 0.5}}}},
        revision={"git_commit": "0" * 40, "dvc_lock": {"artifacts/labels": "md5:abc"}},
    )


def run_publish(inputs: ReleaseInputs, out: Path, **kw):
    return publish_all(
        task=inputs.task, datasets=inputs.datasets, validation_reports=inputs.validation_reports,
        models=inputs.models, summary_path=inputs.summary, params=inputs.params,
        revision=inputs.revision, publish=PublishParams(local_dir=str(out)), log=lambda s: None,
        **kw,
    )


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    inputs = make_release(root / "in")
    out = root / "hub"
    outcomes = run_publish(inputs, out)
    return inputs, out, outcomes


def _py(code: str, **env) -> subprocess.CompletedProcess:
    e = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **env}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=e, capture_output=True,
                          text=True, timeout=600)


# --------------------------------------------------------------------------- tests
def test_layout_and_fresh_process_loading(published):
    inputs, out, outcomes = published
    assert [o.status for o in outcomes] == ["published"] * 3
    ds_dir = out / "datasets" / "modc" / "modc-countdown"
    assert (ds_dir / "search_algorithm-balanced" / "train-00000-of-00001.parquet").exists()
    prefix_dir = out / "models" / "modc" / "modc-countdown-search_algorithm-balanced-prefix"
    experts_dir = out / "models" / "modc" / "modc-countdown-search_algorithm-balanced-experts"
    for d in (prefix_dir, experts_dir / "dfs", experts_dir / "bfs"):
        assert any(d.glob("*.safetensors")) and (d / "modc.json").exists()
    assert (prefix_dir / "figures" / "passk_search_algorithm-balanced_test.png").stat().st_size > 500
    code = f"""
import json, datasets
from transformers import AutoModelForCausalLM, AutoTokenizer
ds = datasets.load_dataset({str(ds_dir)!r}, "search_algorithm-balanced")
out = {{"splits": sorted(ds), "columns": ds["train"].column_names,
       "dtypes": {{k: str(v.dtype) for k, v in ds["train"].features.items()}},
       "rows": {{s: ds[s].num_rows for s in ds}}, "modes": sorted(set(ds["train"]["mode"]))}}
rnd = datasets.load_dataset({str(ds_dir)!r}, "random-balanced")
out["random_modes"] = sorted(set(rnd["train"]["mode"]))
m = AutoModelForCausalLM.from_pretrained({str(prefix_dir)!r})
t = AutoTokenizer.from_pretrained({str(prefix_dir)!r})
out["prefix_has_token"] = "<mode:dfs>" in t.get_vocab()
AutoModelForCausalLM.from_pretrained({str(experts_dir / "bfs")!r})
print(json.dumps(out))
"""
    r = _py(code)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["splits"] == sorted(SPLITS)
    assert got["columns"] == list(ROW_SCHEMA)
    assert got["dtypes"]["correct"] == "bool" and got["dtypes"]["meta"] == "string"
    assert got["rows"] == {s: 6 for s in SPLITS}
    assert got["modes"] == ["bfs", "dfs"] and got["random_modes"] == ["random:0", "random:1"]
    assert got["prefix_has_token"]


def _front_matter(path: Path) -> dict:
    text = path.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_dataset_card_roundtrip(published):
    _, out, _ = published
    readme = out / "datasets" / "modc" / "modc-countdown" / "README.md"
    card = DatasetCard.load(readme)
    meta = card.data.to_dict()
    assert meta == _front_matter(readme)  # YAML written == YAML parsed back
    for field in ("configs", "dataset_info", "license", "task_categories", "tags", "pretty_name",
                  "size_categories"):
        assert meta.get(field), field
    assert {c["config_name"] for c in meta["configs"]} == {"search_algorithm-balanced",
                                                           "random-balanced"}
    sa = next(c for c in meta["configs"] if c["config_name"] == "search_algorithm-balanced")
    assert {f["split"] for f in sa["data_files"]} == set(SPLITS)
    infos = {i["config_name"]: i for i in meta["dataset_info"]}
    assert {s["name"]: s["num_examples"] for s in infos["search_algorithm-balanced"]["splits"]} == {
        s: 6 for s in SPLITS}
    assert "md5:abc" in card.text and "0" * 40 in card.text  # dvc.lock hash, git revision
    assert "load_dataset(" in card.text and "passed" in card.text


def test_model_index_equals_summary(published):
    inputs, out, _ = published
    summary = json.loads(Path(inputs.summary).read_text())[KEY]
    for variant in ("prefix", "experts"):
        readme = out / "models" / "modc" / f"modc-countdown-search_algorithm-balanced-{variant}" / "README.md"
        card = ModelCard.load(readme)
        assert card.data.to_dict() == _front_matter(readme)
        assert card.data.datasets == ["modc/modc-countdown"]
        assert card.data.library_name == "transformers"
        got = {(r.dataset_split, r.metric_config, r.metric_type): r.metric_value
               for r in card.data.eval_results}
        want = {(split, arm, f"pass@{k}"): v for split, arms in summary.items()
                for arm in (variant, "standard")
                for k, v in zip(arms[arm]["k"], arms[arm]["pass_at_k"], strict=True)}
        assert got == want
        assert "ModCSampler" in card.text and "figures/passk_" in card.text


def test_skewed_mix_model_card_points_at_skewed_rows(tmp_path):
    """Each model card names the config of its own training mix, and that config's train split
    holds exactly that mix's training rows (skewed: 5 dfs, 1 bfs; balanced: 3 and 3)."""
    import datasets

    skewed_key = "search_algorithm/skewed"
    inputs = make_release(tmp_path / "in", configs=("search_algorithm-balanced",
                                                     "search_algorithm-skewed"))
    skewed = make_tiny_checkpoint(tmp_path / "in" / "ckpt" / "skewed", "prefix", ["dfs", "bfs"])
    summary = json.loads(Path(inputs.summary).read_text())
    summary[skewed_key] = summary[KEY]
    Path(inputs.summary).write_text(json.dumps(summary))
    inputs.models = [inputs.models[0], ModelRelease(str(skewed), skewed_key)]
    out = tmp_path / "hub"
    run_publish(inputs, out)
    ds_dir = out / "datasets" / "modc" / "modc-countdown"
    train_modes = {}
    for config in ("search_algorithm-balanced", "search_algorithm-skewed"):
        card = ModelCard.load(out / "models" / "modc" / f"modc-countdown-{config}-prefix" / "README.md")
        assert {r.dataset_config for r in card.data.eval_results} == {config}
        assert f'load_dataset("modc/modc-countdown", "{config}", split="train")' in card.text
        rows = datasets.load_dataset(str(ds_dir), config, split="train")
        want = pl.read_parquet(inputs.datasets[config]).filter(pl.col("split") == "train")
        assert sorted(rows["id"]) == sorted(want["id"])
        train_modes[config] = sorted(rows["mode"])
    assert train_modes == {"search_algorithm-balanced": ["bfs"] * 3 + ["dfs"] * 3,
                           "search_algorithm-skewed": ["bfs"] + ["dfs"] * 5}

    # a model whose training config is not in the release is refused, before anything is written
    del inputs.datasets["search_algorithm-skewed"]
    with pytest.raises(PublishError, match="trained on config 'search_algorithm-skewed'"):
        run_publish(inputs, tmp_path / "hub2")
    assert not (tmp_path / "hub2").exists()


def test_dry_run_lists_and_writes_nothing(tmp_path):
    inputs = make_release(tmp_path / "in", configs=("search_algorithm-balanced",))
    lines: list[str] = []
    out = tmp_path / "hub"
    outcomes = publish_all(
        task="countdown", datasets=inputs.datasets, validation_reports=inputs.validation_reports,
        models=inputs.models, summary_path=inputs.summary, params={}, revision={},
        publish=PublishParams(local_dir=str(out)), dry_run=True, log=lines.append)
    assert not out.exists()
    assert {o.status for o in outcomes} == {"dry_run"}
    text = "\n".join(lines)
    for o in outcomes:
        assert o.repo_id in text
        for path, size in o.files:
            assert f"{path}  {size} bytes" in text
    assert "model.safetensors" in text and "search_algorithm-balanced/train-00000-of-00001.parquet" in text


def test_second_publish_is_noop(published):
    inputs, out, _ = published
    before = {p: p.stat().st_ino for p in out.rglob("*")}
    again = run_publish(inputs, out)
    assert [o.status for o in again] == ["unchanged"] * 3
    assert {p: p.stat().st_ino for p in out.rglob("*")} == before  # nothing rewritten


def _cli(*args, env=None):
    e = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "modc_data.cli", *args], cwd=REPO, env=e,
                          capture_output=True, text=True, timeout=600)


def test_failed_validation_refused_and_previous_kept(tmp_path):
    inputs = make_release(tmp_path / "in", configs=("search_algorithm-balanced",))
    inputs.models = inputs.models[:1]
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"publish": {"local_dir": str(tmp_path / "hub")}}))
    spec = tmp_path / "release.json"
    spec.write_text(inputs.to_json())
    env = {"HF_TOKEN": FAKE_TOKEN}
    first = _cli("publish", "--params", str(params), "--inputs", str(spec), env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    before = manifest(tmp_path / "hub")

    # the data changes and its validation now fails: nothing may be published
    make_rows_frame("search_algorithm", per_split=9).write_parquet(
        inputs.datasets["search_algorithm-balanced"])
    Path(inputs.validation_reports["search_algorithm-balanced"]).write_text(
        json.dumps({"success": False, "dataset": "search_algorithm-balanced"}))
    second = _cli("publish", "--params", str(params), "--inputs", str(spec), env=env)
    assert second.returncode == 2
    assert second.stderr.count("\n") == 1, second.stderr  # one line, no traceback
    assert "validation" in second.stderr and "search_algorithm-balanced" in second.stderr
    assert manifest(tmp_path / "hub") == before

    # token hygiene: never in the captured output nor any written file
    logs = first.stdout + first.stderr + second.stdout + second.stderr
    assert FAKE_TOKEN not in logs
    for p in (tmp_path / "hub").rglob("*"):
        if p.is_file():
            assert FAKE_TOKEN.encode() not in p.read_bytes(), p


def test_missing_report_or_evaluation_refused(tmp_path):
    inputs = make_release(tmp_path / "in", configs=("search_algorithm-balanced",))
    with pytest.raises(PublishError, match="validation report .* missing"):
        run_publish(ReleaseInputs(**{**inputs.__dict__, "validation_reports": {
            "search_algorithm-balanced": str(tmp_path / "nope.json")}}), tmp_path / "hub")
    summary = json.loads(Path(inputs.summary).read_text())
    for split in summary[KEY].values():
        del split["prefix"]  # the prefix model was never evaluated
    Path(inputs.summary).write_text(json.dumps(summary))
    with pytest.raises(PublishError, match="no evaluation of arm 'prefix'"):
        run_publish(inputs, tmp_path / "hub")
    assert not (tmp_path / "hub").exists()  # refused before anything was written


def test_adapter_keeps_hub_base_id(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from modc_data.modeling.modc_json import ModcInfo, write_modc
    from tests.tiny_models import save_tiny_base, tiny_tokenizer

    base_dir = save_tiny_base(tmp_path / "local-copy-of-base")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir),
                           LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    ckpt = tmp_path / "adapter"
    model.save_pretrained(ckpt)
    tiny_tokenizer().save_pretrained(ckpt)
    assert json.loads((ckpt / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base_dir)
    write_modc(ckpt, ModcInfo(variant="standard", label_source="search_algorithm", modes=[],
                              base={"kind": "pretrained", "name_or_path": "tiny-org/tiny-base",
                                    "adapter": True}))
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({KEY: {"test": {"standard": _curve(0.1)}}}))
    out = tmp_path / "hub"
    publish_all(task="countdown", datasets={}, validation_reports={},
                models=[ModelRelease(str(ckpt), KEY, name="adapter")], summary_path=summary,
                params={}, revision={}, publish=PublishParams(local_dir=str(out)), log=lambda s: None)
    repo = out / "models" / "modc" / "adapter"
    assert json.loads((repo / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny-org/tiny-base"
    card = ModelCard.load(repo / "README.md")
    assert card.data.base_model == "tiny-org/tiny-base" and card.data.library_name == "peft"

    # a base known only by a local path: a local folder release keeps the path ...
    write_modc(ckpt, ModcInfo(variant="standard", label_source="search_algorithm", modes=[],
                              base={"kind": "pretrained", "name_or_path": str(base_dir)}))
    local = tmp_path / "hub-local"
    publish_all(task="countdown", datasets={}, validation_reports={},
                models=[ModelRelease(str(ckpt), KEY, name="adapter")], summary_path=summary,
                params={}, revision={}, publish=PublishParams(local_dir=str(local)), log=lambda s: None)
    card = ModelCard.load(local / "models" / "modc" / "adapter" / "README.md")
    assert card.data.base_model == str(base_dir)
    # ... but it cannot go to the Hub as an adapter
    with pytest.raises(PublishError, match="Hub id"):
        publish_all(task="countdown", datasets={}, validation_reports={},
                    models=[ModelRelease(str(ckpt), KEY, name="adapter")], summary_path=summary,
                    params={}, revision={}, publish=PublishParams(target="hub", local_dir=str(out)),
                    target=LocalTarget(tmp_path / "never"), log=lambda s: None)
    assert not (tmp_path / "never").exists()


def test_cli_help_for_every_subcommand():
    for sub in ("download", "publish", "sample"):
        r = _cli(sub, "--help")
        assert r.returncode == 0 and "usage: modc " + sub in r.stdout


def test_shipped_allocation_reaches_the_card_and_the_sampler(tmp_path):
    from modc_data.modeling.modc_json import read_modc, write_modc
    from modc_data.sampler import ModCSampler

    ckpt = make_tiny_checkpoint(tmp_path / "prefix", "prefix", ["dfs", "bfs"])
    info = read_modc(ckpt)
    info.free_sampling = True
    info.allocation = {
        "1": {"policy": "free", "counts": {"free": 1, "dfs": 0, "bfs": 0}, "validation": 0.31},
        "8": {"policy": "static", "counts": {"free": 2, "dfs": 5, "bfs": 1}, "validation": 0.87},
    }
    write_modc(ckpt, info)
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({KEY: {"test": {"standard": _curve(0.1), "prefix": _curve(0.2)}}}))
    out = tmp_path / "hub"
    publish_all(task="countdown", datasets={}, validation_reports={},
                models=[ModelRelease(str(ckpt), KEY, name="alloc")], summary_path=summary,
                params={}, revision={}, publish=PublishParams(local_dir=str(out)), log=lambda s: None)
    repo = out / "models" / "modc" / "alloc"
    card = ModelCard.load(repo / "README.md").text
    assert "| 8 | static | free=2, dfs=5, bfs=1 | 0.870 |" in card
    assert "| 1 | free | free=1 | 0.310 |" in card
    assert ModCSampler.from_pretrained(repo).budget(8) == {"free": 2, "dfs": 5, "bfs": 1}


def test_rows_carry_their_separator_and_reduced_strength_is_said(tmp_path):
    """Published completions start with the space that joins them to the prompt (the pipeline's
    rows do not), and encode as the pipeline's rows do; a reduced-strength model says so in
    modc.json and in its card; every model folder has the evaluation's sampling settings."""
    from transformers import AutoTokenizer

    from modc_data.modeling.format import encode_example

    inputs = make_release(tmp_path / "in", configs=("search_algorithm-balanced",))
    inputs.models = [ModelRelease(inputs.models[0].checkpoint, KEY, reduced_strength="trained 6 "
                                  "optimizer steps where this profile trains a model 1200")]
    inputs.params["sample"] = {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 33}
    out = tmp_path / "hub"
    run_publish(inputs, out)
    source = pl.read_parquet(inputs.datasets["search_algorithm-balanced"]).sort("id")
    shards = sorted((out / "datasets" / "modc" / "modc-countdown" / "search_algorithm-balanced")
                    .glob("*.parquet"))
    published = pl.concat([pl.read_parquet(p) for p in shards]).sort("id")
    assert published["completion"].to_list() == [" " + c for c in source["completion"]]
    model = out / "models" / "modc" / "modc-countdown-search_algorithm-balanced-prefix"
    tok = AutoTokenizer.from_pretrained(model)
    for a, b in zip(source.iter_rows(named=True), published.iter_rows(named=True), strict=True):
        assert encode_example(tok, a["prompt"], a["completion"], "dfs") == encode_example(
            tok, b["prompt"], b["completion"], "dfs")
    info = json.loads((model / "modc.json").read_text())
    assert info["reduced_strength"].startswith("trained 6 optimizer steps")
    assert "**Reduced-strength demo model**: trained 6 optimizer steps" in (model / "README.md").read_text()
    gen = json.loads((model / "generation_config.json").read_text())
    assert (gen["do_sample"], gen["temperature"], gen["top_p"], gen["top_k"],
            gen["max_new_tokens"]) == (True, 0.7, 0.9, 0, 33)


def _publish_stage():
    sys.path.insert(0, str(REPO / "stages"))
    try:
        import publish
    finally:
        sys.path.remove(str(REPO / "stages"))
    return publish


def test_default_profiles_short_models_are_reduced_strength():
    from modc_data.config import load_params

    params = load_params(REPO / "params.yaml", pipeline=True)
    said = {k: _publish_stage().reduced_strength(params, j) for k, j in params.train_jobs.items()}
    short = {k for k, j in params.train_jobs.items() if (j.steps or params.train.steps) < params.train.steps}
    assert short and {k for k, v in said.items() if v} == short
    assert all(f"where this profile trains a model {params.train.steps}" in said[k] for k in short)


def test_dvc_lock_hashes_keep_only_the_current_pipelines_stages(tmp_path):
    dvc_lock_hashes = _publish_stage().dvc_lock_hashes
    lock = tmp_path / "dvc.lock"
    lock.write_text(yaml.safe_dump({"schema": "2.0", "stages": {
        "train@a-standard": {"outs": [{"path": "artifacts/models/a-standard", "md5": "1"}]},
        "train@old-standard": {"outs": [{"path": "artifacts/models/old-standard", "md5": "2"}]},
    }}))
    assert dvc_lock_hashes(lock, {"train@a-standard", "publish"}) == {"artifacts/models/a-standard": "1"}
