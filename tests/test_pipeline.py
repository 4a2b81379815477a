"""End to end: the real `dvc repro` on the smoke profile, in a throw-away copy of the repo.

Checks what a user relies on: every stage's outputs appear, metrics and plots are readable by
DVC, a second `dvc repro` does nothing, and a validation-only param change reruns validation
and nothing else.
"""

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import yaml

from modc_data.pipeline import last_repro, read_times, record_time
from modc_data.profiles import write_params
from tests.smoke import copy_repo, run
from tests.smoke import env as smoke_env

ROOT = Path(__file__).resolve().parents[1]


def test_repro_builds_every_artifact(smoke_repo):
    root, log = smoke_repo
    art = root / "artifacts"
    problems = pl.read_parquet(art / "data" / "problems.parquet")
    assert set(problems["split"]) >= {"train", "validation", "test", "test_adversarial"}
    for source in ("search_algorithm", "random", "gradient_cluster", "teacher_id"):
        assert list((art / "datasets" / source).glob("*.parquet")), source
    for arm in yaml.safe_load((root / "params.yaml").read_text())["arms"]:
        report = json.loads((art / "validation" / f"{arm}.json").read_text())
        assert report["success"] is True, arm
    assert (art / "models" / "search_algorithm-skewed-prefix" / "modc.json").exists()
    assert (art / "eval" / "results.md").read_text().count("|") > 10
    summary = json.loads((art / "eval" / "summary.json").read_text())
    assert "search_algorithm/skewed" in summary
    assert list((art / "eval" / "figures").glob("*.png"))
    assert (art / "hub").is_dir()
    # allocation policies (sample.policies): the headline arm's prefix and standard models also
    # sampled the validation splits, capped; other models and the pass@k tables did not use them
    pol = yaml.safe_load((root / "params.yaml").read_text())["sample"]["policies"]
    have = dict(problems.group_by("split").len().iter_rows())
    cap = {val: min(pol["validation_problems"], have[val]) for val in pol["pairs"].values()}
    assert cap["validation"] < have["validation"]  # the cap took effect
    for job in ("search_algorithm-skewed-prefix", "search_algorithm-skewed-standard"):
        drawn = pl.read_parquet(art / "samples" / f"{job}.parquet")
        for val in pol["pairs"].values():
            assert drawn.filter(pl.col("split") == val)["problem_id"].n_unique() == cap[val], (job, val)
    other = pl.read_parquet(art / "samples" / "search_algorithm-balanced-prefix.parquet")
    assert not set(other["split"]) & set(pol["pairs"].values())
    results = (art / "eval" / "results.md").read_text()
    assert "## Allocation policies" in results and "Never loses:" in results
    assert "split `validation" not in results  # no pass@k table on a validation split
    details = json.loads((art / "eval" / "details.json").read_text())
    scored = [r for r in details["policies"] if r["scored"]]
    assert {(r["test"], r["validation"]) for r in scored} == set(pol["pairs"].items())
    for r in scored:
        assert r["arm"] == "search_algorithm-skewed" and r["n_validation"] == cap[r["validation"]]
        assert (art / "eval" / "figures" / r["figure"]).stat().st_size > 1000
        assert set(r["chosen"].values()) <= {"free", "uniform", "standard", "static", "preference"}
        # the smoke profile's headline prefix model samples freely (free_share): it is its own
        # free arm, with q(m|x) from its first token, and its validated allocation ships
        assert r["free_source"] == "prefix" and r["free_sampling"]["samples"] > 0
        assert 0 < r["free_sampling"]["mass_mean"] <= 1 + 1e-6
        assert sorted(r["allocation"], key=int) == [str(k) for k in r["ks"]]
        assert all(sum(e["counts"].values()) == int(k) for k, e in r["allocation"].items())
    drawn = pl.read_parquet(art / "samples" / "search_algorithm-skewed-prefix.parquet")
    assert drawn.filter(pl.col("model") == "search_algorithm-skewed-prefix:free").height > 0
    q = pl.read_parquet(art / "samples" / "search_algorithm-skewed-prefix.q.parquet")
    assert q.height > 0 and q.group_by("problem_id", "split").agg(pl.col("q").sum())["q"].min() > 0.999
    assert pl.read_parquet(art / "samples" / "search_algorithm-balanced-prefix.q.parquet").height == 0
    shipped = [json.loads(p.read_text()) for p in (art / "hub" / "models").rglob("modc.json")
               if json.loads(p.read_text()).get("allocation")]
    assert len(shipped) == 1 and shipped[0]["free_sampling"] and shipped[0]["arm"] == "search_algorithm-skewed"
    # a tagged group (pass@N objective on the skewed rows): trained, evaluated as its own key and
    # against the CE models, published as its own repos
    tagged = json.loads((art / "models" / "search_algorithm-skewed-pass4-prefix" / "modc.json").read_text())
    assert tagged["train"]["objective"] == "pass_at_n" and tagged["train"]["pass_at_n"]["N"] == 4
    assert "search_algorithm/skewed+pass4" in summary
    assert "## Another objective against cross-entropy" in results
    assert "search_algorithm/skewed+pass4 vs search_algorithm/skewed" in results
    assert {r["group"] for r in details["objectives"]} == {"search_algorithm/skewed+pass4",
                                                         "search_algorithm/skewed+grpo"}
    assert list((art / "hub" / "models").rglob("modc-countdown-search_algorithm-skewed-pass4-prefix/modc.json"))
    # RL after SFT (rl_jobs, TRL GRPO): RL'd checkpoints with their record, sampled like any
    # model, evaluated as the tagged group `grpo` and against the SFT models, published
    for variant, start in (("standard", "standard"), ("prefix", "prefix")):
        key = f"search_algorithm-skewed-grpo-{variant}"
        info = json.loads((art / "models" / key / "modc.json").read_text())
        rl = info["train"]["rl"]
        assert rl["steps"] == 2 and rl["completions"] == 2 * 2 * 4 and rl["tokens"] > 0, key
        assert rl["binding"] is (variant == "prefix") and rl["start"].endswith(f"skewed-{start}")
        assert not (art / "models" / key / "_rl_state").exists()
        assert pl.read_parquet(art / "samples" / f"{key}.parquet").height > 0
        assert json.loads((art / "metrics" / "rl" / f"{key}.json").read_text())["problems"] == 16
    assert "search_algorithm/skewed+grpo" in summary
    assert "search_algorithm/skewed+grpo vs search_algorithm/skewed" in results
    assert list((art / "hub" / "models").rglob("modc-countdown-search_algorithm-skewed-grpo-prefix/modc.json"))
    assert "## RL after SFT" in results
    # replicates: the skewed group again with training seeds 1 and 2, each its own train and
    # sample stages, pooled with seed 0 in "Across training seeds" (two-level bootstrap)
    for tag, seed in (("seed1", 1), ("seed2", 2)):
        info = json.loads((art / "models" / f"search_algorithm-skewed-{tag}-prefix" / "modc.json").read_text())
        assert info["params"]["train"]["seed"] == seed and info["free_sampling"]
    assert "## Across training seeds" in results and "| **pooled** |" in results
    assert {r["variant"] for r in details["replicates"]} == {"experts", "prefix"}
    assert all(r["seeds"] == [0, 1, 2] and len(r["per_seed"]) == 3 for r in details["replicates"])
    # each seed's own allocation policies (fit on its validation samples), the bar pooled: one
    # row per policy pair
    pols = details["replicate_policies"]
    assert {(p["test"], p["validation"]) for p in pols} == {
        ("test", "validation"), ("test_adversarial", "validation_adversarial")}
    for pol in pols:
        assert pol["seeds"] == [0, 1, 2] and [s["seed"] for s in pol["per_seed"]] == [0, 1, 2]
        assert set(pol["pooled"]["diff"]) == {"standard", "uniform"} and len(pol["claim"]) == 2
    assert "### Allocation across training seeds" in results
    assert "### search_algorithm-skewed-grpo-prefix from search_algorithm-skewed-prefix" in results
    assert {r["job"] for r in details["rl"] if "modc" not in r} == {
        "search_algorithm-skewed-grpo-standard", "search_algorithm-skewed-grpo-prefix"}
    # the RL'd prefix model against the RL'd standard one, beside their SFT starts
    assert {(r["modc"], r["standard"], r["quantity"]) for r in details["rl"] if "modc" in r} == {
        ("search_algorithm-skewed-grpo-prefix", "search_algorithm-skewed-grpo-standard", q)
        for q in ("SFT", "RL")}
    assert "### Answers" in results and "### RL'd ModC − RL'd standard" in results
    # mode-following is measured where samples have a detectable mode (the smoke models write
    # none), and said to be unmeasured otherwise
    follows = [r for r in details["rl"] if r["quantity"] == "mode-following, RL − start"]
    assert follows or "Not measured: no sample of the start or of the RL'd model" in results


