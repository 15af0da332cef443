"""``--workers N``: N server processes sharing the HTTP and gRPC ports (SO_REUSEPORT).

The supervisor reserves the ports (so that port 0 resolves to one port for all workers), starts
each worker as ``modelserve serve ... --workers 1 --reuse-port``, restarts a worker that dies,
forwards SIGTERM/SIGINT so that every worker drains (docs/lifecycle.md), and exits 0 when they
all exited 0. Each worker is a whole server: it loads every model and polls the repository on
its own, and takes connections only once its models are loaded (``Server.start``), so a
restarted worker never answers 503 for connections the others could serve.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import FrameType

from modelserve.config.settings import Settings

log = logging.getLogger("modelserve.server.supervisor")

RESTART_BACKOFF_S = 1.0
CRASH_LOOP = 3
"""A worker that dies this many times in a row within STARTUP_GRACE_S of starting stops all."""
STARTUP_GRACE_S = 10.0
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_OWN_FLAGS = ("--workers", "--http-port", "--grpc-port", "--metrics-port", "--metrics-dir")


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound (not listening) SO_REUSEPORT socket: fixes the port number for the workers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def worker_argv(
    argv: Sequence[str],
    http_port: int,
    grpc_port: int,
    metrics_port: int | None,
    metrics_dir: str,
) -> list[str]:
    """The command line of one worker: the supervisor's, with its own flags replaced."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in _OWN_FLAGS:
            skip = True
            continue
        if arg.startswith(tuple(f"{flag}=" for flag in _OWN_FLAGS)):
            continue
        kept.append(arg)
    metrics = ["--metrics-port", str(metrics_port)] if metrics_port is not None else []
    return [
        sys.executable, "-m", "modelserve", *kept,
        "--http-port", str(http_port), "--grpc-port", str(grpc_port), *metrics,
        "--metrics-dir", metrics_dir, "--workers", "1", "--reuse-port",
    ]  # fmt: skip


class Supervisor:
    def __init__(self, argv: Sequence[str], settings: Settings) -> None:
        """``argv``: the supervisor's own command line (``serve ...``), which every worker gets
        with the ports fixed (0 picks one port for all workers) and ``--workers 1``."""
        self._workers = settings.workers
        host, http, grpc = settings.host, settings.http_port, settings.grpc_port
        metrics = settings.metrics_port
        self._reserved = [reserve_port(host, http), reserve_port(host, grpc)]
        if metrics is not None:
            self._reserved.append(reserve_port(host, metrics))
        self.http_port = self._reserved[0].getsockname()[1]
        self.grpc_port = self._reserved[1].getsockname()[1]
        metrics_port = self._reserved[2].getsockname()[1] if metrics is not None else None
        # Where the workers' metrics meet, so that any of them answers a scrape for all.
        self._metrics_tmp: tempfile.TemporaryDirectory[str] | None = None
        if settings.metrics_dir is not None:
            self.metrics_dir = str(settings.metrics_dir)
        elif os.environ.get(MULTIPROC_ENV):
            self.metrics_dir = os.environ[MULTIPROC_ENV]
        else:
            self._metrics_tmp = tempfile.TemporaryDirectory(prefix="modelserve-metrics-")
            self.metrics_dir = self._metrics_tmp.name
        self._argv = worker_argv(
            argv, self.http_port, self.grpc_port, metrics_port, self.metrics_dir
        )
        self._env = {**os.environ, MULTIPROC_ENV: self.metrics_dir}
        self._procs: list[subprocess.Popen[bytes]] = []
        self._started: list[float] = []
        self._crashes: list[int] = []
        self._stopping = False

    def _forget_metrics(self, pid: int) -> None:
        """Drop a dead worker's live gauges from the shared metrics (counters are kept)."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, self.metrics_dir)  # type: ignore[no-untyped-call]

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self._argv, env=self._env)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:  # a second signal: stop at once
            for proc in self._procs:
                proc.kill()
            return
        self._stopping = True
        log.info("forwarding %s to %d worker(s)", signal.Signals(signum).name, len(self._procs))
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        log.info(
            "starting %d workers on HTTP port %d and gRPC port %d",
            self._workers,
            self.http_port,
            self.grpc_port,
        )
        for _ in range(self._workers):
            self._procs.append(self._spawn())
            self._started.append(time.monotonic())
            self._crashes.append(0)
        failed = False
        while True:
            codes = [proc.poll() for proc in self._procs]
            if self._stopping and all(code is not None for code in codes):
                break
            for index, code in enumerate(codes):
                if code is None or self._stopping:
                    continue
                quick = time.monotonic() - self._started[index] < STARTUP_GRACE_S
                self._crashes[index] = self._crashes[index] + 1 if quick else 1
                if self._crashes[index] >= CRASH_LOOP:
                    log.error("worker %d keeps dying (exit %s); stopping", index, code)
                    failed = True
                    self._on_signal(signal.SIGTERM, None)
                    break
                self._forget_metrics(self._procs[index].pid)
                log.warning("worker %d exited with %s; restarting it", index, code)
                time.sleep(RESTART_BACKOFF_S)
                self._procs[index] = self._spawn()
                self._started[index] = time.monotonic()
            time.sleep(0.1)
        for sock in self._reserved:
            sock.close()
        for proc in self._procs:
            self._forget_metrics(proc.pid)
        ok = not failed and all(proc.returncode == 0 for proc in self._procs)
        return 0 if ok else 1
