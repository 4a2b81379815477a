"""What every DVC stage script does around its work: offline environment, typed params, errors.

``run(main)`` sets the no-network/no-telemetry variables, loads and validates ``params.yaml``
(failing with the bad field named before any work), calls ``main(params, argv)``, and turns the
expected failures (bad params, bad input files) into a one-paragraph message and exit code 2
instead of a traceback.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from modc_data.artifacts import set_offline_env
from modc_data.config import Params, ParamsError, load_params

ARTIFACTS = Path("artifacts")


class StageError(RuntimeError):
    """An expected failure of a stage (bad input, failed validation); printed without traceback."""


def run(main: Callable[[Params, list[str]], None], params_path: str = "params.yaml") -> None:
    set_offline_env()
    name = Path(sys.argv[0]).stem
    started = time.perf_counter()
    try:
        params = load_params(params_path, pipeline=True)
        main(params, sys.argv[1:])
    except (ParamsError, StageError, FileNotFoundError, ValueError) as err:
        print(f"[{name}] error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"[{name}] done in {time.perf_counter() - started:.1f}s", file=sys.stderr)
