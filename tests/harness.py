"""The one test harness: a real server in-process (``RunningServer``, started through the
``serve`` fixtures of conftest.py, which hold a ``Servers``), the real command line in a
subprocess with a time-limited reader (``CliProcess``; ``run_cli`` and ``run_python`` for short
runs), and ``write_python_model`` for the python models tests build.

A silent or stuck child fails the test with what it printed; it never hangs the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from modelserve.config.settings import Settings
from modelserve.server.compose import Server

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60.0
LISTENING = r"HTTP listening on https?://(?:\[[^\]]*\]|[^\s\"/:]+):(\d+)"
"""The log line with the HTTP port (host, [IPv6] host, in plain or JSON log lines)."""


@functools.cache
def example_builder() -> ModuleType:
    """examples/build_examples.py as a module: the artifact builders (fixed seeds) the example
    repository and the runtime tests use."""
    spec = importlib.util.spec_from_file_location(
        "modelserve_examples_builder", ROOT / "examples" / "build_examples.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RunningServer:
    """A real modelserve Server in a thread with its own event loop; ``url`` is its HTTP
    address (host:port, as tritonclient wants it)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="modelserve-test", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced to the test thread
            self._error = exc
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.server = Server(self.settings)
        await self.server.start()
        self._started.set()
        await self._stop.wait()
        await self.server.stop()

    def start(self) -> RunningServer:
        self._thread.start()
        if not self._started.wait(timeout=START_TIMEOUT_S):
            raise TimeoutError(f"the server did not start within {START_TIMEOUT_S:.0f} s")
        if self._error is not None:
            raise self._error
        assert self.server is not None
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the server did not stop within 30 s"

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the server's loop and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.http_port

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        """The base URL for httpx: ``http://127.0.0.1:PORT``."""
        scheme = "https" if self.settings.tls_cert is not None else "http"
        return f"{scheme}://{self.url}"

    @property
    def grpc_url(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.grpc_port}"


class Servers:
    """Starts ``RunningServer``s for one fixture scope and stops them all at its end: the
    ``serve``, ``serve_module`` and ``serve_session`` fixtures of conftest.py."""

    def __init__(self) -> None:
        self.started: list[RunningServer] = []

    def __call__(self, repo: Path, **settings: Any) -> RunningServer:
        """A real server of ``repo`` on 127.0.0.1, ports 0 unless given, with ``settings``."""
        values: dict[str, Any] = {"http_port": 0, "grpc_port": 0, **settings}
        running = RunningServer(Settings(model_repository=repo, **values)).start()
        self.started.append(running)
        return running

    def stop_all(self) -> None:
        """Stop every server (the latest first); a server that will not stop fails the test
        only after the others were stopped too."""
        failures: list[BaseException] = []
        while self.started:
            try:
                self.started.pop().stop()
            except BaseException as exc:  # keep stopping the others
                failures.append(exc)
        if failures:
            raise failures[0]


class CliProcess:
    """``python -m modelserve ARGS`` in a subprocess; its stderr (the log) is read by a thread
    into ``lines``, so waiting for a line is bounded by a timeout and never blocks on a child
    that went silent."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path = ROOT,
    ) -> None:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelserve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=full_env,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.out: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stderr, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        with contextlib.suppress(ValueError, OSError):  # the pipe was closed under a straggler
            for line in iter(stream.readline, ""):
                into.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(
        self, pattern: str, timeout: float = START_TIMEOUT_S, count: int = 1
    ) -> re.Match[str]:
        """The ``count``-th log line matching ``pattern`` (a regex); fails with the log when it
        does not come within ``timeout`` seconds or the process exits first."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            found = [m for m in map(regex.search, list(self.lines)) if m]
            if len(found) >= count:
                return found[count - 1]
            if self.proc.poll() is not None:
                self._drain()
                found = [m for m in map(regex.search, list(self.lines)) if m]
                if len(found) >= count:
                    return found[count - 1]
                raise AssertionError(
                    f"modelserve exited with {self.proc.returncode} before {pattern!r}:\n{self.log}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} within {timeout:.0f} s:\n{self.log}")
            time.sleep(0.05)

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> int:
        """Wait for 'server ready' and return the HTTP port it listens on."""
        port = int(self.wait_for(LISTENING, timeout).group(1))
        self.wait_for("server ready", timeout)
        return port

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        """The exit code, once everything it printed is in ``lines`` and ``out``; fails (after
        killing it) when the process does not exit in time."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"modelserve did not exit within {timeout:.0f} s:\n{self.log}"
            ) from None
        self._drain()
        return code

    def _drain(self) -> None:
        """Let the readers reach the end of the pipes of an exited process (bounded: a
        grandchild may still hold them open)."""
        for reader in self._readers:
            reader.join(timeout=5)

    def kill(self) -> None:
        """SIGKILL to the whole process group (``--workers`` children too), if any is left."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def __enter__(self) -> CliProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        self._drain()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def run_cli(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """A short modelserve command run to completion; one that runs past ``timeout`` is killed
    and fails the test with what it printed."""
    return _run([sys.executable, "-m", "modelserve", *args], env, timeout, stdin)


def run_python(
    code: str, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``python -c code args...`` in a fresh interpreter (to see what an import pulls in, or to
    be a second process), bounded like ``run_cli``."""
    return _run([sys.executable, "-c", code, *args], env, timeout, None)


