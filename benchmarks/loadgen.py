"""Load generators: wrk for REST (JSON and binary bodies), perf_analyzer for gRPC.

Both run pinned to their own core (``taskset -c 1``). Every point reports requests/s counting
only 200 answers (gRPC: OK), p50/p99 latency, every error, and the server's CPU time per request
(user+system of its whole process tree, read from /proc before and after).
"""

from __future__ import annotations

import csv
import json
import math
import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from servers import HOST, cpu_seconds, spawn, stop
from tools import Tool

LUA = Path(__file__).resolve().parent / "post.lua"
IRIS_ROW = (5.1, 3.5, 1.4, 0.2)


@dataclass
class Body:
    path: Path
    content_type: str = "application/json"
    header_length: int | None = None  # binary bodies: Inference-Header-Content-Length
    rows: int = 1


@dataclass
class Point:
    """One measured point."""

    req_s: float = float("nan")
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    requests: int = 0
    errors: int = 0
    error_detail: str = ""
    cpu_us_per_req: float = float("nan")
    rows_per_req: int = 1
    note: str = ""

    @property
    def rows_s(self) -> float:
        return self.req_s * self.rows_per_req


def json_body(
    directory: Path, name: str, datatype: str, outputs: tuple[str, ...] = (), rows: int = 1
) -> Body:
    request: dict[str, object] = {
        "inputs": [
            {"name": "input", "datatype": datatype, "shape": [rows, 4], "data": IRIS_ROW * rows}
        ]
    }
    if outputs:
        request["outputs"] = [{"name": output} for output in outputs]
    path = directory / f"{name}.json"
    path.write_text(json.dumps(request))
    return Body(path, rows=rows)


def binary_body(directory: Path, name: str, rows: int, features: int) -> Body:
    """A V2 binary-tensor request: JSON header, then the raw little-endian FP32 input."""
    raw = struct.pack(
        f"<{rows * features}f", *(((i % 97) - 48) / 48 for i in range(rows * features))
    )
    header = {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": [rows, features],
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header).encode()
    path = directory / f"{name}.bin"
    path.write_bytes(head + raw)
    return Body(path, "application/octet-stream", len(head), rows)


def image_body(directory: Path, name: str, image: Path) -> Body:
    """A JPEG posted as it is (a raw body: the pipeline's one BYTES input)."""
    path = directory / f"{name}.jpg"
    path.write_bytes(image.read_bytes())
    return Body(path, "image/jpeg")


