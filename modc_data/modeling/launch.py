"""Running a stage as N processes: ``accelerate launch``, and this process's place in the group.

``train.processes: N`` (and ``rl_jobs.<job>.processes``, ``gradient_cluster.processes``) makes a
stage re-run itself under ``accelerate launch`` with N processes: one per GPU, or N gloo
processes on a CPU. ``train.accelerate_config`` names an accelerate config file instead (DDP,
FSDP or DeepSpeed, written by ``accelerate config``); the launcher then reads the engine from it.
Inside the processes, accelerate's ``PartialState`` (``state()``) joins the group and knows the
rank; the training loop's ``Accelerator`` does the rest (``modeling.loop``).

What is here: the launch command, the guard that stops the launched processes from launching
again, and ``state()``. What is not: anything about gradients or checkpoints.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from accelerate import PartialState

LAUNCHED = "MODC_LAUNCHED"  # set in the processes of a launch, so they never launch again


def state() -> PartialState:
    """This process's place in the group (the process group is joined on first use; one process
    of one when not launched). On a machine without CUDA the group is gloo on the CPU."""
    return PartialState(cpu=not torch.cuda.is_available())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_config(path: str | Path) -> dict:
    """An accelerate config file the training can run under: it exists, parses, and leaves
    mixed precision to ``train.bf16`` (which measures before it chooses)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"train.accelerate_config: {p} does not exist; write one with "
                         "`accelerate config --config_file <path>` or remove the setting")
    try:
        cfg = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"train.accelerate_config: {p} is not YAML ({e})") from None
    if not isinstance(cfg, dict) or "distributed_type" not in cfg:
        raise ValueError(f"train.accelerate_config: {p} has no distributed_type; it must be an "
                         "accelerate config file (`accelerate config --config_file <path>`)")
    if str(cfg.get("mixed_precision", "no")) != "no":
        raise ValueError(f"train.accelerate_config: {p} sets mixed_precision "
                         f"{cfg['mixed_precision']!r}; set it to 'no' and use train.bf16 (on, "
                         "off or auto) for bf16 autocast")
    return cfg


def launch_command(script_argv: list[str], processes: int, port: int | None = None,
                   config_file: str | Path | None = None) -> list[str]:
    """``accelerate launch`` of ``script_argv`` with ``processes`` processes on this machine.

    Without a config file, ``--multi_gpu`` is what starts N processes: on a CPU they use gloo
    (``--cpu --num_processes N`` silently runs one). Mixed precision and dynamo stay ours
    (``train.bf16``). With a config file, the file says the engine and the flags here only
    set the number of processes and the port."""
    port_args = ["--main_process_port", str(port or free_port())]
    if config_file is not None:
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
                "--num_processes", str(processes), *port_args, *script_argv]
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_ip", "127.0.0.1", *port_args,
        *script_argv,
    ]


def relaunch(script_argv: list[str], processes: int, config_file: str | Path | None = None) -> int:
    """Run ``script_argv`` under ``launch_command`` and return its exit code (the processes'
    output goes straight to this process's stdout/stderr)."""
    env = {**os.environ, LAUNCHED: "1"}
    return subprocess.run(launch_command(script_argv, processes, config_file=config_file),
                          env=env).returncode


def should_launch(processes: int, config_file: str | Path | None = None) -> bool:
    """True in the process a user (or DVC) started when it must run under a launch: more than
    one process, or an accelerate config file named; never inside a launch."""
    inside = LAUNCHED in os.environ or "WORLD_SIZE" in os.environ
    return (processes > 1 or config_file is not None) and not inside
