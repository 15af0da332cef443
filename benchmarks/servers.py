"""Start, measure and stop the servers (and every other process the benchmark starts).

Each process is started in its own session (so its own process group) and remembered; ``stop``
ends the whole group by its id, and ``stop_all`` (called from ``run.py``'s ``finally``) ends
whatever is still running, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tools import REPO, Tool, log

HOST = "127.0.0.1"
PYTRITON_MODELS = ("iris_onnx", "mlp_onnx", "iris_sklearn")
CLK_TCK = os.sysconf("SC_CLK_TCK")
_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def spawn(
    argv: list[str],
    *,
    cpu: int | None,
    log_path: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` pinned to ``cpu`` (``taskset -c``) in a new process group."""
    full = ["taskset", "-c", str(cpu), *argv] if cpu is not None else argv
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            full, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
    finally:
        if log_path:
            out.close()  # type: ignore[union-attr]
    _LIVE[proc.pid] = proc
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """End the process group that ``spawn`` created: SIGTERM, then SIGKILL after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
            # the leader is gone; make sure no worker of its group outlives it
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            break
        except subprocess.TimeoutExpired:
            continue
        break
    if proc.poll() is None:
        proc.wait(5)
    _LIVE.pop(proc.pid, None)


def stop_all() -> None:
    for proc in list(_LIVE.values()):
        stop(proc, timeout=5.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from "state" on


def process_tree(root: int) -> list[int]:
    """``root`` and every live descendant or member of its process group."""
    parents: dict[int, int] = {}
    group: list[int] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                parents[int(entry)] = int(fields[1])
                if int(fields[2]) == root:
                    group.append(int(entry))
    tree = {root, *group}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sorted(pid for pid in tree if pid in parents)


def cpu_seconds(root: int) -> float:
    """user+system CPU of the tree, plus the children the root has already reaped."""
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
            if pid == root:
                ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLK_TCK


def rss_mb(root: int) -> float:
    kib = 0
    for pid in process_tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kib += int(line.split()[1])
        except OSError:
            pass
    return kib / 1024


def http_status(url: str, data: bytes | None = None, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def http_json(url: str, data: bytes) -> tuple[int | None, object]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return int(r.status), json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return None, str(exc)


@dataclass
class Server:
    kind: str  # "modelserve" | "MLServer" | "Triton"
    batching: str  # "off" | "on"
    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int | None
    log_path: Path
    startup_s: float = float("nan")
    idle_rss_mb: float = float("nan")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.http_port}{path}"

    def model_ready(self, model: str) -> bool:
        return http_status(self.url(f"/v2/models/{model}/ready")) == 200

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _wait_ready(server: Server, started: float, timeout: float) -> None:
    deadline = started + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.kind} exited ({server.proc.returncode}) before ready:\n"
                + server.log_tail()
            )
        if http_status(server.url("/v2/health/ready"), timeout=0.5) == 200:
            server.startup_s = time.monotonic() - started
            break
        time.sleep(0.02)
    else:
        raise RuntimeError(f"{server.kind} not ready after {timeout:.0f}s:\n" + server.log_tail())
    if server.grpc_port is not None:  # the gRPC listener may come up a moment later
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex((HOST, server.grpc_port)) == 0:
                    break
            time.sleep(0.02)
    time.sleep(1.0)  # let start-up work settle before reading the idle RSS
    server.idle_rss_mb = rss_mb(server.pid)


_MODELSERVE_ENV: dict[str, str] = {}
WORKING_TREE = Path(".")
"""``--modelserve-src .``: the installed working tree."""


def add_sources_option(parser: argparse.ArgumentParser) -> None:
    """The repeatable ``--modelserve-src`` of the scripts that alternate source trees."""
    parser.add_argument(
        "--modelserve-src",
        type=Path,
        action="append",
        help="run modelserve from this src/ folder ('.': the working tree); repeatable",
    )


def sources(args: argparse.Namespace) -> list[Path]:
    """The source trees ``add_sources_option`` collected; the working tree when none."""
    chosen: list[Path] = args.modelserve_src or [WORKING_TREE]
    return chosen


def use(source: Path) -> None:
    """Run modelserve from ``source`` (a ``src/`` folder, e.g. of ``git archive``), or from the
    installed working tree for WORKING_TREE."""
    if source == WORKING_TREE:
        _MODELSERVE_ENV.pop("PYTHONPATH", None)
    else:
        _MODELSERVE_ENV["PYTHONPATH"] = str(source.resolve())


def use_modelserve_source(src: Path) -> str:
    """``use(src)``; returns the path the package is then imported from."""
    use(src)
    return subprocess.run(
        [sys.executable, "-c", "import modelserve; print(modelserve.__file__)"],
        env=modelserve_env(),
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def modelserve_env() -> dict[str, str]:
    return {**os.environ, **_MODELSERVE_ENV}


def compile_modelserve() -> str:
    """Compile the modelserve package the servers import (the working tree, or the folder of
    ``use_modelserve_source``) to bytecode, as ``pip install`` does for an installed package:
    with ``PYTHONDONTWRITEBYTECODE`` set (as on this project's machine) an editable ``src/``
    would otherwise be compiled again at every start, which no installed server pays (MLServer's
    and Triton's venvs have their bytecode). Returns the folder compiled."""
    env = modelserve_env()
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import modelserve, os; print(os.path.dirname(modelserve.__file__))",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run([sys.executable, "-m", "compileall", "-q", where], env=env, check=True)
    return where


def modelserve_has_grpc() -> bool:
    help_text = subprocess.run(
        [sys.executable, "-m", "modelserve", "serve", "--help"],
        env=modelserve_env(),
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return "--grpc-port" in help_text


def start_modelserve(
    repo: Path,
    batching: str,
    logs: Path,
    grpc: bool,
    extra: list[str] | None = None,
    cpu: int = 0,
    timeout: float = 30.0,
) -> Server:
    http_port = free_port()
    grpc_port = free_port() if grpc else None
    argv = [sys.executable, "-m", "modelserve", "serve", str(repo), "--host", HOST, *(extra or ())]
    argv += ["--http-port", str(http_port), "--log-level", "warning"]
    if grpc_port is not None:
        argv += ["--grpc-port", str(grpc_port)]
    log_path = logs / f"modelserve-{repo.name}-{batching}.log"
    started = time.monotonic()
    proc = spawn(argv, cpu=cpu, log_path=log_path, env=modelserve_env(), cwd=REPO)
    server = Server("modelserve", batching, proc, http_port, grpc_port, log_path)
    try:
        _wait_ready(server, started, timeout)
    except BaseException:
        stop(proc)
        raise
    return server


def start_mlserver(
    tool: Tool,
    model_dir: Path,
    batching: str,
    logs: Path,
    workers: int,
    cpu: int = 0,
    timeout: float = 120.0,
) -> Server:
    http_port, grpc_port = free_port(), free_port()
    settings = {
        "host": HOST,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": free_port(),
        "metrics_endpoint": None,  # no metrics server
        "parallel_workers": workers,
        "metrics_dir": str(model_dir / ".metrics"),
        "environments_dir": str(model_dir / ".envs"),
        "debug": False,
    }
    (model_dir / "settings.json").write_text(json.dumps(settings, indent=2))
    log_path = logs / f"mlserver-{batching}-w{workers}.log"
    started = time.monotonic()
    env = {**tool.environ(), "PYTHONUNBUFFERED": "1"}
    argv = [*tool.argv, "start", str(model_dir)]
    proc = spawn(argv, cpu=cpu, log_path=log_path, env=env, cwd=model_dir)
    server = Server("MLServer", batching, proc, http_port, grpc_port, log_path)
    try:
        _wait_ready(server, started, timeout)
    except BaseException:
        stop(proc)
        raise
    log(f"MLServer ready in {server.startup_s:.2f}s (parallel_workers={workers})")
    return server


def start_pytriton(
    tool: Tool,
    build: Path,
    mlserver_repo: Path,
    batching: str,
    logs: Path,
    cpu: int = 0,
    timeout: float = 180.0,
) -> Server:
    """Triton through PyTriton (benchmarks/pytriton_server.py): tritonserver, its Python backend
    stubs and the process holding the models all run on ``cpu`` (one process group)."""
    http_port, grpc_port = free_port(), free_port()
    argv = [*tool.argv, str(build), str(mlserver_repo), "--batching", batching]
    argv += ["--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    argv += ["--metrics-port", str(free_port())]
    log_path = logs / f"triton-{batching}.log"
    started = time.monotonic()
    env = {**tool.environ(), "PYTHONUNBUFFERED": "1"}
    proc = spawn(argv, cpu=cpu, log_path=log_path, env=env, cwd=logs)
    server = Server("Triton", batching, proc, http_port, grpc_port, log_path)
    try:
        _wait_ready(server, started, timeout)
        # PyTriton loads the models once tritonserver is up (explicit model control), and
        # /v2/health/ready answers 200 before: ready = every model READY.
        deadline = started + timeout
        while not all(server.model_ready(m) for m in PYTRITON_MODELS):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Triton's models not ready:\n{server.log_tail()}")
            time.sleep(0.02)
        server.startup_s = time.monotonic() - started
        time.sleep(1.0)
        server.idle_rss_mb = rss_mb(server.pid)
    except BaseException:
        stop(proc)
        raise
    log(f"Triton (PyTriton) ready in {server.startup_s:.2f}s")
    return server
