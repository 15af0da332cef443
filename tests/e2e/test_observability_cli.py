"""The command line with --log-format json --access-log --metrics-port: every stderr line is a
JSON object, the access line carries the client's request id, the metrics port answers."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx

from tests.harness import CliProcess


def test_json_logs_access_log_and_metrics_port(model_repo: Path) -> None:
    args = ["serve", str(model_repo), "--http-port", "0", "--grpc-port", "0"]
    args += ["--metrics-port", "0", "--log-format", "json", "--access-log"]
    with CliProcess(args) as cli:
        port = cli.wait_ready()
        metrics_port = int(cli.wait_for(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))
        reply = httpx.get(
            f"http://127.0.0.1:{port}/v2/health/ready", headers={"x-request-id": "cli-1"}
        )
        assert reply.headers["x-request-id"] == "cli-1"
        access = json.loads(cli.wait_for(r'"logger": ?"modelserve\.access"').string)
        assert access["request_id"] == "cli-1"
        assert access["path"] == "/v2/health/ready" and access["status"] == 200
        scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert scrape.status_code == 200 and "modelserve_model_state" in scrape.text
        cli.signal(signal.SIGTERM)
        assert cli.wait() == 0
    lines = [json.loads(line) for line in cli.lines]  # every line is one JSON object
    assert any("unloaded" in str(line["message"]) for line in lines)
