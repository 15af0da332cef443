"""The command line's security flags in a real subprocess: tokens from a file and from the
environment (never from argv), clear refusals of bad token and TLS files, no token in the logs."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
import yaml

from modelserve.security.auth import hash_token
from tests.harness import CliProcess, run_cli

FILE_TOKEN = "file-token-0123456789abcdefghij"
ENV_TOKEN = "env-token-0123456789abcdefghij"


def test_token_command_prints_a_token_and_its_digest() -> None:
    result = run_cli(["token"])
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
    args = ["serve", str(model_repo), "--http-port", "0", "--grpc-port", "0"]
    args += ["--model-control-mode", "explicit", "--auth-file", str(auth_file)]
    args += ["--log-level", "debug"]
    with CliProcess(args, env={"MODELSERVE_TOKEN_CI": f"{ENV_TOKEN}:infer"}) as cli:
        port = cli.wait_ready()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.get("/v2/health/ready").status_code == 200
            assert client.post("/v2/repository/index").status_code == 401
            read = {"authorization": f"Bearer {FILE_TOKEN}"}
            assert client.post("/v2/repository/index", headers=read).status_code == 200
            infer = {"authorization": f"Bearer {ENV_TOKEN}"}
            assert client.post("/v2/repository/index", headers=infer).status_code == 403
            assert client.get("/v2", headers=infer).status_code == 200
        cli.signal(signal.SIGTERM)
        assert cli.wait() == 0
    output = cli.log + "".join(cli.out)
    assert FILE_TOKEN not in output and ENV_TOKEN not in output
    assert "without authentication" not in output


def test_bad_token_sources_exit_2_without_echoing_the_token(tmp_path: Path) -> None:
    auth_file = tmp_path / "tokens.yaml"
    auth_file.write_text(yaml.safe_dump([{"name": "x", "token": FILE_TOKEN, "scopes": ["write"]}]))
    result = run_cli(["serve", str(tmp_path), "--auth-file", str(auth_file)])
    assert result.returncode == 2
    assert "unknown scope" in result.stderr and FILE_TOKEN not in result.stderr
    result = run_cli(["serve", str(tmp_path)], env={"MODELSERVE_TOKEN_X": f"{ENV_TOKEN}"})
    assert result.returncode == 2
    assert "MODELSERVE_TOKEN_X" in result.stderr and ENV_TOKEN not in result.stderr
    result = run_cli(["serve", str(tmp_path), "--auth-file", str(tmp_path / "missing.yaml")])
    assert result.returncode == 2 and "missing.yaml" in result.stderr


def test_bad_tls_files_exit_2(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate")
    result = run_cli(["serve", str(tmp_path), "--tls-cert", str(tmp_path / "cert.pem")])
    assert result.returncode == 2 and "tls_key" in result.stderr
    result = run_cli(
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
