"""The server's own CPU per inference request, without sockets, a kernel or a load generator.

    .venv/bin/python benchmarks/request_cost.py [--model mlp_onnx] [--rows 8] [--batching on]
        [--connections 64] [--rounds 200] [--repeat 7] [--modelserve-src DIR ...] [--json FILE]

A child process builds the server as ``modelserve serve`` does (``Server(settings)``, the model
loaded from a one-model repository made of the example's artifact, with the bench's batching
settings), opens ``--connections`` HTTP connections on in-memory transports, and for
``--rounds`` rounds sends one V2 binary request (``--rows`` random rows) on each and runs the
event loop until every connection has its answer: the load of wrk at that concurrency, with
the same batches, but no system calls. It prints the CPU time per request (one thread; the
model runs on the loop, as in the bench) and the part of it spent in the runtime's ``predict``
(timed around it); the rest is modelserve's own work: HTTP parsing, decoding, checks, queueing,
batching, statistics, metrics, encoding. Each of ``--repeat`` measurements runs in a fresh
process pinned to core 0 (``taskset``, when there is one).

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
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tools import BENCH_DIR, REPO, log

BUILD = BENCH_DIR / "build"
WORKING_TREE = Path(".")
BATCHING_YAML = {
    "on": "\ndynamic_batching:\n  max_queue_delay_us: 500\n",
    "off": "\ndynamic_batching: false\n",
}


def _repository(model: str, batching: str) -> Path:
    """A repository holding ``model`` alone, with the bench's batching setting."""
    if not (BUILD / model / "1").is_dir():
        log("building the example models (examples/build_examples.py)")
        subprocess.run(
            [sys.executable, str(REPO / "examples" / "build_examples.py"), str(BUILD)],
            check=True,
            capture_output=True,
        )
    root = BENCH_DIR / "request-cost" / batching
    target = root / model
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(BUILD / model / "1", target / "1")
    config = (REPO / "examples" / "models" / model / "model.yaml").read_text()
    (target / "model.yaml").write_text(config + BATCHING_YAML[batching])
    return root


# ---- the child: one measurement ---------------------------------------------------------------


class _Answers:
    """Counts the answers written on every connection; done when a round has them all."""

    def __init__(self) -> None:
        self.count = 0
        self.expected = 0
        self.done: asyncio.Future[None] | None = None
        self.last = b""

    def wrote(self, data: bytes) -> None:
        self.count += 1
        self.last = data
        if self.count == self.expected and self.done is not None:
            self.done.set_result(None)


class _Transport:
    """What HttpProtocol uses of an asyncio transport, in memory."""

    def __init__(self, answers: _Answers) -> None:
        self._answers = answers
        self._closing = False

    def write(self, data: bytes) -> None:
        self._answers.wrote(data)

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
    request = _request(args.model, server.dataplane.model_metadata(args.model).inputs, args.rows)
    answers = _Answers()
    connections = []
    for _ in range(args.connections):
        protocol = HttpProtocol(server.http)
        protocol.connection_made(_Transport(answers))  # type: ignore[arg-type]
        connections.append(protocol)
    loop = asyncio.get_running_loop()

    async def one_round() -> None:
        answers.expected = answers.count + len(connections)
        answers.done = loop.create_future()
        for protocol in connections:
            protocol.data_received(request)
        await answers.done

    for _ in range(max(10, args.rounds // 10)):  # warm up
        await one_round()
    if not answers.last.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"the server did not answer 200: {answers.last[:300]!r}")
    model_ns = 0
    began = time.process_time_ns()
    for _ in range(args.rounds):
        await one_round()
    total_ns = time.process_time_ns() - began
    requests = args.rounds * len(connections)
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
    env = dict(os.environ)
    if source != WORKING_TREE:
        env["PYTHONPATH"] = str(source.resolve())
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
    ]
    if shutil.which("taskset"):
        argv = ["taskset", "-c", "0", *argv]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the measurement failed:\n{done.stdout}\n{done.stderr}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp_onnx", help="iris_onnx or mlp_onnx (mlp_onnx)")
    parser.add_argument("--rows", type=int, default=8, help="rows per request (8)")
    parser.add_argument("--batching", choices=("on", "off"), default="on", help="(on)")
    parser.add_argument("--connections", type=int, default=64, help="concurrency (64)")
    parser.add_argument("--rounds", type=int, default=200, help="requests per connection (200)")
    parser.add_argument("--repeat", type=int, default=7, help="measurements per source (7)")
    parser.add_argument(
        "--modelserve-src",
        type=Path,
        action="append",
        help="run modelserve from this src/ folder ('.': the working tree); repeatable",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)
    sources: list[Path] = args.modelserve_src or [WORKING_TREE]
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
        f"{args.model}, {args.rows} rows per request, {args.connections} connections, batching "
        f"{args.batching}: CPU µs per request (median of {args.repeat}; min)"
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
