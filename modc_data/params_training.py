"""Params blocks of the models: which arms exist, the jobs that train them, and how.

Holds ``arms`` (``ArmParams``), ``train_jobs`` (``TrainJobParams``, with the pass@N objective
``PassAtNParams``), ``rl_jobs`` (``RLJobParams``), the base model (``model``) and the shared
training settings (``train``). Each block checks only its own fields; checks across blocks (a
job's arm exists, an RL job's start is a train job) are in ``modc_data.params_checks``, and
queries over all jobs (model keys, tags, groups) in ``modc_data.experiment``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from modc_data.params_blocks import Block, Threads
from modc_data.schema import group_key


# --------------------------------------------------------------------------- arms and jobs
class ArmParams(Block):
    """One (label source, mix) dataset that models are trained on and evaluated.

    The key of an arm in ``params.arms`` is ``<label_source>-<mix>``; its dataset is
    ``artifacts/datasets/<label_source>/<mix>.parquet``.
    """

    label_source: Literal["search_algorithm", "random", "gradient_cluster", "teacher_id"]  # which labeled dataset: search_algorithm, teacher_id, gradient_cluster or random
    mix: str  # which mix of that label source's rows (a key of labels.mixes, distill.mixes or gradient_cluster.mixes)
    standard_from: str | None = Field(
        None, description="arm whose standard model is reused (same training rows)"
    )

    @property
    def key(self) -> str:
        return f"{self.label_source}-{self.mix}"


class PassAtNParams(Block):
    """The pass@N objective ``-log(1 - (1 - p)^N)`` (modc_data.modeling.objectives)."""

    N: int = Field(32, ge=1, description="sampling budget trained for; 1 is cross-entropy")
    warmup_steps: int = Field(
        0, ge=0, description="cross-entropy for the first this many optimizer steps (0: none)"
    )


class TrainJobParams(Block):
    """One DVC train stage: the standard model, all experts, or the prefix model of an arm."""

    label_source: str  # the arm's label source
    mix: str  # the arm's mix
    variant: Literal["standard", "experts", "prefix"]  # standard (all rows, no modes), experts (one model per mode) or prefix (one model, mode token before the prompt)
    steps: int | None = Field(None, gt=0, description="override train.steps")
    lr: float | None = Field(None, gt=0, description="override train.lr")
    objective: Literal["ce", "pass_at_n"] | None = Field(None, description="override train.objective")
    pass_at_n: PassAtNParams | None = Field(None, description="override train.pass_at_n")
    shared_steps: int | None = Field(
        None, gt=0, description="experts: steps of one model on all the arm's rows, from which "
        "every expert then starts (shared start); the experts split the remaining steps",
    )

    tag: str | None = Field(
        None, pattern=r"^[a-z0-9_]+$", description="a second model of the same arm and variant "
        "(e.g. 'pass32' for an objective: pass_at_n job beside the CE one): the key becomes "
        "'<arm>-<tag>-<variant>' and the tagged jobs of an arm are evaluated as their own group, "
        "and against the untagged models",
    )
    seed: int | None = Field(
        None, description="override train.seed (initialisation, data order): a replicate of the "
        "arm's untagged job trained with another seed, under a tag of its own (e.g. 'seed1'); "
        "evaluation pools a group's replicates",
    )
    free_share: float | None = Field(
        None, ge=0, le=1, description="prefix: share of rows trained with the mode token as the "
        "first *target* token (after the prompt) instead of in the prompt, so the model can also "
        "sample freely, choosing its own mode; 0/None: forced modes only",
    )

    @model_validator(mode="after")
    def _shared_only_for_experts(self) -> TrainJobParams:
        if self.shared_steps is not None and self.variant != "experts":
            raise ValueError(f"shared_steps is for variant 'experts' (a shared start), not {self.variant!r}")
        if self.free_share and self.variant != "prefix":
            raise ValueError(f"free_share is for variant 'prefix' (free sampling), not {self.variant!r}")
        return self

    @property
    def arm(self) -> str:
        return f"{self.label_source}-{self.mix}"

    @property
    def group(self) -> str:
        """``<arm>`` or ``<arm>-<tag>``: the models compared with each other in evaluation."""
        return self.arm if self.tag is None else f"{self.arm}-{self.tag}"

    @property
    def key(self) -> str:
        """The train-job key this job must have: ``<group>-<variant>``."""
        return f"{self.group}-{self.variant}"

    @property
    def summary_key(self) -> str:
        """Its group's key in results and summary.json (``schema.group_key``)."""
        return group_key(self.label_source, self.mix, self.tag)

    def settings(self) -> str:
        """Everything but ``seed`` and ``tag``: equal for a job and its replicates."""
        return self.model_dump_json(exclude={"seed", "tag"})

    def train_params(self, train: TrainParams) -> TrainParams:
        """``train`` with this job's overrides (lr, objective, pass_at_n, seed) applied."""
        fields = ("lr", "objective", "pass_at_n", "seed")
        update = {f: getattr(self, f) for f in fields if getattr(self, f) is not None}
        return train.model_copy(update=update)


