"""Data files as columns (CSV, JSONL, NPZ, NPY, Parquet) and the model inputs built from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelserve.serving.datasets import DataError, features_for, read_table
from modelserve.types import TensorSpec

X = TensorSpec("input", "FP32", (-1, 3))


def test_csv_columns_are_numbers_or_text(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b,c,target,kind\n1,2.5,3,0,x\n4,5,6e1,1,y\n")
    table = read_table(path)
    assert table.rows == 2
    assert table.columns["a"].dtype == np.int64
    assert table.columns["b"].dtype == np.float64
    assert table.columns["kind"].tolist() == ["x", "y"]
    inputs = features_for(table, [X], exclude=["target", "kind"])
    np.testing.assert_array_equal(inputs["input"], [[1, 2.5, 3], [4, 5, 60]])
    assert inputs["input"].dtype == np.float32


def test_columns_named_after_inputs_win(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"x": [1, 2, 3], "n": 2, "y": 1}\n\n{"x": [4, 5, 6], "n": 3, "y": 0}\n')
    table = read_table(path)
    specs = [TensorSpec("x", "FP64", (-1, 3)), TensorSpec("n", "INT32", (-1, 1))]
    inputs = features_for(table, specs)
    assert inputs["x"].shape == (2, 3) and inputs["n"].tolist() == [[2], [3]]
    assert inputs["n"].dtype == np.int32


def test_npz_and_npy(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", features=np.ones((5, 3)), label=np.arange(5))
    inputs = features_for(read_table(tmp_path / "d.npz"), [X], exclude=["label"])
    assert inputs["input"].shape == (5, 3)
    np.save(tmp_path / "d.npy", np.zeros((4, 3)))
    assert features_for(read_table(tmp_path / "d.npy"), [X])["input"].shape == (4, 3)


def test_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"a": [1.0, 2.0], "b": [3, None], "c": [0.5, 0.25], "target": ["p", "q"]})
    pq.write_table(table, tmp_path / "d.parquet")
    read = read_table(tmp_path / "d.parquet")
    assert read.columns["target"].tolist() == ["p", "q"]
    assert np.isnan(read.columns["b"][1])
    assert features_for(read, [X], exclude=["target"])["input"].shape == (2, 3)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("d.txt", "a\n1\n", "unknown data format"),
        ("d.csv", "", "expected a header row"),
        ("d.csv", "a,b\n1\n", "line 2 has 1 fields, the header 2"),
        ("d.csv", "a\n", "no rows"),
        ("d.jsonl", "[1]\n", "line 1 is not a JSON object"),
        ("d.jsonl", '{"a": 1}\n{"b": 2}\n', "record 2 has no 'a'"),
        ("d.jsonl", "{nope\n", "line 1 is not JSON"),
    ],
)
def test_bad_files_say_why(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_table(path)


def test_columns_that_do_not_fit_the_inputs_say_why(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,2\n")
    table = read_table(path)
    with pytest.raises(DataError, match=r"shape \[1, 2\] does not fit input 'input' \[-1, 3\]"):
        features_for(table, [X])
    two = [TensorSpec("x", "FP32", (-1,)), TensorSpec("y", "FP32", (-1,))]
    with pytest.raises(DataError, match=r"no column for input\(s\) \['x', 'y'\]"):
        features_for(table, two)
    path.write_text("a,b,c\n1,2,x\n")
    with pytest.raises(DataError, match="column 'c' is text"):
        features_for(read_table(path), [X])
    with pytest.raises(DataError, match="no feature columns"):
        features_for(read_table(path), [X], exclude=["a", "b", "c"])
