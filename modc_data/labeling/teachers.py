"""Teacher registry: who writes the solutions that teacher-ID labels are made of.

Two kinds of teacher, both described by ``TeacherParams`` (``distill.teachers`` in params):
- ``model``: a checkpoint sampled for fresh solutions: a modc-data checkpoint dir (has
  ``modc.json``), a plain Hugging Face model dir (has ``config.json``) or a Hub id, through the
  ``hf``, ``vllm`` or ``openai`` sampling backend, with the teacher's own ``prompt_template``.
- ``dataset``: solutions someone already generated: one solution per row and a column naming the
  model that wrote it, so one dataset entry can hold many teachers (mode ``teacher:<value>``).
  ``package:<name>`` names a dataset shipped in an installed package (``tasks.packaged``).
- ``reference``: the task's own worked solution of each problem (``meta['solution']`` of the
  problems table, e.g. GSM8K's human-written solutions), as one teacher.

``check_teachers`` resolves every teacher before any generation starts and raises one error
listing every teacher that cannot be loaded (missing dir, no ``modc.json``/``config.json``, a Hub
id that is not cached while offline, a dataset column that does not exist). What is left out:
sampling itself (``modc_data.sampling``) and verification (``distill``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modc_data.errors import InputError
from modc_data.params_sampling import OpenAIParams, TeacherParams, VLLMParams

# generate(teacher, prompts, n, seed) -> n completions per prompt, in prompt order.
GenerateFn = Callable[[TeacherParams, list[str], int, int], list[list[str]]]

_DATA_FILE_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}


class TeacherError(InputError):
    """A teacher that cannot be used; the message names the teacher, the cause and the fix."""


@dataclass
class ResolvedTeacher:
    """A checked teacher. ``source`` is what loaded: ``modc`` | ``hf_dir`` | ``hub`` | ``server``
    for models, ``disk`` | ``files`` | ``hub`` for datasets. ``dataset`` holds the loaded rows
    (a ``datasets.Dataset``) for dataset teachers, so they are read once."""

    params: TeacherParams
    source: str
    location: str  # resolved local path or Hub id
    dataset: Any = None
    teachers_in_dataset: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.params.name


def teacher_mode(name: str) -> str:
    """Mode label of a teacher: ``teacher:<name>``."""
    return f"teacher:{name}"


def _offline() -> bool:
    # Read at call time (not huggingface_hub's import-time constant) so a test or a stage that
    # sets HF_HUB_OFFLINE after import is honoured.
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def looks_local(path: str) -> bool:
    """A path that cannot be a Hub id (``owner/name`` or ``name``) is meant as a local path."""
    return (
        path.startswith((".", "/", "~"))
        or path.count("/") > 1
        or (os.sep != "/" and os.sep in path)
    )


def _hub_cached(repo_id: str, filename: str, repo_type: str | None = None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo_id, filename, repo_type=repo_type)
    return isinstance(hit, str)


def resolve_model_teacher(t: TeacherParams) -> ResolvedTeacher:
    """Check that a ``model`` teacher's ``path`` can be loaded, without loading weights."""
    assert t.path is not None  # TeacherParams' validator guarantees it for kind 'model'
    where = f"teacher {t.name!r} (path {t.path!r})"
    if "{prompt}" not in t.prompt_template and "{problem}" not in t.prompt_template:
        raise TeacherError(
            f"{where}: prompt_template {t.prompt_template!r} contains neither '{{prompt}}' nor "
            "'{problem}', so the problem would never reach the model"
        )
    if t.backend == "openai":
        # The model lives on the server; its name is whatever the server serves. Nothing local
        # to check (the sampling backend reports an unreachable server).
        return ResolvedTeacher(t, "server", t.path)
    local = Path(t.path).expanduser()
    if local.is_dir():
        if (local / "modc.json").exists():
            from modc_data.modeling.load import resolve_mode_token
            from modc_data.modeling.modc_json import read_modc

            try:
                info = read_modc(local)
                if info.variant == "experts":
                    raise ValueError(
                        "is an 'experts' group; list each expert sub-directory as its own teacher"
                    )
                resolve_mode_token(info, t.mode)
            except ValueError as err:
                raise TeacherError(f"{where}: {err}") from None
            return ResolvedTeacher(t, "modc", str(local))
        if t.mode is not None:
            raise TeacherError(
                f"{where}: 'mode' is {t.mode!r} but the directory is not a modc-data prefix "
                "checkpoint (no modc.json); remove 'mode'"
            )
        if (local / "config.json").exists() or (local / "adapter_config.json").exists():
            return ResolvedTeacher(t, "hf_dir", str(local))
        raise TeacherError(
            f"{where}: directory has neither modc.json (a modc-data checkpoint) nor config.json "
            f"(a Hugging Face model); found {sorted(p.name for p in local.iterdir())[:10]}. "
            "Point path at the checkpoint directory itself."
        )
    if local.exists():
        raise TeacherError(
            f"{where}: is a file; a model teacher's path must be a directory or Hub id"
        )
    if looks_local(t.path):
        raise TeacherError(f"{where}: directory does not exist (train or download it first)")
    if _offline() and not _hub_cached(t.path, "config.json"):
        raise TeacherError(
            f"{where}: no such local directory, and HF_HUB_OFFLINE is set but the Hub model is not "
            "in the local cache. Download it first (huggingface-cli download "
            f"{t.path}) or unset HF_HUB_OFFLINE."
        )
    return ResolvedTeacher(t, "hub", t.path)


