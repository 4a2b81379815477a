"""What every DVC stage script does around its work: offline environment, typed params, errors.

``run(main)`` sets the no-network/no-telemetry variables (where the user has not set them),
loads and validates ``params.yaml`` (failing with the bad field named before any work), calls
``main(params, argv)``, and turns the expected failures -- bad params (``ParamsError``), a
person's input at fault (``modc_data.errors``: ``InputError``, ``StageError``, ``PublishError``)
and a missing input file -- into one message and exit code 2. Any other exception, ``ValueError``
included, is a bug and keeps its traceback. A stage that succeeds
leaves its wall time in ``artifacts/cache/time/<stage>.json`` (``record_time``; read by
``benchmarks/pipeline_time.py``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modc_data.artifacts import cpu_model, set_offline_env, write_json
from modc_data.config import Params, ParamsError, load_params
from modc_data.errors import ModcError, StageError, missing_file_message

__all__ = ["ARTIFACTS", "StageError", "run"]

ARTIFACTS = Path("artifacts")
# Per-stage wall times. Not a DVC output: DVC would have to list one per stage, would delete it
# before rerunning the stage and restore it from its cache with a stale time, and a timing
# must not make a stage look changed. artifacts/ is git-ignored, and cache/ holds no DVC outputs.
TIMES = ARTIFACTS / "cache" / "time"


def _repro() -> dict[str, Any] | None:
    """The ``dvc repro`` (or ``dvc exp run``) process this stage runs under: pid, start time."""
    import psutil

    try:
        for parent in psutil.Process().parents():
            cmd = parent.cmdline()
            if any(Path(c).stem == "dvc" for c in cmd[:2]) or cmd[1:3] == ["-m", "dvc"]:
                return {"pid": parent.pid, "started_at": parent.create_time()}
    except (psutil.Error, OSError):
        pass
    return None


def record_time(stage: str, run_s: float, directory: str | Path = TIMES) -> Path:
    """Write ``<directory>/<stage>.json``: this process's wall seconds (from process start, so
    interpreter start-up and imports count), the seconds inside ``run``, when it finished, the
    CPU, and the dvc process it ran under (None when run by hand)."""
    import psutil

    now = time.time()
    return write_json({
        "stage": stage,
        "wall_s": round(now - psutil.Process().create_time(), 2),
        "run_s": round(run_s, 2),
        "finished_at": now,
        "finished": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "repro": _repro(),
    }, Path(directory) / f"{stage.replace('/', '_')}.json")


def read_times(directory: str | Path = TIMES) -> list[dict[str, Any]]:
    """Every stage's last time record, oldest first (unreadable files are skipped)."""
    records = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(records, key=lambda r: r.get("finished_at", 0))


def last_repro(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of the ``dvc repro`` that finished last (by its dvc process); when the last
    stage ran by hand, just that one."""
    if not records:
        return []
    last = records[-1].get("repro")
    return [r for r in records if r.get("repro") == last] if last else [records[-1]]


def run(main: Callable[[Params, list[str]], None], params_path: str = "params.yaml") -> None:
    set_offline_env()
    name = Path(sys.argv[0]).stem
    started = time.perf_counter()
    try:
        params = load_params(params_path, pipeline=True)
        main(params, sys.argv[1:])
    except (ParamsError, ModcError) as err:
        print(f"[{name}] error: {err}", file=sys.stderr)
        sys.exit(2)
    except FileNotFoundError as err:
        print(f"[{name}] error: {missing_file_message(err)}", file=sys.stderr)
        sys.exit(2)
    run_s = time.perf_counter() - started
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return  # one rank of a launch: the process that launched the ranks reports the stage
    print(f"[{name}] done in {run_s:.1f}s", file=sys.stderr)
    # DVC names a foreach stage train@<key>; by hand, the script and its argument say the same.
    stage = os.environ.get("DVC_STAGE") or (f"{name}@{sys.argv[1]}" if len(sys.argv) > 1 else name)
    try:
        record_time(stage, run_s)
    except OSError as err:  # a timing is never worth failing a finished stage
        print(f"[{name}] could not record its time: {err}", file=sys.stderr)
