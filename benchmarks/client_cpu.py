"""The client's own CPU per request: modelserve.client against tritonclient, the same request.

    .venv/bin/python benchmarks/client_cpu.py HTTP_PORT GRPC_PORT [--seconds S] [--out FILE]

One process, one client at a time, one request after another (iris_onnx, one row of 4 FP32,
every output back as numpy arrays): the process CPU time (user + system, ``time.process_time``)
spent per request is what the client library costs the application; the server runs in another
process (``make bench`` pins it to the other core), so none of its work is counted. Each client
is warmed up first (connections open, the model's metadata fetched), then the clients take
turns, ROUNDS times S/ROUNDS seconds each, so that a change in the machine's load falls on all
of them; a client's figure is the median of its rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HOST = "127.0.0.1"
MODEL = "iris_onnx"
X = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
WARMUP = 50
ROUNDS = 5


def _ours(url: str, protocol: str, binary: bool = True) -> tuple[Callable[[], Any], Any]:
    from modelserve.client import Client

    client = Client(url, protocol, binary=binary)  # type: ignore[arg-type]
    return lambda: client.predict(MODEL, X), client


def _triton_http(port: int) -> tuple[Callable[[], Any], Any]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(f"{HOST}:{port}")
    outputs = [
        httpclient.InferRequestedOutput("label", binary_data=True),
        httpclient.InferRequestedOutput("probabilities", binary_data=True),
    ]

    def call() -> Any:
        tensor = httpclient.InferInput("input", list(X.shape), "FP32")
        tensor.set_data_from_numpy(X, binary_data=True)
        result = client.infer(MODEL, [tensor], outputs=outputs)
        return result.as_numpy("label"), result.as_numpy("probabilities")

    return call, client


def _triton_grpc(port: int) -> tuple[Callable[[], Any], Any]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(f"{HOST}:{port}")

    def call() -> Any:
        tensor = grpcclient.InferInput("input", list(X.shape), "FP32")
        tensor.set_data_from_numpy(X)
        result = client.infer(MODEL, [tensor])
        return result.as_numpy("label"), result.as_numpy("probabilities")

    return call, client


def _round(call: Callable[[], Any], seconds: float) -> tuple[int, float, float]:
    """(calls, CPU seconds, wall seconds) of calling for ``seconds``."""
    calls = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    deadline = wall0 + seconds
    while time.perf_counter() < deadline:
        call()
        calls += 1
    return calls, time.process_time() - cpu0, time.perf_counter() - wall0


def measure(
    clients: list[tuple[str, str, Callable[[], tuple[Callable[[], Any], Any]]]], seconds: float
) -> list[dict[str, Any]]:
    made = [(name, protocol, *make()) for name, protocol, make in clients]
    try:
        for _, _, call, _ in made:
            for _ in range(WARMUP):
                call()
        rounds: dict[str, list[tuple[int, float, float]]] = {name: [] for name, *_ in made}
        for _ in range(ROUNDS):
            for name, _, call, _ in made:
                rounds[name].append(_round(call, seconds / ROUNDS))
    finally:
        for *_, client in made:
            client.close()
    rows = []
    for name, protocol, *_ in made:
        done = rounds[name]
        rows.append(
            {
                "client": name,
                "protocol": protocol,
                "calls": sum(c for c, _, _ in done),
                "cpu_us_per_call": statistics.median(cpu / c * 1e6 for c, cpu, _ in done),
                "wall_us_per_call": statistics.median(wall / c * 1e6 for c, _, wall in done),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("http_port", type=int)
    parser.add_argument("grpc_port", type=int)
    parser.add_argument("--seconds", type=float, default=3.0, help="per client (default 3)")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    rest, grpc = f"{HOST}:{args.http_port}", f"{HOST}:{args.grpc_port}"
    clients: list[tuple[str, str, Callable[[], tuple[Callable[[], Any], Any]]]] = [
        ("tritonclient.http", "REST", lambda: _triton_http(args.http_port)),
        ("modelserve.client (binary)", "REST", lambda: _ours(rest, "http")),
        ("modelserve.client (JSON)", "REST", lambda: _ours(rest, "http", binary=False)),
        ("tritonclient.grpc", "gRPC", lambda: _triton_grpc(args.grpc_port)),
        ("modelserve.client", "gRPC", lambda: _ours(grpc, "grpc")),
    ]
    rows = measure(clients, args.seconds)
    for row in rows:
        print(
            f"{row['protocol']:5} {row['client']:28} {row['calls']:7d} calls  "
            f"{row['cpu_us_per_call']:7.0f} µs CPU/call  {row['wall_us_per_call']:7.0f} µs/call"
        )
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
