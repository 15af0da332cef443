"""The rows `make bench` measures, and how each one is measured."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import loadgen
import servers
import tools
from report import MLS, MS, TRT, Row, Spec
from repos import STATE_DIR, Repos

SKLEARN_OUTPUTS = ("predict", "predict_proba")  # MLServer: the same work as one modelserve call


def plan(concurrencies: tuple[int, ...]) -> list[Spec]:
    """Every point, the servers' rows of one model adjacent (modelserve, Triton, then MLServer)
    so that they see the same load."""
    specs: list[Spec] = []
    busy = tuple(c for c in concurrencies if c > 1)
    for batching, levels in (("off", concurrencies), ("on", busy)):
        for c in levels:
            for server in (MS, TRT):
                specs.append(Spec("tiny", server, batching, "REST JSON", "wrk", "iris_onnx", c))
            for server in (MS, TRT, MLS):
                specs.append(Spec("tiny", server, batching, "REST JSON", "wrk", "iris_sklearn", c))
        for c in levels:
            if batching == "off":
                for server in (MS, TRT):
                    specs.append(
                        Spec("tiny", server, batching, "gRPC", "perf_analyzer", "iris_onnx", c)
                    )
            for server in (MS, TRT):
                specs.append(Spec("tiny", server, batching, "gRPC", "h2load", "iris_onnx", c))
            for server in (MS, TRT, MLS):
                specs.append(Spec("tiny", server, batching, "gRPC", "h2load", "iris_sklearn", c))
        for server in (MS, TRT):
            specs.append(Spec("mlp", server, batching, "REST binary", "wrk", "mlp_onnx", 64, 8))
            specs.append(Spec("mlp", server, batching, "gRPC", "h2load", "mlp_onnx", 64, 8))
    # camera images through the detection pipeline: a JPEG posted as it is, one per request
    specs.append(Spec("images", MS, "off", "REST image", "wrk", "detector_pipeline", 8))
    # Payload logging of every request to a file (sample_rate 1.0), next to the rows above
    # without it: what logging costs on the hot path (docs/benchmarks.md#payload-logging).
    # Model monitoring of every request (the SQLite store, drift windows), likewise
    # (docs/benchmarks.md#model-monitoring).
    for logging in ("file", "monitor"):
        for c in concurrencies:
            specs.append(
                Spec("tiny", MS, "off", "REST JSON", "wrk", "iris_onnx", c, logging=logging)
            )
            specs.append(Spec("tiny", MS, "off", "gRPC", "h2load", "iris_onnx", c, logging=logging))
    return specs


def selected(key: str, only: list[str]) -> bool:
    return not only or any(pattern.lower() in key.lower() for pattern in only)


@dataclass
class Bench:
    args: argparse.Namespace
    repos: Repos
    logs: Path
    tools: dict[str, tools.Tool | None] = field(default_factory=dict)
    servers: dict[tuple[str, str, str], servers.Server | str] = field(default_factory=dict)
    bodies: dict[str, loadgen.Body] = field(default_factory=dict)
    grpc_flag: bool = True
    failures: list[str] = field(default_factory=list)  # servers that did not start

    def tool(self, name: str, setup: Callable[[], tools.Tool | None]) -> tools.Tool | None:
        if name not in self.tools:
            self.tools[name] = setup()
        return self.tools[name]

    def prepare(self, specs: list[Spec]) -> None:
        """Set up every tool the rows need before measuring anything, so that no install runs
        between two points."""
        setups = {
            "wrk": tools.ensure_wrk,
            "perf_analyzer": tools.ensure_perf_analyzer,
            "h2load": tools.ensure_h2load,
        }
        for name in sorted({spec.tool for spec in specs}):
            self.tool(name, setups[name])
        if any(spec.server == MLS for spec in specs):
            self.tool("mlserver", tools.ensure_mlserver)
        if any(spec.server == TRT for spec in specs):
            self.tool("pytriton", tools.ensure_pytriton)

    def server(self, kind: str, batching: str, logging: str = "off") -> servers.Server | str:
        """The running server, or why there is none."""
        key = (kind, batching, logging)
        if key not in self.servers:
            self.servers[key] = self._start(kind, batching, logging)
        return self.servers[key]

    def _start(self, kind: str, batching: str, logging: str) -> servers.Server | str:
        try:
            if kind == MS:
                repo = self.repos.batching if batching == "on" else self.repos.modelserve
                extra: list[str] = []
                if logging == "file":
                    repo = self.repos.logging
                if logging == "monitor":
                    repo = self.repos.monitoring
                    extra = ["--state-dir", str(STATE_DIR)]
                return servers.start_modelserve(repo, batching, self.logs, self.grpc_flag, extra)
            if kind == TRT:
                pytriton = self.tool("pytriton", tools.ensure_pytriton)
                if pytriton is None:
                    return "PyTriton could not be installed"
                return servers.start_pytriton(
                    pytriton, self.repos.build, self.repos.mlserver_off, batching, self.logs
                )
            mlserver = self.tool("mlserver", tools.ensure_mlserver)
            if mlserver is None:
                return "MLServer could not be installed"
            repo = self.repos.mlserver_on if batching == "on" else self.repos.mlserver_off
            workers = self.args.mlserver_workers
            return servers.start_mlserver(mlserver, repo, batching, self.logs, workers)
        except RuntimeError as exc:
            self.failures.append(f"{kind} (batching {batching}) did not start: {exc}")
            tools.log(self.failures[-1])
            return f"{kind} (batching {batching}) did not start (see the notes)"

    def body(self, spec: Spec) -> loadgen.Body:
        name = f"{spec.model}-{spec.server}-{spec.transport.replace(' ', '-')}"
        if name not in self.bodies:
            outputs = SKLEARN_OUTPUTS if spec.server == MLS else ()
            datatype = "FP64" if spec.model == "iris_sklearn" else "FP32"
            if spec.transport == "REST binary":
                body = loadgen.binary_body(self.logs, name, spec.rows_per_request, 256)
            elif spec.transport == "gRPC" and spec.model == "mlp_onnx":
                body = loadgen.grpc_mlp_body(self.logs, name, spec.rows_per_request, 256)
            elif spec.transport == "REST image":
                body = loadgen.image_body(self.logs, name, self.repos.part_image)
            elif spec.transport == "gRPC":
                body = loadgen.grpc_body(self.logs, name, spec.model, datatype, outputs)
            else:
                body = loadgen.json_body(self.logs, name, datatype, outputs)
            self.bodies[name] = body
        return self.bodies[name]

    def measure(self, spec: Spec) -> Row:
        srv = self.server(spec.server, spec.batching, spec.logging)
        if isinstance(srv, str):
            return Row(spec, na=srv)
        if not srv.model_ready(spec.model):
            return Row(spec, na=f"{spec.model} not ready: {self._reason(srv, spec.model)}")
        seconds = self.args.seconds
        log = self.logs / f"{spec.key.replace('/', '_')}.log"
        if spec.tool == "wrk":
            wrk = self.tool("wrk", tools.ensure_wrk)
            if wrk is None:
                return Row(spec, na="wrk not available")
            url = srv.url(f"/v2/models/{spec.model}/infer")
            point = loadgen.run_wrk(
                wrk, url, self.body(spec), spec.concurrency, seconds, srv.pid, log
            )
            return Row(spec, point)
        if srv.grpc_port is None:
            return Row(spec, na="modelserve has no --grpc-port")
        if spec.tool == "perf_analyzer":
            pa = self.tool("perf_analyzer", tools.ensure_perf_analyzer)
            if pa is None:
                return Row(spec, na="perf_analyzer not available")
            point = loadgen.run_perf_analyzer(
                pa,
                spec.model,
                "grpc",
                srv.grpc_port,
                spec.concurrency,
                seconds,
                srv.pid,
                log,
                "input:4",
            )
            return Row(spec, point)
        h2 = self.tool("h2load", tools.ensure_h2load)
        if h2 is None:
            return Row(spec, na="h2load not available")
        body = self.body(spec)
        point = loadgen.run_h2load_grpc(
            h2, srv.grpc_port, body, spec.concurrency, seconds, srv.pid, log
        )
        return Row(spec, point)

    @staticmethod
    def _reason(srv: servers.Server, model: str) -> str:
        status, index = servers.http_json(srv.url("/v2/repository/index"), b"{}")
        if status == 200 and isinstance(index, list):
            for entry in index:
                if isinstance(entry, dict) and entry.get("name") == model:
                    return str(entry.get("reason") or entry.get("state"))
        return "unknown (see the server log)"
