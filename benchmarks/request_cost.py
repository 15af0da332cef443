"""The server's own CPU per inference request, without sockets, a kernel or a load generator.

    .venv/bin/python benchmarks/request_cost.py [--model mlp_onnx] [--rows 8] [--batching on]
        [--protocol rest|grpc] [--connections 64] [--rounds 200] [--repeat 7]
        [--modelserve-src DIR ...] [--json FILE]

A child process builds the server as ``modelserve serve`` does (``Server(settings)``, the model
loaded from a one-model repository made of the example's artifact, with the bench's batching
settings), opens ``--connections`` connections on in-memory transports, and for ``--rounds``
rounds sends one request (``--rows`` random rows) on each and runs the event loop until every
connection has its answer: the load of wrk or h2load at that concurrency, with the same batches,
but no system calls. ``rest``: HTTP/1.1 with a V2 binary body, as the bench's wrk rows send;
``grpc``: HTTP/2 streams, one ``ModelInfer`` each with ``raw_input_contents`` (HPACK-indexed
headers, as h2load and grpc clients send them). It prints the CPU time per request (one thread; the
model runs on the loop, as in the bench) and the part of it spent in the runtime's ``predict``
(timed around it); the rest is modelserve's own work: HTTP parsing or HTTP/2 framing, decoding,
checks, queueing, batching, statistics, metrics, encoding. Each of ``--repeat`` measurements runs
in a fresh process pinned to core 0 (``taskset``, when there is one).

``--modelserve-src DIR`` (a ``src/`` folder, e.g. of ``git archive``; ``.`` for the working
tree) may be given several times: the measurements then alternate between the sources, so that
a before/after comparison sees the same background load. The models are the examples' ONNX
ones (``iris_onnx``, ``mlp_onnx``); their artifacts are built into ``.bench/build`` by
``examples/build_examples.py`` when missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import repos
import servers
from tools import BENCH_DIR, log

from modelserve.transports.grpc import frames

BATCHING_YAML = {"on": repos.BATCHING_YAML, "off": repos.OFF_YAML}


def _repository(model: str, batching: str) -> Path:
    """A repository holding ``model`` alone, with the bench's batching setting."""
    if not (repos.BUILD_DIR / model / "1").is_dir():
        repos.build_examples(repos.BUILD_DIR)
    root = BENCH_DIR / "request-cost" / batching
    if (root / model).exists():
        shutil.rmtree(root / model)
    repos.copy_model(repos.BUILD_DIR, model, root, BATCHING_YAML[batching])
    return root


# ---- the child: one measurement ---------------------------------------------------------------


class _Answers:
    """Counts the answers written on every connection; done when a round has them all."""

    def __init__(self) -> None:
        self.count = 0
        self.expected = 0
        self.done: asyncio.Future[None] | None = None
        self.last = b""

    def answered(self, data: bytes) -> None:
        self.count += 1
        self.last = data
        if self.count == self.expected and self.done is not None:
            self.done.set_result(None)


class _Http2Reader:
    """What the server writes on one HTTP/2 connection: each answer ends with its trailers, the
    one header block that carries ``grpc-status`` (a literal: modelserve indexes none)."""

    def __init__(self, answers: _Answers) -> None:
        self._answers = answers

    def wrote(self, data: bytes) -> None:
        for _ in range(data.count(b"grpc-status")):
            self._answers.answered(data)


class _Transport:
    """What HttpProtocol uses of an asyncio transport, in memory."""

    def __init__(self, wrote: Any) -> None:
        self._wrote = wrote
        self._closing = False

    def write(self, data: bytes) -> None:
        self._wrote(data)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def abort(self) -> None:
        self._closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _request(model: str, inputs: Any, rows: int) -> bytes:
    """One V2 binary infer request (random data), as the bench's wrk rows send."""
    import numpy as np

    from modelserve.codecs.tensors import numpy_dtype

    rng = np.random.default_rng(0)
    specs, chunks = [], []
    for spec in inputs:
        shape = [rows if dim == -1 else dim for dim in spec.shape]
        data = rng.standard_normal(shape).astype(numpy_dtype(spec.datatype)).tobytes()
        chunks.append(data)
        specs.append(
            {
                "name": spec.name,
                "datatype": spec.datatype,
                "shape": shape,
                "parameters": {"binary_data_size": len(data)},
            }
        )
    header = json.dumps({"inputs": specs, "parameters": {"binary_data_output": True}}).encode()
    body = header + b"".join(chunks)
    head = (
        f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
        f"Content-Length: {len(body)}\r\nContent-Type: application/octet-stream\r\n"
        f"Inference-Header-Content-Length: {len(header)}\r\n\r\n"
    )
    return head.encode() + body


