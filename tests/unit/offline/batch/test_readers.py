"""Reading a shard: Parquet row ranges across row groups, CSV and JSONL fast paths, and the
record-by-record fallback that keeps every good row in its place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from modelserve.offline.batch.columns import plan_columns
from modelserve.offline.batch.readers import read_sample, read_shard
from modelserve.offline.batch.sources import plan_shards, resolve_inputs
from modelserve.types import TensorSpec

INPUT = (TensorSpec("x", "FP64", (-1, 2)),)
OUTPUT = (TensorSpec("y", "FP64", (-1,)),)


def _read_all(path: Path, shard_rows: int, keep: list[str]) -> tuple[list[dict], dict[int, str]]:
    files = resolve_inputs([str(path)])
    plan = plan_columns(INPUT, OUTPUT, True, {"x": ["a", "b"]}, keep, read_sample(files[0]))
    rows: list[dict] = []
    errors: dict[int, str] = {}
    for shard in plan_shards(files, shard_rows):
        table, found = read_shard(shard, plan)
        assert table.num_rows == shard.rows
        errors.update({shard.first_row + row: reason for row, reason in found.items()})
        rows += table.to_pylist()
    return rows, errors


def test_parquet_row_ranges_across_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    n = 1000
    table = pa.table({"id": np.arange(n), "a": np.arange(n) * 1.0, "b": np.ones(n)})
    pq.write_table(table, path, row_group_size=256)
    rows, errors = _read_all(path, 100, ["id"])
    assert [r["id"] for r in rows] == list(range(n)) and not errors


def test_csv_bad_records_are_bad_rows_in_place(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('id,a,b\n1,1.5,2\n2,oops,2\n3,1,2,3\n4,"1",2\n5,,2\n')
    rows, errors = _read_all(path, 2, ["id"])
    assert [r["id"] for r in rows] == [1, 2, None, 4, 5]
    assert [r["a"] for r in rows] == [1.5, None, None, 1.0, None]
    assert "'oops'" in errors[1]
    assert errors[2] == "the record has 4 fields, the header 3"
    assert sorted(errors) == [1, 2]  # an empty value is not a parse error: the column is null


def test_jsonl_bad_lines_are_bad_rows_in_place(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"id": 1, "a": 1, "b": 2}\n'
        "{not json\n"
        '{"id": 3, "a": "two", "b": 2}\n'
        "[1, 2]\n"
        '{"id": 5, "a": 1.5, "b": 2, "extra": true}\n'
    )
    rows, errors = _read_all(path, 10, ["id"])
    assert [r["id"] for r in rows] == [1, None, 3, None, 5]
    assert rows[4]["a"] == 1.5
    assert errors[1].startswith("the line is not valid JSON")
    assert "'two'" in errors[2]
    assert errors[3] == "the line is not a JSON object"
