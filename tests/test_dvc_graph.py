"""dvc.yaml cannot drift from the code: every stage's deps and params are what its script uses.

- Code: each stage script's import closure inside ``modc_data`` (imports parsed with ``ast``,
  followed transitively, function-level imports included) must be covered by the stage's deps,
  and every ``modc_data`` dep must hold at least one file of that closure (no stale deps).
- Params: every ``params.<block>[.<key>]`` a stage script reads must be covered by the stage's
  ``params:`` (a block covers its keys); helpers that take the whole params are mapped below.
- Profiles: with each profile as params.yaml, a fresh copy's ``dvc status --json`` lists every
  stage the profile implies, and no stage asks for a params key the profile lacks.
(A verifier edit marking ``sample`` and ``evaluate`` changed is tested on the built smoke repo,
in test_pipeline.py.)
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modc_data.config import load_params
from modc_data.profiles import load_profile, write_params
from tests.smoke import copy_tracked

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ["params.yaml", *sorted(f"profiles/{p.name}" for p in (ROOT / "profiles").glob("*.yaml"))]

# Functions that receive the whole params object, and the params they read through it.
WHOLE_PARAMS_READERS = {
    "task_from_params": {"task", "<task>"},
    "problems_from_params": {"seed", "task", "<task>"},
    "model_key": {"arms", "train_jobs", "rl_jobs"},
    "standard_arm": {"arms"},
    "jobs_of_arm": {"train_jobs", "rl_jobs"},
    "tags_of": {"train_jobs", "rl_jobs"},
    "models": {"train_jobs", "rl_jobs"},
    "policy_splits": {"sample", "arms", "train_jobs"},
    "sample_stage": {"sample", "arms", "task", "<task>", "train_jobs"},
    "replicates": {"arms", "train_jobs", "train"},
    "model_dump": {"<all>"},
}


# --------------------------------------------------------------------------- code closure
def _module_file(name: str) -> Path | None:
    p = ROOT / Path(*name.split("."))
    if (p / "__init__.py").exists():
        return p / "__init__.py"
    return p.with_suffix(".py") if p.with_suffix(".py").exists() else None


def _imported_modules(path: Path) -> set[str]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    package = parts if path.name == "__init__.py" else parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in out if m and m.split(".")[0] == "modc_data"}


def import_closure(script: Path) -> set[str]:
    """Files of ``modc_data`` that ``script`` imports, directly or transitively (repo-relative)."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        for mod in _imported_modules(todo.pop()):
            parts = mod.split(".")
            for i in range(1, len(parts) + 1):  # a package's __init__ runs on the way down
                f = _module_file(".".join(parts[:i]))
                if f is not None and f not in seen:
                    seen.add(f)
                    todo.append(f)
    return {str(f.relative_to(ROOT)) for f in seen}


