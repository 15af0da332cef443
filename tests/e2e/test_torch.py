"""``runtime: torch`` end to end: an exported program (``.pt2``, found by its suffix) and a
TorchScript module served over REST and gRPC to tritonclient with dynamic batching merging
requests; a pickled module refused without ``trust``; safetensors weights with their module
through the python runtime; the client's mistakes answered 400 / INVALID_ARGUMENT."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton
import yaml
from safetensors.torch import save_file
from tritonclient.utils import InferenceServerException

from tests import torch_models
from tests.conftest import RunningServer, Servers
from tests.harness import write_python_model

SAFETENSORS_MODEL = """
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(4, 8)
        self.out = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))


class Model:
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    outputs = [{"name": "logits", "datatype": "FP32", "shape": [-1, 3]}]

    def load(self, version_dir, parameters):
        self.net = Net().eval()
        self.net.load_state_dict(load_file(Path(version_dir) / "model.safetensors"))

    def predict(self, inputs):
        with torch.inference_mode():
            x = torch.from_numpy(np.array(inputs["x"]))
            return {"logits": self.net(x).numpy()}
"""

TRITON_PBTXT = """
platform: "pytorch_libtorch"
max_batch_size: 8
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 3 ] } ]
"""
"""A model folder as Triton's PyTorch backend takes it: tensors by position."""

BATCH_DELAY_US = 200_000
"""Long enough that requests sent together always meet in the queue, even on a loaded machine."""


def _write(repo, name: str, filename: str, save, **config: object):  # type: ignore[no-untyped-def]
    version_dir = repo / name / "1"
    version_dir.mkdir(parents=True)
    module = save(version_dir / filename)
    if config:
        (repo / name / "model.yaml").write_text(yaml.safe_dump(config))
    return module


@pytest.fixture(scope="module")
def torch_server(tmp_path_factory: pytest.TempPathFactory, serve_module: Servers) -> RunningServer:
    repo = tmp_path_factory.mktemp("torch")
    _write(
        repo,
        "mlp_pt2",
        "model.pt2",
        torch_models.save_exported,
        max_batch_size=16,
        dynamic_batching={"max_queue_delay_us": BATCH_DELAY_US, "preferred_batch_sizes": [8]},
    )
    _write(
        repo,
        "mlp_script",
        "model.pt",
        torch_models.save_torchscript,
        runtime="torch",
        inputs=[{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        outputs=[{"name": "logits", "datatype": "FP32", "shape": [-1, 3]}],
        parameters={"num_threads": 2},
    )
    _write(
        repo,
        "pickled",
        "model.pt",
        torch_models.save_pickled,
        inputs=[{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    )
    triton_style = repo / "triton_pt"
    (triton_style / "1").mkdir(parents=True)
    torch_models.save_torchscript(triton_style / "1" / "model.pt")
    (triton_style / "config.pbtxt").write_text(TRITON_PBTXT)
    folder = write_python_model(repo, "weights", SAFETENSORS_MODEL, {"max_batch_size": 8})
    save_file(torch_models.TinyMLP(seed=5).state_dict(), str(folder / "1" / "model.safetensors"))
    return serve_module(repo)


def test_exported_program_over_rest_and_grpc(torch_server: RunningServer) -> None:
    x = torch_models.rows(5)
    want = torch_models.reference(torch_models.TinyMLP(), x)
    client = triton.InferenceServerClient(torch_server.url)
    meta = client.get_model_metadata("mlp_pt2")
    assert meta["platform"] == "pytorch_libtorch"
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}]
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    got = client.infer("mlp_pt2", [tensor]).as_numpy("output")
    np.testing.assert_allclose(got, want, rtol=1e-6)

    grpc_client = triton_grpc.InferenceServerClient(torch_server.grpc_url)
    tensor_g = triton_grpc.InferInput("x", list(x.shape), "FP32")
    tensor_g.set_data_from_numpy(x)
    got_g = grpc_client.infer("mlp_pt2", [tensor_g]).as_numpy("output")
    np.testing.assert_allclose(got_g, want, rtol=1e-6)
    grpc_client.close()


def test_torchscript_with_declared_tensors(torch_server: RunningServer) -> None:
    x = torch_models.rows(3)
    body = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [3, 4], "data": x.ravel().tolist()}]
    }
    answer = httpx.post(f"{torch_server.http}/v2/models/mlp_script/infer", json=body)
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    assert output["name"] == "logits" and output["shape"] == [3, 3]
    want = torch_models.reference(torch_models.TinyMLP(), x)
    np.testing.assert_allclose(np.array(output["data"]).reshape(3, 3), want, rtol=1e-5)


