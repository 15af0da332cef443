"""The real command line in a subprocess: serves, answers, and exits 0 on SIGTERM."""

from __future__ import annotations

import math
import re
import shutil
import signal
from pathlib import Path

import httpx
import pytest

from tests.harness import CliProcess, run_cli, run_python


def test_cli_serves_and_stops_cleanly(model_repo: Path) -> None:
    with CliProcess(["serve", str(model_repo), "--http-port", "0", "--grpc-port", "0"]) as cli:
        port = cli.wait_ready()
        reply = httpx.get(f"http://127.0.0.1:{port}/v2/health/ready")
        assert reply.status_code == 200
        cli.signal(signal.SIGTERM)
        assert cli.wait() == 0


def test_cli_reads_server_file_and_environment(model_repo: Path, tmp_path: Path) -> None:
    """The flag beats the environment, which beats the file: the file names the repository and
    ports, the environment moves the gRPC port, the flag turns the access log on."""
    server_file = tmp_path / "server.yaml"
    server_file.write_text(
        f"model_repository: {model_repo}\nhttp_port: 0\ngrpc_port: 1\n"
        "log_format: json\nmodel_control_mode: explicit\nload_models: [iris_onnx]\n"
    )
    args = ["serve", "--config", str(server_file), "--access-log"]
    with CliProcess(args, env={"MODELSERVE_GRPC_PORT": "0"}) as cli:
        port = cli.wait_ready()
        index = httpx.post(f"http://127.0.0.1:{port}/v2/repository/index", json={"ready": True})
        assert [row["name"] for row in index.json()] == ["iris_onnx"]
        cli.wait_for('"logger": ?"modelserve.access"')
        cli.signal(signal.SIGTERM)
        assert cli.wait() == 0


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--http-port", "x"], {}, "--http-port: "),
        ([], {"MODELSERVE_WORKERS": "0"}, "MODELSERVE_WORKERS: "),
        (["--config", "/nonexistent/server.yaml"], {}, "cannot read the server file"),
    ],
)
def test_cli_refuses_bad_settings_in_one_line(
    model_repo: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    result = run_cli(["serve", str(model_repo), *args], env=env)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_cli_rejects_missing_repository(tmp_path: Path) -> None:
    result = run_cli(["serve", str(tmp_path / "nope")])
    assert result.returncode == 2
    assert "not a directory" in result.stderr


def test_import_loads_no_ml_framework() -> None:
    code = (
        "import sys, modelserve\n"
        "heavy = [m for m in ('onnxruntime', 'sklearn', 'xgboost', 'lightgbm', 'skops', 'torch')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_public_api_is_all() -> None:
    import modelserve

    for name in modelserve.__all__:
        assert getattr(modelserve, name).__name__ == name
    assert sorted(modelserve.__all__) == sorted(
        name for name in dir(modelserve) if not name.startswith("_") and name[0].isupper()
    )


def test_the_installed_console_script_runs() -> None:
    """The ``modelserve`` command pip installs (``[project.scripts]``), not ``python -m``."""
    import subprocess
    import sys

    script = Path(sys.executable).with_name("modelserve")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout


ONNX_EXAMPLES = ("iris_onnx", "mlp_onnx", "detector_onnx")
NOT_FOR_ONNX = ("sklearn", "scipy", "skops", "torch", "pandas", "pyarrow", "xgboost", "lightgbm")
IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| +([\w.]+)$", re.MULTILINE)


def test_an_onnx_only_repository_imports_no_other_framework(
    model_repo: Path, tmp_path: Path
) -> None:
    """Start-up and memory: serving a repository of ONNX models (the examples') and answering
    each of them never imports scikit-learn, SciPy, skops, torch, pandas, pyarrow, XGBoost or
    LightGBM. Python reports every import the process makes, in any thread, on stderr
    (PYTHONPROFILEIMPORTTIME), and none of their shared libraries is mapped."""
    repo = tmp_path / "onnx"
    for name in ONNX_EXAMPLES:
        shutil.copytree(model_repo / name, repo / name)
    args = ["serve", str(repo), "--http-port", "0", "--grpc-port", "0"]
    with CliProcess(args, env={"PYTHONPROFILEIMPORTTIME": "1"}) as cli:
        port = cli.wait_ready()
        shapes = {"iris_onnx": [1, 4], "mlp_onnx": [1, 256], "detector_onnx": [1, 3, 320, 320]}
        for name, shape in shapes.items():
            data = [0] * math.prod(shape)
            tensor = {"name": "images" if name == "detector_onnx" else "input"}
            body = {"inputs": [{**tensor, "datatype": "FP32", "shape": shape, "data": data}]}
            reply = httpx.post(f"http://127.0.0.1:{port}/v2/models/{name}/infer", json=body)
            assert reply.status_code == 200, reply.text
        maps = Path(f"/proc/{cli.proc.pid}/maps").read_text()
        cli.signal(signal.SIGTERM)
        assert cli.wait() == 0
    imported = {name.split(".")[0] for name in IMPORTED.findall(cli.log)}
    assert "onnxruntime" in imported and "onnxruntime" in maps
    assert sorted(imported.intersection(NOT_FOR_ONNX)) == []
    for package in NOT_FOR_ONNX:
        assert f"/{package}/" not in maps, f"{package} is loaded"
