"""Rademacher random projection of per-example gradients, and the on-disk store of the features.

What it handles:
- ``RademacherProjection``: a ``P x d`` matrix with entries ``+-1/sqrt(d)`` (Johnson-Lindenstrauss:
  norms and inner products are preserved in expectation, with relative error ~ ``1/sqrt(d)``).
  The matrix is never held whole: it is generated block by block (``BLOCK_ROWS`` rows of ``P`` at
  a time), each block from its own CPU ``torch.Generator`` seeded by ``(seed, block index)``, so
  the same seed gives the same matrix on every run, on every device and for any chunking of the
  examples. Blocks are cached (as packed bits, and as floats while memory allows) up to
  ``cache_bytes``, since regenerating them for every chunk would cost as much as the gradients.
- A feature store: a memory-mapped ``features.npy`` (``numpy.lib.format.open_memmap``, float32,
  ``[n_examples, d]``) plus ``features.json`` (seed, d, parameter count, model hash, number of
  examples, dataset hash, processing order, rows done). Rows are committed in that order;
  ``rows_done`` is written only after the rows it counts are flushed, so an interrupted run
  resumes where it stopped.

What it leaves out: computing gradients (``gradients.py``), streaming them through the projection
(``gradient_features.py``) and clustering (``clustering.py``).
TRAK projects on the GPU with a custom kernel; this is a plain-torch, hand-written equivalent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from numpy.lib.format import open_memmap

from modc_data.artifacts import write_text

BLOCK_ROWS = 4096  # rows of the P x d matrix generated per block; part of the matrix's definition
FEATURES_FILE = "features.npy"
META_FILE = "features.json"


def _block_seed(seed: int, block: int) -> int:
    """A 63-bit generator seed for one block; hashing keeps blocks of nearby seeds unrelated."""
    digest = hashlib.sha256(f"rademacher:{seed}:{block}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass
class RademacherProjection:
    """Projects ``[B, n_params]`` float features to ``[B, dim]``; deterministic given ``seed``.

    Caching, within ``cache_bytes`` per device: first the packed sign bits of every block
    (``rows * dim / 8`` bytes each, 32x smaller than floats), then, on the CPU, unpacked float32
    blocks with what is left. Anything past the budget is regenerated on each call, which gives
    the same values; on a GPU only the packed bits travel and are unpacked there.
    """

    n_params: int
    dim: int
    seed: int = 0
    cache_bytes: int = 512 * 2**20
    _packed: dict[tuple[str, int], torch.Tensor] = field(
        default_factory=dict, init=False, repr=False
    )
    _dense: dict[int, torch.Tensor] = field(default_factory=dict, init=False, repr=False)
    _used: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _tables: dict[str, torch.Tensor] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.n_params <= 0:
            raise ValueError(f"n_params must be > 0, got {self.n_params}")
        if self.dim <= 0:
            raise ValueError(f"projection dim must be > 0, got {self.dim}")

    @property
    def n_blocks(self) -> int:
        return math.ceil(self.n_params / BLOCK_ROWS)

    @property
    def packed_bytes(self) -> int:
        """Size of the whole matrix as packed bits."""
        return self.n_params * -(-self.dim // 8)

    def _signs(self, index: int) -> torch.Tensor:
        """Packed random bits of one block: uint8 ``[rows, ceil(dim / 8)]``, 8 signs a byte.

        Drawing bytes and unpacking them is several times faster than drawing one int per entry,
        which matters because uncached blocks are regenerated for every chunk.
        """
        start = index * BLOCK_ROWS
        rows = min(BLOCK_ROWS, self.n_params - start)
        if rows <= 0 or index < 0:
            raise IndexError(f"block {index} is outside the {self.n_blocks} blocks of the matrix")
        gen = torch.Generator(device="cpu").manual_seed(_block_seed(self.seed, index))
        return torch.randint(0, 256, (rows, -(-self.dim // 8)), generator=gen, dtype=torch.uint8)

    def _unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """uint8 ``[rows, ceil(dim/8)]`` -> float32 ``[rows, dim]`` of +-1/sqrt(dim), same device."""
        key = str(packed.device)
        if key not in self._tables:
            # byte value -> its 8 bits (least significant first) as +-1/sqrt(dim)
            bits = (torch.arange(256).unsqueeze(-1) >> torch.arange(8)) & 1
            table = (bits.to(torch.float32) * 2 - 1) / math.sqrt(self.dim)
            self._tables[key] = table.to(packed.device)
        flat = self._tables[key].index_select(0, packed.reshape(-1).to(torch.int32))
        return flat.reshape(packed.shape[0], -1)[:, : self.dim]

    def _fits(self, device: str, size: int, reserve: int = 0) -> bool:
        if self._used.get(device, 0) + size + reserve > self.cache_bytes:
            return False
        self._used[device] = self._used.get(device, 0) + size
        return True

    def _packed_on(self, index: int, device: torch.device) -> torch.Tensor:
        key = (str(device), index)
        hit = self._packed.get(key)
        if hit is not None:
            return hit
        cpu = self._packed.get(("cpu", index))
        packed = (cpu if cpu is not None else self._signs(index)).to(device)
        if self._fits(str(device), packed.numel()):
            self._packed[key] = packed
        return packed

    def block(self, index: int, device: str | torch.device = "cpu") -> torch.Tensor:
        """Rows ``[index * BLOCK_ROWS, ...)`` of the matrix: float32 ``[rows, dim]``, +-1/sqrt(dim)."""
        device = torch.device(device)
        if device.type == "cpu" and index in self._dense:
            return self._dense[index]
        mat = self._unpack(self._packed_on(index, device))
        # dense CPU blocks only in the room left once every block's packed bits could be cached
        if device.type == "cpu" and self._fits("cpu", mat.numel() * 4, reserve=self.packed_bytes):
            self._dense[index] = mat
        return mat

    def matrix(self) -> torch.Tensor:
        """The whole ``[n_params, dim]`` matrix; for tests and small models only."""
        return torch.cat([self.block(b) for b in range(self.n_blocks)])

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` ``[B, n_params]`` (any float dtype) -> float32 ``[B, dim]`` on their device.

        The matrix is always generated on the CPU (CUDA generators draw other streams), then
        moved, so features computed on a GPU project exactly as on the CPU, up to float sums.
        """
        if features.ndim != 2 or features.shape[1] != self.n_params:
            raise ValueError(
                f"project: features have shape {tuple(features.shape)}, expected [B, {self.n_params}]"
            )
        x = features.detach().to(torch.float32)
        out = torch.zeros(x.shape[0], self.dim, dtype=torch.float32, device=x.device)
        for b in range(self.n_blocks):
            start = b * BLOCK_ROWS
            out.addmm_(x[:, start : start + BLOCK_ROWS], self.block(b, x.device))
        return out


