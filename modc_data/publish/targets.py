"""Publishing targets: where a staged repo goes. A small Protocol, chosen by name.

- ``local`` (default): a folder laid out like the Hub, ``<root>/datasets/<namespace>/<repo>``
  and ``<root>/models/<namespace>/<repo>``, loadable with ``datasets.load_dataset(path, config)``
  and ``from_pretrained(path)``. A new version replaces the old one by rename, so a failure
  while building never touches the published folder.
- ``hub``: ``huggingface_hub.HfApi(endpoint=...)``, one commit per repo. The token comes from
  ``HF_TOKEN`` or the user's saved login (``huggingface_hub`` resolves it); this module never
  reads, prints or writes it.

Both compare content before writing: identical files -> status ``unchanged``, no new commit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from modc_data.artifacts import replace_dir
from modc_data.errors import InputError
from modc_data.publish.layout import PublishError, StagedRepo, manifest


@dataclass
class PublishOutcome:
    repo_type: str
    repo_id: str
    location: str  # folder or URL (never carries a token)
    status: str  # "published" | "unchanged" | "dry_run"
    files: list[tuple[str, int]] = field(default_factory=list)  # (path, bytes)
    commit: str | None = None


class Target(Protocol):
    name: str

    def location(self, repo_type: str, repo_id: str) -> str: ...

    def check(self) -> None:
        """Raise PublishError (one line: what, why, the fix) when publishing cannot work."""

    def publish(self, repo: StagedRepo) -> PublishOutcome: ...


def _files(repo: StagedRepo) -> list[tuple[str, int]]:
    return [(p, e.size) for p, e in manifest(repo.path).items()]


# --------------------------------------------------------------------------- local folder
class LocalTarget:
    """A Hub-layout folder tree under ``root``."""

    name = "local"

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def location(self, repo_type: str, repo_id: str) -> str:
        return str(self.root / f"{repo_type}s" / repo_id)

    def check(self) -> None:
        pass  # a folder: any failure is the filesystem's, raised where it happens

    def publish(self, repo: StagedRepo) -> PublishOutcome:
        dest = Path(self.location(repo.repo_type, repo.repo_id))
        files = _files(repo)
        if dest.exists() and manifest(dest) == manifest(repo.path):
            return PublishOutcome(repo.repo_type, repo.repo_id, str(dest), "unchanged", files)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # copy next to dest first (same filesystem), so the swap below is two renames
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.staging-", dir=dest.parent))
        try:
            shutil.copytree(repo.path, tmp, dirs_exist_ok=True)
            replace_dir(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return PublishOutcome(repo.repo_type, repo.repo_id, str(dest), "published", files)


# --------------------------------------------------------------------------- Hugging Face Hub
class HubTarget:
    """Hugging Face Hub (or a compatible server at ``endpoint``)."""

    name = "hub"

    def __init__(self, endpoint: str | None = None, private: bool = False):
        from huggingface_hub import HfApi

        # token=None: huggingface_hub reads HF_TOKEN or the saved login itself
        self.api = HfApi(endpoint=endpoint)
        self.private = private

    def location(self, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.api.endpoint}/{prefix}{repo_id}"

    def check(self) -> None:
        """Offline mode on, or an endpoint that does not answer: fail before any upload.

        Offline means the variable as set in the environment (``make repro`` and the stages
        default it to 1 where the user has not set it) or as huggingface_hub read it at import.
        """
        from huggingface_hub import constants
        from huggingface_hub.utils import get_session

        from modc_data.errors import transport_errors

        env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
        if constants.HF_HUB_OFFLINE or env in {"1", "ON", "YES", "TRUE"}:
            raise PublishError(
                f"publish.target is 'hub' but HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', 1)} "
                f"forbids network access, so nothing can be uploaded to {self.api.endpoint} "
                "(make repro and the stages default it to 1); run with HF_HUB_OFFLINE=0, e.g. "
                "`HF_HUB_OFFLINE=0 make repro`, or set publish.target: local"
            )
        try:
            get_session().head(self.api.endpoint, timeout=10)  # any HTTP answer will do
        except transport_errors() as err:
            raise PublishError(
                f"publish.endpoint {self.api.endpoint} is unreachable ({type(err).__name__}); "
                "check the URL (publish.endpoint, or HF_ENDPOINT when it is unset) and the "
                "network, or set publish.target: local"
            ) from None

    def _remote_changes(self, repo: StagedRepo) -> tuple[list[str], list[str]]:
        """(local paths whose content differs from the remote, remote paths absent locally)."""
        from huggingface_hub.hf_api import RepoFile
        from huggingface_hub.utils import sha

        remote = {
            f.path: f
            for f in self.api.list_repo_tree(repo.repo_id, repo_type=repo.repo_type, recursive=True)
            if isinstance(f, RepoFile)
        }
        local = manifest(repo.path)
        changed = []
        for path, entry in local.items():
            r = remote.get(path)
            if r is None or r.size != entry.size:
                changed.append(path)
            elif r.lfs is not None:
                if r.lfs.sha256 != entry.sha256:
                    changed.append(path)
            elif r.blob_id != sha.git_hash((repo.path / path).read_bytes()):
                changed.append(path)
        stale = [p for p in remote if p not in local and p != ".gitattributes"]
        return changed, stale

    def publish(self, repo: StagedRepo) -> PublishOutcome:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete
        from huggingface_hub.errors import HfHubHTTPError

        files = _files(repo)
        where = self.location(repo.repo_type, repo.repo_id)
        try:
            self.api.create_repo(repo.repo_id, repo_type=repo.repo_type, private=self.private,
                                 exist_ok=True)
            changed, stale = self._remote_changes(repo)
            if not changed and not stale:
                return PublishOutcome(repo.repo_type, repo.repo_id, where, "unchanged", files)
            ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(repo.path / p))
                   for p in changed]
            ops += [CommitOperationDelete(path_in_repo=p) for p in stale]
            info = self.api.create_commit(repo.repo_id, ops, commit_message=repo.commit_message,
                                          repo_type=repo.repo_type)
        except HfHubHTTPError as err:
            # the error text is the server's, never the request headers, so no token leaks
            raise PublishError(f"{where}: Hub request failed: {err}") from None
        return PublishOutcome(repo.repo_type, repo.repo_id, where, "published", files, info.oid)


def get_target(name: str, *, local_dir: str | Path | None = None, endpoint: str | None = None,
               private: bool = False) -> Target:
    """Target by name: ``local`` (needs ``local_dir``) or ``hub`` (``endpoint`` optional)."""
    if name == "local":
        if local_dir is None:
            raise InputError("publish.local_dir: the local target needs a folder")
        return LocalTarget(local_dir)
    if name == "hub":
        return HubTarget(endpoint=endpoint, private=private)
    raise InputError(f"publish.target: unknown target {name!r}; known targets: local, hub")
