"""The container image, built and run for real with podman (``make test-image``; CI runs it when
podman is present; the default ``make test`` leaves it out: a first build takes minutes).

The image is built from deploy/Dockerfile on a base made from Debian's packages
(deploy/image/build-base.sh, cached under .tools/) unless ``MODELSERVE_IMAGE_BASE`` names
another (``python:3.11-slim`` where a registry is reachable). The container runs as Kubernetes
runs it (read-only root, no capabilities, non-root) on the host's loopback with the example
models; tritonclient infers over REST and gRPC; SIGTERM drains and exits 0.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.harness import ROOT
from tests.s3_server import _free_port

pytestmark = pytest.mark.image

LOCAL_BASE = "localhost/modelserve-base:bookworm"
IMAGE = "localhost/modelserve:test"
BUILD_TIMEOUT_S = 1800
ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]], dtype=np.float32)


def podman(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """podman with runc where installed (crun refuses hybrid cgroup hierarchies)."""
    runtime = ["--runtime", "runc"] if shutil.which("runc") else []
    result = subprocess.run(
        ["podman", *runtime, *args], capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def image() -> str:
    assert shutil.which("podman"), "podman is missing: make test-image installs it"
    base = os.environ.get("MODELSERVE_IMAGE_BASE", LOCAL_BASE)
    if base == LOCAL_BASE:
        subprocess.run(
            [str(ROOT / "deploy" / "image" / "build-base.sh"), LOCAL_BASE],
            check=True,
            timeout=BUILD_TIMEOUT_S,
        )
    build = ["build", "--format", "docker", "-f", "deploy/Dockerfile", "-t", IMAGE]
    build += ["--build-arg", f"BASE_IMAGE={base}", "--build-arg", "EXTRAS=onnx,sklearn"]
    ca_bundle = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    if ca_bundle and Path(ca_bundle).is_file():
        build += ["--secret", f"id=ca-bundle,src={ca_bundle}"]
    started = time.monotonic()
    podman(*build, str(ROOT), timeout=BUILD_TIMEOUT_S)
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    print(f"\nimage {IMAGE}: built in {time.monotonic() - started:.0f} s, {size / 1e6:.0f} MB")
    return IMAGE


@pytest.fixture
def readable_models(model_repo: Path) -> Iterator[Path]:
    """The example models where the container's user (uid 1000) can read them."""
    folder = Path(tempfile.mkdtemp(prefix="modelserve-image-"))
    try:
        shutil.copytree(model_repo, folder / "models")
        os.chmod(folder, 0o755)
        for path in (folder / "models").rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        os.chmod(folder / "models", 0o755)
        yield folder / "models"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _ulimits() -> list[str]:
    """Limits this host can grant: rootful podman asks for more (a million open files, as many
    processes) than a container host with lower hard limits allows, and runc then refuses."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    files = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    return ["--ulimit", f"nofile={files}:{files}", "--ulimit", "nproc=4096:4096"]


def test_image_metadata(image: str) -> None:
    config = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "1000:1000"
    assert config["StopSignal"] == "SIGTERM"
    assert set(config["ExposedPorts"]) == {"8000/tcp", "8001/tcp", "8002/tcp"}
    assert config["Entrypoint"] == ["modelserve", "serve"]
    healthcheck = json.loads(podman("image", "inspect", image).stdout)[0]["Healthcheck"]
    assert "/v2/health/ready" in " ".join(healthcheck["Test"])
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["MODELSERVE_MODEL_REPOSITORY"] == "/models"
    assert env["MODELSERVE_DRAIN_DELAY_SECS"] == "5"
    assert env["MODELSERVE_SHUTDOWN_TIMEOUT_SECS"] == "25"
    render = ["run", "--rm", *_ulimits(), "--entrypoint", "modelserve", image, "k8s", "render"]
    manifests = podman(*render, "--image", image, "--models", "/models").stdout
    assert "kind: Deployment" in manifests and "modelserve-dashboard.json" in manifests


def test_serves_the_examples_and_drains_on_sigterm(image: str, readable_models: Path) -> None:
    http, grpc, metrics = _free_port(), _free_port(), _free_port()
    name = f"modelserve-test-{uuid.uuid4().hex[:8]}"
    run = ["run", "--detach", "--name", name, "--network", "host", *_ulimits()]
    run += ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL"]
    run += ["--security-opt", "no-new-privileges", "--volume", f"{readable_models}:/models:ro"]
    run += ["--env", "MODELSERVE_HOST=127.0.0.1", "--env", f"MODELSERVE_HTTP_PORT={http}"]
    run += ["--env", f"MODELSERVE_GRPC_PORT={grpc}", "--env", f"MODELSERVE_METRICS_PORT={metrics}"]
    run += ["--env", "MODELSERVE_DRAIN_DELAY_SECS=2", image]
    podman(*run)
    try:
        base = f"http://127.0.0.1:{http}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            state = json.loads(podman("inspect", name).stdout)[0]["State"]
            assert state["Running"], f"the container exited:\n{podman('logs', name).stderr}"
            assert time.monotonic() < deadline, (
                f"not ready in 120 s:\n{podman('logs', name).stderr}"
            )
            time.sleep(0.5)

        assert podman("exec", name, "id", "-u").stdout.strip() == "1000"
        assert podman("healthcheck", "run", name, check=False).returncode == 0

        rest = httpclient.InferenceServerClient(f"127.0.0.1:{http}")
        for model in ("iris_onnx", "iris_sklearn"):
            x = httpclient.InferInput(
                "input", list(ROWS.shape), "FP32" if "onnx" in model else "FP64"
            )
            x.set_data_from_numpy(ROWS if "onnx" in model else ROWS.astype(np.float64))
            assert rest.infer(model, [x]).as_numpy("label").shape == (2,)
        rows = {r["name"]: r for r in rest.get_model_repository_index()}
        assert "xgboost" in rows["iris_xgboost"]["reason"], "an extra not installed is named"
        rest.close()
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc}")
        x = grpcclient.InferInput("input", list(ROWS.shape), "FP32")
        x.set_data_from_numpy(ROWS)
        assert client.infer("iris_onnx", [x]).as_numpy("label").shape == (2,)
        client.close()
        scrape = httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=5).text
        assert 'modelserve_inference_requests_total{model="iris_onnx"' in scrape

        podman("kill", "--signal", "TERM", name)
        drained = time.monotonic() + 1.5
        while httpx.get(f"{base}/v2/health/ready", timeout=2).status_code != 503:
            assert time.monotonic() < drained, "not-ready at once on SIGTERM"
            time.sleep(0.05)
        assert httpx.get(f"{base}/v2/health/live", timeout=2).status_code == 200
        exit_code = podman("wait", name, timeout=60).stdout.strip()
        logs = podman("logs", name).stderr
        assert exit_code == "0", logs
        assert "shutting down" in logs
    finally:
        podman("rm", "--force", name, check=False)
