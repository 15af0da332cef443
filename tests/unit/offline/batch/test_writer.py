"""Part files: atomic writes with checksums; JSONL and CSV text that round-trips."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from modelserve.offline.batch.writer import encode_table, write_atomic


def _table() -> pa.Table:
    return pa.table(
        {
            "id": pa.array([1, None, 3], pa.int64()),
            "name": ['a "quoted"\nline', "é", None],
            "p": pa.array(np.array([0.1, np.nan, np.inf], dtype=np.float32)),
            "ok": [True, False, None],
            "raw": pa.array([b"\xff\x00", b"text", None], pa.binary()),
            "tags": [[1, 2], [], None],
        }
    )


def test_write_atomic_leaves_only_the_file_and_its_checksum(tmp_path: Path) -> None:
    written = write_atomic(tmp_path, "part-00001.parquet", b"payload")
    assert [p.name for p in tmp_path.iterdir()] == ["part-00001.parquet"]
    assert written.sha256 == hashlib.sha256(b"payload").hexdigest()
    assert written.bytes == 7


def test_jsonl_rows_are_json_with_shortest_floats_and_null_for_nan() -> None:
    lines = bytes(encode_table(_table(), "jsonl")).decode().splitlines()
    rows = [json.loads(line) for line in lines]
    assert rows[0] == {
        "id": 1,
        "name": 'a "quoted"\nline',
        "p": 0.1,
        "ok": True,
        "raw": "/wA=",
        "tags": [1, 2],
    }
    assert '"p":0.1,' in lines[0]  # FP32 0.1 is written as 0.1
    assert rows[1]["p"] is None and rows[2]["p"] is None  # JSON has no NaN or infinity
    assert (
        rows[1]["raw"] == "dGV4dA==" and rows[2]["id"] == 3
    )  # the whole column is base64 and rows[2]["name"] is None


def test_csv_round_trips_through_pyarrow() -> None:
    table = _table().drop_columns(["tags"])
    back = pacsv.read_csv(
        pa.BufferReader(bytes(encode_table(table, "csv"))),
        convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
    )
    assert back.column("name").to_pylist() == ['a "quoted"\nline', "é", None]
    assert back.column("raw").to_pylist() == ["/wA=", "dGV4dA==", None]
    assert back.column("p").to_pylist()[0] == pytest.approx(0.1)
    assert back.column("p").to_pylist()[1] is None  # "nan": pyarrow reads it as a null
