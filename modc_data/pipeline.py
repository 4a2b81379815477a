"""What every DVC stage script does around its work: offline environment, typed params, errors.

``run(main)`` sets the no-network/no-telemetry variables (where the user has not set them),
loads and validates ``params.yaml`` (failing with the bad field named before any work), calls
``main(params, argv)``, and turns the expected failures -- bad params (``ParamsError``), a
person's input at fault (``modc_data.errors``: ``InputError``, ``StageError``, ``PublishError``)
and a missing input file -- into one message and exit code 2. Any other exception, ``ValueError``
included, is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from modc_data.artifacts import set_offline_env
from modc_data.config import Params, ParamsError, load_params
from modc_data.errors import ModcError, StageError, missing_file_message

__all__ = ["ARTIFACTS", "StageError", "run"]

ARTIFACTS = Path("artifacts")


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
    print(f"[{name}] done in {time.perf_counter() - started:.1f}s", file=sys.stderr)
