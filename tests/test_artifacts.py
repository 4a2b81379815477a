"""Atomic writers: a failure never leaves a half-written output where a finished one was."""

import json

import polars as pl
import pytest

from modc_data.artifacts import atomic_dir, frame_hash, write_json, write_parquet, write_text


def test_writers_round_trip_and_leave_no_temp_files(tmp_path):
    write_json({"b": [1, 2], "a": None}, tmp_path / "d" / "m.json")
    write_text("hello\n", tmp_path / "d" / "t.txt")
    df = pl.DataFrame({"id": ["x", "y"], "v": [1, 2]})
    write_parquet(df, tmp_path / "d" / "f.parquet")
    assert json.loads((tmp_path / "d" / "m.json").read_text()) == {"a": None, "b": [1, 2]}
    assert (tmp_path / "d" / "t.txt").read_text() == "hello\n"
    assert pl.read_parquet(tmp_path / "d" / "f.parquet").equals(df)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["f.parquet", "m.json", "t.txt"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "f.parquet"
    write_parquet(pl.DataFrame({"a": [1]}), path)

    class Boom(pl.DataFrame):
        def write_parquet(self, *args, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError):
        write_parquet(Boom({"a": [2]}), path)
    assert pl.read_parquet(path)["a"].to_list() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["f.parquet"]


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "w.txt").write_text("v1")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "w.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert (target / "w.txt").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_frame_hash_ignores_row_order():
    df = pl.DataFrame({"id": ["a", "b", "c"]})
    assert frame_hash(df) == frame_hash(df.reverse())
    assert frame_hash(df) != frame_hash(df.head(2))