def test_requests_sent_together_are_batched(torch_server: RunningServer) -> None:
    def one(i: int) -> np.ndarray:
        client = triton.InferenceServerClient(torch_server.url)
        x = torch_models.rows(1, seed=i)
        tensor = triton.InferInput("x", [1, 4], "FP32")
        tensor.set_data_from_numpy(x)
        got = client.infer("mlp_pt2", [tensor]).as_numpy("output")
        np.testing.assert_allclose(
            got, torch_models.reference(torch_models.TinyMLP(), x), rtol=1e-5, atol=1e-6
        )
        return got

    client = triton.InferenceServerClient(torch_server.url)
    before = client.get_inference_statistics("mlp_pt2")["model_stats"][0]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(8)))
    after = client.get_inference_statistics("mlp_pt2")["model_stats"][0]
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert inferences == 8
    assert executions < inferences  # merged into batches


def test_the_clients_mistakes_are_400_and_invalid_argument(torch_server: RunningServer) -> None:
    wrong_width = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 5], "data": [0.0] * 5}]
    }
    answer = httpx.post(f"{torch_server.http}/v2/models/mlp_pt2/infer", json=wrong_width)
    assert answer.status_code == 400 and "shape" in answer.json()["error"]
    wrong_type = {
        "inputs": [{"name": "x", "datatype": "BYTES", "shape": [1, 4], "data": ["a"] * 4}]
    }
    answer = httpx.post(f"{torch_server.http}/v2/models/mlp_script/infer", json=wrong_type)
    assert answer.status_code == 400 and "BYTES" in answer.json()["error"]
    grpc_client = triton_grpc.InferenceServerClient(torch_server.grpc_url)
    tensor = triton_grpc.InferInput("x", [2, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException) as caught:
        grpc_client.infer("mlp_pt2", [tensor])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    grpc_client.close()


def test_pickled_module_is_refused_without_trust(torch_server: RunningServer) -> None:
    rows = httpx.post(f"{torch_server.http}/v2/repository/index").json()
    pickled = next(r for r in rows if r["name"] == "pickled")
    assert pickled["state"] == "UNAVAILABLE"
    assert "pickled with torch.save" in pickled["reason"] and "trust: true" in pickled["reason"]


def test_safetensors_weights_through_the_python_runtime(torch_server: RunningServer) -> None:
    x = torch_models.rows(4)
    client = triton.InferenceServerClient(torch_server.url)
    tensor = triton.InferInput("x", [4, 4], "FP32")
    tensor.set_data_from_numpy(x)
    got = client.infer("weights", [tensor]).as_numpy("logits")
    np.testing.assert_allclose(
        got, torch_models.reference(torch_models.TinyMLP(seed=5), x), rtol=1e-6
    )
    assert torch.get_num_threads() >= 1


def test_triton_pytorch_repository_layout(torch_server: RunningServer) -> None:
    x = torch_models.rows(2)
    client = triton_grpc.InferenceServerClient(torch_server.grpc_url)
    tensor = triton_grpc.InferInput("INPUT__0", [2, 4], "FP32")
    tensor.set_data_from_numpy(x)
    got = client.infer("triton_pt", [tensor]).as_numpy("OUTPUT__0")
    np.testing.assert_allclose(got, torch_models.reference(torch_models.TinyMLP(), x), rtol=1e-5)
    assert client.get_model_metadata("triton_pt", as_json=True)["platform"] == "pytorch_libtorch"
    client.close()
