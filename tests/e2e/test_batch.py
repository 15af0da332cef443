"""``modelserve batch run`` end to end, in a subprocess: every format in and out against
onnxruntime's own answers, a job killed mid-way and resumed (identical output), Dask (a local
cluster of 2 worker processes, one killed mid-job), bad rows, and the one-line refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from modelserve.offline.batch.job import BatchJob, JobOptions
from tests.harness import CliProcess, RunningServer, Servers, run_cli, write_python_model

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")

SLOW = """
import time
import numpy as np

class Model:
    inputs = [{"name": "x", "datatype": "FP64", "shape": [-1, 2]}]
    outputs = [{"name": "y", "datatype": "FP64", "shape": [-1, 2]}]

    def predict(self, inputs):
        time.sleep(DELAY)
        x = inputs["x"]
        if (x[:, 0] < 0).any():
            raise ValueError("a is negative")
        return {"y": x * 2}
"""


def _iris(n: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {"id": np.arange(n)}
    for name in FEATURES:
        columns[name] = np.round(rng.uniform(0, 8, n), 3)
    columns["species"] = [f"s{i % 3}" for i in range(n)]
    return pa.table(columns)


def _write_inputs(folder: Path, table: pa.Table) -> list[str]:
    """Rows 0-299 as Parquet, 300-599 as CSV, the rest as JSONL."""
    folder.mkdir()
    pq.write_table(table.slice(0, 300), folder / "a.parquet", row_group_size=100)
    pacsv.write_csv(table.slice(300, 300), folder / "b.csv")
    lines = [json.dumps(row) for row in table.slice(600).to_pylist()]
    (folder / "c.jsonl").write_text("\n".join(lines) + "\n")
    return [str(folder / "a.parquet"), str(folder / "b.csv"), str(folder / "c.jsonl")]


def _read_output(out: Path, fmt: str) -> pa.Table:
    parts = sorted(out.glob(f"part-*.{fmt}"))
    if fmt == "parquet":
        return ds.dataset(out).to_table()
    if fmt == "csv":
        return pa.concat_tables(pacsv.read_csv(part) for part in parts)
    rows = [json.loads(line) for part in parts for line in part.read_text().splitlines()]
    return pa.Table.from_pylist(rows)


def _batch(*args: str) -> list[str]:
    return ["batch", "run", *args]


def test_every_format_in_and_out_keeps_order_columns_and_answers(
    model_repo: Path, tmp_path: Path
) -> None:
    table = _iris(900)
    inputs = _write_inputs(tmp_path / "in", table)
    x = np.column_stack([table.column(f).to_numpy() for f in FEATURES]).astype(np.float32)
    session = ort.InferenceSession(str(model_repo / "iris_onnx" / "1" / "model.onnx"))
    labels, probabilities = session.run(None, {"input": x})
    for fmt in ("parquet", "csv", "jsonl"):
        out = tmp_path / f"out-{fmt}"
        result = run_cli(
            _batch(
                "--repository", str(model_repo), "--model", "iris_onnx", "--input", *inputs,
                "--output", str(out), "--format", fmt, "--features", ",".join(FEATURES),
                "--keep-columns", "id,species", "--shard-rows", "128",
            )
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "rows: 900" in result.stdout and "errors: 0" in result.stdout
        assert "batch: 900/900 rows (100.0%)" in result.stderr
        got = _read_output(out, fmt)
        assert got.column_names == [
            "id", "species", "label", "probabilities_0", "probabilities_1", "probabilities_2",
        ]  # fmt: skip
        assert got.column("id").to_pylist() == list(range(900))
        assert got.column("species").to_pylist() == table.column("species").to_pylist()
        assert np.array_equal(got.column("label").to_numpy(), labels)
        for k in range(3):
            column = got.column(f"probabilities_{k}").to_numpy().astype(np.float32)
            assert np.array_equal(column, probabilities[:, k]), (fmt, k)
        manifest = json.loads((out / "_manifest.json").read_text())
        assert [s["status"] for s in manifest["shards"]] == ["done"] * 9
        assert sum(s["rows"] for s in manifest["shards"]) == 900
        assert json.loads((out / "_SUCCESS").read_text())["rows"] == 900
        assert (out / "_errors.jsonl").read_text() == ""


def _slow_job(tmp_path: Path, delay: float, rows: int = 400) -> tuple[Path, Path]:
    repo = tmp_path / "repo"
    write_python_model(repo, "slow", SLOW.replace("DELAY", str(delay)), {"max_batch_size": 10})
    a = np.arange(rows, dtype=np.float64)
    a[[i for i in (5, 23, 24, 399) if i < rows]] = -1.0  # rows the model refuses
    data = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": np.arange(rows), "a": a, "b": a / 2}), data, row_group_size=40)
    return repo, data


def _slow_args(repo: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return _batch(
        "--repository", str(repo), "--model", "slow", "--input", str(data), "--output", str(out),
        "--features", "x=a,b", "--keep-columns", "id", "--shard-rows", "40", "--batch-size", "10",
        "--max-error-rate", "0.05", "--json", *extra,
    )  # fmt: skip


def _same_output(one: Path, other: Path) -> None:
    names = sorted(p.name for p in one.glob("part-*"))
    assert names == sorted(p.name for p in other.glob("part-*"))
    for name in [*names, "_errors.jsonl"]:
        assert (one / name).read_bytes() == (other / name).read_bytes(), name
    shards = [json.loads((d / "_manifest.json").read_text())["shards"] for d in (one, other)]
    assert shards[0] == shards[1]


def _wait_for_parts(out: Path, count: int, proc: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(list(out.glob("part-*"))) < count:
        assert proc.poll() is None, "the job ended before it could be interrupted"
        assert time.monotonic() < deadline, f"no {count} part files within {timeout} s"
        time.sleep(0.01)


def test_a_killed_job_resumes_to_the_same_output(tmp_path: Path) -> None:
    repo, data = _slow_job(tmp_path, delay=0.05)
    reference = tmp_path / "reference"
    whole = run_cli(_slow_args(repo, data, reference))
    assert whole.returncode == 0, whole.stderr
    assert json.loads(whole.stdout)["errors"] == 4
    out = tmp_path / "out"
    with CliProcess(_slow_args(repo, data, out)) as cli:
        _wait_for_parts(out, 2, cli.proc, timeout=60)
        cli.kill()  # SIGKILL: no clean-up of any kind
    finished = len(list(out.glob("part-*")))
    assert finished < 10
    resumed = run_cli(_slow_args(repo, data, out))
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert "resuming" in resumed.stderr
    assert summary["shards_run"] == 10 - finished  # nothing finished was done twice
    assert (summary["rows"], summary["errors"]) == (396, 4)
    _same_output(out, reference)


def test_dask_cluster_survives_a_killed_worker(tmp_path: Path) -> None:
    """A LocalCluster of 2 worker processes made here; the job runs on it through
    --scheduler, and one worker is killed while the job runs."""
    from distributed import Client, LocalCluster

    repo, data = _slow_job(tmp_path, delay=0.1)
    reference = tmp_path / "reference"
    assert run_cli(_slow_args(repo, data, reference)).returncode == 0
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
    )
    client = Client(cluster)
    try:
        pids = sorted(client.run(os.getpid).values())
        out = tmp_path / "out"
        args = _slow_args(
            repo, data, out, "--engine", "dask", "--scheduler", cluster.scheduler_address
        )
        with CliProcess(args) as cli:
            _wait_for_parts(out, 1, cli.proc, timeout=120)
            os.kill(pids[0], signal.SIGKILL)
            assert cli.wait(timeout=180) == 0, cli.log
            summary = json.loads("".join(cli.out))
        assert summary["engine"] == "dask" and summary["shards_run"] == 10
        _same_output(out, reference)
        client.wait_for_workers(2, timeout=60)  # the nanny started a new one
        assert pids[0] not in client.run(os.getpid).values()
    finally:
        client.close()
        cluster.close()


def test_dask_engine_starts_its_own_local_cluster(model_repo: Path, tmp_path: Path) -> None:
    inputs = _write_inputs(tmp_path / "in", _iris(900))
    common = [
        "--repository", str(model_repo), "--model", "iris_onnx:1", "--input", *inputs,
        "--features", ",".join(FEATURES), "--keep-columns", "id", "--shard-rows", "200",
    ]  # fmt: skip
    local = run_cli(_batch(*common, "--output", str(tmp_path / "local")))
    assert local.returncode == 0, local.stderr
    dask = run_cli(
        _batch(*common, "--output", str(tmp_path / "dask"), "--engine", "dask", "--workers", "2"),
        timeout=180,
    )
    assert dask.returncode == 0, dask.stderr
    assert "local Dask cluster: 2 worker processes" in dask.stderr
    _same_output(tmp_path / "local", tmp_path / "dask")


def test_bad_rows_go_to_the_error_file_and_fail_the_job_above_the_rate(
    model_repo: Path, tmp_path: Path
) -> None:
    data = tmp_path / "in.csv"
    rows = ["id,sepal_length,sepal_width,petal_length,petal_width"]
    rows += [f"{i},1.5,2.5,{'x' if i in (3, 8) else '0.5'},0.1" for i in range(20)]
    rows.insert(6, "5,1,2")  # a record with fields missing
    data.write_text("\n".join(rows) + "\n")
    args = [
        "--repository", str(model_repo), "--model", "iris_onnx", "--input", str(data),
        "--features", ",".join(FEATURES), "--keep-columns", "id",
    ]  # fmt: skip
    failed = run_cli(_batch(*args, "--output", str(tmp_path / "strict"), "--max-error-rate", "0.1"))
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines()[-1].startswith("modelserve: 3 bad rows, more than")
    assert not (tmp_path / "strict" / "_SUCCESS").exists()
    passed = run_cli(_batch(*args, "--output", str(tmp_path / "lax"), "--max-error-rate", "0.2"))
    assert passed.returncode == 0, passed.stderr
    errors = [
        json.loads(line) for line in (tmp_path / "lax" / "_errors.jsonl").read_text().splitlines()
    ]
    assert [(e["row"], e["id"]) for e in errors] == [(3, 3), (5, None), (9, 8)]
    assert "petal_length" in errors[0]["reason"] and "fields" in errors[1]["reason"]
    assert ds.dataset(tmp_path / "lax").to_table().num_rows == 18


def test_server_engine_sends_binary_requests_to_a_running_server(
    model_repo: Path, server: RunningServer, tmp_path: Path
) -> None:
    """REST and gRPC, with more rows per request than the served model takes (it answers 400
    and the job learns its max_batch_size): the output is the local engine's, byte for byte."""
    inputs = _write_inputs(tmp_path / "in", _iris(900))
    common = [
        "--model", "iris_onnx", "--input", *inputs, "--features", ",".join(FEATURES),
        "--keep-columns", "id", "--shard-rows", "300", "--batch-size", "256",
    ]  # fmt: skip
    local = tmp_path / "local"
    assert (
        run_cli(_batch("--repository", str(model_repo), *common, "--output", str(local))).returncode
        == 0
    )
    for name, url in (("rest", server.url), ("grpc", f"grpc://{server.grpc_url}")):
        out = tmp_path / name
        result = run_cli(
            _batch("--server", url, *common, "--output", str(out), "--workers", "2", "--json")
        )
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        assert (summary["engine"], summary["version"], summary["rows"]) == ("server", "1", 900)
        _same_output(local, out)


