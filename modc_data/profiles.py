"""Profiles: small overlays of one base params file, and the workspace each one runs in.

What it handles:

- **Composition.** A profile (``profiles/<name>.yaml``) names its base (``base: params.yaml``, or
  another profile) and holds only what differs. ``compose`` reads the chain and merges: mappings
  merge key by key, except the *named collections* (``arms``, ``train_jobs``, ``rl_jobs``,
  ``labels.mixes``, ``validation.source_tolerance``), which a profile replaces whole, since a
  profile lists its own jobs rather than adding to the base's; lists and scalars replace. ``config.load_params`` composes any file
  with a ``base`` key, so every tool reads a profile as the full params it stands for.
- **Workspaces.** ``make repro PROFILE=<name>`` runs in ``runs/<name>/``: a copy of this
  checkout's tracked and unignored files (edits included) with the composed ``params.yaml``, DVC
  set to run there without git. The checkout itself (its ``params.yaml``, ``dvc.lock``) is never
  written, and each profile keeps its own artifacts and DVC cache across runs.

What it leaves out: validation of the composed params (``config``) and the stages' work (DVC).

    python -m modc_data.profiles compose smoke            # the composed params, to stdout
    python -m modc_data.profiles workspace smoke          # prints runs/smoke, ready for dvc repro
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from modc_data.artifacts import write_text
from modc_data.config import ParamsError, read_mapping

BASE_KEY = "base"
# Mappings a profile replaces whole instead of merging into the base's (dotted paths).
REPLACED = frozenset({"arms", "train_jobs", "rl_jobs", "labels.mixes", "validation.source_tolerance"})
RUNS = "runs"  # workspaces of `make repro PROFILE=<name>`, under the checkout (git-ignored)


class ProfileError(ParamsError):
    """A profile that cannot be composed: missing file, bad YAML, a base cycle."""


def merge(base: dict[str, Any], overlay: dict[str, Any], _path: str = "") -> dict[str, Any]:
    """``overlay`` on top of ``base`` (neither is changed): see the module docstring."""
    out = dict(base)
    for key, value in overlay.items():
        path = f"{_path}.{key}" if _path else key
        if isinstance(value, dict) and isinstance(out.get(key), dict) and path not in REPLACED:
            out[key] = merge(out[key], value, path)
        else:
            out[key] = value
    return out


def repo_root(path: Path) -> Path:
    """The checkout a params file belongs to: the folder above ``profiles/``, else its own."""
    path = path.resolve()
    return path.parent.parent if path.parent.name == "profiles" else path.parent


def compose(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The full params a params file or profile stands for (its base chain merged)."""
    path = Path(path).resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ProfileError(f"{path}: profiles name each other as base in a cycle: {chain}")
    data = read_mapping(path)
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ProfileError(f"{path}: '{BASE_KEY}' must be a path such as params.yaml, got {base!r}")
    return merge(compose(repo_root(path) / base, (*_seen, path)), data)


def load_profile(path: str | Path, pipeline: bool = False):
    """``config.Params`` of a profile or full params file (composed, then validated)."""
    from modc_data.config import parse_params

    return parse_params(compose(path), str(path), pipeline=pipeline)


def profile_path(name: str, root: str | Path = ".") -> Path:
    """``profiles/<name>.yaml`` under ``root``, or a clear error listing the profiles there."""
    path = Path(root) / "profiles" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (Path(root) / "profiles").glob("*.yaml"))
        raise ProfileError(f"no profile {path}; profiles are {known}")
    return path


def write_params(profile: str | Path, dst: str | Path) -> Path:
    """The composed params of ``profile`` (a path) as a plain params file at ``dst``."""
    data = compose(profile)
    header = (f"# Composed from {Path(profile).name} and its base by modc_data.profiles; "
              "edit the profile, not this file.\n")
    return write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), dst)


def _checkout_files(root: Path) -> list[str]:
    """Tracked and unignored files of the checkout (what a fresh clone holds, plus edits)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         cwd=root, capture_output=True, text=True, check=True).stdout
    return [f for f in out.split("\0") if f and not f.startswith(f"{RUNS}/")]


def workspace(name: str, root: str | Path = ".") -> Path:
    """Create or refresh ``runs/<name>/`` for ``dvc repro`` of profile ``name``: the checkout's
    files (changed ones copied again; artifacts, dvc.lock and the DVC cache kept), the composed
    ``params.yaml``, ``data`` linked to the checkout's, DVC without git."""
    root = Path(root).resolve()
    profile = profile_path(name, root)
    ws = root / RUNS / name
    for rel in _checkout_files(root):
        src, dst = root / rel, ws / rel
        if not src.is_file() or rel in ("params.yaml", "dvc.lock"):
            continue
        if dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime and \
                dst.stat().st_size == src.stat().st_size:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    write_params(profile, ws / "params.yaml")
    # Inputs a profile reads from data/ (the converted SmolLM2 base, demo inputs) are made once,
    # in the checkout; the workspace sees the same folder.
    (root / "data").mkdir(exist_ok=True)
    link = ws / "data"
    if not link.exists() and not link.is_symlink():
        link.symlink_to(Path("..") / ".." / "data", target_is_directory=True)
    write_text("[core]\n    no_scm = true\n", ws / ".dvc" / "config.local")
    return ws


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m modc_data.profiles", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compose", help="print the composed params of a profile")
    c.add_argument("profile", help="a profile name (profiles/<name>.yaml) or a path")
    w = sub.add_parser("workspace", help="create or refresh runs/<name>/ and print its path")
    w.add_argument("name")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "compose":
            path = Path(args.profile)
            path = path if path.suffix in (".yaml", ".yml") else profile_path(args.profile)
            sys.stdout.write(yaml.safe_dump(compose(path), sort_keys=False, allow_unicode=True))
        else:
            print(workspace(args.name))
    except ParamsError as err:
        print(f"profiles: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