def load_teacher_dataset(t: TeacherParams):
    """Load a ``dataset`` teacher's rows as a ``datasets.Dataset`` (split ``t.split``).

    Accepts a ``save_to_disk`` directory (Dataset or DatasetDict), a parquet/json/jsonl/csv file,
    a directory of such files, or a Hub dataset id (with ``t.config``).
    """
    import datasets

    assert t.dataset is not None
    where = f"teacher {t.name!r} (dataset {t.dataset!r})"
    if t.dataset.startswith("package:"):  # tasks.packaged.PACKAGE_PREFIX, imported lazily
        from modc_data.tasks.packaged import PACKAGE_PREFIX, load_packaged

        try:
            return load_packaged(t.dataset.removeprefix(PACKAGE_PREFIX), t.split), "package"
        except InputError as err:
            raise TeacherError(f"{where}: {err}") from None
    local = Path(t.dataset).expanduser()
    try:
        if local.is_dir() and (
            (local / "dataset_info.json").exists() or (local / "dataset_dict.json").exists()
        ):
            ds = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                if t.split not in ds:
                    raise TeacherError(
                        f"{where}: no split {t.split!r}; splits are {sorted(ds)} (set 'split')"
                    )
                ds = ds[t.split]
            return ds, "disk"
        if local.is_file():
            builder = _DATA_FILE_BUILDERS.get(local.suffix.lower())
            if builder is None:
                raise TeacherError(
                    f"{where}: unsupported file type {local.suffix!r}; use one of "
                    f"{sorted(_DATA_FILE_BUILDERS)} or a save_to_disk directory"
                )
            # A single data file has exactly one split, which datasets names 'train'.
            return datasets.load_dataset(builder, data_files=str(local), split="train"), "files"
        if local.is_dir():
            return datasets.load_dataset(str(local), t.config, split=t.split), "files"
        if looks_local(t.dataset):
            raise TeacherError(f"{where}: path does not exist")
        if _offline() and not _hub_cached(t.dataset, "README.md", repo_type="dataset"):
            raise TeacherError(
                f"{where}: no such local path, and HF_HUB_OFFLINE is set but the Hub dataset is "
                "not cached. Download it first or unset HF_HUB_OFFLINE."
            )
        return datasets.load_dataset(t.dataset, t.config, split=t.split), "hub"
    except TeacherError:
        raise
    except Exception as err:  # noqa: BLE001 - datasets raises many types; name the teacher
        raise TeacherError(f"{where}: could not be loaded: {type(err).__name__}: {err}") from None


