"""Cross-block checks of a params file, run when it loads (``config.Params`` validation).

A block validates its own fields; ``ParamsChecks``, mixed into ``config.Params``, checks what
one block names in another: arm and job keys, that some stage makes every dataset an arm or a
clustering uses, RL jobs' starts, teachers that are pipeline outputs, sampled splits and policy
pairs of the task, ``evaluate.ks`` against ``sample.n``. Each problem is one line naming the
field and the fix. What dvc.yaml requires of a profile file (``missing_pipeline_keys``) and the
error report of a failed load are in ``modc_data.config``.
"""

from __future__ import annotations

from modc_data.experiment import TASK_SPLITS


def _producer_hint(label_source: str) -> str:
    return {
        "search_algorithm": "add the mix to labels.mixes (and 'search_algorithm' to labels.sources)",
        "random": "add the mix to labels.mixes (and 'search_algorithm' to labels.sources)",
        "teacher_id": "set distill.mixes to [<mix>]",
        "gradient_cluster": "add the mix to gradient_cluster.mixes",
    }[label_source]


class ParamsChecks:
    """The cross-block checks of ``config.Params``, over the blocks it holds and the queries
    of ``experiment.ExperimentQueries`` (``dataset_mixes``, ``model_key``) it also inherits."""

    def _reference_errors(self) -> list[str]:
        errs: list[str] = []
        produced = self.dataset_mixes()
        if "search_algorithm" in self.labels.sources and self.task != "countdown":
            errs.append(
                f"labels.sources: 'search_algorithm' needs DFS/BFS traces, which only task "
                f"'countdown' has (task is {self.task!r}); use labels.sources: []"
            )
        for key, arm in self.arms.items():
            if key != arm.key:
                errs.append(f"arms.{key}: key must be '<label_source>-<mix>' = {arm.key!r}")
            if arm.mix not in produced[arm.label_source]:
                errs.append(
                    f"arms.{key}.mix: no stage makes {arm.label_source}/{arm.mix}.parquet; "
                    f"{_producer_hint(arm.label_source)} (now {sorted(produced[arm.label_source])})"
                )
            if arm.standard_from is not None:
                if arm.standard_from not in self.arms:
                    errs.append(f"arms.{key}.standard_from: unknown arm {arm.standard_from!r}; "
                                f"arms are {sorted(self.arms)}")
                elif f"{arm.standard_from}-standard" not in self.train_jobs:
                    errs.append(f"arms.{key}.standard_from: arm {arm.standard_from!r} has no "
                                f"standard model (add train_jobs.{arm.standard_from}-standard)")
        seen: dict[str, str] = {}  # a job's settings but its tag, with its seed -> job key
        for key, job in sorted(self.train_jobs.items()):
            same = job.settings() + f" seed {self.train.seed if job.seed is None else job.seed}"
            if job.seed is not None and same in seen:
                errs.append(f"train_jobs.{key}.seed: {job.seed} is also the training seed of "
                            f"{seen[same]}, which is the same job; a replicate needs a seed of its own")
            seen.setdefault(same, key)
        for key, job in self.train_jobs.items():
            steps = job.steps or self.train.steps
            if job.shared_steps is not None and job.shared_steps >= steps:
                errs.append(f"train_jobs.{key}.shared_steps: {job.shared_steps} leaves none of the "
                            f"{steps} steps to the experts; give fewer than {steps}")
            if job.arm not in self.arms:
                errs.append(f"train_jobs.{key}: arm {job.arm!r} is not in arms {sorted(self.arms)}")
            elif key != job.key:
                errs.append(f"train_jobs.{key}: key must be '{job.key}' ('<label_source>-<mix>"
                            f"[-<tag>]-<variant>')")
            elif (job.label_source, job.mix) != (self.arms[job.arm].label_source,
                                                 self.arms[job.arm].mix):
                errs.append(f"train_jobs.{key}: label_source/mix must match arms.{job.arm}")
        errs += self._rl_errors()
        g = self.gradient_cluster
        if g.mixes:
            ref = self.arms.get(g.reference_arm)
            if ref is None:
                errs.append(f"gradient_cluster.reference_arm: unknown arm {g.reference_arm!r}; "
                            f"arms are {sorted(self.arms)}")
            else:
                if ref.label_source != g.rows_source:
                    errs.append(f"gradient_cluster.rows_source: {g.rows_source!r} is not the "
                                f"reference arm's label source {ref.label_source!r}")
                if f"{g.reference_arm}-standard" not in self.train_jobs:
                    errs.append(f"gradient_cluster.reference_arm: {g.reference_arm!r} has no "
                                f"standard model (add train_jobs.{g.reference_arm}-standard)")
            for mix in g.mixes:
                if mix not in produced.get(g.rows_source, set()):
                    errs.append(f"gradient_cluster.mixes: no stage makes {g.rows_source}/{mix}"
                                f".parquet to cluster; {_producer_hint(g.rows_source)}")
        d = self.distill
        if d.mixes and not d.teachers:
            errs.append("distill.teachers: empty, but distill.mixes asks for a teacher_id "
                        "dataset; list the teachers or set distill.mixes: []")
        for i, t in enumerate(d.teachers):
            local = t.path if t.kind == "model" else t.dataset if t.kind == "dataset" else None
            if local and local.startswith("artifacts/") and not (
                local == d.after or local.startswith(d.after.rstrip("/") + "/")
            ):
                errs.append(f"distill.teachers[{i}] ({t.name}): {local!r} is a pipeline output, "
                            f"so distill.after must be it or a folder above it (now {d.after!r})")
        splits = TASK_SPLITS.get(self.task, ())
        bad = [sp for sp in self.sample.splits if sp not in splits]
        if bad:
            errs.append(f"sample.splits: {bad} are not splits of task {self.task!r}; "
                        f"allowed: {list(splits)}")
        pol = self.sample.policies
        for arm in pol.arms:
            if arm not in self.arms:
                errs.append(f"sample.policies.arms: unknown arm {arm!r}; arms are "
                            f"{sorted(self.arms)}")
            elif self.model_key(arm, "prefix") is None or self.model_key(arm, "standard") is None:
                errs.append(f"sample.policies.arms: arm {arm!r} needs a prefix and a standard "
                            f"model (train_jobs.{arm}-prefix and -standard or standard_from)")
        if pol.arms:
            for test, val in pol.pairs.items():
                bad = [sp for sp in (test, val) if sp not in splits]
                if bad:
                    errs.append(f"sample.policies.pairs: {bad} are not splits of task "
                                f"{self.task!r}; allowed: {list(splits)}")
                elif test == val:
                    errs.append(f"sample.policies.pairs: {test!r} maps to itself; fit policies "
                                "on a validation split, never on the split they are scored on")
        if self.evaluate.ks and max(self.evaluate.ks) > self.sample.n:
            errs.append(f"evaluate.ks: k={max(self.evaluate.ks)} exceeds sample.n="
                        f"{self.sample.n} (pass@k needs n >= k samples per mode)")
        return errs

    def _rl_errors(self) -> list[str]:
        errs: list[str] = []
        for key, rl in self.rl_jobs.items():
            start = self.train_jobs.get(rl.start)
            if start is None:
                errs.append(f"rl_jobs.{key}.start: no train job {rl.start!r}; train jobs are "
                            f"{sorted(self.train_jobs)}")
                continue
            want = f"{start.arm}-{rl.tag}-{start.variant}"
            if key != want:
                errs.append(f"rl_jobs.{key}: key must be {want!r} ('<arm>-<tag>-<variant>' of "
                            f"its start {rl.start!r} and tag {rl.tag!r})")
            elif key in self.train_jobs:
                errs.append(f"rl_jobs.{key}: a train job has this key; give the RL job another tag")
            if rl.binding and (start.variant == "standard" or self.task != "countdown"):
                errs.append(f"rl_jobs.{key}.binding: needs a model with modes (prefix or experts) "
                            f"on a task that detects a completion's mode (countdown); start is "
                            f"a {start.variant} model on task {self.task!r}")
        return errs
