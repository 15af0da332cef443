"""The command line's security flags in a real subprocess: tokens from a file and from the
environment (never from argv), clear refusals of bad token and TLS files, no token in the logs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from modelserve.security.auth import hash_token
from tests.conftest import ROOT

FILE_TOKEN = "file-token-0123456789abcdefghij"
ENV_TOKEN = "env-token-0123456789abcdefghij"


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelserve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_token_command_prints_a_token_and_its_digest() -> None:
    result = _run(["token"])
    assert result.returncode == 0, result.stderr
    token = re.search(r"token: (\S+)", result.stdout)
    digest = re.search(r"token_sha256: ([0-9a-f]{64})", result.stdout)
    assert token and digest and len(token.group(1)) >= 32
    assert hash_token(token.group(1)) == digest.group(1)


def test_serve_with_file_and_env_tokens(model_repo: Path, tmp_path: Path) -> None:
    auth_file = tmp_path / "tokens.yaml"
    auth_file.write_text(
        yaml.safe_dump(
            [{"name": "reader", "token_sha256": hash_token(FILE_TOKEN), "scopes": ["read"]}]
        )
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelserve",
            "serve",
            str(model_repo),
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--model-control-mode",
            "explicit",
            "--auth-file",
            str(auth_file),
            "--log-level",
            "debug",
        ],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "MODELSERVE_TOKEN_CI": f"{ENV_TOKEN}:infer"},
    )
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        port = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            match = re.search(r"HTTP listening on http://127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
            if "server ready" in line or not line:
                break
        assert port is not None, "".join(lines)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.get("/v2/health/ready").status_code == 200
            assert client.post("/v2/repository/index").status_code == 401
            read = {"authorization": f"Bearer {FILE_TOKEN}"}
            assert client.post("/v2/repository/index", headers=read).status_code == 200
            infer = {"authorization": f"Bearer {ENV_TOKEN}"}
            assert client.post("/v2/repository/index", headers=infer).status_code == 403
            assert client.get("/v2", headers=infer).status_code == 200
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(lines) + (rest or "")
    assert FILE_TOKEN not in output and ENV_TOKEN not in output
    assert "without authentication" not in output


def test_bad_token_sources_exit_2_without_echoing_the_token(tmp_path: Path) -> None:
    auth_file = tmp_path / "tokens.yaml"
    auth_file.write_text(yaml.safe_dump([{"name": "x", "token": FILE_TOKEN, "scopes": ["write"]}]))
    result = _run(["serve", str(tmp_path), "--auth-file", str(auth_file)])
    assert result.returncode == 2
    assert "unknown scope" in result.stderr and FILE_TOKEN not in result.stderr
    result = _run(["serve", str(tmp_path)], env={"MODELSERVE_TOKEN_X": f"{ENV_TOKEN}"})
    assert result.returncode == 2
    assert "MODELSERVE_TOKEN_X" in result.stderr and ENV_TOKEN not in result.stderr
    result = _run(["serve", str(tmp_path), "--auth-file", str(tmp_path / "missing.yaml")])
    assert result.returncode == 2 and "missing.yaml" in result.stderr


def test_bad_tls_files_exit_2(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate")
    result = _run(["serve", str(tmp_path), "--tls-cert", str(tmp_path / "cert.pem")])
    assert result.returncode == 2 and "tls_key" in result.stderr
    result = _run(
        [
            "serve",
            str(tmp_path),
            "--tls-cert",
            str(tmp_path / "cert.pem"),
            "--tls-key",
            str(tmp_path / "cert.pem"),
        ]
    )
    assert result.returncode == 2 and "cert.pem" in result.stderr
    assert "Traceback" not in result.stderr