def test_metrics_and_plots_visible_to_dvc(smoke_repo):
    root, _ = smoke_repo
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], root))
    text = json.dumps(metrics)
    assert "only_dfs" in text and "only_bfs" in text
    plots = json.loads(run(["dvc", "plots", "show", "--json"], root))
    assert plots, "dvc plots show returned nothing"


def test_every_stage_of_the_repro_left_its_time(smoke_repo):
    """benchmarks/pipeline_time.py on the real repro: one row per DVC stage, with the choices."""
    root, _ = smoke_repo
    listed = {line.split()[0] for line in run(["dvc", "stage", "list"], root).splitlines() if line.strip()}
    # Every stage keeps its last record; other tests on this shared repo may re-run a few
    # stages (a later repro), so the records' union, not the last repro alone, covers them all.
    records = read_times(root / "artifacts" / "cache" / "time")
    assert {r["stage"] for r in records} == listed
    assert all(r["repro"] is not None for r in records)  # each ran under a dvc process
    last = last_repro(records)
    assert last and len({json.dumps(r["repro"]) for r in last}) == 1
    out = run([sys.executable, str(ROOT / "benchmarks" / "pipeline_time.py"), "--root", str(root),
               "--all"], root)
    assert "train@search_algorithm-skewed-prefix" in out and "threads" in out
    sample = json.loads((root / "artifacts" / "metrics" / "sample" / "search_algorithm-skewed-prefix.json").read_text())
    # measured (or reused) where bf16 is native; without it float32 is the only candidate
    assert sample["dtype"] in ("float32", "bfloat16")
    assert sample["autotune"]["source"] in ("measured", "cache", "only candidate")


