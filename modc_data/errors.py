"""The project's expected failures: a person's input is at fault, and the message says which and
how to fix it.

The front ends (``modc_data/pipeline.py`` for stages, ``modc_data/cli.py`` for ``modc``) print
these as one line and exit 2. Anything else is a bug and keeps its traceback, so a ``ValueError``
raised deep in a library is never mistaken for a user's mistake.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class ModcError(Exception):
    """Base of the expected failures; the message is the whole story (no traceback)."""


class InputError(ModcError, ValueError):
    """A file, folder, repo id, argument or server named by the user is missing, malformed or
    unreachable; the message names it and the fix."""


class StageError(ModcError, RuntimeError):
    """An expected failure of a stage (bad input, failed validation)."""


def missing_file_message(err: FileNotFoundError) -> str:
    """One line for a missing input file: which file, and how inputs get made."""
    filename = err.filename
    if not filename:
        # polars: "No such file or directory (os error 2): <path>"; our own code puts the path
        # and the fix in the text
        head, sep, tail = str(err).rpartition("(os error 2): ")
        if not sep:
            return str(err)
        filename = tail.strip()
    return (f"{filename}: no such file; run the stages that make it first (`dvc repro` "
            "builds every input in order) or fix the path")


def transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors of the HTTP client huggingface_hub uses (httpx2 in 2.x, httpx in
    1.x), plus the stdlib ones."""
    import importlib

    out: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for name in ("httpx2", "httpx"):
        try:
            out.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(out)


@contextmanager
def hub_errors(repo_id: str, repo_type: str = "model") -> Iterator[None]:
    """Turn a download's expected Hub failures into one-line ``InputError``s naming the repo,
    the endpoint and the fix: unknown repo or revision, offline mode, an unreachable endpoint."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = constants.ENDPOINT
    try:
        yield
    except RepositoryNotFoundError:
        raise InputError(
            f"{repo_id}: no {repo_type} repo of that id at {endpoint} (or it is private and "
            "HF_TOKEN is not set); check the id and HF_ENDPOINT, or pass a local folder"
        ) from None
    except RevisionNotFoundError:
        raise InputError(
            f"{repo_id}: that revision does not exist at {endpoint}; pass an existing branch, "
            "tag or commit with --revision"
        ) from None
    except (OfflineModeIsEnabled, LocalEntryNotFoundError, *transport_errors()):
        if constants.HF_HUB_OFFLINE:
            raise InputError(
                f"{repo_id}: not in the local cache, and HF_HUB_OFFLINE=1 forbids downloading; "
                f"set HF_HUB_OFFLINE=0 to download from {endpoint}, or pass a local folder"
            ) from None
        raise InputError(
            f"{repo_id}: the Hub endpoint {endpoint} is unreachable; check the network and "
            "HF_ENDPOINT, or pass a local folder"
        ) from None
