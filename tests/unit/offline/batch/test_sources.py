"""Input discovery and shard planning: order, formats, Parquet row groups, CSV/JSONL byte
ranges that end on record boundaries (quoted newlines, blank lines, no final newline)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelserve.offline.batch.errors import BatchError
from modelserve.offline.batch.sources import plan_shards, resolve_inputs


def _parquet(path: Path, rows: int, row_group: int, start: int = 0) -> Path:
    pq.write_table(pa.table({"id": np.arange(start, start + rows)}), path, row_group_size=row_group)
    return path


def test_folders_globs_and_files_keep_the_given_order(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "nested").mkdir(parents=True)
    for name in ("b.csv", "a.csv", "nested/c.jsonl", "_SUCCESS", ".hidden.csv"):
        (data / name).write_text("x\n1\n")
    single = tmp_path / "z.parquet"
    _parquet(single, 3, 3)
    files = resolve_inputs([str(single), str(data), str(data / "*.csv")])
    assert [Path(f.path).relative_to(tmp_path).as_posix() for f in files] == [
        "z.parquet",
        "data/a.csv",
        "data/b.csv",
        "data/nested/c.jsonl",
    ]
    assert [f.format for f in files] == ["parquet", "csv", "csv", "jsonl"]


def test_inputs_that_name_nothing_usable_are_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BatchError, match="matches no file"):
        resolve_inputs([str(tmp_path / "*.parquet")])
    with pytest.raises(BatchError, match="does not exist"):
        resolve_inputs([str(tmp_path / "missing.csv")])
    with pytest.raises(BatchError, match="cannot tell its format"):
        resolve_inputs([str(tmp_path / "notes.txt")])
    with pytest.raises(BatchError, match="at least one"):
        resolve_inputs([])


def test_parquet_shards_group_row_groups_and_split_large_ones(tmp_path: Path) -> None:
    small = _parquet(tmp_path / "a.parquet", 1000, 300)  # groups 300, 300, 300, 100
    large = _parquet(tmp_path / "b.parquet", 1000, 1000, start=1000)  # one group of 1000
    shards = plan_shards(resolve_inputs([str(small), str(large)]), 400)
    assert [(s.start, s.stop) for s in shards[:3]] == [(0, 300), (300, 600), (600, 1000)]
    assert [(s.start, s.stop) for s in shards[3:]] == [(0, 333), (333, 666), (666, 1000)]
    assert [s.first_row for s in shards] == [0, 300, 600, 1000, 1333, 1666]
    assert [s.index for s in shards] == list(range(6))


def test_csv_shards_end_on_records_not_on_quoted_newlines(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b'id,text\n1,"a\nb"\n\n2,x\n   \n3,"say ""hi""\n"\n4,y')
    shards = plan_shards(resolve_inputs([str(path)]), 1)
    data = path.read_bytes()
    assert [data[s.start : s.stop].strip() for s in shards] == [
        b'1,"a\nb"',
        b"2,x",
        b'3,"say ""hi""\n"',
        b"4,y",
    ]
    assert [s.rows for s in shards] == [1, 1, 1, 1]
    assert [s.first_record for s in shards] == [0, 1, 2, 3]
    assert {s.header_end for s in shards} == {len(b"id,text\n")}


def test_jsonl_shards_count_records_and_compressed_files_are_one_shard(tmp_path: Path) -> None:
    lines = b"".join(b'{"id": %d}\n' % i for i in range(10))
    plain = tmp_path / "a.jsonl"
    plain.write_bytes(lines)
    packed = tmp_path / "b.jsonl.gz"
    packed.write_bytes(gzip.compress(lines))
    shards = plan_shards(resolve_inputs([str(plain), str(packed)]), 4)
    assert [(s.source.endswith("gz"), s.rows) for s in shards] == [
        (False, 4),
        (False, 4),
        (False, 2),
        (True, 10),
    ]
    assert shards[-1].first_row == 10


def test_an_empty_csv_has_no_header_and_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(BatchError, match="empty"):
        plan_shards(resolve_inputs([str(path)]), 10)