def test_headline_sides_reads_the_real_repro(smoke_repo):
    """research/headline_sides.py: the adversarial split by side and the prefix model's own
    allocation fitted on validation, from the smoke run's samples."""
    root, _ = smoke_repo
    out = run([sys.executable, str(ROOT / "research" / "headline_sides.py"), "--root", str(root),
               "--bootstrap", "50"], root)
    assert "only_bfs (" in out and "only_dfs (" in out and "forced bfs @1:" in out
    assert "chosen on validation: k1:" in out and "uniform  k1:" in out


def test_second_repro_does_nothing_and_validation_param_reruns_only_validation(smoke_repo, tmp_path):
    root = copy_repo(smoke_repo[0], tmp_path / "repo")  # it edits params.yaml
    again = run(["dvc", "repro"], root)
    assert "Running stage" not in again
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["validation"]["tolerance"] = params["validation"]["tolerance"] + 0.01
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rerun = run(["dvc", "repro"], root)
    ran = {line.split("'")[1] for line in rerun.splitlines() if line.startswith("Running stage")}
    assert any(name.startswith("validate@") for name in ran), rerun
    # Only validation re-runs, plus publish, whose dataset card quotes the validation report;
    # nothing is regenerated, relabeled, retrained, resampled or re-evaluated.
    assert all(name.startswith("validate@") or name == "publish" for name in ran), ran


def test_verifier_edit_marks_sample_and_evaluate_changed(smoke_repo, tmp_path):
    """The verifier that sets `correct` is a dep of sampling and evaluation (stale
    results must not look up to date)."""
    root = copy_repo(smoke_repo[0], tmp_path / "repo")
    assert json.loads(run(["dvc", "status", "--json"], root)) == {}
    with open(root / "modc_data" / "tasks" / "countdown.py", "a") as f:
        f.write("\n# a verifier edit\n")
    status = json.loads(run(["dvc", "status", "--json"], root))

    def verifier_changed(stage):
        return any("modc_data/tasks" in c.get("changed deps", {})
                   for c in status.get(stage, []) if isinstance(c, dict))

    samples = [s for s in status if s.startswith(("sample@", "sample_rl@"))]
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert len(samples) == len(params["train_jobs"]) + len(params["rl_jobs"])
    assert all(verifier_changed(s) for s in samples), status
    assert verifier_changed("evaluate"), status


