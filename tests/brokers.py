"""Real event receivers for the tests, each a separate process on 127.0.0.1 that a test can kill
and bring back on the same port:

- ``RedisServer``: Debian's ``redis-server`` (tests/system/packages.txt), with an append-only
  file fsynced on every write, so what it acknowledged survives a restart;
- ``CloudEventsReceiver``: an HTTP server (tests/cloudevents_receiver.py, the standard
  library's ``ThreadingHTTPServer``) that appends every CloudEvent it accepts to a JSON-lines
  file: binary mode (``ce-*`` headers), structured and batch mode.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

START_TIMEOUT_S = 30.0
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on port {port} after 30 s:\n{log.read_text()}")
        time.sleep(0.05)


class _Process:
    """A server process of the test: started, killed (SIGKILL) and started again on the same
    port."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = folder / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                start_new_session=True,
            )
        _wait_port(self.port, self.proc, self.log)

    def kill(self) -> None:
        """SIGKILL, as a crash: no goodbye to its clients."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def stop(self) -> None:
        self.kill()


class RedisServer(_Process):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder, "redis")
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is missing: make test installs it"
        return [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.folder),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--protected-mode",
            "no",
        ]

    def start(self) -> None:
        """Started and done loading its append-only file: after a restart the port opens
        before the data is loaded, and commands meanwhile fail with BusyLoadingError."""
        import redis

        super().start()
        deadline = time.monotonic() + 30
        client = redis.Redis.from_url(self.url)
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.BusyLoadingError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)


class CloudEventsReceiver(_Process):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder, "receiver")
        self.events_file = folder / "events.jsonl"
        self.url = f"http://127.0.0.1:{self.port}/"

    def command(self) -> list[str]:
        return [
            sys.executable,
            str(ROOT / "tests" / "cloudevents_receiver.py"),
            str(self.port),
            str(self.events_file),
        ]

    def events(self) -> list[dict[str, Any]]:
        """Every event received so far: ``attributes`` (without the ce- prefix), ``data``,
        ``mode`` (binary, structured, batch) and ``connection`` (the client's port)."""
        if not self.events_file.exists():
            return []
        lines = self.events_file.read_bytes().splitlines()
        return [orjson.loads(line) for line in lines if line]
