"""The evaluate stage's work: from the samples and models of a run to its evaluation files.

    build(params, Path("artifacts"))   # writes artifacts/eval/{results.md, summary.json, ...}

Which models form a compared group (``arm_specs``: one per arm and tag; an RL'd ModC model
without its own standard model meets the standard model RL'd the same way, ``rl_standard``),
what each was trained with (``training_compute``), and the order of results.md's sections:
the pass@k comparisons, diversity, maj@k, the groups across training seeds, other objectives,
RL, the label sections and the allocation policies. What is not here: any estimate or table
(each section's own module computes and renders it) and reading params (``config``).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from modc_data.artifacts import write_text
from modc_data.evaluation.comparisons import ArmSpec
from modc_data.evaluation.estimates import evaluate
from modc_data.evaluation.figures import write_figures, write_replicates_figures
from modc_data.evaluation.label_reports import distill_section, gradient_cluster_section
from modc_data.evaluation.objective_sections import objective_section
from modc_data.evaluation.passk import default_ks
from modc_data.evaluation.policy_sections import policy_sections
from modc_data.evaluation.quality_sections import diversity_section, majority_section
from modc_data.evaluation.replicate_policies import (
    replicate_policy_rows,
    replicate_policy_section,
)
from modc_data.evaluation.replicates import replicate_rows, replicate_section, replicate_sets
from modc_data.evaluation.report import results_markdown, write_reports
from modc_data.evaluation.rl_sections import RLJob, rl_section
from modc_data.experiment import model_dir
from modc_data.modeling.modc_json import read_modc
from modc_data.tasks import task_from_params


def arm_specs(params, artifacts: Path) -> dict[str, ArmSpec]:
    """One comparison per arm and per tag of its tagged jobs (``<arm>`` / ``<arm>-<tag>``)."""
    specs = {}
    for key, arm in params.arms.items():
        for tag in [None, *params.tags_of(key)]:
            standard = params.model_key(key, "standard", tag)
            experts = params.model_key(key, "experts", tag)
            prefix = params.model_key(key, "prefix", tag)
            if standard is None and tag is not None:
                standard = rl_standard(params, experts or prefix)
            if standard is None:
                continue
            ref = experts or prefix
            if ref is None and tag is not None:
                # a tagged standard model alone (e.g. one N of pass@N being chosen on validation):
                # its own group, against the untagged ModC model's modes and the CE models
                ref = params.model_key(key, "prefix") or params.model_key(key, "experts")
            if ref is None:
                continue  # nothing to compare for this group
            modes = read_modc(model_dir(ref, artifacts)).modes
            specs[key if tag is None else f"{key}-{tag}"] = ArmSpec(
                arm.label_source, arm.mix, standard, tuple(modes), experts, prefix, tag)
    return specs


def rl_standard(params, modc: str | None) -> str | None:
    """For an RL'd ModC model whose tag has no standard model (e.g. the binding-kept prefix
    model): the arm's standard model RL'd by the same method with the same RL settings' compute
    (steps, prompts, group size), which it is then compared with. None otherwise."""
    job = params.rl_jobs.get(modc or "")
    if job is None:
        return None
    arm = params.train_jobs[job.start].arm
    for key, other in sorted(params.rl_jobs.items()):
        start = params.train_jobs[other.start]
        if (start.arm == arm and start.variant == "standard" and other.method == job.method
                and not other.binding and (other.steps, other.prompts_per_step, other.group_size)
                == (job.steps, job.prompts_per_step, job.group_size)):
            return key
    return None


def training_compute(model: str, artifacts: Path) -> dict[str, float]:
    """``{"steps", "tokens"}`` a model was trained with, from its modc.json (an experts group:
    all its experts together, the shared start included; an RL'd model: SFT and RL added)."""
    train = read_modc(model_dir(model, artifacts)).train
    rl = train.get("rl") or {}
    return {u: float(train[u]) + float(rl.get(u) or 0) for u in ("steps", "tokens")
            if train.get(u) is not None}


def rl_jobs(params, artifacts: Path) -> list[RLJob]:
    """The RL jobs as the RL section reads them (modes from the RL'd model's modc.json)."""
    out = []
    for key, rl in params.rl_jobs.items():
        method = f"pass@{rl.passk_k} RL" if rl.method == "passk" else "GRPO"
        reward = "verifier and requested mode" if rl.binding else "verifier"
        start = params.train_jobs[rl.start]
        out.append(RLJob(key=key, start=rl.start, variant=start.variant,
                         modes=tuple(read_modc(model_dir(key, artifacts)).modes),
                         how=f"{method}, reward {reward}, {rl.steps} steps", method=rl.method,
                         binding=rl.binding, arm=start.arm))
    return out


def label_reports(source: str, artifacts: Path) -> dict:
    """{mix: report} of one label source's stages (empty when the profile has none)."""
    metrics = artifacts / "metrics" / source
    return {p.stem: json.loads(p.read_text()) for p in sorted(metrics.glob("*.json"))}


def label_sections(artifacts: Path) -> str:
    """results.md's sections on where the labels came from (gradient clusters, distillation)."""
    text = gradient_cluster_section(label_reports("gradient_cluster", artifacts))
    for mix, rep in label_reports("distill", artifacts).items():
        text += "\n" + distill_section(rep, mix)
    return text


def labels_only(params, artifacts: Path) -> None:
    """A profile with no group of models to compare (e.g. a reference model for gradient
    clusters only): results.md holds the label sections; the other outputs are empty."""
    out = artifacts / "eval"
    for d in ("figures", "plots"):
        (out / d).mkdir(parents=True, exist_ok=True)
    for name in ("summary.json", "details.json", "metrics.json"):
        write_text("{}\n", out / name)
    results = "# Results\n\nNo group of models to compare in this profile (no experts or " \
        f"prefix model beside a standard one); trained: {', '.join(sorted(params.train_jobs))}.\n"
    write_text(results + "\n" + label_sections(artifacts), out / "results.md")


def build(params, artifacts: Path) -> None:
    """The evaluate stage's outputs under ``artifacts/eval`` from the samples and models under
    ``artifacts``."""
    specs = arm_specs(params, artifacts)
    if not specs:
        return labels_only(params, artifacts)
    models = {m for s in specs.values() for m in (s.standard, s.experts, s.prefix) if m}
    every = pl.concat(
        [pl.read_parquet(artifacts / "samples" / f"{m}.parquet") for m in sorted(models)]
    )
    # pass@k, diversity and maj@k are on sample.splits; the validation splits the policy arms
    # also sampled (sample.policies.pairs) only fit the allocation policies.
    samples = every.filter(pl.col("split").is_in(list(params.sample.splits)))
    problems = pl.read_parquet(artifacts / "data" / "problems.parquet")
    cfg = params.evaluate
    result = evaluate(
        samples, problems, specs, ks=cfg.ks, bootstrap=cfg.bootstrap, ci=cfg.ci, seed=cfg.seed,
        collapse_mode=cfg.collapse_mode, verdict_min_k=cfg.verdict_min_k,
        compute={m: training_compute(m, artifacts) for m in models},
    )
    out = artifacts / "eval"
    write_figures(result, out / "figures")

    # The verdicts in `correct` are the task verifier's; results name it (and dvc.yaml makes
    # this stage depend on modc_data/tasks, so a verifier change re-evaluates).
    task = task_from_params(params)
    rules = {k: v for k, v in sorted(vars(task).items()) if not k.startswith("_")}
    results = results_markdown(
        result, note=f"Samples verified by task `{task.name}` (rules {rules or 'none'}).")
    diversity, diversity_rows = diversity_section(samples)
    ks = cfg.ks or default_ks(params.sample.n)  # the budgets pass@k is reported at
    majority, majority_rows = majority_section(samples, task=task.name, ks=ks,
                                               n_resamples=cfg.bootstrap, ci=cfg.ci, seed=cfg.seed)
    results += "\n" + diversity + "\n" + majority
    sets = replicate_sets(params.replicates(), specs)
    replicate_groups = {g.key for rs in sets for g in rs.groups if g.tag is not None}
    replicates = replicate_rows(samples, sets, ks, n_resamples=cfg.bootstrap, ci=cfg.ci,
                                seed=cfg.seed, min_k=cfg.verdict_min_k)
    if replicates:
        figures = write_replicates_figures(replicates, out / "figures")
        results += "\n" + replicate_section(replicates, cfg.ci, figures)
    objectives = {}  # how each tagged group's standard model was trained (its modc.json)
    for spec in specs.values():
        if spec.tag is not None:
            t = read_modc(model_dir(spec.standard, artifacts)).train
            n = t.get("pass_at_n") or {}
            objectives[spec.key] = f"objective {t.get('objective', 'ce')}" + (
                f", N = {n.get('N')}, CE warm-up {n.get('warmup_steps')} steps"
                if t.get("objective") == "pass_at_n" else "")
    # tagged groups on another objective; replicates (another training seed) are pooled above
    objective, objective_rows = objective_section(
        samples, {k: v for k, v in specs.items() if v.key not in replicate_groups}, ks, n_resamples=cfg.bootstrap, ci=cfg.ci, seed=cfg.seed,
        collapse_mode=cfg.collapse_mode, objectives=objectives)
    if objective:
        results += "\n" + objective
    rl, rl_rows = rl_section(samples, rl_jobs(params, artifacts), ks, n_resamples=cfg.bootstrap, ci=cfg.ci,
                             seed=cfg.seed, figures_dir=out / "figures")
    if rl:
        results += "\n" + rl
    results += "\n" + label_sections(artifacts)
    pol = params.sample.policies
    policy_rows, replicate_policies = [], []
    if pol.arms:
        policy_arms = {a: (params.model_key(a, "prefix"), params.model_key(a, "standard"),
                           list(specs[a].modes)) for a in pol.arms}
        prefixes = {g.prefix for rs in sets for g in rs.groups if g.prefix} | {
            p for p, _, _ in policy_arms.values()}
        q_files = {p: artifacts / "samples" / f"{p}.q.parquet" for p in prefixes}
        q_tables = {p: pl.read_parquet(f) for p, f in q_files.items() if f.exists()}
        section, policy_rows = policy_sections(
            every, policy_arms, pol.pairs, ks, figures_dir=out / "figures",
            n_resamples=cfg.bootstrap, ci=cfg.ci, seed=cfg.seed,
            q_tables=q_tables,
        )
        # the policy arms' groups under other training seeds: the bar pooled over the seeds
        replicate_policies = replicate_policy_rows(
            every, [rs for rs in sets if rs.arm in pol.arms], pol.pairs, ks, q_tables=q_tables,
            n_resamples=cfg.bootstrap, ci=cfg.ci, seed=cfg.seed)
        results += "\n" + section
        if replicate_policies:
            results += "\n" + replicate_policy_section(replicate_policies)
    write_reports(result, out, results_md=results, details_extra={
        "diversity": diversity_rows, "majority": majority_rows, "policies": policy_rows,
        "objectives": objective_rows, "rl": rl_rows,
        **({"replicates": replicates} if replicates else {}),
        **({"replicate_policies": replicate_policies} if replicate_policies else {})})