class RLJobParams(Block):
    """One DVC rl stage: GRPO (TRL) from a trained model; its key is ``<arm>-<tag>-<variant>``,
    so evaluation compares it with the arm's other ``tag`` models and with the untagged ones."""

    start: str  # the train job RL starts from (its checkpoint)
    tag: str = Field("rl", pattern=r"^[a-z0-9_]+$", description="the key's tag: RL'd models of one "
                     "arm with the same tag are compared with each other (equal RL compute)")
    method: Literal["grpo", "passk"] = Field(
        "grpo", description="grpo: group-normalised verifier reward; passk: closed-form pass@k "
        "advantages (Chen et al. 2025) of the verifier reward",
    )
    binding: bool = Field(False, description="reward a correct completion only when it follows the "
                          "requested mode (prefix models and experts; tasks that detect modes)")
    steps: int = Field(20, gt=0, description="optimizer steps (experts split them)")
    prompts_per_step: int = Field(4, gt=0)  # train prompts per optimizer step
    group_size: int = Field(8, ge=2, description="completions per prompt (GRPO's G)")
    passk_k: int = Field(4, ge=1, description="passk: the k optimised (<= group_size)")
    temperature: float = Field(1.0, gt=0)  # sampling temperature of the RL rollouts
    beta: float = Field(0.0, ge=0, description="KL coefficient against the start (0: none)")
    lr: float = Field(1e-5, gt=0)  # learning rate of the RL optimizer
    max_new_tokens: int | None = Field(None, gt=0, description="rollout length; None: sample.max_new_tokens")
    save_every: int = Field(10, gt=0, description="steps between TRL checkpoints (resume points)")
    problems: int | None = Field(None, gt=0, description="train problems used as prompts (first by id); None: all")
    seed: int = 0  # seed of the rollouts, the mode order and TRL's data order
    bf16: bool = Field(False, description="bf16 mixed precision (GPUs with native bf16; on most "
                       "CPUs it is emulated and slower)")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the "
                                         "backward pass: less memory, more time (large bases)")
    processes: int = Field(1, ge=1, description="processes (accelerate launch; DDP, one per GPU or "
                           "gloo on a CPU); each takes its share of a step's rollouts")

    @model_validator(mode="after")
    def _k_in_group(self) -> RLJobParams:
        if self.method == "passk" and self.passk_k > self.group_size:
            raise ValueError(f"passk_k ({self.passk_k}) must be <= group_size ({self.group_size})")
        if (self.prompts_per_step * self.group_size) % self.processes:
            raise ValueError(f"prompts_per_step x group_size ({self.prompts_per_step * self.group_size}"
                             f" rollouts a step) must be a multiple of processes ({self.processes})")
        return self


