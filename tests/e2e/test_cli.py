"""The real command line in a subprocess: serves, answers, and exits 0 on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT


def test_cli_serves_and_stops_cleanly(model_repo: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelserve", "serve", str(model_repo), "--http-port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert proc.stderr is not None
        port = None
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            match = re.search(r"HTTP listening on http://127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
            if "server ready" in line:
                break
        assert port is not None, "".join(lines)
        reply = httpx.get(f"http://127.0.0.1:{port}/v2/health/ready")
        assert reply.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_rejects_missing_repository(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelserve", "serve", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "not a directory" in result.stderr


def test_import_loads_no_ml_framework() -> None:
    code = (
        "import sys, modelserve\n"
        "heavy = [m for m in ('onnxruntime', 'sklearn', 'xgboost', 'lightgbm', 'skops', 'torch')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_public_api_is_all() -> None:
    import modelserve

    for name in modelserve.__all__:
        assert getattr(modelserve, name).__name__ == name
    assert sorted(modelserve.__all__) == sorted(
        name for name in dir(modelserve) if not name.startswith("_") and name[0].isupper()
    )