def _run(
    command: list[str], env: Mapping[str, str] | None, timeout: float, stdin: str | None
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            input=stdin,
        )
    except subprocess.TimeoutExpired as exc:
        printed = "".join(_text(part) for part in (exc.stdout, exc.stderr))
        raise AssertionError(
            f"{' '.join(command[1:])} did not finish within {timeout:.0f} s:\n{printed}"
        ) from None


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode("utf-8", "replace")
    return output or ""


def write_python_model(
    repo: Path,
    name: str,
    source: str,
    config: Mapping[str, Any] | None = None,
    versions: Sequence[int] = (1,),
    entrypoint: str = "Model",
    version_sources: Mapping[int, str] | None = None,
) -> Path:
    """A python-runtime model ``repo/name``: ``source`` (dedented) as ``model.py`` in the model
    folder, the class ``entrypoint`` as its entry point, ``config`` merged into model.yaml, and
    a folder per version; ``version_sources`` puts a version's own ``model.py`` in its folder
    (which the runtime prefers to the model folder's). Writing again rewrites the files, so a
    test can change a model's config on disk. Returns the model folder."""
    folder = repo / name
    folder.mkdir(parents=True, exist_ok=True)
    for version in versions:
        (folder / str(version)).mkdir(exist_ok=True)
    (folder / "model.py").write_text(textwrap.dedent(source))
    for version, version_source in (version_sources or {}).items():
        (folder / str(version)).mkdir(exist_ok=True)
        (folder / str(version) / "model.py").write_text(textwrap.dedent(version_source))
    document = {"runtime": "python", "entrypoint": f"model:{entrypoint}", **(config or {})}
    (folder / "model.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def wait_for_metric(
    base_url: str, metric: str, model: str, at_least: float, timeout: float = START_TIMEOUT_S
) -> None:
    """Wait until the gauge ``metric`` of ``model`` (summed over its versions) on the server's
    ``/metrics`` reaches ``at_least``: e.g. ``modelserve_model_queue_depth`` for requests queued
    behind a busy one, ``modelserve_model_batches_in_flight`` for a request now running. A test
    waits for that, not for a fixed sleep a loaded machine can outrun. In an async test call it
    through ``asyncio.to_thread`` so the test's own requests keep going."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    deadline = time.monotonic() + timeout
    while True:
        text = httpx.get(f"{base_url}/metrics", timeout=10).text
        seen = sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == metric and sample.labels.get("model") == model
        )
        if seen >= at_least:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{metric} of '{model}' never reached {at_least} (last {seen})")
        time.sleep(0.02)


def wait_for_queue(base_url: str, model: str, depth: int, timeout: float = START_TIMEOUT_S) -> None:
    """Wait until ``model``'s queue holds at least ``depth`` requests."""
    wait_for_metric(base_url, "modelserve_model_queue_depth", model, depth, timeout)


def wait_for_running(base_url: str, model: str, timeout: float = START_TIMEOUT_S) -> None:
    """Wait until a batch of ``model`` is executing."""
    wait_for_metric(base_url, "modelserve_model_batches_in_flight", model, 1, timeout)