# --------------------------------------------------------------------------- model and training
class ScratchModelParams(Block):
    """A small Llama trained from zero over a word tokenizer (the CPU demo)."""

    hidden_size: int = Field(128, gt=0)  # width of the scratch Llama
    num_hidden_layers: int = Field(4, gt=0)  # layers of the scratch Llama
    num_attention_heads: int = Field(4, gt=0)  # attention heads of the scratch Llama
    intermediate_size: int = Field(512, gt=0)  # MLP width of the scratch Llama
    max_position_embeddings: int = Field(160, gt=0)  # longest sequence (tokens) the scratch Llama takes


class LoraParams(Block):
    """LoRA adapters over the pretrained base."""

    r: int = Field(16, gt=0)  # LoRA rank
    alpha: int = Field(32, gt=0)  # LoRA scaling numerator (scale = alpha / r)
    dropout: float = Field(0.0, ge=0, lt=1)  # LoRA dropout
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )  # module names the adapters wrap (e.g. q_proj, v_proj)


class PretrainedModelParams(Block):
    """A pretrained base (Hub id or local folder) trained with LoRA."""

    name_or_path: str = Field("Qwen/Qwen2.5-0.5B", description="Hub id or local folder")
    hub_id: str | None = Field(
        None, description="Hub id of the base when name_or_path is a local copy (e.g. a converted "
        "GGUF): adapter repos name it as base_model",
    )
    lora: LoraParams = LoraParams()
    trust_remote_code: bool = False  # allow model code from the checkpoint (off unless you trust it)
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="frozen base weights while training: auto = bf16 on a GPU with bf16, "
        "else float32 (LoRA weights stay float32)",
    )


class ModelParams(Block):
    """The model every train job starts from."""

    base: Literal["scratch", "pretrained"] = "scratch"  # scratch (a small Llama trained from zero, word tokenizer) or pretrained (LoRA over model.pretrained)
    scratch: ScratchModelParams = ScratchModelParams()
    pretrained: PretrainedModelParams = PretrainedModelParams()


class TrainParams(Block):
    """Training settings shared by every train job (a job may override steps, lr, objective)."""

    steps: int = Field(1200, gt=0, description="optimizer steps of the standard model")
    batch_size: int = Field(32, gt=0)  # rows per optimizer step
    micro_batches: int = Field(
        2, ge=1, description="length-sorted slices of each batch (same gradient, less padding)"
    )
    lr: float = Field(2e-3, gt=0)  # peak learning rate (AdamW)
    warmup_steps: int = Field(30, ge=0)  # linear warm-up steps before the learning rate decays
    weight_decay: float = Field(0.0, ge=0)  # AdamW weight decay
    bf16: Literal["auto", "on", "off"] = Field(
        "auto", description="bf16 autocast; auto = whichever of fp32/bf16 times faster here"
    )
    save_every: int = Field(200, gt=0, description="checkpoint interval in steps")
    eval_batches: int = Field(8, gt=0, description="validation batches for the final eval loss")
    threads: Threads = Field("auto", description="torch threads; auto = cores free at start")
    processes: int = Field(
        1, ge=1, description="ranks training one model (accelerate launch; DDP): one per GPU, or "
        "gloo processes on a CPU; batch_size must be a multiple",
    )
    accelerate_config: str | None = Field(
        None, description="an accelerate config file (DDP, FSDP, DeepSpeed; `accelerate config`) "
        "the train stage launches under; its mixed_precision must be 'no' (bf16 is train.bf16)",
    )
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward")
    seed: int = 0  # training seed (data order, initialisation)
    objective: Literal["ce", "pass_at_n"] = Field(
        "ce", description="ce: mean token cross-entropy; pass_at_n: mean per-example pass@N loss"
    )
    pass_at_n: PassAtNParams = PassAtNParams()

    @model_validator(mode="after")
    def _ranks_share_batches(self) -> TrainParams:
        if self.batch_size % self.processes:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of processes "
                f"({self.processes}): each rank takes an equal share of every batch"
            )
        return self
