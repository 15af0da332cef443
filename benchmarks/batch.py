"""The batch rows of ``make bench``: ``modelserve batch run`` over N rows (default 1,000,000) of
the iris classifier (ONNX; four FP64 feature columns into its FP32 ``[-1, 4]`` input) and of
the MLP (a list column of 256 FP32 values), each with:

- ``local``: ``--engine local``, unpinned (the model runs on one core, reading and writing
  overlap it on the other);
- ``core0``: ``--engine local`` under ``taskset -c 0``, the one core the raw ceiling had;
- ``dask-2``: ``--engine dask --workers 2`` (a local cluster of two worker processes).

Each job reads one Parquet file (row groups of 100,000 rows, the default shard size), keeps the
``id`` column, writes Parquet, and prints its summary; rows/s is the summary's (rows over the
time from the engine being ready to the last part written: model loading and cluster start-up
are left out and reported as wall time). ``vs raw`` divides it by the raw in-process rate of
the same model at the same batch size measured in this run (``raw.py``: one thread, core 0).
Inputs are generated once per row count under ``.bench/batch/``.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import servers
from tools import BENCH_DIR, log

ROW_GROUP = 100_000
ENGINES: dict[str, tuple[int | None, tuple[str, ...]]] = {
    "local": (None, ()),
    "core0": (0, ()),
    "dask-2": (None, ("--engine", "dask", "--workers", "2")),
}
MODELS = ("iris_onnx", "mlp_onnx")
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
TIMEOUT_S = 1800.0


@dataclass
class BatchRow:
    model: str
    engine: str
    rows: int
    rows_s: float = math.nan
    wall_s: float = math.nan
    processing_s: float = math.nan
    batch_size: int = 0
    batch_p50_ms: float | None = None
    batch_p99_ms: float | None = None
    raw_rows_s: float = math.nan
    vs_raw: float = math.nan
    na: str = ""

    @property
    def key(self) -> str:
        return f"batchrun/{self.model}/{self.engine}"


def row_keys() -> list[str]:
    return [f"batchrun/{model}/{engine}" for model in MODELS for engine in ENGINES]


def _input(model: str, rows: int) -> Path:
    """The job's input, generated once (seeded) and kept under .bench/batch/."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = BENCH_DIR / "batch" / f"{model}-{rows}.parquet"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    log(f"generating {rows:,} rows for {model} ({path})")
    rng = np.random.default_rng(0)
    temp = path.with_suffix(".tmp")
    writer = None
    for start in range(0, rows, ROW_GROUP):
        count = min(ROW_GROUP, rows - start)
        columns: dict[str, object] = {"id": np.arange(start, start + count, dtype=np.int64)}
        if model == "iris_onnx":
            for name in FEATURES:
                columns[name] = rng.uniform(0.0, 8.0, count)
        else:
            values = rng.standard_normal(count * 256, dtype=np.float32)
            columns["input"] = pa.FixedSizeListArray.from_arrays(pa.array(values), 256)
        table = pa.table(columns)
        if writer is None:
            writer = pq.ParquetWriter(temp, table.schema)
        writer.write_table(table, row_group_size=ROW_GROUP)
    assert writer is not None
    writer.close()
    temp.rename(path)
    return path


def _raw_rate(raw: list[dict[str, object]], model: str, batch: int) -> float:
    for entry in raw:
        if entry["model"] == model and entry["call"] == "session.run" and entry["batch"] == batch:
            return float(entry["rows_s"])  # type: ignore[arg-type]
    return math.nan


def run_one(
    repo: Path, model: str, engine: str, rows: int, logs: Path, raw: list[dict[str, object]]
) -> BatchRow:
    row = BatchRow(model, engine, rows)
    data = _input(model, rows)
    out = BENCH_DIR / "batch" / f"out-{model}-{engine}"
    cpu, extra = ENGINES[engine]
    argv = [sys.executable, "-m", "modelserve", "batch", "run", "--repository", str(repo)]
    argv += ["--model", model, "--input", str(data), "--output", str(out), "--overwrite"]
    argv += ["--keep-columns", "id", "--json", *extra]
    if model == "iris_onnx":
        argv += ["--features", ",".join(FEATURES)]
    log_path = logs / f"batch-{model}-{engine}.log"
    started = time.monotonic()
    proc = servers.spawn(argv, cpu=cpu, log_path=log_path)
    try:
        proc.wait(TIMEOUT_S)
    finally:
        servers.stop(proc)
    row.wall_s = time.monotonic() - started
    success = out / "_SUCCESS"
    if proc.returncode != 0 or not success.exists():
        row.na = f"exit {proc.returncode}: {log_path.read_text()[-300:]!r}"
        return row
    summary = json.loads(success.read_text())
    row.rows_s = float(summary["rows_per_s"])
    row.processing_s = float(summary["processing_s"])
    row.batch_size = int(summary["batch_size"])
    row.batch_p50_ms = summary["batch_p50_ms"]
    row.batch_p99_ms = summary["batch_p99_ms"]
    row.raw_rows_s = _raw_rate(raw, model, row.batch_size)
    row.vs_raw = row.rows_s / row.raw_rows_s
    if summary["rows"] != rows:
        row.na = f"wrote {summary['rows']} rows of {rows}"
    shutil.rmtree(out, ignore_errors=True)
    return row
