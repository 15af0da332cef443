"""GPU execution providers on a machine without a GPU: a model asking for
``[tensorrt, cuda, cpu]`` serves on the CPU with the fallback said in the log and the repository
index; one that left the CPU out does not load, and says why; ``accelerate: onnx`` hands its
providers to the graph it serves."""

from __future__ import annotations

import logging

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
import yaml

from tests.conftest import RunningServer, Servers
from tests.harness import example_builder

build = example_builder()

GPU = {"providers": ["tensorrt", "cuda", "cpu"], "tensorrt": {"fp16": True, "engine_cache": True}}


def _onnx_model(repo, name: str, **config: object) -> None:  # type: ignore[no-untyped-def]
    (repo / name / "1").mkdir(parents=True)
    build.build_mlp_onnx(repo / name / "1" / "model.onnx", sizes=(8, 16, 4))
    (repo / name / "model.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def cpu_only(tmp_path_factory: pytest.TempPathFactory, serve_module: Servers) -> RunningServer:
    assert "CUDAExecutionProvider" not in ort.get_available_providers(), "a CPU-only machine"
    repo = tmp_path_factory.mktemp("providers")
    _onnx_model(repo, "mlp_gpu", execution=GPU)
    _onnx_model(repo, "mlp_cpu")
    _onnx_model(repo, "gpu_only", execution={"providers": ["tensorrt", "cuda"]})
    version = repo / "iris" / "1"
    version.mkdir(parents=True)
    build.build_iris_sklearn(version / "model.skops")
    (repo / "iris" / "model.yaml").write_text(
        yaml.safe_dump({"accelerate": "onnx", "execution": {"providers": ["cuda", "cpu"]}})
    )
    return serve_module(repo)


def _index(server: RunningServer) -> dict[str, dict[str, str]]:
    return {r["name"]: r for r in httpx.post(f"{server.http}/v2/repository/index").json()}


def test_missing_providers_fall_back_to_the_cpu_and_say_so(cpu_only: RunningServer) -> None:
    rows = _index(cpu_only)
    gpu = rows["mlp_gpu"]
    assert gpu["state"] == "READY"
    assert "execution provider tensorrt is not in the installed onnxruntime" in gpu["reason"]
    assert "execution provider cuda is not in the installed onnxruntime" in gpu["reason"]
    assert "running on cpu" in gpu["reason"]
    assert rows["mlp_cpu"]["state"] == "READY" and not rows["mlp_cpu"].get("reason")
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    client = triton.InferenceServerClient(cpu_only.url)
    answers = []
    for name in ("mlp_gpu", "mlp_cpu"):
        tensor = triton.InferInput("input", [3, 8], "FP32")
        tensor.set_data_from_numpy(x)
        answers.append(client.infer(name, [tensor]).as_numpy("output"))
    np.testing.assert_array_equal(answers[0], answers[1])


def test_no_provider_left_is_a_load_error_naming_the_fix(cpu_only: RunningServer) -> None:
    row = _index(cpu_only)["gpu_only"]
    assert row["state"] == "UNAVAILABLE"
    assert "none of the execution providers asked for can run here" in row["reason"]
    assert "add cpu to 'execution.providers'" in row["reason"]


def test_accelerated_graph_gets_the_providers(cpu_only: RunningServer) -> None:
    row = _index(cpu_only)["iris"]
    assert row["state"] == "READY"
    assert "execution provider cuda is not in the installed onnxruntime" in row["reason"]


def test_the_fallback_is_logged(tmp_path, serve: Servers, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    _onnx_model(tmp_path, "mlp_gpu", execution=GPU)
    with caplog.at_level(logging.WARNING, logger="modelserve.runtimes.onnx"):
        serve(tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.name == "modelserve.runtimes.onnx"]
    assert any(
        "mlp_gpu" in m and "tensorrt is not in the installed onnxruntime" in m for m in warnings
    )


def test_the_config_says_which_providers_a_version_runs_on(cpu_only: RunningServer) -> None:
    """After the fallback to the CPU, the model configuration (REST and gRPC, as Triton's
    clients read it) says cpu, not the cuda the model asked for."""
    import tritonclient.grpc as triton_grpc

    http = triton.InferenceServerClient(cpu_only.url)
    grpc = triton_grpc.InferenceServerClient(cpu_only.grpc_url)
    for name in ("mlp_gpu", "mlp_cpu", "iris"):
        for config in (http.get_model_config(name), grpc.get_model_config(name, as_json=True)):
            config = config.get("config", config)
            assert config["parameters"]["execution_providers"] == {"string_value": "cpu"}, name
            assert config["instance_group"][0]["kind"] == "KIND_CPU"
    grpc.close()
