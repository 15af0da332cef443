"""A real PostgreSQL server for the tests (Debian's ``postgresql``, tests/system/packages.txt):
initdb in a temporary directory, started on a free loopback port, stopped at the end. initdb
refuses to run as root, so as root the cluster belongs to the ``postgres`` user (``runuser``)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

USER = "modelserve"


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    assert found, f"PostgreSQL's {name} is missing: apt-get install postgresql (make test does)"
    return found[-1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(argv: list[str], as_postgres: bool) -> None:
    if as_postgres:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{argv[:4]} failed: {done.stdout}\n{done.stderr}"


@contextmanager
def postgres_server() -> Iterator[str]:
    """A running PostgreSQL cluster; yields its URL (database ``postgres``, no password)."""
    root = Path(tempfile.mkdtemp(prefix="modelserve-pg-", dir="/tmp"))
    as_postgres = os.geteuid() == 0
    data = root / "data"
    port = _free_port()
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
    try:
        _run(
            [_bin("initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8"], as_postgres
        )
        options = f"-p {port} -k {root} -h 127.0.0.1 -c fsync=off"
        _run(
            [
                _bin("pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "log"),
                "-w",
                "start",
            ],
            as_postgres,
        )
        try:
            yield f"postgresql://{USER}@127.0.0.1:{port}/postgres"
        finally:
            _run([_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], as_postgres)
    finally:
        shutil.rmtree(root, ignore_errors=True)