def _covered(path: str, deps: set[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.fixture(scope="module")
def stages():
    """Resolved stages of the default profile: name -> (script, deps, params)."""
    from dvc.repo import Repo

    out = {}
    with Repo(str(ROOT)) as repo:
        for st in repo.index.stages:
            script = next(w for w in st.cmd.split() if w.startswith("stages/"))
            deps = {os.path.relpath(d.fs_path, ROOT) for d in st.deps if not hasattr(d, "params")}
            params = set()
            for d in st.deps:
                if hasattr(d, "params"):
                    params.update(d.params or ["<all>"])
            out[st.addressing] = (ROOT / script, deps, params)
    return out


def test_every_stage_depends_on_its_import_closure(stages):
    problems = []
    for name, (script, deps, _) in sorted(stages.items()):
        closure = import_closure(script) | {str(script.relative_to(ROOT))}
        missing = sorted(f for f in closure if not _covered(f, deps))
        code_deps = {d for d in deps if d.startswith(("modc_data", "stages"))}
        stale = sorted(d for d in code_deps if not any(_covered(f, {d}) for f in closure))
        if missing:
            problems.append(f"{name}: imports {missing} but dvc.yaml does not list them")
        if stale:
            problems.append(f"{name}: dvc.yaml lists {stale}, which its script never imports")
    assert not problems, "\n".join(problems)


def test_closure_follows_function_level_and_package_imports():
    closure = import_closure(ROOT / "stages" / "sample.py")
    # tasks/__init__ imports countdown and math inside a function; both verify samples
    assert {"modc_data/tasks/countdown.py", "modc_data/tasks/math.py"} <= closure
    assert "modc_data/sampling/__init__.py" in closure


# --------------------------------------------------------------------------- params
# Library functions that do a stage's whole work with its params: their module is scanned too.
STAGE_BODIES = {"build": ROOT / "modc_data" / "evaluation" / "build.py"}


def params_read(script: Path) -> set[str]:
    """Dotted params keys a stage script reads: ``params.a.b`` -> ``a.b``; helpers mapped."""
    keys, inner = set(), set()
    for node in ast.walk(ast.parse(script.read_text())):  # outer nodes come first
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            chain = []
            cur = node
            while isinstance(cur, ast.Attribute):
                chain.append(cur.attr)
                inner.add(id(cur.value))
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id == "params":
                chain.reverse()
                if chain[0] in WHOLE_PARAMS_READERS:
                    keys.update(WHOLE_PARAMS_READERS[chain[0]])
                else:
                    keys.add(".".join(chain[:2]))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            passes = any(isinstance(a, ast.Name) and a.id == "params" for a in node.args)
            if node.func.id in WHOLE_PARAMS_READERS and passes:
                keys.update(WHOLE_PARAMS_READERS[node.func.id])
            elif node.func.id in STAGE_BODIES and passes and STAGE_BODIES[node.func.id] != script:
                keys.update(params_read(STAGE_BODIES[node.func.id]))
    return keys


def test_every_params_key_a_stage_reads_is_declared(stages):
    task = load_params(ROOT / "params.yaml").task
    problems = []
    for name, (script, _, declared) in sorted(stages.items()):
        if "<all>" in declared:
            continue
        for key in sorted(params_read(script)):
            key = key.replace("<task>", task)
            if key == "<all>":
                problems.append(f"{name}: reads every param; declare `- params.yaml:`")
            elif not any(key == d or key.startswith(d + ".") or d.startswith(key + ".")
                         for d in declared):
                problems.append(f"{name}: reads params.{key}, not in its params {sorted(declared)}")
    assert not problems, "\n".join(problems)


def test_params_scan_sees_nested_and_helper_reads(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("def main(params, argv):\n    x = params.countdown.budget\n"
                      "    task_from_params(params)\n    params.model_key('a', 'b')\n")
    assert params_read(script) == {"countdown.budget", "task", "<task>", "arms", "train_jobs",
                                   "rl_jobs"}


def test_params_scan_follows_a_stage_into_its_library_body():
    # stages/evaluate.py hands params to evaluation.build.build: what that module reads counts
    assert {"evaluate", "sample.splits", "arms", "train", "train_jobs", "rl_jobs"} <= \
        params_read(ROOT / "stages" / "evaluate.py")


# --------------------------------------------------------------------------- profiles
def _copy_repo(dst: Path, profile: str) -> Path:
    copy_tracked(dst)
    write_params(ROOT / profile, dst / "params.yaml")  # a profile composed with its base
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    return dst


def _dvc(args, cwd):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"dvc {args}: {proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


def _as_dict(v) -> dict:
    return v if isinstance(v, dict) else {}  # a whole-file params dep reports a plain string


def expected_stages(profile: Path) -> set[str]:
    p = load_profile(profile, pipeline=True)
    return (
        {"generate", "evaluate", "publish"}
        | {f"label@{s}" for s in p.labels.sources}
        | {f"gradient_cluster@{m}" for m in p.gradient_cluster.mixes}
        | {f"distill@{m}" for m in p.distill.mixes}
        | {f"validate@{a}" for a in p.arms}
        | {f"{s}@{j}" for j in p.train_jobs for s in ("train", "sample")}
        | {f"{s}@{j}" for j in p.rl_jobs for s in ("rl", "sample_rl")}
    )


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_resolves_in_a_fresh_copy(profile, tmp_path):
    repo = _copy_repo(tmp_path / "repo", profile)
    # The committed lock records another profile's run: against it a whole-file params dep
    # (publish) lists that profile's other keys as "deleted". Without it, "deleted" can only
    # mean a key a stage names that this profile lacks.
    (repo / "dvc.lock").unlink(missing_ok=True)
    status = json.loads(_dvc(["status", "--json"], repo))
    assert set(status) == expected_stages(repo / "params.yaml")
    lacking = sorted(
        f"{stage}: {key}"
        for stage, changes in status.items()
        for c in changes if isinstance(c, dict)
        for key, v in _as_dict(c.get("changed deps", {}).get("params.yaml")).items()
        if v == "deleted"
    )
    assert not lacking, f"{profile}: stages ask for params it lacks: {lacking}"


def test_missing_stage_list_fails_when_a_stage_starts(tmp_path):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    del data["gradient_cluster"]["mixes"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / "generate.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "gradient_cluster.mixes" in proc.stderr and "[] for none" in proc.stderr