def run_wrk(
    wrk: Tool,
    url: str,
    body: Body,
    concurrency: int,
    seconds: float,
    server_pid: int,
    log_path: Path,
) -> Point:
    env = {**wrk.environ(), "BENCH_BODY": str(body.path), "BENCH_CONTENT_TYPE": body.content_type}
    if body.header_length is not None:
        env["BENCH_HEADER_LENGTH"] = str(body.header_length)
    argv = [*wrk.argv, "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency"]
    argv += ["--timeout", "5s", "-s", str(LUA), url]
    cpu_before = cpu_seconds(server_pid)
    proc = spawn(argv, cpu=1, log_path=log_path, env=env)
    try:
        proc.wait(seconds + 30)
    finally:
        stop(proc)
    cpu_after = cpu_seconds(server_pid)
    output = log_path.read_text(errors="replace")
    line = next((x for x in output.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        return Point(errors=1, error_detail=f"wrk failed: {output.strip()[-300:]}")
    stats = json.loads(line[len("BENCH ") :])
    socket_errors = {k: int(stats[k]) for k in ("connect", "read", "write", "timeout")}
    errors = int(stats["non200"]) + sum(socket_errors.values())
    detail = ", ".join(
        f"{k} {v}" for k, v in (("non-200", stats["non200"]), *socket_errors.items())
    )
    ok = int(stats["requests"]) - int(stats["non200"])
    duration = int(stats["duration_us"]) / 1e6
    return Point(
        req_s=ok / duration,
        p50_ms=stats["p50_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        requests=int(stats["requests"]),
        errors=errors,
        error_detail=detail if errors else "",
        cpu_us_per_req=(cpu_after - cpu_before) * 1e6 / max(1, int(stats["requests"])),
        rows_per_req=body.rows,
    )


def run_perf_analyzer(
    pa: Tool,
    model: str,
    protocol: str,
    port: int,
    concurrency: int,
    seconds: float,
    server_pid: int,
    log_path: Path,
    shape: str,
    batch: int = 1,
) -> Point:
    """Three measurement windows of ``seconds / 3`` each, accepted whatever their spread (the
    bound on time matters more here than perf_analyzer's stability search)."""
    window_ms = max(500, int(seconds * 1000 / 3))
    csv_path = log_path.with_suffix(".csv")
    csv_path.unlink(missing_ok=True)
    argv = [*pa.argv, "-m", model, "-u", f"{HOST}:{port}", "-i", protocol]
    argv += ["--concurrency-range", str(concurrency), "-p", str(window_ms), "-b", str(batch)]
    argv += ["--max-trials", "3", "--stability-percentage", "1000", "--shape", shape]
    argv += ["-f", str(csv_path)]
    proc = spawn(argv, cpu=1, log_path=log_path, env=pa.environ())
    try:
        # server CPU over a steady middle stretch of the run, divided by the throughput
        time.sleep(min(1.5, window_ms / 1000))
        cpu_before, t_before = cpu_seconds(server_pid), time.monotonic()
        time.sleep(max(0.5, 2 * window_ms / 1000 - 0.5))
        cpu_rate = (cpu_seconds(server_pid) - cpu_before) / (time.monotonic() - t_before)
        proc.wait(seconds + 60)
    finally:
        stop(proc)
    output = log_path.read_text(errors="replace")
    if proc.returncode != 0 or not csv_path.exists():
        tail = " ".join(output.strip().splitlines()[-3:])[-300:]
        return Point(errors=1, error_detail=f"perf_analyzer rc={proc.returncode}: {tail}")
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    row = rows[0]
    req_s = float(row["Inferences/Second"]) / batch
    return Point(
        req_s=req_s,
        p50_ms=float(row["p50 latency"]) / 1000,
        p99_ms=float(row["p99 latency"]) / 1000,
        requests=math.floor(req_s * 3 * window_ms / 1000),
        cpu_us_per_req=cpu_rate * 1e6 / req_s if req_s > 0 else float("nan"),
        rows_per_req=batch,
        note="perf_analyzer",
    )


def grpc_body(
    directory: Path, name: str, model: str, datatype: str, outputs: tuple[str, ...] = ()
) -> Body:
    """A gRPC ModelInfer call as h2load sends it: the 5-byte gRPC frame prefix + the message."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "input", datatype
    tensor.shape.extend([1, 4])
    for output in outputs:
        request.outputs.add().name = output
    fmt = "<4d" if datatype == "FP64" else "<4f"
    request.raw_input_contents.append(struct.pack(fmt, *IRIS_ROW))
    message = request.SerializeToString()
    path = directory / f"{name}.grpc"
    path.write_bytes(b"\0" + struct.pack(">I", len(message)) + message)
    return Body(path, "application/grpc")


def grpc_mlp_body(directory: Path, name: str, rows: int, features: int) -> Body:
    """A gRPC ModelInfer call to mlp_onnx: ``rows`` rows of FP32 as raw input contents (the same
    values as ``binary_body``), as perf_analyzer and tritonclient send tensors."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name="mlp_onnx")
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "input", "FP32"
    tensor.shape.extend([rows, features])
    values = (((i % 97) - 48) / 48 for i in range(rows * features))
    request.raw_input_contents.append(struct.pack(f"<{rows * features}f", *values))
    message = request.SerializeToString()
    path = directory / f"{name}.grpc"
    path.write_bytes(b"\0" + struct.pack(">I", len(message)) + message)
    return Body(path, "application/grpc", rows=rows)


_H2_REQUESTS = re.compile(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded")
_H2_DATA = re.compile(r"traffic: .*\((\d+)\) data")
_H2_FINISHED = re.compile(r"finished in ([\d.]+)(m?s)")


def _h2load(
    h2: Tool, url: str, body: Body, concurrency: int, limit: list[str], log_path: Path
) -> tuple[str, Path]:
    timings = log_path.with_suffix(".tsv")
    timings.unlink(missing_ok=True)  # h2load appends to it
    argv = [*h2.argv, f"-c{concurrency}", "-m1", "-d", str(body.path), *limit]
    argv += ["-H", f"content-type: {body.content_type}", "-H", "te: trailers"]
    argv += ["--log-file", str(timings), url]
    proc = spawn(argv, cpu=1, log_path=log_path)
    try:
        proc.wait(120)
    finally:
        stop(proc)
    return log_path.read_text(errors="replace"), timings


def run_h2load_grpc(
    h2: Tool, port: int, body: Body, concurrency: int, seconds: float, server_pid: int, log: Path
) -> Point:
    """gRPC load with h2load: one connection, ``concurrency`` streams in flight. gRPC errors come
    back as HTTP 200 with a trailers-only answer (no message), so successes are counted from the
    response bytes: every good answer carries one message of the size a first call returned."""
    url = f"http://{HOST}:{port}/inference.GRPCInferenceService/ModelInfer"
    sample, _ = _h2load(h2, url, body, 1, ["-n", "1"], log.with_name(log.stem + "-sample.log"))
    found = _H2_DATA.search(sample)
    size = int(found.group(1)) if found else 0
    if size == 0:
        return Point(errors=1, error_detail=f"gRPC call failed: {sample.strip()[-300:]}")
    cpu_before = cpu_seconds(server_pid)
    output, timings = _h2load(h2, url, body, concurrency, ["-D", str(round(seconds))], log)
    cpu_after = cpu_seconds(server_pid)
    counts, data, finished = (p.search(output) for p in (_H2_REQUESTS, _H2_DATA, _H2_FINISHED))
    if not (counts and data and finished):
        return Point(errors=1, error_detail=f"h2load failed: {output.strip()[-300:]}")
    done, http_ok = int(counts.group(2)), int(counts.group(3))
    good = min(http_ok, round(int(data.group(1)) / size))
    duration = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    latencies = sorted(int(line.split("\t")[2]) for line in timings.read_text().splitlines())
    errors = done - good

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1000

    return Point(
        req_s=good / duration,
        p50_ms=pct(0.50) if latencies else float("nan"),
        p99_ms=pct(0.99) if latencies else float("nan"),
        requests=done,
        errors=errors,
        error_detail=f"{errors} not OK (HTTP {done - http_ok})" if errors else "",
        cpu_us_per_req=(cpu_after - cpu_before) * 1e6 / max(1, done),
        note="h2load",
        rows_per_req=body.rows,
    )