def resolve_dataset_teacher(t: TeacherParams) -> ResolvedTeacher:
    """Load a ``dataset`` teacher and check that every configured column exists."""
    ds, source = load_teacher_dataset(t)
    columns = list(ds.column_names)
    wanted = {
        "prompt_column": t.prompt_column,
        "solution_column": t.solution_column,
        "teacher_column": t.teacher_column,
    }
    if t.answer_column is not None:
        wanted["answer_column"] = t.answer_column
    if t.verdict_column is not None:
        wanted["verdict_column"] = t.verdict_column
    for i, col in enumerate(t.meta_columns):
        wanted[f"meta_columns[{i}]"] = col
    for key, col in wanted.items():
        if col not in columns:
            raise TeacherError(
                f"teacher {t.name!r} (dataset {t.dataset!r}): column {col!r} (set by {key}) does "
                f"not exist; available columns: {columns}. Set distill.teachers[].{key} to one "
                "of them."
            )
    names = sorted({str(v) for v in ds[t.teacher_column]})
    if t.include is not None:
        missing = sorted(set(t.include) - set(names))
        if missing:
            raise TeacherError(
                f"teacher {t.name!r} (dataset {t.dataset!r}): include lists {missing}, which never "
                f"occur in column {t.teacher_column!r}; teachers there are {names[:20]}"
            )
        names = [n for n in names if n in set(t.include)]
    return ResolvedTeacher(t, source, t.dataset, dataset=ds, teachers_in_dataset=names)


