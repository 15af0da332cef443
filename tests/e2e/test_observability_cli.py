"""The command line with --log-format json --access-log --metrics-port: every stderr line is a
JSON object, the access line carries the client's request id, the metrics port answers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT


def test_json_logs_access_log_and_metrics_port(model_repo: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelserve", "serve", str(model_repo), "--http-port", "0",
         "--grpc-port", "0", "--metrics-port", "0", "--log-format", "json", "--access-log"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        lines: list[dict[str, object]] = []
        port = metrics_port = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lines.append(json.loads(proc.stderr.readline()))
            message = str(lines[-1]["message"])
            if match := re.search(r"HTTP listening on http://127\.0\.0\.1:(\d+)", message):
                port = int(match.group(1))
            if match := re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", message):
                metrics_port = int(match.group(1))
            if "server ready" in message:
                break
        assert port is not None and metrics_port is not None, lines
        reply = httpx.get(
            f"http://127.0.0.1:{port}/v2/health/ready", headers={"x-request-id": "cli-1"}
        )
        assert reply.headers["x-request-id"] == "cli-1"
        access = json.loads(proc.stderr.readline())
        assert access["logger"] == "modelserve.access" and access["request_id"] == "cli-1"
        assert access["path"] == "/v2/health/ready" and access["status"] == 200
        scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert scrape.status_code == 200 and "modelserve_model_state" in scrape.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        rest = [json.loads(line) for line in proc.stderr.read().splitlines()]
        assert any("unloaded" in str(line["message"]) for line in rest)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