class _Http2Client:
    """One HTTP/2 connection's client side: the preface, then a ModelInfer stream per request."""

    def __init__(self, message: bytes) -> None:
        import hpack

        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/inference.GRPCInferenceService/ModelInfer"),
            (":authority", "127.0.0.1:8001"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        encoder = hpack.Encoder()
        # the first block adds the headers to the dynamic table; every later one is the same
        # bytes of indices, made once here so that the client's work is not measured
        self._blocks = [encoder.encode(headers), encoder.encode(headers)]
        self._message = b"\x00" + struct.pack(">I", len(message)) + message
        self._stream = -1
        self.preface = (
            frames.PREFACE
            + frames.settings({frames.Setting.INITIAL_WINDOW_SIZE: 2**31 - 1})
            + frames.frame(frames.SETTINGS, frames.ACK, 0)
            + frames.window_update(0, 2**31 - 1 - 65_535)
        )

    def request(self) -> bytes:
        self._stream += 2
        block = self._blocks[0] if self._stream == 1 else self._blocks[1]
        return frames.frame(frames.HEADERS, frames.END_HEADERS, self._stream, block) + frames.frame(
            frames.DATA, frames.END_STREAM, self._stream, self._message
        )


def _grpc_message(model: str, inputs: Any, rows: int) -> bytes:
    """A ModelInferRequest with raw_input_contents (random data), as perf_analyzer sends."""
    import numpy as np

    from modelserve.codecs.tensors import numpy_dtype
    from modelserve.protocol import grpc_service_pb2 as pb

    rng = np.random.default_rng(0)
    message = pb.ModelInferRequest(model_name=model)
    for spec in inputs:
        shape = [rows if dim == -1 else dim for dim in spec.shape]
        data = rng.standard_normal(shape).astype(numpy_dtype(spec.datatype)).tobytes()
        message.inputs.add(name=spec.name, datatype=spec.datatype, shape=shape)
        message.raw_input_contents.append(data)
    return bytes(message.SerializeToString())


async def _measure(repository: Path, args: argparse.Namespace) -> dict[str, float]:
    from modelserve.config.settings import Settings
    from modelserve.runtimes.onnx import OnnxRuntime
    from modelserve.server.compose import Server
    from modelserve.transports.http.server import HttpProtocol

    model_ns = 0
    predict = OnnxRuntime.predict

    def timed(self: OnnxRuntime, inputs: Any) -> Any:
        nonlocal model_ns
        began = time.process_time_ns()
        try:
            return predict(self, inputs)
        finally:
            model_ns += time.process_time_ns() - began

    OnnxRuntime.predict = timed  # type: ignore[method-assign]  # before the model loads
    server = Server(Settings(model_repository=repository, log_level="warning"))
    await server.telemetry.start()
    await server.core.load_models()
    inputs = server.dataplane.model_metadata(args.model).inputs
    answers = _Answers()
    sends: list[tuple[Any, Any]] = []  # (protocol, what to send it each round)
    if args.protocol == "rest":
        request = _request(args.model, inputs, args.rows)
        for _ in range(args.connections):
            protocol: Any = HttpProtocol(server.http)
            protocol.connection_made(_Transport(answers.answered))
            sends.append((protocol, lambda request=request: request))
        ok = b"HTTP/1.1 200"
    else:
        from modelserve.transports.grpc.connection import GrpcConnection

        await server.grpc.start("127.0.0.1", 0)  # bound on loopback, never connected to
        message = _grpc_message(args.model, inputs, args.rows)
        for _ in range(args.connections):
            client = _Http2Client(message)
            protocol = GrpcConnection(server.grpc._server)  # type: ignore[arg-type]
            protocol.connection_made(_Transport(_Http2Reader(answers).wrote))
            protocol.data_received(client.preface)
            sends.append((protocol, client.request))
        ok = b"grpc-status\x010"
    loop = asyncio.get_running_loop()

    async def one_round() -> None:
        answers.expected = answers.count + len(sends)
        answers.done = loop.create_future()
        for protocol, request in sends:
            protocol.data_received(request())
        await answers.done

    for _ in range(max(10, args.rounds // 10)):  # warm up
        await one_round()
    if ok not in answers.last:
        raise SystemExit(f"the server did not answer with success: {answers.last[:300]!r}")
    model_ns = 0
    began = time.process_time_ns()
    for _ in range(args.rounds):
        await one_round()
    total_ns = time.process_time_ns() - began
    requests = args.rounds * len(sends)
    return {
        "requests": requests,
        "cpu_us": total_ns / requests / 1e3,
        "model_us": model_ns / requests / 1e3,
    }


def _child(args: argparse.Namespace) -> int:
    import uvloop

    figures = uvloop.run(_measure(Path(args.child), args))
    print(json.dumps(figures))
    return 0


# ---- the parent: alternate the sources, report -----------------------------------------------


def _run_child(source: Path, repository: Path, args: argparse.Namespace) -> dict[str, float]:
    servers.use(source)
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        str(repository),
        "--model",
        args.model,
        "--rows",
        str(args.rows),
        "--connections",
        str(args.connections),
        "--rounds",
        str(args.rounds),
        "--protocol",
        args.protocol,
    ]
    if shutil.which("taskset"):
        argv = ["taskset", "-c", "0", *argv]
    done = subprocess.run(
        argv, env=servers.modelserve_env(), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"the measurement failed:\n{done.stdout}\n{done.stderr}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp_onnx", help="iris_onnx or mlp_onnx (mlp_onnx)")
    parser.add_argument("--rows", type=int, default=8, help="rows per request (8)")
    parser.add_argument("--batching", choices=("on", "off"), default="on", help="(on)")
    parser.add_argument("--protocol", choices=("rest", "grpc"), default="rest", help="(rest)")
    parser.add_argument("--connections", type=int, default=64, help="concurrency (64)")
    parser.add_argument("--rounds", type=int, default=200, help="requests per connection (200)")
    parser.add_argument("--repeat", type=int, default=7, help="measurements per source (7)")
    servers.add_sources_option(parser)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)
    sources = servers.sources(args)
    repository = _repository(args.model, args.batching)
    runs: dict[str, list[dict[str, float]]] = {str(source): [] for source in sources}
    for index in range(args.repeat):
        for source in sources:
            figures = _run_child(source, repository, args)
            runs[str(source)].append(figures)
            log(
                f"{index + 1}/{args.repeat} [{source}]: {figures['cpu_us']:.1f} µs CPU per "
                f"request, model {figures['model_us']:.1f}, modelserve "
                f"{figures['cpu_us'] - figures['model_us']:.1f}"
            )
    print(
        f"{args.model}, {args.rows} rows per request, {args.protocol}, {args.connections} "
        f"connections, batching {args.batching}: CPU µs per request (median of {args.repeat}; min)"
    )
    print("| modelserve source | all | model | modelserve's own | each (modelserve's own) |")
    print("| --- | ---: | ---: | ---: | --- |")
    for source, figures in runs.items():
        own = [f["cpu_us"] - f["model_us"] for f in figures]
        each = " ".join(f"{o:.1f}" for o in own)
        print(
            f"| {source} | {statistics.median(f['cpu_us'] for f in figures):.1f} "
            f"| {statistics.median(f['model_us'] for f in figures):.1f} "
            f"| {statistics.median(own):.1f}; {min(own):.1f} | {each} |"
        )
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
