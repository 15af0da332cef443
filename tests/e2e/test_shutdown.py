"""SIGTERM with 200 requests in flight: each completes or gets a clean 503; exit code 0."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT
from tests.e2e.test_lifecycle import body, make_model


def start(repo: Path, *extra: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelserve", "serve", str(repo), "--http-port", "0",
         "--grpc-port", "0", *extra],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stderr is not None
    port = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        match = re.search(r"HTTP listening on http://127\.0\.0\.1:(\d+)", line)
        port = int(match.group(1)) if match else port
        if "server ready" in line:
            assert port is not None
            return proc, port
    proc.kill()
    raise AssertionError("server did not start")


async def test_sigterm_with_200_requests_in_flight(tmp_path: Path) -> None:
    make_model(tmp_path, "work", [1])
    proc, port = start(tmp_path, "--drain-delay-secs", "0.3", "--shutdown-timeout-secs", "30")
    try:
        limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits
        ) as client:
            requests = [
                asyncio.ensure_future(client.post("/v2/models/work/infer", json=body(0.004)))
                for _ in range(200)
            ]
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.1)
            ready = await client.get("/v2/health/ready")
            assert ready.status_code == 503, "not ready as soon as SIGTERM arrives"
            results = await asyncio.gather(*requests, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == [], f"connection errors: {failures[:3]}"
        statuses = [r.status_code for r in results if isinstance(r, httpx.Response)]
        assert set(statuses) <= {200, 503}, statuses
        assert statuses.count(200) > 0
        for reply in results:
            assert isinstance(reply, httpx.Response)
            if reply.status_code == 503:
                assert "error" in reply.json()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
