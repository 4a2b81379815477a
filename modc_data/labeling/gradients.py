"""Per-example gradients ``g(x, y) = d/dtheta log p_theta(y | x)`` under a reference model.

What it handles:
- which parameters theta are (``gradient_params``): every trainable parameter of a model trained
  from scratch; for a PEFT model its LoRA factors, A *and* B (load it trainable);
- the gradient of the completion's log-likelihood, **summed** over completion tokens (prompt ids
  masked with ``IGNORE_INDEX``), in fp32 with the model in eval mode (dropout off);
- two ways to compute a chunk of them: ``torch.func`` (``functional_call`` + ``vmap`` + ``grad``,
  one call per chunk, needs eager attention because SDPA has no vmap rule) and a loop (one
  example at a time, ordinary autograd), the loop doubling as the fallback when vmap fails;
- ``featurize``: streams groups of flattened gradients (~1 GiB) through a
  ``RademacherProjection`` into a resumable feature store, so at most one group of full
  gradients is ever held; with ``shard=(rank, world)`` each of ``world`` processes computes its
  share of the rows into a store of its own (resumable per shard), and rank 0 merges them.

What it leaves out: clustering (``clustering.py``) and turning clusters into rows
(``gradient_cluster.py``).
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from numpy.lib.format import open_memmap
from torch.func import functional_call, grad, vmap
from tqdm.auto import tqdm

from modc_data.labeling.projection import (
    FEATURES_FILE,
    META_FILE,
    FeatureMeta,
    RademacherProjection,
    commit_rows,
    open_feature_store,
    read_feature_meta,
)
from modc_data.modeling.format import IGNORE_INDEX, encode_example
from modc_data.modeling.objectives import completion_logprob

log = logging.getLogger(__name__)

Method = Literal["auto", "vmap", "loop"]
Example = tuple[list[int], list[int]]  # (input_ids, labels) as made by format.encode_example


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config")


# LoRA factor weights in peft's parameter names: ``...q_proj.lora_A.default.weight`` (Linear)
# and ``...embed_tokens.lora_embedding_A.default`` (Embedding).
_LORA_FACTOR = re.compile(r"\.lora_(?:embedding_)?[AB]\.")


def gradient_params(model) -> dict[str, torch.nn.Parameter]:
    """The parameters gradients are taken with respect to, by name, in a fixed order.

    A model trained from scratch: every parameter with ``requires_grad`` (all of them). A PEFT
    model: its trainable LoRA factors, ``lora_A`` *and* ``lora_B`` of every adapted module; the
    base is frozen, and other trainable adapter tensors (a prefix model's mode-token rows,
    ``modules_to_save`` copies) are left out, so features of a LoRA reference are a function of
    its LoRA update ``dW = s B A`` alone. Load a LoRA checkpoint with
    ``load_checkpoint(path, trainable=True)``: peft loads adapters frozen otherwise.

    Why both factors: for a trained adapter they see the full weight gradient ``dW`` from
    complementary sides, ``dB = s dW A^T`` (dW projected onto A's r input directions) and
    ``dA = s B^T dW`` (onto B's r output directions), and both are informative; LESS (Xia et
    al., 2024), whose recipe this follows, uses both. With a freshly initialised adapter
    ``B = 0``, so ``dA`` is exactly zero and B carries all the signal; zero coordinates cost
    compute but do not change distances after projection. The cost: A has ``r * d_in`` and B
    ``d_out * r`` entries per module, so taking both roughly doubles P, and with it the
    projection's ``P x dim`` work, against B alone.
    """
    if _is_peft(model):
        params = {
            n: p
            for n, p in model.named_parameters()
            if p.requires_grad and _LORA_FACTOR.search(n)
        }
        if not params:
            raise ValueError(
                "gradient_params: the PEFT reference model has no trainable LoRA parameters; "
                "load it with load_checkpoint(path, trainable=True) (peft loads adapters frozen "
                "by default), or use a LoRA adapter (other PEFT methods are not supported)"
            )
    else:
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if not params:
            raise ValueError(
                "gradient_params: the reference model has no trainable parameters; do not "
                "freeze it (requires_grad=False) before computing gradient features"
            )
    bad = {n: p.dtype for n, p in model.named_parameters() if p.dtype != torch.float32}
    if bad:
        name, dtype = next(iter(bad.items()))
        raise ValueError(
            f"gradient_params: parameter {name!r} is {dtype}; gradient features are computed in "
            "fp32, load the reference model with dtype=torch.float32"
        )
    if _is_peft(model):
        log.info("gradient features over %d LoRA factor tensors", len(params))
    return params


def model_hash(model, params: Mapping[str, torch.Tensor] | None = None) -> str:
    """sha256 (16 hex) of the names, shapes and values of ``params`` (default: gradient_params)."""
    params = gradient_params(model) if params is None else params
    h = hashlib.sha256()
    for name, p in params.items():
        h.update(f"{name}:{tuple(p.shape)}\x1f".encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def dataset_hash(pairs: Sequence[tuple[str, str]]) -> str:
    """sha256 (16 hex) of the ordered (prompt, completion) pairs."""
    h = hashlib.sha256()
    for prompt, completion in pairs:
        h.update(prompt.encode())
        h.update(b"\x1f")
        h.update(completion.encode())
        h.update(b"\x1e")
    return h.hexdigest()[:16]


@contextmanager
def eval_eager(model) -> Iterator[None]:
    """Eval mode and eager attention for the duration; both restored afterwards."""
    was_training = model.training
    config = model.config
    previous = getattr(config, "_attn_implementation", None)
    if previous != "eager":
        if hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation("eager")
        else:  # older models: the attention classes read the config at forward time
            config._attn_implementation = "eager"
    model.eval()
    try:
        yield
    finally:
        if previous not in (None, "eager"):
            if hasattr(model, "set_attn_implementation"):
                model.set_attn_implementation(previous)
            else:
                config._attn_implementation = previous
        model.train(was_training)


def _completion_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over completion tokens of log p(token | prefix). logits [T, V], labels [T] -> scalar.

    Summed, not averaged: the sum is log p(y | x) of the whole completion, the quantity whose
    gradient the method is defined on; a mean would divide each example's gradient by its length
    and so reweight long and short completions against each other.
    """
    return completion_logprob(logits, labels)


def _output(out: torch.Tensor | None, batch: int, n_params: int, device) -> torch.Tensor:
    """``out[:batch]`` when a buffer is given (checked), else a new ``[batch, n_params]`` tensor.

    Reusing one buffer across chunks matters on a CPU: a fresh array of B * P floats (~110 MB for
    32 examples of a 0.9M-parameter model) is above glibc's mmap threshold, so every chunk would
    page-fault it in again, which cost as much as the gradients themselves.
    """
    if out is None:
        return torch.empty(batch, n_params, dtype=torch.float32, device=device)
    if out.dim() != 2 or out.shape[0] < batch or out.shape[1] != n_params:
        raise ValueError(
            f"gradients: out buffer has shape {tuple(out.shape)}, need at least [{batch}, {n_params}]"
        )
    return out[:batch]


def _pad(examples: Sequence[Example], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the chunk's longest example: ids [B, T] with ``pad_id``, labels with IGNORE."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
    return ids, labels


def gradients_vmap(
    model, examples: Sequence[Example], pad_id: int = 0, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Flattened per-example gradients ``[B, P]`` (fp32) of one chunk, with one vmapped call.

    ``out``: an optional fp32 buffer of at least ``[B, P]`` to write into (its first B rows are
    returned); featurize passes one buffer for all chunks.

    Padding is on the right and no attention mask is passed: under causal attention a real token
    never attends to a later (pad) position, so pads cannot change any real token's logits, and
    leaving the mask out avoids the mask-building code, which has data-dependent branches that
    vmap cannot trace. Pad positions carry IGNORE_INDEX labels, so they add nothing to the sum.
    """
    params = gradient_params(model)
    names = list(params)
    trainable = {n: p.detach() for n, p in params.items()}
    frozen = {n: p.detach() for n, p in model.named_parameters() if n not in trainable}
    frozen.update({n: b for n, b in model.named_buffers()})
    device = next(iter(trainable.values())).device
    ids, labels = (t.to(device) for t in _pad(examples, pad_id))

    def logprob(train_params, ids_one, labels_one):
        out = functional_call(
            model,
            (train_params, frozen),
            args=(),
            kwargs={"input_ids": ids_one.unsqueeze(0), "use_cache": False},
        )
        return _completion_logprob(out.logits[0], labels_one)

    with eval_eager(model):
        grads = vmap(grad(logprob), in_dims=(None, 0, 0))(trainable, ids, labels)
    n = len(examples)
    dest = _output(out, n, sum(p.numel() for p in trainable.values()), device)
    torch.cat([grads[name].reshape(n, -1) for name in names], dim=1, out=dest)
    return dest


def gradients_loop(
    model, examples: Sequence[Example], out: torch.Tensor | None = None
) -> torch.Tensor:
    """Flattened per-example gradients ``[B, P]`` (fp32), one example and backward pass at a time.

    ``out``: as for ``gradients_vmap``.
    """
    params = gradient_params(model)
    names = list(params)
    device = next(iter(params.values())).device
    dest = _output(out, len(examples), sum(p.numel() for p in params.values()), device)
    with eval_eager(model):
        for row, (ids, labels) in enumerate(examples):
            logits = model(input_ids=torch.tensor([ids], device=device), use_cache=False).logits
            lp = _completion_logprob(logits[0], torch.tensor(labels, device=device))
            g = torch.autograd.grad(lp, [params[n] for n in names], allow_unused=True)
            torch.cat(
                [
                    (gi if gi is not None else torch.zeros_like(params[n])).reshape(-1)
                    for gi, n in zip(g, names, strict=True)
                ],
                out=dest[row],
            )
    return dest


def encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int | None = None):
    """(prompt, completion) pairs -> examples via ``format.encode_example``; checks lengths first."""
    examples = [encode_example(tokenizer, p, c) for p, c in pairs]
    if max_length is not None:
        for i, (ids, _) in enumerate(examples):
            if len(ids) > max_length:
                raise ValueError(
                    f"example {i} is {len(ids)} tokens, longer than the reference model's "
                    f"max_position_embeddings={max_length}; shorten the completions or use a "
                    "reference model with a longer context"
                )
    return examples


ORDER = "length"  # the processing order recorded in the store; see ``length_order``
BUFFER_BYTES = 2**30  # featurize's default gradient buffer; see ``group_rows``


def length_order(examples: Sequence[Example]) -> np.ndarray:
    """Indices of ``examples`` by token count (stable: ties keep input order).

    Chunks of similar lengths pad little: on Countdown traces (6 to ~80 completion tokens) a chunk
    of 32 examples in input order pads to about 1.7x its mean length, and vmap computes on pads
    too, while the loop never pads.
    """
    return np.argsort(np.array([len(ids) for ids, _ in examples]), kind="stable")


def group_rows(chunk_size: int, n_params: int, buffer_bytes: int, n_examples: int) -> int:
    """Examples projected (and committed) together: whole chunks filling ``buffer_bytes`` of fp32
    gradients, at least one chunk and at most all the examples.

    On the CPU the projection costs ``rows * P * d`` multiply-adds plus unpacking every uncached
    block of its ``P x d`` matrix once per call; for the default 1M-parameter model at d = 1024
    the matrix is 4 GiB of floats and mostly uncached, so projecting 224 rows at a time instead
    of 32 cuts that unpacking 7-fold.
    """
    per_row = 4 * n_params
    chunks = max(1, buffer_bytes // (per_row * chunk_size))
    return max(1, min(chunks * chunk_size, n_examples))


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the OS.

    Each vmap chunk allocates ~100 MB of per-example gradients in blocks of a few MB; with
    glibc's defaults much of that goes back to the OS when freed and is page-faulted in again on
    the next chunk (measured: ~8-25k faults a chunk, vmap median 392 -> 252 ms a chunk of 32 on
    the 2-core CPU). PyTorch's CPU tuning guides swap in jemalloc or tcmalloc for the same
    reason; ``mallopt`` does it in-process. Process-wide; a no-op (False) off glibc.
    Hand-written: no library exposes mallopt.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 32 * 2**20)  # glibc's maximum
        return bool(ok and libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def featurize(
    model,
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    directory: str | Path,
    *,
    dim: int,
    seed: int = 0,
    chunk_size: int = 32,
    method: Method = "auto",
    cache_bytes: int = 512 * 2**20,
    buffer_bytes: int = BUFFER_BYTES,
    shard: tuple[int, int] = (0, 1),
    barrier: Callable[[], None] = lambda: None,
) -> tuple[np.memmap, dict]:
    """Projected gradient features of ``pairs``, stored (and resumed) in ``directory``.

    In: a causal LM in fp32 with its tokenizer, N (prompt, completion) pairs, projection ``dim``
    and ``seed``. Out: the float32 memmap ``[N, dim]`` (row i = pair i) and a dict with
    ``n_params``, ``method`` (the one actually used), ``model_hash``, ``dataset_hash`` and
    ``rows_resumed`` (rows found already done). ``method='auto'`` tries vmap and falls back to the
    loop, with a warning, the first time vmap raises.

    Gradients are computed ``chunk_size`` examples at a time into a buffer of ``group_rows``
    examples (about ``buffer_bytes``), which is projected and committed as one: the projection
    regenerates whatever of its matrix is not cached once per group, not once per chunk.
    Examples are processed in ``length_order`` (so a chunk pads little) and each result is
    written to its own row; the store's ``rows_done`` counts examples of that order, which is a
    function of the examples alone, so a resumed run continues exactly where it stopped.

    ``shard=(rank, world)``: call it in each of ``world`` processes (``barrier`` waits for all of
    them, e.g. ``torch.distributed.barrier``). Rank r computes the rows ``shard_rows`` gives it
    into ``directory/shard-<r>-of-<world>`` (a store of its own, resumed by itself); rank 0 then
    copies every shard's rows into the store in ``directory`` and removes the shards. The merged
    store equals the one-process store (the same projection of the same gradients). Every rank
    returns the merged features.
    """
    if method not in ("auto", "vmap", "loop"):
        raise ValueError(f"featurize: method must be 'auto', 'vmap' or 'loop', got {method!r}")
    if not pairs:
        raise ValueError("featurize: no examples to featurize")
    if chunk_size <= 0:
        raise ValueError(f"featurize: chunk_size must be > 0, got {chunk_size}")
    max_len = getattr(model.config, "max_position_embeddings", None)
    examples = encode_pairs(tokenizer, pairs, max_len)  # fails on bad input before any gradient
    params = gradient_params(model)
    n_params = sum(p.numel() for p in params.values())
    meta = FeatureMeta(
        seed=seed,
        dim=dim,
        n_params=n_params,
        model_hash=model_hash(model, params),
        n_examples=len(examples),
        dataset_hash=dataset_hash(pairs),
        order=ORDER,
    )
    rank, world = shard
    if world > 1:
        return _featurize_sharded(
            model, tokenizer, pairs, examples, Path(directory), meta, rank, world, barrier,
            dict(dim=dim, seed=seed, chunk_size=chunk_size, method=method,
                 cache_bytes=cache_bytes, buffer_bytes=buffer_bytes),
        )
    feats, stored = open_feature_store(directory, meta)
    done = resumed = stored.rows_done
    order = length_order(examples)
    keep_freed_memory()
    proj = RademacherProjection(n_params, dim, seed, cache_bytes=cache_bytes)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    use = "vmap" if method in ("auto", "vmap") else "loop"
    device = next(iter(params.values())).device
    group = group_rows(chunk_size, n_params, buffer_bytes, len(examples))
    buffer = torch.empty(group, n_params, device=device)

    def gradients_into(out: torch.Tensor, chunk: list[Example]) -> None:
        nonlocal use
        if use == "vmap":
            try:
                gradients_vmap(model, chunk, pad_id, out=out)
                return
            except (RuntimeError, NotImplementedError) as err:
                if method == "vmap":
                    raise
                warnings.warn(
                    f"vmap per-example gradients failed ({type(err).__name__}: {err}); "
                    "falling back to the one-example-at-a-time loop",
                    RuntimeWarning,
                    stacklevel=3,
                )
                use = "loop"
        gradients_loop(model, chunk, out=out)

    with tqdm(total=len(examples), initial=done, desc="gradient features", unit="ex") as bar:
        while done < len(examples):
            rows = order[done : done + group]
            for at in range(0, len(rows), chunk_size):
                chunk = [examples[i] for i in rows[at : at + chunk_size]]
                gradients_into(buffer[at : at + len(chunk)], chunk)
                bar.update(len(chunk))
            feats[rows] = proj.project(buffer[: len(rows)]).cpu().numpy()
            done += len(rows)
            stored = commit_rows(directory, feats, stored, done)
    info = {
        "n_params": n_params,
        "method": use,
        "model_hash": meta.model_hash,
        "dataset_hash": meta.dataset_hash,
        "rows_resumed": resumed,
    }
    return feats, info


def shard_rows(examples: Sequence[Example], world: int) -> list[np.ndarray]:
    """Row indices of each of ``world`` shards: the length order dealt out in turn, so every
    shard gets rows of every length (equal work) and the split depends on the examples alone."""
    order = length_order(examples)
    return [order[r::world] for r in range(world)]


def _featurize_sharded(model, tokenizer, pairs, examples, directory: Path, meta: FeatureMeta,
                       rank: int, world: int, barrier: Callable[[], None], kw: dict):
    """``featurize`` for one of ``world`` ranks (see there)."""
    if not 0 <= rank < world:
        raise ValueError(f"featurize: shard rank {rank} is not in [0, {world})")
    shards = shard_rows(examples, world)
    shard_dir = directory / f"shard-{rank}-of-{world}"
    complete = (directory / META_FILE).exists() and read_feature_meta(directory).rows_done == len(examples)
    info: dict = {"rows_resumed": len(examples) if complete else 0}
    if not complete:
        _, info = featurize(model, tokenizer, [pairs[i] for i in shards[rank]], shard_dir, **kw)
    barrier()  # every shard is whole
    if rank == 0:
        feats, stored = open_feature_store(directory, meta)  # checks a stored run is this one
        if stored.rows_done < len(examples):
            for r, rows in enumerate(shards):
                part = directory / f"shard-{r}-of-{world}"
                if read_feature_meta(part).rows_done != len(rows):
                    raise RuntimeError(f"{part}: shard {r} has not finished; rerun to resume it")
                feats[rows] = open_memmap(part / FEATURES_FILE, mode="r")
            commit_rows(directory, feats, stored, len(examples))
        del feats
        for r in range(world):
            shutil.rmtree(directory / f"shard-{r}-of-{world}", ignore_errors=True)
    barrier()  # the merged store is whole
    return open_memmap(directory / FEATURES_FILE, mode="r"), {
        "n_params": meta.n_params,
        "method": info.get("method", kw["method"]),
        "model_hash": meta.model_hash,
        "dataset_hash": meta.dataset_hash,
        "rows_resumed": info["rows_resumed"],
        "shards": world,
    }
