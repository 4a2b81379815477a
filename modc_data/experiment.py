"""Queries of an experiment: what a validated profile makes and how its parts relate.

``ExperimentQueries`` is mixed into ``config.Params``: the datasets its stages write, every model
it makes (train jobs and RL jobs), an arm's jobs, tags and model keys, which models are compared
with each other, which groups are replicates of one group under other training seeds, and the
extra splits a model samples for allocation policies. Also where a job
writes its model (``model_dir``) and the splits each task generates (``TASK_SPLITS``). Nothing
here reads files or validates params: the fields are in the block modules, the load-time checks
in ``modc_data.params_checks``, reading a params file in ``modc_data.config``.
"""

from __future__ import annotations

from pathlib import Path

from modc_data.params_training import TrainJobParams

# Splits each task's generate stage writes.
TASK_SPLITS = {
    "countdown": ("train", "validation", "test", "test_adversarial", "validation_adversarial"),
    "math": ("train", "validation", "test"),
    "gsm": ("train", "validation", "test"),
}


def model_dir(job_key: str, root: str | Path = "artifacts") -> Path:
    """Where train job ``job_key`` writes its model (dvc.yaml: ``artifacts/models/${key}``)."""
    return Path(root) / "models" / job_key


class ExperimentQueries:
    """Queries over the blocks of the ``config.Params`` they are mixed into (``arms``,
    ``train_jobs``, ``rl_jobs``, ``labels``, ``distill``, ``gradient_cluster``, ``sample``)."""

    @property
    def models(self) -> dict[str, TrainJobParams]:
        """Every model the pipeline makes, by key: the train jobs, and each RL job as the tagged
        job of its start's arm and variant (what sampling, evaluation and publishing read)."""
        out = dict(self.train_jobs)
        for key, rl in self.rl_jobs.items():
            start = self.train_jobs.get(rl.start)
            if start is not None:
                out[key] = TrainJobParams(label_source=start.label_source, mix=start.mix,
                                          variant=start.variant, tag=rl.tag, steps=start.steps)
        return out

    def dataset_mixes(self) -> dict[str, set[str]]:
        """label source -> the mixes whose dataset some stage of this profile writes."""
        search = "search_algorithm" in self.labels.sources
        random_mixes = {a.mix for a in self.arms.values() if a.label_source == "random"}
        return {
            "search_algorithm": set(self.labels.mixes) if search else set(),
            "random": (random_mixes & set(self.labels.mixes)) if search else set(),
            "teacher_id": set(self.distill.mixes),
            "gradient_cluster": set(self.gradient_cluster.mixes),
        }

    def policy_splits(self, job_key: str, job: TrainJobParams | None = None
                      ) -> dict[str, int | None]:
        """Extra splits the sample stage of ``job_key`` samples for allocation policies:
        {split: cap on problems}. ``job``: the model's job (an RL job's, ``models``); default
        ``train_jobs[job_key]``. The pairs' test splits keep ``sample.max_problems`` (they
        are scored); their validation splits are capped at ``validation_problems``."""
        pol = self.sample.policies
        job = job or self.train_jobs[job_key]
        # Decided from this job and `arms` alone (the sample stage's params), not the other jobs.
        # A tagged job samples them like its untagged twin: its validation samples are where a
        # setting of its objective (e.g. pass@N's N) is chosen; the policies use untagged models.
        if not (
            (job.variant == "prefix" and job.arm in pol.arms)
            or (job.variant == "standard" and job.arm in {self.standard_arm(a) for a in pol.arms})
        ):
            return {}
        out: dict[str, int | None] = {}
        for test, val in pol.pairs.items():
            out[test] = self.sample.max_problems
            out[val] = pol.validation_problems
        return out

    def standard_arm(self, arm: str) -> str:
        """Arm whose standard model serves ``arm`` (itself unless ``standard_from`` is set)."""
        return self.arms[arm].standard_from or arm

    def compared(self, job_key: str) -> bool:
        """Whether ``job_key`` belongs to a group of models compared with each other: a ModC
        model, or a standard model whose arm (or an arm it serves via ``standard_from``) has
        experts or a prefix model."""
        models = self.models
        job = models[job_key]
        served = {job.arm} | {a for a in self.arms if self.standard_arm(a) == job.arm}
        return job.variant != "standard" or any(
            j.variant != "standard" for j in models.values() if j.arm in served)

    def jobs_of_arm(self, arm: str) -> dict[str, TrainJobParams]:
        return {k: j for k, j in self.models.items() if j.arm == arm}

    def model_key(self, arm: str, variant: str, tag: str | None = None) -> str | None:
        """Train-job key of ``variant`` for ``arm`` (and ``tag``); an untagged standard may come
        from another arm (``standard_from``)."""
        if tag is not None:
            key = f"{arm}-{tag}-{variant}"
        else:
            key = f"{self.standard_arm(arm) if variant == 'standard' else arm}-{variant}"
        return key if key in self.models else None

    def tags_of(self, arm: str) -> list[str]:
        """The tags of ``arm``'s tagged jobs (RL jobs included), sorted."""
        return sorted({j.tag for j in self.models.values() if j.arm == arm and j.tag})

    def replicates(self) -> dict[str, dict[int, str | None]]:
        """arm -> {training seed: tag (None: the untagged group)} for every arm whose untagged
        group has replicates: tagged groups whose jobs each set ``seed`` and otherwise equal the
        untagged job of the same variant (same variants, steps, objective ...). Arms without
        replicates are left out, so a single-seed profile gives {}."""
        out: dict[str, dict[int, str | None]] = {}
        for arm in self.arms:
            jobs = {k: j for k, j in self.train_jobs.items() if j.arm == arm}
            base = {j.variant: j for j in jobs.values() if j.tag is None}
            if "standard" not in base or len(base) < 2:
                continue
            seeds = {j.seed for j in base.values()}
            if len(seeds) != 1:
                continue
            found: dict[int, str | None] = {}
            for tag in sorted({j.tag for j in jobs.values() if j.tag}):
                group = {j.variant: j for j in jobs.values() if j.tag == tag}
                same = set(group) == set(base) and all(
                    group[v].seed is not None
                    and group[v].settings() == base[v].settings()
                    for v in group)
                seed_of = {j.seed for j in group.values()}
                if same and len(seed_of) == 1:
                    found[seed_of.pop()] = tag
            if found:
                base_seed = seeds.pop()
                found[self.train.seed if base_seed is None else base_seed] = None
                out[arm] = dict(sorted(found.items()))
        return out
