"""Choices that depend on the machine, made by looking at it: dtype (and decoder) by timing, threads
by the cores free now.

    verdict = choose("train.bf16", {"off": fp32_step, "on": bf16_step}, shape="llama-h128-b32",
                     cache=Path("artifacts/cache/autotune.json"))
    verdict.choice, verdict.timings_ms   # 'off', {'off': 212.0, 'on': 297.0}
    threads, record = resolve_threads("auto")   # cores not busy right now, at least 1

Why measure instead of reading a feature flag: oneDNN reports native bf16 on an AVX-512 CPU with
``avx512_bf16`` but no AMX, where bf16 autocast trains at 0.71x fp32; on AMX it is
faster. Only a timing on the real model and batch shapes says which. ``choose`` runs each
candidate a few times (warm-up, then alternating rounds so that a burst of load from another
process hits every candidate alike), takes medians, and keeps the first candidate (the
reference, e.g. fp32) unless another is at least ``margin`` faster: a tie is not worth bf16's
rounding. Verdicts are cached in a JSON file keyed by CPU model, CPU capability, torch version,
oneDNN's ISA cap when set (``ONEDNN_MAX_CPU_ISA``: it changes which bf16 kernels run), the
candidate set and a shape key, so later stages on the same machine reuse them; a changed
key (another CPU, another torch) measures again.

Why threads from the free cores and not a fixed count: with one other CPU-bound process on 2
cores, 2 threads made a training step 3.9x slower (each step waits at OpenMP barriers for the
thread that shares its core), 1 thread 1.8x. ``resolve_threads("auto")`` samples CPU use for a
fraction of a second (psutil, the cores of this process's affinity) rather than the 1-minute
load average, which still counts the previous stage of the same ``dvc repro`` for a minute.
What it leaves out: re-deciding when the load changes in the middle of a stage (a changed
thread count could also change float rounding mid-run).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from modc_data.artifacts import cpu_model, write_json

DEFAULT_CACHE = Path("artifacts/cache/autotune.json")  # the pipeline's (git-ignored, not DVC)

# timer(candidate name, step) -> seconds that one call of step took. Injectable so that tests
# can make a candidate slow without a slow machine.
Timer = Callable[[str, Callable[[], object]], float]


def wall_timer(name: str, step: Callable[[], object]) -> float:
    """Seconds of wall time for one call of ``step`` (``name`` is unused)."""
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


@dataclass
class Verdict:
    """What was chosen for one setting, and on what grounds."""

    setting: str  # e.g. "train.bf16", "sample.dtype+decoder"
    choice: str  # the candidate used
    source: Literal["measured", "cache", "user", "resume", "only candidate"]
    timings_ms: dict[str, float] = field(default_factory=dict)  # median ms/step per candidate
    key: str = ""  # cache key ("" when not measured)

    def record(self) -> dict:
        return asdict(self)


# oneDNN's ISA cap (oneDNN reads either name): ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 on an AMX CPU
# runs bf16 matmuls as on an AVX-512 CPU without AMX (bf16 autocast 0.79x fp32 here, like the 0.71x
# of an AVX-512 Xeon without AMX), so a verdict made with one cap says nothing about another.
ONEDNN_ISA_VARS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


def onednn_isa_cap() -> str:
    """The oneDNN ISA cap set in the environment ('' when none)."""
    return next((os.environ[v] for v in ONEDNN_ISA_VARS if os.environ.get(v)), "")


def machine() -> dict[str, str]:
    """CPU model, torch's CPU capability (AVX2 / AVX512 / AMX…), torch version, and the oneDNN
    ISA cap when one is set (``onednn_isa``)."""
    import torch

    out = {
        "cpu": cpu_model(),
        "capability": str(torch.backends.cpu.get_cpu_capability()),
        "torch": torch.__version__,
    }
    if cap := onednn_isa_cap():
        out["onednn_isa"] = cap
    return out


def cache_key(setting: str, candidates: list[str], shape: str, device: str = "cpu") -> str:
    m = machine()
    gpu = ""
    if device.startswith("cuda"):
        import torch

        gpu = torch.cuda.get_device_name(torch.device(device))
    cpu = m["cpu"] + (f" (oneDNN {m['onednn_isa']})" if "onednn_isa" in m else "")
    return "|".join([cpu, m["capability"], f"torch {m['torch']}", gpu or device, setting,
                     ",".join(candidates), shape])


def fixed(setting: str, choice: str, source: Literal["user", "resume"] = "user") -> Verdict:
    """The verdict for a value the user (or a resumed run) set: used as is, never measured."""
    return Verdict(setting=setting, choice=choice, source=source)


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        warnings.warn(f"{path}: unreadable autotune cache ({err}); measuring again", stacklevel=3)
        return {}
    return data if isinstance(data, dict) else {}


def choose(
    setting: str,
    candidates: Mapping[str, Callable[[], object]],
    *,
    shape: str,
    cache: str | Path | None = None,
    timer: Timer = wall_timer,
    warmup: int = 2,
    rounds: int = 5,
    min_rounds: int = 3,
    budget_s: float = 4.0,
    margin: float = 0.05,
    device: str = "cpu",
) -> Verdict:
    """The fastest of ``candidates`` ({name: one step}), measured or from ``cache``.

    Each step runs ``warmup`` times untimed, then up to ``rounds`` alternating timed rounds
    (at least ``min_rounds``; no new round starts after ``budget_s`` seconds). The first
    candidate is the reference: another wins only if its median is ``margin`` (a share) below
    the reference's and it is the fastest. ``cache``: JSON file of earlier verdicts (None: no
    cache); a hit returns ``source='cache'`` and runs no step. ``shape``: what about the model
    and batch the timing depends on (part of the key).
    """
    names = list(candidates)
    if not names:
        raise ValueError(f"{setting}: no candidates to choose from")
    if len(names) == 1:
        return Verdict(setting, names[0], "only candidate")
    key = cache_key(setting, names, shape, device)
    path = Path(cache) if cache is not None else None
    if path is not None:
        hit = _read_cache(path).get(key)
        if isinstance(hit, dict) and hit.get("choice") in candidates:
            return Verdict(setting, hit["choice"], "cache", dict(hit.get("timings_ms", {})), key)

    for name in names:
        for _ in range(warmup):
            candidates[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    started = time.perf_counter()
    for r in range(rounds):
        if r >= min_rounds and time.perf_counter() - started > budget_s:
            break
        # Rotate the order each round so neither candidate always runs right after the other.
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(timer(name, candidates[name]))
    medians = {n: 1000 * statistics.median(t) for n, t in times.items()}
    best = min(names, key=lambda n: medians[n])
    if best != names[0] and medians[best] > (1 - margin) * medians[names[0]]:
        best = names[0]
    verdict = Verdict(setting, best, "measured", {n: round(v, 2) for n, v in medians.items()}, key)
    if path is not None:
        entries = _read_cache(path)
        entries[key] = {
            "choice": best,
            "timings_ms": verdict.timings_ms,
            "rounds": len(times[names[0]]),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **machine(),
        }
        write_json(entries, path)
    return verdict


# --------------------------------------------------------------------------- threads
def usable_cpus() -> list[int]:
    """CPUs this process may run on (its affinity; all CPUs where affinity is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def busy_cores(sample_s: float = 0.3) -> float:
    """Cores' worth of CPU that other processes use now, among this process's CPUs.

    Sampled over ``sample_s`` seconds while this process sleeps, so its own work is not counted.
    """
    import psutil

    cpus = usable_cpus()
    per_cpu = psutil.cpu_percent(interval=sample_s, percpu=True)
    return sum(per_cpu[c] for c in cpus if c < len(per_cpu)) / 100.0


# A core counts as taken once another process uses more than this share of it: a thread that
# shares its core runs at about half speed and the others wait for it at every barrier.
_BUSY_SHARE = 0.35


def resolve_threads(
    setting: int | str, *, busy: Callable[[], float] = busy_cores
) -> tuple[int, dict]:
    """(threads, record) for a ``threads`` param: a number is used as is; ``auto`` is the usable
    cores minus the busy ones (``busy()``, in cores), at least 1."""
    if setting != "auto":
        n = int(setting)
        return n, {"threads": n, "source": "user"}
    cpus = len(usable_cpus())
    load = busy()
    threads = max(1, min(cpus, math.floor(cpus - load + _BUSY_SHARE)))
    return threads, {"threads": threads, "source": "auto", "cpus": cpus, "busy_cores": round(load, 2)}
