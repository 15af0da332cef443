"""`make bench`: modelserve against Triton (PyTriton) and MLServer on this machine, plus the raw
in-process ceiling.

    .venv/bin/python benchmarks/run.py [--quick] [--only PATTERN[,PATTERN...]] [--seconds S]

Servers run pinned to core 0 (``taskset -c 0``), load generators to core 1. Tools are set up before
the first measurement and cached under ``.bench/``; results go to benchmarks/results/latest.*.
See docs/benchmarks.md for what each column means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import FrameType

import batch
import repos
import servers
import tools
from report import MLS, MS, TRT, Results, ServerInfo, finish, render_text, write
from scenarios import Bench, plan, selected

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def raw_ceiling(bench: Bench) -> list[dict[str, object]]:
    out = bench.logs / "raw.json"
    argv = [sys.executable, str(Path(__file__).with_name("raw.py")), str(bench.repos.modelserve)]
    argv += ["--seconds", str(0.5 if bench.args.quick else 1.0), "--out", str(out)]
    proc = servers.spawn(argv, cpu=0, log_path=bench.logs / "raw.log")
    try:
        proc.wait(300)
    finally:
        servers.stop(proc)
    if proc.returncode != 0 or not out.exists():
        tools.log(f"raw ceiling failed: {(bench.logs / 'raw.log').read_text()[-500:]}")
        return []
    result: list[dict[str, object]] = json.loads(out.read_text())
    return result


def client_cpu(bench: Bench) -> list[dict[str, object]]:
    """modelserve.client's CPU per request against tritonclient's (client_cpu.py), on core 1
    against the modelserve server on core 0."""
    srv = bench.server(MS, "off")
    if isinstance(srv, str) or srv.grpc_port is None:
        bench.failures.append(f"client CPU: no modelserve server with gRPC ({srv})")
        return []
    out = bench.logs / "client_cpu.json"
    argv = [sys.executable, str(Path(__file__).with_name("client_cpu.py"))]
    argv += [str(srv.http_port), str(srv.grpc_port), "--seconds", str(bench.args.seconds)]
    argv += ["--out", str(out)]
    proc = servers.spawn(argv, cpu=1, log_path=bench.logs / "client_cpu.log")
    try:
        proc.wait(60 + 10 * bench.args.seconds)
    finally:
        servers.stop(proc)
    if proc.returncode != 0 or not out.exists():
        tools.log(f"client CPU failed: {(bench.logs / 'client_cpu.log').read_text()[-500:]}")
        return []
    result: list[dict[str, object]] = json.loads(out.read_text())
    return result


ONNX_ONLY = ", ".join(repos.ONNX_ONLY) + " (ONNX only, their model.yaml)"


def startup_rows(bench: Bench, results: Results) -> None:
    """Start-up time and idle RSS: modelserve serving the examples' ONNX models alone, then
    iris_sklearn alone, as MLServer does, and MLServer right after, so that the pair is measured
    back to back; and the three-model batching server (also compared with Triton's)."""
    for repo, served in (
        (bench.repos.onnx_only, ONNX_ONLY),
        (bench.repos.sklearn_only, "iris_sklearn"),
    ):
        try:
            alone = servers.start_modelserve(repo, "off", bench.logs, bench.grpc_flag)
        except RuntimeError as exc:
            bench.failures.append(f"modelserve ({served}) did not start: {exc}")
            continue
        servers.stop(alone.proc)
        results.servers.append(ServerInfo(MS, served, alone.startup_s, alone.idle_rss_mb))
    bench.server(MLS, "off")  # started now, so that the pair is measured back to back
    bench.server(MS, "on")


SERVED = {
    (MS, "off", "off"): "iris_onnx, mlp_onnx, iris_sklearn, detector_onnx, detector_pipeline",
    (MS, "on", "off"): "iris_onnx, mlp_onnx, iris_sklearn; dynamic_batching",
    (MS, "off", "file"): "iris_onnx, mlp_onnx, iris_sklearn; iris_onnx payload logging to a file",
    (TRT, "off", "off"): "iris_onnx, mlp_onnx, iris_sklearn",
    (TRT, "on", "off"): "iris_onnx, mlp_onnx, iris_sklearn; dynamic batching",
    (MS, "off", "monitor"): "iris_onnx, mlp_onnx, iris_sklearn; iris_onnx monitored (SQLite store)",
    (MLS, "off", "off"): "iris_sklearn",
    (MLS, "on", "off"): "iris_sklearn; adaptive batching",
}


def server_rows(bench: Bench, results: Results) -> None:
    for (kind, batching, logging), srv in bench.servers.items():
        if isinstance(srv, servers.Server):
            name = (
                kind
                if kind != MLS
                else f"MLServer (parallel_workers={bench.args.mlserver_workers})"
            )
            if kind == TRT:
                name = "Triton (PyTriton 0.7.0)"
            served = SERVED[kind, batching, logging]
            info = ServerInfo(name, served, srv.startup_s, srv.idle_rss_mb)
            results.servers.append(info)
    alone = next((s for s in results.servers if s.name == MS and s.repo == "iris_sklearn"), None)
    other = next((s for s in results.servers if s.name != MS and s.repo == "iris_sklearn"), None)
    if alone and other:
        alone.ratio_startup = alone.startup_s / other.startup_s
        alone.ratio_rss = alone.idle_rss_mb / other.idle_rss_mb
    # Triton and modelserve with the same three models and the same batching settings (the
    # batching-off modelserve also serves the detection models, so it is not compared)
    ours, theirs = (bench.servers.get((k, "on", "off")) for k in (MS, TRT))
    if isinstance(ours, servers.Server) and isinstance(theirs, servers.Server):
        mine = next(s for s in results.servers if s.repo == SERVED[MS, "on", "off"])
        mine.ratio_startup_triton = ours.startup_s / theirs.startup_s
        mine.ratio_rss_triton = ours.idle_rss_mb / theirs.idle_rss_mb


def machine() -> dict[str, object]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=tools.REPO, check=False
        )
        return done.stdout.strip()

    changed = len(git("status", "--porcelain", "src").splitlines())
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu} ({os.cpu_count()} cores)",
        "repository HEAD": f"{git('rev-parse', '--short', 'HEAD')} ({changed} uncommitted "
        "path(s) under src/; servers run the working tree unless 'modelserve source' is set)",
        "python": platform.python_version(),
        "onnxruntime": metadata.version("onnxruntime"),
        "scikit-learn": tools.sklearn_version(),
        "MLServer": "1.7.1 (mlserver-sklearn 1.7.1, uvloop<0.22)",
        "Triton": "PyTriton 0.7.0 (tritonserver 2.51, Python backend)",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~2 minutes: c=1 and 64, 3 s points")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated substrings of row keys "
        "(e.g. grpc, mlp, MLServer, batching-on, c64, raw, startup, client)",
    )
    parser.add_argument("--seconds", type=float, help="per point (default 6, --quick 3)")
    parser.add_argument(
        "--mlserver-workers",
        type=int,
        default=0,
        help="MLServer parallel_workers (default 0: fastest on one core here)",
    )
    parser.add_argument(
        "--modelserve-src",
        type=Path,
        help="run modelserve from this src/ folder (e.g. a `git archive` of a commit) instead of "
        "the working tree",
    )
    parser.add_argument(
        "--batch-rows",
        type=int,
        default=1_000_000,
        help="rows per `modelserve batch run` row (default 1,000,000)",
    )
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="do not compile modelserve's sources to bytecode first (its start-up then includes "
        "compiling them when PYTHONDONTWRITEBYTECODE is set and no earlier run left __pycache__)",
    )
    parser.add_argument("--list", action="store_true", help="print the row keys and exit")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (3.0 if args.quick else 6.0)
    args.only = [p for p in args.only.split(",") if p]
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    specs = [s for s in plan((1, 64) if args.quick else (1, 8, 64)) if selected(s.key, args.only)]
    batch_keys = [k for k in batch.row_keys() if selected(k, args.only)]
    if args.list:
        print("\n".join(["raw", "startup", "client", *batch.row_keys(), *(s.key for s in specs)]))
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    started = time.monotonic()
    logs = tools.BENCH_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    results = Results(meta=machine())
    results.meta["seconds per point"] = args.seconds
    if batch_keys:
        results.meta["batch rows"] = args.batch_rows
    results.meta["MLServer parallel_workers"] = args.mlserver_workers
    if args.modelserve_src:
        results.meta["modelserve source"] = servers.use_modelserve_source(args.modelserve_src)
    if not args.no_compile:
        results.meta["modelserve bytecode"] = f"compiled ({servers.compile_modelserve()})"
    bench = Bench(args, repos.build_repos(), logs, grpc_flag=servers.modelserve_has_grpc())
    if not bench.grpc_flag:
        results.notes.append("modelserve serve has no --grpc-port: its gRPC rows are n/a")
    try:
        bench.prepare(specs)
        if selected("raw", args.only) or batch_keys:
            tools.log("raw in-process ceiling")
            results.raw = raw_ceiling(bench)
        for key in batch_keys:
            tools.log(key)
            _, model, engine = key.split("/")
            results.batch.append(
                batch.run_one(
                    bench.repos.modelserve, model, engine, args.batch_rows, logs, results.raw
                )
            )
        if selected("startup", args.only):
            startup_rows(bench, results)
        if selected("client", args.only):
            tools.log("client CPU per request: modelserve.client and tritonclient")
            results.client = client_cpu(bench)
        for spec in specs:
            tools.log(f"{spec.key}")
            results.rows.append(bench.measure(spec))
    except KeyboardInterrupt:
        results.notes.append("interrupted: partial results")
        tools.log("interrupted; stopping every process started")
    finally:
        servers.stop_all()
    server_rows(bench, results)
    results.notes += [f"FAILED: {failure}" for failure in bench.failures]
    finish(results)
    results.meta["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results.meta["wall time s"] = round(time.monotonic() - started)
    print(render_text(results))
    write(results, RESULTS_DIR)
    print(f"written: {RESULTS_DIR / 'latest.md'}, {RESULTS_DIR / 'latest.json'}")
    flagged = [r for r in results.rows if r.point is not None and r.point.errors]
    flagged += [r for r in results.batch if r.na]  # type: ignore[misc]
    if flagged:
        print(f"FLAGGED: {len(flagged)} row(s) with errors (marked '!')")
    if bench.failures:
        print(f"FAILED: {len(bench.failures)} server(s) did not start (see the notes above)")
    interrupted = "interrupted: partial results" in results.notes
    return 1 if flagged or bench.failures or interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
