"""Params blocks of sampling: how models are sampled and scored, and the teachers of distill.

Holds ``sample`` (``SampleParams`` with its engine blocks ``VLLMParams`` and ``OpenAIParams``
and the allocation ``PoliciesParams``), ``evaluate`` (``EvaluateParams``) and ``distill``
(``DistillParams`` and its ``TeacherParams``, sampled by the same backends). Which splits a
model samples for the policies is decided in ``modc_data.experiment``; checks that name other
blocks (a policy arm exists, ``evaluate.ks`` fits ``sample.n``) in ``modc_data.params_checks``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from modc_data.params_blocks import Block, Threads

# --------------------------------------------------------------------------- sampling, evaluation
# vLLM's own choices (vllm 0.32 EngineArgs): ranks and dtypes it accepts.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
_VLLM_TYPED = (
    "tensor_parallel_size", "pipeline_parallel_size", "gpu_memory_utilization", "max_model_len",
    "enable_prefix_caching", "distributed_executor_backend", "max_lora_rank", "max_loras",
    "enforce_eager", "dtype", "max_num_seqs", "kv_cache_memory_bytes", "trust_remote_code",
)


class VLLMParams(Block):
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


class OpenAIParams(Block):
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


class PoliciesParams(Block):
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


class SampleParams(Block):
    """Sampling of every trained model on the evaluation splits."""

    backend: Literal["hf", "vllm", "openai"] = "hf"  # hf (transformers in-process), vllm (engine in-process) or openai (an OpenAI-compatible server)
    n: int = Field(64, gt=0, description="samples per (problem, model, mode)")
    temperature: float = Field(1.0, ge=0)  # sampling temperature (0: greedy)
    top_p: float = Field(1.0, gt=0, le=1)  # nucleus sampling mass (1: the full distribution; no top-k cut)
    max_new_tokens: int = Field(96, gt=0)  # longest completion sampled
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


class EvaluateParams(Block):
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


# --------------------------------------------------------------------------- teachers
class TeacherParams(Block):
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


class DistillParams(Block):
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
    n: int = Field(2, gt=0, description="samples per (problem, teacher)")
    keep_per_teacher: int = Field(1, gt=0)  # verified solutions kept per (problem, teacher)
    balance: Literal["none", "downsample", "per_problem"] = "downsample"  # downsample: teachers to equal row counts; per_problem: equal per problem; none: keep what each solved
    validation_problems: int = Field(300, gt=0)  # problems held out as the validation split
    temperature: float = Field(1.0, ge=0)  # model teachers' sampling temperature
    top_p: float = Field(1.0, gt=0, le=1)  # model teachers' nucleus sampling mass
    max_new_tokens: int = Field(96, gt=0, description="tokens per teacher solution")
    max_completion_chars: int | None = Field(
        None, gt=0, description="solutions longer than this are rejected (counted as too long): "
        "bounds the cost of training and gradient features on long transcripts",
    )
    batch_size: int = Field(512, gt=0, description="sequences per generate call (hf backend)")
    seed: int = 0  # seed of sampling and selection