# --------------------------------------------------------------------------- feature store
@dataclass(frozen=True)
class FeatureMeta:
    """What a feature store was made from; every field but ``rows_done`` must match to reuse it."""

    seed: int
    dim: int
    n_params: int
    model_hash: str
    n_examples: int
    dataset_hash: str
    block_rows: int = BLOCK_ROWS
    order: str = "input"  # the order rows are computed in; rows_done counts rows of that order
    rows_done: int = 0


def _write_meta(directory: Path, meta: FeatureMeta) -> None:
    write_text(json.dumps(dataclasses.asdict(meta), indent=2, sort_keys=True), directory / META_FILE)


def read_feature_meta(directory: str | Path) -> FeatureMeta:
    """The ``features.json`` of a store; ValueError naming the file when it is not one."""
    path = Path(directory) / META_FILE
    try:
        raw = json.loads(path.read_text())
        return FeatureMeta(**raw)
    except (OSError, json.JSONDecodeError, TypeError) as err:
        raise ValueError(f"{path}: not a readable feature-store metadata file ({err})") from err


def open_feature_store(directory: str | Path, meta: FeatureMeta) -> tuple[np.memmap, FeatureMeta]:
    """Open (or create) the store in ``directory`` for a run described by ``meta``.

    Returns the writable memmap ``[n_examples, dim]`` float32 and the stored metadata, whose
    ``rows_done`` says how many rows (the first of ``meta.order``) are already computed. Raises
    ValueError naming the first mismatching field when the store was made by a different run
    (another seed, model, dataset, ...), before any work is done.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta_path, feat_path = directory / META_FILE, directory / FEATURES_FILE
    if meta_path.exists():
        stored = read_feature_meta(directory)
        for f in dataclasses.fields(FeatureMeta):
            if f.name == "rows_done":
                continue
            have, want = getattr(stored, f.name), getattr(meta, f.name)
            if have != want:
                raise ValueError(
                    f"feature store {directory}: field {f.name!r} is {have!r} in {meta_path} but "
                    f"this run has {want!r}, so the stored features belong to another run; use a "
                    f"fresh work_dir or delete {directory} to recompute them"
                )
        if not feat_path.exists():
            raise ValueError(
                f"feature store {directory}: {meta_path} exists but {feat_path} is missing; "
                f"delete {directory} to recompute the features"
            )
        feats = open_memmap(feat_path, mode="r+")
        if feats.shape != (meta.n_examples, meta.dim) or feats.dtype != np.float32:
            raise ValueError(
                f"{feat_path}: shape {feats.shape} dtype {feats.dtype}, expected "
                f"({meta.n_examples}, {meta.dim}) float32; delete {directory} to recompute"
            )
        return feats, stored
    # New store: the array is created under a temporary name and renamed, then the metadata
    # (which marks the store as valid) is written last.
    tmp = directory / (FEATURES_FILE + ".tmp.npy")
    arr = open_memmap(tmp, mode="w+", dtype=np.float32, shape=(meta.n_examples, meta.dim))
    arr.flush()
    del arr
    os.replace(tmp, feat_path)
    stored = dataclasses.replace(meta, rows_done=0)
    _write_meta(directory, stored)
    return open_memmap(feat_path, mode="r+"), stored


def commit_rows(
    directory: str | Path, feats: np.memmap, meta: FeatureMeta, rows_done: int
) -> FeatureMeta:
    """Flush ``feats`` to disk, then record ``rows_done``; returns the updated metadata."""
    feats.flush()
    new = dataclasses.replace(meta, rows_done=int(rows_done))
    _write_meta(Path(directory), new)
    return new
