"""ONNX models on a real GPU, through onnxruntime's CUDA execution provider.

CI machines have no GPU: there this module is skipped, and test_execution_providers.py checks the
fallback to the CPU instead. On a machine with a GPU and onnxruntime-gpu (``pip install
'modelserve[gpu]'``) it serves a model asking for ``[tensorrt, cuda, cpu]`` and checks what a
user of Triton's onnxruntime backend relies on: the configuration says the GPU and the providers
the version really runs on, TensorRT that cannot start is a reason in the repository index (not a
failed load), and answers, alone or merged into batches, match onnxruntime on the CPU.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import yaml

from tests.conftest import RunningServer, Servers
from tests.harness import example_builder

pytestmark = pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(),
    reason="needs a GPU and onnxruntime-gpu (CUDAExecutionProvider); CI machines have neither",
)

build = example_builder()
SIZES = (256, 1024, 10)
# onnxruntime's CUDA provider multiplies FP32 matrices in TF32 on Ampere and later GPUs (its
# use_tf32 option, on by default), so answers differ from the CPU's in the fourth digit
TOLERANCE = {"rtol": 2e-3, "atol": 2e-3}


@pytest.fixture(scope="module")
def gpu(tmp_path_factory: pytest.TempPathFactory, serve_module: Servers) -> RunningServer:
    repo = tmp_path_factory.mktemp("gpu")
    (repo / "mlp" / "1").mkdir(parents=True)
    build.build_mlp_onnx(repo / "mlp" / "1" / "model.onnx", sizes=SIZES)
    config = {
        "max_batch_size": 64,
        "dynamic_batching": {"max_queue_delay_us": 2000},
        "execution": {"providers": ["tensorrt", "cuda", "cpu"]},
    }
    (repo / "mlp" / "model.yaml").write_text(yaml.safe_dump(config))
    return serve_module(repo)


@pytest.fixture(scope="module")
def cpu(gpu: RunningServer) -> ort.InferenceSession:
    """The same graph on onnxruntime's CPU provider: the answers to compare with."""
    model = gpu.settings.model_repository / "mlp" / "1" / "model.onnx"
    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])


def _infer(server: RunningServer, x: np.ndarray) -> np.ndarray:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape)}]}
    body["inputs"][0]["data"] = x.ravel().tolist()
    reply = httpx.post(f"{server.http}/v2/models/mlp/infer", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    out = reply.json()["outputs"][0]
    return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])


def test_the_config_says_the_gpu_and_its_providers(gpu: RunningServer) -> None:
    config = httpx.get(f"{gpu.http}/v2/models/mlp/config").json()
    providers = config["parameters"]["execution_providers"]["string_value"].split(",")
    assert providers[0] in ("tensorrt", "cuda") and providers[-1] == "cpu", providers
    assert config["instance_group"][0]["kind"] == "KIND_GPU"
    assert config["instance_group"][0]["gpus"] == [0]
    (row,) = httpx.post(f"{gpu.http}/v2/repository/index").json()
    assert row["state"] == "READY"
    if providers[0] == "cuda":  # TensorRT's libraries are not installed: said, not failed
        assert "execution provider tensorrt" in row["reason"]
        assert "running on cuda, cpu" in row["reason"]


def test_answers_match_the_cpu(gpu: RunningServer, cpu: ort.InferenceSession) -> None:
    x = np.random.default_rng(0).standard_normal((5, SIZES[0])).astype(np.float32)
    np.testing.assert_allclose(_infer(gpu, x), cpu.run(None, {"input": x})[0], **TOLERANCE)


def test_batched_answers_go_back_to_their_requests(
    gpu: RunningServer, cpu: ort.InferenceSession
) -> None:
    """48 requests of 1 to 4 rows at once: merged into batches on the GPU, each request gets
    its own rows back."""
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((1 + i % 4, SIZES[0])).astype(np.float32) for i in range(48)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda x: _infer(gpu, x), inputs))
    for x, got in zip(inputs, answers, strict=True):
        np.testing.assert_allclose(got, cpu.run(None, {"input": x})[0], **TOLERANCE)
    stats = httpx.get(f"{gpu.http}/v2/models/mlp/stats").json()["model_stats"][0]
    assert stats["inference_count"] >= sum(len(x) for x in inputs)
    assert stats["execution_count"] < stats["inference_count"]  # some requests were merged
