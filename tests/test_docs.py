"""What a reader reads: the documentation site builds in strict mode (a broken link or a page
missing from the nav fails), the configuration reference is the one the typed params models
generate and names every field, and no project text uses the team's internal vocabulary."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modc_data.params_reference import fields, params_reference

ROOT = Path(__file__).resolve().parents[1]


def test_params_reference_is_current_and_complete():
    page = (ROOT / "docs" / "reference" / "params.md").read_text()
    assert page == params_reference(), "regenerate: python -m modc_data.params_reference > docs/reference/params.md"
    rows = list(fields())
    assert len(rows) > 150
    for path, _, _, meaning in rows:
        assert f"| `{path}` |" in page, path
        assert meaning.strip(), f"{path} has no meaning: give it a description or a comment where its block is defined"
    for name in ("train.steps", "sample.n", "distill.teachers.verdict_column", "train_jobs.<key>.free_share"):
        assert f"| `{name}` |" in page


def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is in the dev extra (make setup)")
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for page in ("index.html", "concepts/index.html", "reference/params/index.html",
                 "results/smoke/index.html", "history/index.html"):
        assert (site / page).exists(), page
    assert "verdict_column" in (site / "reference" / "params" / "index.html").read_text()


def test_readme_is_short_and_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert "arXiv 2512.01127" in text or "arxiv.org/abs/2512.01127" in text
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)", text):
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


# Words for the team's own history (numbered work items and rounds, internal tools) that mean
# nothing to a reader. "session" alone stays allowed: pytest's session fixtures use it.
INTERNAL = re.compile(r"\b(?:issue|session|stop)s?[ -]#?\d+|\(issue\b|\bscience bar\b|\.library\b"
                      r"|duplicates --change", re.I)


def test_no_internal_history_vocabulary_in_project_text():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout")
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    hits = []
    for f in files:
        path = ROOT / f
        if path.suffix not in {".py", ".md", ".yaml", ".yml", ".toml", ".sh", ".cfg", ".txt", ""}:
            continue
        if f == "tests/test_docs.py" or not path.is_file():
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if INTERNAL.search(line):
                hits.append(f"{f}:{n}: {line.strip()[:100]}")
    assert not hits, "internal vocabulary in project text:\n" + "\n".join(hits[:30])