def check_teachers(teachers: Sequence[TeacherParams]) -> list[ResolvedTeacher]:
    """Resolve every teacher; raise one TeacherError listing all that fail. No generation.

    Also rejects an empty list and duplicate names (two teachers would share a mode label).
    """
    if not teachers:
        raise TeacherError(
            "distill.teachers is empty: list at least one teacher (kind model or dataset)"
        )
    names = [t.name for t in teachers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TeacherError(
            f"distill.teachers: duplicate teacher names {dupes}; names must be unique"
        )
    resolved, problems = [], []
    for t in teachers:
        try:
            if t.kind == "model":
                resolved.append(resolve_model_teacher(t))
            elif t.kind == "dataset":
                resolved.append(resolve_dataset_teacher(t))
            else:  # reference: the problems' own solutions, checked when distill reads them
                resolved.append(ResolvedTeacher(t, "reference", "problems meta['solution']"))
        except TeacherError as err:
            problems.append(str(err))
    if problems:
        raise TeacherError(
            f"{len(problems)} of {len(teachers)} teacher(s) cannot be used:\n  - "
            + "\n  - ".join(problems)
        )
    modes = [teacher_mode(n) for r in resolved for n in (r.teachers_in_dataset or [r.name])]
    clash = sorted({m for m in modes if modes.count(m) > 1})
    if clash:
        raise TeacherError(f"distill.teachers: modes {clash} come from more than one teacher entry")
    return resolved


def render_prompt(template: str, prompt: str, problem: str | None = None) -> str:
    """Fill a teacher's template: ``{prompt}`` is the task prompt, ``{problem}`` the raw problem.

    Plain replacement rather than ``str.format`` because math templates contain literal braces
    (``\\boxed{}``) that format would reject.
    """
    return template.replace("{prompt}", prompt).replace(
        "{problem}", problem if problem is not None else prompt
    )


def backend_generate_fn(
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 1024,
    batch_size: int = 64,
    vllm: VLLMParams | None = None,
    openai: OpenAIParams | None = None,
    device: str | None = None,
    trust_remote_code: bool = False,
    progress: bool = False,
    dtype: str = "float32",
) -> GenerateFn:
    """Default ``generate`` for model teachers, built on ``modc_data.sampling``'s backends.

    hf: a modc-data checkpoint dir goes through the hf backend (``load_checkpoint``; a prefix
    teacher is sampled under its ``mode`` token); a plain HF dir or Hub id is loaded once with
    ``AutoModelForCausalLM`` and sampled with the same seeded ``hf_generate``. vllm / openai: the
    backend gets the path or id as its model. Prompts arrive rendered with the teacher's template.
    Each prompt's samples are seeded by ``sample_seed(seed, teacher, prompt)``, so they do not
    depend on how the caller chunks the prompts. ``dtype``: the hf backend's sampling dtype
    (``HFBackend``'s ``dtype``). ``vllm`` / ``openai``: the ``sample.vllm`` / ``sample.openai``
    blocks; with vllm each teacher gets its own engine process, ended before the next teacher's.
    """
    from modc_data.sampling import get_backend
    from modc_data.sampling.base import sample_seed

    backends: dict[str, Any] = {}
    plain: dict[str, Any] = {}  # teacher name -> (model, tokenizer) for non-modc hf teachers

    def _backend(name: str):
        if name not in backends:
            kw: dict[str, Any] = {"trust_remote_code": trust_remote_code}
            if name == "hf":
                kw.update(batch_size=batch_size, device=device, dtype=dtype)
            elif name == "vllm":  # sample.vllm.trust_remote_code holds unless set here
                kw = {"params": vllm, "trust_remote_code": trust_remote_code or None}
            elif name == "openai":
                from modc_data.sampling.run import openai_kwargs

                kw = openai_kwargs(openai or OpenAIParams())
            backends[name] = get_backend(name, **kw)
        return backends[name]

    def generate(t: TeacherParams, prompts: list[str], n: int, seed: int) -> list[list[str]]:
        assert t.path is not None
        seeds = [sample_seed(seed, t.name, p, n=n) for p in prompts]
        settings = dict(
            n=n, seeds=seeds, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens
        )
        if t.backend == "hf" and not (Path(t.path).expanduser() / "modc.json").exists():
            from modc_data.modeling.format import encode_prompt
            from modc_data.sampling.hf import hf_generate

            if t.name not in plain:
                plain.clear()  # one plain teacher in memory at a time
                plain[t.name] = _load_plain_hf(t, device, trust_remote_code)
            model, tok = plain[t.name]
            ids = [encode_prompt(tok, p) for p in prompts]
            out = hf_generate(model, tok, ids, batch_size=batch_size, progress=progress, **settings)
        else:
            out = _backend(t.backend).generate(
                t.path, prompts, mode=_sampling_mode(t), progress=progress, **settings
            )
        return [[c.text for c in row] for row in out]

    return generate


def _sampling_mode(t: TeacherParams) -> str | None:
    """Mode to prepend when sampling: only a prefix checkpoint takes one (an expert's mode is
    implicit in its weights, and prepending a token it never saw would change its input)."""
    from modc_data.modeling.modc_json import MODC_FILE, read_modc

    assert t.path is not None
    local = Path(t.path).expanduser()
    if t.mode is None or not (local / MODC_FILE).exists():
        return t.mode
    return t.mode if read_modc(local).variant == "prefix" else None


def _load_plain_hf(t: TeacherParams, device: str | None, trust_remote_code: bool):
    """(model, tokenizer) for a plain Hugging Face model dir or Hub id (no modc.json)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert t.path is not None
    if t.mode is not None:
        raise TeacherError(
            f"teacher {t.name!r}: 'mode' is set but {t.path!r} is not a modc-data prefix "
            "checkpoint (no modc.json); remove 'mode' or point path at a prefix checkpoint"
        )
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # trust_remote_code stays off unless the user turns it on: running a repo's code is opt-in.
    tok = AutoTokenizer.from_pretrained(t.path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        t.path, dtype="auto", trust_remote_code=trust_remote_code, use_safetensors=True
    )
    return model.to(device).eval(), tok