def test_server_engine_isolates_the_rows_the_server_refuses(serve: Servers, tmp_path: Path) -> None:
    repo, data = _slow_job(tmp_path, delay=0.0, rows=100)
    running = serve(repo)
    out = tmp_path / "out"
    options = JobOptions(
        model="slow:1",
        inputs=(str(data),),
        output=out,
        server=running.url,
        features={"x": ("a", "b")},
        keep_columns=("id",),
        batch_size=64,
        max_error_rate=0.05,
    )
    summary = BatchJob(options).run()
    assert (summary.rows, summary.errors) == (97, 3)
    errors = [json.loads(line) for line in (out / "_errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == [5, 23, 24]
    assert "a is negative" in errors[0]["reason"]
    table = ds.dataset(out).to_table()
    assert table.column("y_0").to_pylist() == [2.0 * i for i in range(100) if i not in (5, 23, 24)]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "nope"], "no model 'nope' in the repository"),
        (["--model", "iris_onnx:7"], "model 'iris_onnx' has no version 7"),
        (["--model", "iris_onnx", "--engine", "local", "--workers", "2"], "--workers is for"),
        (["--model", "iris_onnx", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["--model", "iris_onnx", "--input", "/nonexistent.csv"], "does not exist"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(
    model_repo: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    data = tmp_path / "in.csv"
    data.write_text("sepal_length,sepal_width,petal_length,petal_width\n1,2,3,4\n")
    args = ["--repository", str(model_repo), "--input", str(data), "--output", str(tmp_path / "o")]
    args += ["--features", ",".join(FEATURES), *extra]
    result = run_cli(_batch(*args))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_output_folder_with_other_files_is_left_alone(model_repo: Path, tmp_path: Path) -> None:
    data = tmp_path / "in.csv"
    data.write_text("a,b,c,d\n1,2,3,4\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.txt").write_text("mine")
    result = run_cli(
        _batch("--repository", str(model_repo), "--model", "iris_onnx", "--input", str(data),
               "--output", str(out), "--features", "a,b,c,d", "--overwrite")
    )  # fmt: skip
    assert result.returncode == 2 and "not a batch job's output" in result.stderr
    assert [p.name for p in out.iterdir()] == ["report.txt"]


def test_the_cli_loads_no_batch_dependency_until_a_job_runs() -> None:
    code = (
        "import sys, modelserve.cli.main as m\n"
        "m.build_parser()\n"
        "heavy = ('pyarrow', 'dask', 'distributed', 'rich', 'pandas')\n"
        "print([n for n in heavy if n in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
