"""What ``dvc repro`` would run for a profile, read from DVC itself, without running anything.

    python -m modc_data.plan profiles/gpu-math.yaml

The stages, their order, inputs and outputs come from DVC's own view of dvc.yaml resolved
against the profile (a throw-away copy with the profile as params.yaml), so this cannot drift
from the real DAG. Each stage gets a line of sizes from the params: problems, teachers (and the
backend each is sampled through), teacher samples drawn, models trained (base, LoRA, steps),
samples drawn at evaluation and where results are published. No model, dataset or network is
touched, so it runs anywhere, GPU profiles included.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from modc_data.config import Params, ParamsError
from modc_data.labeling.teachers import looks_local
from modc_data.profiles import load_profile, write_params


def _n(x: int) -> str:
    return f"{x:,}"


def _generate(p: Params) -> list[str]:
    if p.task == "countdown":
        c = p.countdown
        sizes = c.problems
        return [
            f"generate: Countdown, {c.n_numbers} numbers in [{c.value_min}, {c.value_max}], "
            f"search budget {c.budget} nodes",
            f"  problems: train {_n(sizes.train)}, validation {_n(sizes.validation)}, "
            f"test {_n(sizes.test)}, test_adversarial {_n(2 * c.adversarial_per_side)}, "
            f"validation_adversarial {_n(2 * c.validation_side())}",
        ]
    if p.task == "gsm":
        g = p.gsm
        train = 100 - g.test_templates - g.validation_templates
        return [
            f"generate: GSM-Symbolic templates ({g.language}) split by template: test = the "
            f"original GSM8K problems of {g.test_templates} templates, validation = "
            f"{g.validation_variants} variants of each of {g.validation_templates}, train = "
            f"{g.variants} variants of each of the other {train} (of the package's 100)",
            f"  distilled: {_n(p.distill.pool_problems)} train + "
            f"{_n(p.distill.validation_problems)} validation problems from the pool",
        ]
    m = p.math
    lines = ["generate: math problems loaded with `datasets`"]
    for name, src in (("train pool", m.train), ("test", m.test)):
        cap = f"first {_n(src.max_problems)}" if src.max_problems else "all rows"
        cfg = f" ({src.config})" if src.config else ""
        lines.append(
            f"  {name}: {src.dataset}{cfg} split {src.split!r}, {cap}; "
            f"columns problem={src.problem_column!r} answer={src.answer_column!r}"
        )
    lines.append(
        f"  distilled: {_n(p.distill.pool_problems)} train + "
        f"{_n(p.distill.validation_problems)} validation problems from the pool"
    )
    return lines


def _teacher_modes(p: Params) -> list[str]:
    return [
        f"teacher:{t.name}" if t.kind != "dataset" else f"teacher:<{t.teacher_column}>"
        for t in p.distill.teachers
    ]


def _distill(p: Params) -> list[str]:
    d = p.distill
    arms = [k for k, a in p.arms.items() if a.label_source == "teacher_id"]
    if not arms:
        return []
    problems = d.pool_problems + d.validation_problems
    lines = [
        f"label:teacher_id: {len(d.teachers)} teacher entr{'y' if len(d.teachers) == 1 else 'ies'}, "
        f"n={d.n} per (problem, teacher), keep <= {d.keep_per_teacher} verified, "
        f"balance {d.balance!r}, temperature {d.temperature}, top_p {d.top_p}, "
        f"max_new_tokens {_n(d.max_new_tokens)}"
    ]
    if not d.teachers:
        lines.append("  !! distill.teachers is empty: the label:teacher_id stage will fail")
    for t in d.teachers:
        if t.kind == "model":
            path = t.path or ""
            if Path(path).expanduser().exists():
                where = "local dir"
            elif looks_local(path) or t.backend == "openai":
                where = "served model" if t.backend == "openai" else "local dir, not built yet"
            else:
                where = "Hub id"
            mode = f", sampled under mode {t.mode!r}" if t.mode else ""
            lines.append(
                f"  - teacher:{t.name}: model {t.path} ({where}) via {t.backend}{mode}; "
                f"{_n(problems * d.n)} samples"
            )
        elif t.kind == "reference":
            lines.append(f"  - teacher:{t.name}: the problems' own worked solutions (one each)")
        else:
            cfg = f" ({t.config})" if t.config else ""
            who = f"only {t.include}" if t.include else f"every value of {t.teacher_column!r}"
            lines.append(
                f"  - {t.name}: dataset {t.dataset}{cfg} split {t.split!r}, one mode per teacher "
                f"({who}); columns prompt={t.prompt_column!r} solution={t.solution_column!r}"
            )
    models = sum(1 for t in d.teachers if t.kind == "model")
    if models:
        lines.append(
            f"  total teacher samples: {_n(problems * d.n * models)} (all verified by task {p.task!r})"
        )
    return lines


def _modes_of(p: Params, label_source: str) -> int | None:
    if label_source == "teacher_id":
        return (
            len(p.distill.teachers) if all(t.kind != "dataset" for t in p.distill.teachers)
            else None
        )
    if label_source == "random":
        return p.labels.random.n_modes
    if label_source == "gradient_cluster":
        n = p.gradient_cluster.n_clusters
        return n if isinstance(n, int) else None
    return 2  # search_algorithm: dfs, bfs


def _train(p: Params) -> list[str]:
    if not p.train_jobs:
        return ["train: no train_jobs listed"]
    m = p.model
    if m.base == "pretrained":
        lo = m.pretrained.lora
        base = (
            f"pretrained {m.pretrained.name_or_path} + LoRA r={lo.r} alpha={lo.alpha} "
            f"on {','.join(lo.target_modules)}"
        )
    else:
        s = m.scratch
        base = f"scratch Llama hidden {s.hidden_size} x {s.num_hidden_layers} layers"
    t = p.train
    lines = [f"train: {len(p.train_jobs)} job(s); base {base}; batch {t.batch_size}, bf16 {t.bf16}"]
    for key, job in p.train_jobs.items():
        steps = job.steps or t.steps
        modes = _modes_of(p, job.label_source)
        what = {
            "standard": "one model, no mode token",
            "experts": f"{modes if modes is not None else 'one per mode'} experts sharing the steps",
            "prefix": "one model with a mode token per mode",
        }[job.variant]
        if job.free_share:
            what += f" ({job.free_share:.0%} of rows free: it can also sample with no mode token)"
        if job.shared_steps:
            what += (f" (from one model trained {_n(job.shared_steps)} steps on all the rows; "
                     f"{_n(steps - job.shared_steps)} more split between the experts)")
        tc = job.train_params(t)
        if tc.objective == "pass_at_n":
            what += (f"; pass@N loss, N = {tc.pass_at_n.N}, after {_n(tc.pass_at_n.warmup_steps)} "
                     "CE steps")
        if job.tag:
            what += f" (tag {job.tag!r}: compared with the untagged models of {job.arm})"
        lines.append(f"  - {key}: {what}, {_n(steps)} steps, lr {job.lr or t.lr}")
    return lines


def _rl(p: Params) -> list[str]:
    lines = [f"rl: {len(p.rl_jobs)} GRPO job(s) on TRL after SFT"]
    for key, rl in p.rl_jobs.items():
        reward = "verifier and requested mode" if rl.binding else "verifier"
        method = f"pass@{rl.passk_k} advantages" if rl.method == "passk" else "GRPO"
        lines.append(f"  - {key}: from {rl.start}, {method}, reward {reward}, {_n(rl.steps)} steps "
                     f"x {rl.prompts_per_step} prompts x {rl.group_size} completions, "
                     f"lr {rl.lr}, KL {rl.beta}")
    return lines


def _sample(p: Params) -> list[str]:
    s = p.sample
    url = f" at {s.openai.base_url}" if s.backend == "openai" else ""
    lines = [
        f"sample: backend {s.backend}{url}, n={s.n} per (problem, model, mode), splits {s.splits}, "
        f"temperature {s.temperature}, top_p {s.top_p}, max_new_tokens {_n(s.max_new_tokens)}"
    ]
    models = p.models
    for key, job in models.items():
        modes = 1 if job.variant == "standard" else _modes_of(p, job.label_source)
        free = 1 if job.variant == "prefix" and job.free_share else 0  # + n free samples
        per = f"{_n(s.n * (modes + free))}" if modes is not None else f"{s.n} x modes"
        if free:
            per += f" ({s.n} of them free, with no mode token)"
        extra = p.policy_splits(key, job)
        also = ""
        if extra:
            also = " (allocation policies: also " + ", ".join(
                f"{sp}" + (f" ≤ {cap} problems" if cap else "") for sp, cap in extra.items()
                if sp not in s.splits or cap != s.max_problems
            ) + ")"
        lines.append(f"  - {key}: {per} samples per problem{also}")
    return lines


def dvc_stages(profile: str | Path, root: str | Path = ".") -> list[dict]:
    """Stages of dvc.yaml resolved against ``profile``, in run order (DVC's own DAG).

    Each: ``{"name", "cmd", "deps" (non-code inputs), "outs"}``. Works in a throw-away copy
    holding dvc.yaml, .dvc/config and the composed profile as params.yaml; the checkout is untouched.
    """
    import networkx as nx
    from dvc.repo import Repo

    root = Path(root)
    with tempfile.TemporaryDirectory(prefix="modc-plan-") as tmp:
        t = Path(tmp)
        shutil.copy2(root / "dvc.yaml", t / "dvc.yaml")
        (t / ".dvc").mkdir()
        if (root / ".dvc" / "config").exists():
            shutil.copy2(root / ".dvc" / "config", t / ".dvc" / "config")
        write_params(profile, t / "params.yaml")  # composed with its base
        subprocess.run(["git", "init", "-q"], cwd=t, check=True)
        with Repo(str(t)) as repo:
            graph = repo.index.graph  # edges run from a stage to the stages it depends on
            order = list(reversed(list(nx.topological_sort(graph))))
            out = []
            for st in order:
                if not getattr(st, "cmd", None):
                    continue
                deps = [str(Path(d.def_path)) for d in st.deps if not hasattr(d, "params")]
                out.append({
                    "name": st.name,
                    "cmd": st.cmd,
                    "deps": list(dict.fromkeys(
                        d for d in deps if not d.startswith(("modc_data", "stages/")))),
                    "outs": [str(o.def_path) for o in st.outs],
                })
    return out


def _describe(p: Params) -> dict[str, list[str]]:
    """Size lines per stage kind (the part of a stage's name before '@')."""
    v = p.validation
    pub = p.publish
    where = pub.local_dir if pub.target == "local" else f"the Hub under {pub.namespace!r}"
    g = p.gradient_cluster
    return {
        "generate": _generate(p),
        "label": [f"search_algorithm + random ({p.labels.random.n_modes} modes) under mixes "
                  f"{sorted(p.labels.mixes)}"],
        "gradient_cluster": [f"gradients of {g.reference_arm}'s standard model on "
                             f"{g.rows_source} rows, projection {g.projection_dim}, "
                             f"{g.n_clusters} clusters"],
        "distill": _distill(p),
        "validate": [f"great-expectations suites; share tolerance {v.tolerance}, "
                     f">= {v.min_rows_per_mode} rows per mode and split"],
        "train": _train(p),
        "rl": _rl(p),
        "sample": _sample(p),
        "sample_rl": [],
        "evaluate": [f"pass@k curves and ModC split, {p.evaluate.bootstrap} bootstrap "
                     f"resamples, {p.evaluate.ci:.0%} CI"],
        "publish": [f"{pub.target} -> {where}"],
    }


def plan(profile: str | Path, root: str | Path = ".") -> list[str]:
    """Lines describing each stage ``dvc repro`` would run for ``profile`` (nothing is run).

    Raises ParamsError (naming the field) for a profile that does not validate.
    """
    p = load_profile(profile, pipeline=True)
    stages = dvc_stages(profile, root)
    lines = [f"plan for task {p.task!r} (seed {p.seed}): {len(stages)} stages; nothing is run"]
    described: set[str] = set()
    for st in stages:
        kind = st["name"].split("@")[0]
        lines.append(f"{st['name']}: {st['cmd']}")
        if st["deps"]:
            lines.append(f"    needs {', '.join(st['deps'])}")
        lines.append(f"    makes {', '.join(st['outs'])}")
        if kind not in described:  # sizes once per kind: they come from one params block
            described.add(kind)
            lines += [f"    {line.strip()}" for line in _describe(p)[kind]]
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m modc_data.plan PROFILE.yaml", file=sys.stderr)
        return 2
    try:
        print("\n".join(plan(argv[0])))
    except (ParamsError, FileNotFoundError) as err:
        print(f"plan: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
