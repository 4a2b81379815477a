"""Multi-process training: the launcher and the rank context.

``train.processes: N`` makes the train stage re-run itself under ``accelerate launch`` with N
processes (one per GPU, or N gloo processes on a CPU). Each process is one rank of a
``torch.distributed`` group: the launcher sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
MASTER_PORT, which is all ``init_process_group`` needs, so torchrun works the same way
(``torchrun --nproc_per_node N stages/train.py <job>``). The gradient sync is torch's
``DistributedDataParallel``; what is ours is only which rows each rank takes and which rank
writes (``modeling.train``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

LAUNCHED = "MODC_LAUNCHED"  # set in the ranks of a launch, so they never launch again


@dataclass(frozen=True)
class Ranks:
    """This process's place in the group (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def env_ranks() -> Ranks:
    """The ranks a launcher (accelerate launch, torchrun) put in the environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Ranks(
        rank=int(os.environ.get("RANK", "0")),
        world=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
    )


def init(device_type: str) -> Ranks:
    """Join the process group the launcher described (gloo on CPU, nccl on CUDA); a no-op in
    one process. Returns this process's ranks."""
    ranks = env_ranks()
    if ranks.distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return ranks


def device_for(ranks: Ranks) -> torch.device:
    """cuda:<local rank> where there is CUDA, else the CPU."""
    if torch.cuda.is_available():
        torch.cuda.set_device(ranks.local_rank)
        return torch.device("cuda", ranks.local_rank)
    return torch.device("cpu")


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


def sum_all(ranks: Ranks, value: float | int) -> float:
    """``value`` summed over the ranks (itself in one process)."""
    if not ranks.distributed:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t)
    return t.item()


def from_main(ranks: Ranks, obj):
    """Rank 0's ``obj`` on every rank (e.g. a measured dtype verdict all ranks must share)."""
    if not ranks.distributed:
        return obj
    box = [obj if ranks.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextmanager
def no_sync(model, sync: bool):
    """DDP's ``no_sync`` unless ``sync`` (the last backward of a step) or not wrapped."""
    if sync or not hasattr(model, "no_sync"):
        yield
    else:
        with model.no_sync():
            yield


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(script_argv: list[str], processes: int, port: int | None = None) -> list[str]:
    """``accelerate launch`` of ``script_argv`` with ``processes`` ranks on this machine.

    ``--multi_gpu`` is what starts N processes: on a CPU they use gloo (``--cpu --num_processes N``
    silently runs one). Mixed precision and dynamo stay ours (``train.bf16``)."""
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_ip", "127.0.0.1", "--main_process_port", str(port or free_port()),
        *script_argv,
    ]


def relaunch(script_argv: list[str], processes: int) -> int:
    """Run ``script_argv`` under ``launch_command`` and return its exit code (the ranks' output
    goes straight to this process's stdout/stderr)."""
    env = {**os.environ, LAUNCHED: "1"}
    return subprocess.run(launch_command(script_argv, processes), env=env).returncode


def should_launch(processes: int) -> bool:
    """True in the process a user (or DVC) started when ``processes`` > 1: not inside a launch."""
    return processes > 1 and LAUNCHED not in os.environ and "WORLD_SIZE" not in os.environ