# --------------------------------------------------------------------------- stage times
def _record(directory, stage, wall_s, finished_at, repro, **extra):
    (directory / f"{stage}.json").write_text(json.dumps({
        "stage": stage, "wall_s": wall_s, "run_s": wall_s - 1, "finished_at": finished_at,
        "finished": "", "repro": repro, **extra,
    }))


def test_pipeline_time_shows_the_last_repro_with_choices(tmp_path):
    times = tmp_path / "artifacts" / "cache" / "time"
    times.mkdir(parents=True)
    old, new = {"pid": 10, "started_at": 1.0}, {"pid": 20, "started_at": 500.0}
    _record(times, "generate", 7.0, 100.0, old)  # up to date in the last repro
    _record(times, "train@a-b-standard", 60.0, 600.0, new)
    _record(times, "sample@a-b-standard", 30.5, 640.0, new)
    metrics = tmp_path / "artifacts" / "metrics"
    (metrics / "train").mkdir(parents=True)
    (metrics / "sample").mkdir()
    (metrics / "train" / "a-b-standard.json").write_text(json.dumps({
        "standard": {"bf16": False, "threads": 1, "autotune": {
            "bf16": {"choice": "off", "source": "measured", "timings_ms": {"off": 200, "on": 290}},
            "threads": {"threads": 1, "source": "auto", "busy_cores": 1.0}}},
        "total": {"steps": 5}}))
    (metrics / "sample" / "a-b-standard.json").write_text(json.dumps({
        "dtype": "bfloat16", "decoder": "compact", "threads": {"threads": 2, "source": "user"},
        "autotune": {"source": "cache"}, "samples_per_s": 812.5}))
    records = read_times(times)
    assert [r["stage"] for r in records] == ["generate", "train@a-b-standard", "sample@a-b-standard"]
    assert [r["stage"] for r in last_repro(records)] == ["train@a-b-standard", "sample@a-b-standard"]
    out = run([sys.executable, str(ROOT / "benchmarks" / "pipeline_time.py"), "--root", str(tmp_path)], tmp_path)
    assert "1 others were up to date" in out and "| generate |" not in out
    assert "| train@a-b-standard | 60.0 |" in out and "standard: fp32 (measured), threads 1 (auto)" in out
    assert "bfloat16/compact (cache), threads 2, 812.5 samples/s" in out
    assert "**total (2 stages)** | **90.5**" in out and "span 100.0s" in out  # 540 (600 - 60) to 640
    assert "torch capability" in out
    everything = run([sys.executable, str(ROOT / "benchmarks" / "pipeline_time.py"), "--root", str(tmp_path), "--all"], tmp_path)
    assert "| generate | 7.0 |" in everything and "**total (3 stages)** | **97.5**" in everything


def test_a_finished_stage_records_its_time(tmp_path):
    """pipeline.run on a real (trivial) stage script: the record names the stage as DVC does."""
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "noop.py").write_text(
        "from modc_data import pipeline\npipeline.run(lambda params, argv: None)\n")
    write_params(ROOT / "profiles" / "smoke.yaml", tmp_path / "params.yaml")
    env = smoke_env(PYTHONPATH=str(ROOT), DVC_STAGE="noop@x")
    subprocess.run([sys.executable, "stages/noop.py", "x"], cwd=tmp_path, env=env, check=True, capture_output=True)
    env.pop("DVC_STAGE")
    subprocess.run([sys.executable, "stages/noop.py", "y"], cwd=tmp_path, env=env, check=True, capture_output=True)
    records = read_times(tmp_path / "artifacts" / "cache" / "time")
    assert [r["stage"] for r in records] == ["noop@x", "noop@y"]
    for r in records:
        assert r["wall_s"] >= r["run_s"] >= 0 and r["repro"] is None and r["cpus"] >= 1
    direct = record_time("train@k", 1.5, tmp_path / "t")
    assert json.loads(direct.read_text())["run_s"] == 1.5
