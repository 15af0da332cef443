"""A job in-process on real python models: bad rows isolated by bisection, the error budget,
versions, models without a batch dimension, outputs checked, a completed job left alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from modelserve.offline.batch.errors import BatchError, JobFailed
from modelserve.offline.batch.job import BatchJob, JobOptions
from tests.harness import write_python_model

PICKY = """
import numpy as np

class Model:
    inputs = [{"name": "x", "datatype": "FP64", "shape": [-1, 2]}]
    outputs = [
        {"name": "y", "datatype": "FP64", "shape": [-1]},
        {"name": "v", "datatype": "INT32", "shape": [-1, 2]},
    ]

    def load(self, version_dir, parameters):
        self.version = int(version_dir.name)

    def predict(self, inputs):
        x = inputs["x"]
        if (x[:, 0] < 0).any():
            raise ValueError("a is negative")
        return {"y": x.sum(axis=1), "v": np.full((len(x), 2), self.version)}
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    write_python_model(repo, "picky", PICKY, {"max_batch_size": 16}, versions=(1, 2))
    return repo


def _input(path: Path, a: list[float]) -> Path:
    table = pa.table({"id": np.arange(len(a)), "a": a, "b": np.ones(len(a))})
    pq.write_table(table, path, row_group_size=10)
    return path


def _options(repo: Path, data: Path, out: Path, **extra: object) -> JobOptions:
    values: dict[str, object] = {
        "model": "picky",
        "inputs": (str(data),),
        "output": out,
        "repository": repo,
        "features": {"": ("a", "b")},
        "keep_columns": ("id",),
        "shard_rows": 10,
        "batch_size": 8,
        **extra,
    }
    return JobOptions(**values)  # type: ignore[arg-type]


def test_bad_rows_are_isolated_and_the_rest_keeps_its_order(repo: Path, tmp_path: Path) -> None:
    a = [float(i) for i in range(40)]
    for bad in (3, 4, 17, 39):
        a[bad] = -1.0
    out = tmp_path / "out"
    summary = BatchJob(
        _options(repo, _input(tmp_path / "in.parquet", a), out, max_error_rate=0.1)
    ).run()
    assert (summary.status, summary.rows, summary.errors, summary.shards) == ("complete", 36, 4, 4)
    table = ds.dataset(out).to_table()
    assert table.column_names == ["id", "y", "v_0", "v_1"]
    assert table.column("id").to_pylist() == [i for i in range(40) if i not in (3, 4, 17, 39)]
    assert table.column("y").to_pylist() == [a[i] + 1 for i in table.column("id").to_pylist()]
    assert set(table.column("v_0").to_pylist()) == {2}  # the newest version by default
    errors = [json.loads(line) for line in (out / "_errors.jsonl").read_text().splitlines()]
    assert [(e["row"], e["id"]) for e in errors] == [(3, 3), (4, 4), (17, 17), (39, 39)]
    assert errors[0]["reason"] == "model 'picky' rejected the input: a is negative"
    assert json.loads((out / "_SUCCESS").read_text())["errors"] == 4


def test_more_bad_rows_than_allowed_fails_the_job_with_them_on_record(
    repo: Path, tmp_path: Path
) -> None:
    a = [-1.0 if i % 5 == 0 else 1.0 for i in range(40)]  # 20 % bad
    out = tmp_path / "out"
    with pytest.raises(JobFailed, match=r"bad rows, more than --max-error-rate 0\.1"):
        BatchJob(_options(repo, _input(tmp_path / "in.parquet", a), out, max_error_rate=0.1)).run()
    assert not (out / "_SUCCESS").exists()
    assert (out / "_errors.jsonl").read_text().count("\n") >= 4


def test_a_pinned_version_and_an_unknown_one(repo: Path, tmp_path: Path) -> None:
    data = _input(tmp_path / "in.parquet", [1.0, 2.0])
    summary = BatchJob(_options(repo, data, tmp_path / "v1", model="picky:1")).run()
    assert summary.version == "1"
    assert set(ds.dataset(tmp_path / "v1").to_table().column("v_1").to_pylist()) == {1}
    with pytest.raises(BatchError, match=r"no version 3 \(versions: \[1, 2\]\)"):
        BatchJob(_options(repo, data, tmp_path / "v3", model="picky:3")).run()
    assert not (tmp_path / "v3").exists()


def test_a_model_without_a_batch_dimension_runs_row_by_row(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    source = PICKY.replace('"shape": [-1, 2]}]', '"shape": [2]}]').replace("[-1]", "[]")
    source = source.replace("x[:, 0]", "x[:1]").replace("x.sum(axis=1)", "x.sum()")
    source = source.replace("np.full((len(x), 2), self.version)", "np.full(2, self.version)")
    source = source.replace('"shape": [-1, 2]}', '"shape": [2]}')
    write_python_model(repo, "picky", source, {"max_batch_size": 0})
    data = _input(tmp_path / "in.parquet", [1.0, -1.0, 3.0])
    summary = BatchJob(_options(repo, data, tmp_path / "out", max_error_rate=0.5)).run()
    assert (summary.rows, summary.errors, summary.batch_size) == (2, 1, 1)
    assert ds.dataset(tmp_path / "out").to_table().column("y").to_pylist() == [2.0, 4.0]


def test_outputs_with_the_wrong_rows_fail_the_shard_not_silently(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_python_model(repo, "picky", PICKY.replace('x.sum(axis=1), "v"', 'x.sum(axis=1)[:1], "v"'),
                       {"max_batch_size": 16})  # fmt: skip
    data = _input(tmp_path / "in.parquet", [1.0, 2.0, 3.0])
    with pytest.raises(JobFailed) as failure:
        BatchJob(_options(repo, data, tmp_path / "out", max_error_rate=1.0)).run()
    assert "returned 1 rows for output 'y' but was given" in str(failure.value)


def test_a_complete_job_is_not_run_again(repo: Path, tmp_path: Path) -> None:
    data = _input(tmp_path / "in.parquet", [1.0, 2.0, 3.0])
    out = tmp_path / "out"
    BatchJob(_options(repo, data, out)).run()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = BatchJob(_options(repo, data, out)).run()
    assert (again.shards_run, again.rows) == (0, 3)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"format": "xml"}, "--format"),
        ({"batch_size": 0}, "--batch-size"),
        ({"max_error_rate": 2.0}, "--max-error-rate"),
        ({"workers": 2}, "--workers is for --engine dask"),
        ({"scheduler": "tcp://127.0.0.1:1"}, "--scheduler needs --engine dask"),
        ({"features": {"": ("a", "nope")}}, "no column 'nope'"),
    ],
)
def test_options_that_cannot_work(
    repo: Path, tmp_path: Path, extra: dict[str, object], message: str
) -> None:
    data = _input(tmp_path / "in.parquet", [1.0])
    with pytest.raises(BatchError, match=message):
        BatchJob(_options(repo, data, tmp_path / "out", **extra)).run()
