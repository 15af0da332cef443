"""Set up the benchmark's own tools, cached under ``.bench/`` in the repository.

- ``wrk`` from Debian (``apt-get install -y wrk`` when it is missing), and ``h2load`` (Debian's
  nghttp2-client) for gRPC against both servers;
- Triton's ``perf_analyzer``: the binary bundled in the tritonclient 2.48.0 wheel, in its own venv,
  with Debian's libb64 extracted (not installed) and PyPI's CUDA runtime library on
  ``LD_LIBRARY_PATH`` (the binary links it even when the server has no GPU);
- MLServer 1.7.1 with its scikit-learn runtime in ``.bench/mlserver-venv``;
- NVIDIA Triton through PyTriton 0.7.0 (``nvidia-pytriton``, which bundles tritonserver 2.51)
  in ``.bench/pytriton-venv``, with our onnxruntime and scikit-learn versions.

Every function returns None (after printing why) when its tool cannot be had, so the scenarios
that need it are skipped instead of failing the whole run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / ".bench"

PERF_ANALYZER_PACKAGES = ("tritonclient==2.48.0", "nvidia-cuda-runtime-cu12")
PYTRITON_PACKAGES = ("nvidia-pytriton==0.7.0",)
MLSERVER_PACKAGES = (
    "mlserver==1.7.1",
    "mlserver-sklearn==1.7.1",
    # MLServer issue #2286: its workers die at start with uvloop>=0.22
    "uvloop<0.22",
)


@dataclass(frozen=True)
class Tool:
    """A command line prefix plus the environment variables it needs."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    def environ(self) -> dict[str, str]:
        return {**os.environ, **self.env}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _run(argv: list[str], quiet: bool = True, cwd: Path | None = None) -> bool:
    """Run a setup command; on failure print the tail of its output and return False."""
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            stdout=subprocess.PIPE if quiet else None,
            stderr=subprocess.STDOUT if quiet else None,
            text=True,
            check=False,
        )
    except OSError as exc:
        log(f"cannot run {argv[0]}: {exc}")
        return False
    if done.returncode != 0:
        tail = "\n".join((done.stdout or "").splitlines()[-15:])
        log(f"failed ({done.returncode}): {' '.join(argv)}\n{tail}")
        return False
    return True


def _apt(*args: str) -> bool:
    if shutil.which("apt-get") is None:
        log("apt-get not found")
        return False
    env_argv = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", *args]
    if _run(env_argv):
        return True
    log("retrying after apt-get update")
    return _run(["apt-get", "update", "-qq"]) and _run(env_argv)


def ensure_wrk() -> Tool | None:
    path = shutil.which("wrk")
    if path is None:
        log("wrk is missing: apt-get install -y wrk")
        if os.geteuid() != 0:
            log("not root: cannot apt-get install wrk; REST rows are skipped")
            return None
        if not _apt("install", "-y", "-qq", "wrk"):
            log("could not install wrk with apt-get; REST rows are skipped")
            return None
        path = shutil.which("wrk")
        if path is None:
            log("wrk still not on PATH after apt-get; REST rows are skipped")
            return None
    return Tool((path,))


def ensure_h2load() -> Tool | None:
    """nghttp2's h2load: drives gRPC (HTTP/2) against both servers, since perf_analyzer cannot
    talk to MLServer (it asks for Triton's ModelConfig RPC, which MLServer does not have)."""
    path = shutil.which("h2load")
    if path is None:
        log("h2load is missing: apt-get install -y nghttp2-client")
        if os.geteuid() != 0 or not _apt("install", "-y", "-qq", "nghttp2-client"):
            log("could not install h2load with apt-get; gRPC rows against MLServer are skipped")
            return None
        path = shutil.which("h2load")
        if path is None:
            return None
    return Tool((path,))


