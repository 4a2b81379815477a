"""Gradient features: per-example gradients streamed through a random projection into a resumable
feature store (``featurize``).

What it handles:
- the processing order (``length_order``: by token count, so a chunk pads little) and how many
  examples are projected together (``group_rows``: whole chunks filling ~1 GiB of gradients);
- ``featurize``: computes gradients a chunk at a time (``gradients.gradients_vmap``, falling back
  to ``gradients.gradients_loop``), streams each group through a ``RademacherProjection`` into
  the store and commits it, so at most one group of full gradients is ever held and a stopped
  run resumes where it stopped; with ``shard=(rank, world)`` each of ``world`` processes computes
  its share of the rows (``shard_rows``) into a store of its own (resumable per shard), and
  rank 0 merges them;
- ``dataset_hash``, which with ``gradients.model_hash`` identifies a stored run.

What it leaves out: the gradients themselves (``gradients.py``), the projection and the store's
files (``projection.py``), clustering (``clustering.py``) and turning clusters into rows
(``gradient_cluster.py``).
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from numpy.lib.format import open_memmap
from tqdm.auto import tqdm

from modc_data.labeling.gradients import (
    Example,
    encode_pairs,
    gradient_params,
    gradients_loop,
    gradients_vmap,
    model_hash,
)
from modc_data.labeling.projection import (
    FEATURES_FILE,
    META_FILE,
    FeatureMeta,
    RademacherProjection,
    commit_rows,
    open_feature_store,
    read_feature_meta,
)

Method = Literal["auto", "vmap", "loop"]


def dataset_hash(pairs: Sequence[tuple[str, str]]) -> str:
    """sha256 (16 hex) of the ordered (prompt, completion) pairs."""
    h = hashlib.sha256()
    for prompt, completion in pairs:
        h.update(prompt.encode())
        h.update(b"\x1f")
        h.update(completion.encode())
        h.update(b"\x1e")
    return h.hexdigest()[:16]


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