def _venv(target: Path, packages: tuple[str, ...], stamp_text: str) -> Path | None:
    """Create (or reuse) a venv holding ``packages``; returns its bin directory."""
    stamp = target / ".bench-installed"
    bindir = target / "bin"
    if stamp.exists() and stamp.read_text() == stamp_text and (bindir / "python").exists():
        return bindir
    log(f"setting up {target.relative_to(REPO)} (once): {' '.join(packages)}")
    base_python = getattr(sys, "_base_executable", sys.executable)
    if not _run([base_python, "-m", "venv", "--clear", str(target)]):
        return None
    pip = [str(bindir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if not _run([*pip, *packages]):
        return None
    stamp.write_text(stamp_text)
    return bindir


def ensure_perf_analyzer() -> Tool | None:
    home = BENCH_DIR / "perf-analyzer"
    bindir = _venv(home / "venv", PERF_ANALYZER_PACKAGES, "\n".join(PERF_ANALYZER_PACKAGES))
    if bindir is None or not (bindir / "perf_analyzer").exists():
        log("perf_analyzer could not be set up; gRPC rows are skipped")
        return None
    libs = home / "libs"
    libdir = libs / "usr" / "lib" / "x86_64-linux-gnu"
    if not any(libdir.glob("libb64.so*")):
        debs = home / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        if not _apt_download("libb64-0d", debs):
            log("could not fetch libb64-0d with apt-get download; gRPC rows are skipped")
            return None
        for deb in debs.glob("libb64-0d_*.deb"):
            if not _run(["dpkg", "-x", str(deb), str(libs)]):
                return None
    cudart = sorted(home.glob("venv/lib/python3*/site-packages/nvidia/cuda_runtime/lib"))
    paths = [str(libdir), *(str(p) for p in cudart)]
    if os.environ.get("LD_LIBRARY_PATH"):
        paths.append(os.environ["LD_LIBRARY_PATH"])
    tool = Tool((str(bindir / "perf_analyzer"),), {"LD_LIBRARY_PATH": ":".join(paths)})
    check = subprocess.run(
        [*tool.argv, "--help"], env=tool.environ(), capture_output=True, text=True, check=False
    )
    if "error while loading shared libraries" in check.stderr:
        log(f"perf_analyzer does not start: {check.stderr.strip()}; gRPC rows are skipped")
        return None
    return tool


def _apt_download(package: str, into: Path) -> bool:
    if shutil.which("apt-get") is None:
        return False
    if _run(["apt-get", "download", "-qq", package], cwd=into):
        return True
    return _run(["apt-get", "update", "-qq"]) and _run(
        ["apt-get", "download", "-qq", package], cwd=into
    )


def sklearn_version() -> str:
    return metadata.version("scikit-learn")


def ensure_mlserver() -> Tool | None:
    """MLServer plus the same scikit-learn (and joblib) version as ours, so the model loads."""
    packages = (
        *MLSERVER_PACKAGES,
        f"scikit-learn=={sklearn_version()}",
        f"joblib=={metadata.version('joblib')}",
    )
    bindir = _venv(BENCH_DIR / "mlserver-venv", packages, "\n".join(packages))
    if bindir is None or not (bindir / "mlserver").exists():
        log("MLServer could not be set up; MLServer rows are skipped")
        return None
    return Tool((str(bindir / "mlserver"),))


def ensure_pytriton() -> Tool | None:
    """PyTriton (tritonserver inside) plus our onnxruntime, scikit-learn and joblib versions, so
    that it serves the very same artifacts. Its Python backend stub links ``libpython3.11``:
    LD_LIBRARY_PATH points at this interpreter's own LIBDIR, so the stub does not pick up another
    Python's library."""
    packages = (
        *PYTRITON_PACKAGES,
        f"onnxruntime=={metadata.version('onnxruntime')}",
        f"scikit-learn=={sklearn_version()}",
        f"joblib=={metadata.version('joblib')}",
    )
    bindir = _venv(BENCH_DIR / "pytriton-venv", packages, "\n".join(packages))
    if bindir is None:
        log("PyTriton could not be set up; Triton rows are skipped")
        return None
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    paths = [libdir, *filter(None, [os.environ.get("LD_LIBRARY_PATH")])]
    script = str(REPO / "benchmarks" / "pytriton_server.py")
    return Tool((str(bindir / "python"), script), {"LD_LIBRARY_PATH": ":".join(paths)})
