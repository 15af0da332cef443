"""KServe's single-model layout: ``modelserve serve /mnt/models --model-name NAME`` serves the
folder itself as one model, with the artifact directly in it (version 1) or version folders;
tritonclient over REST and gRPC, as KServe's V2 protocol clients reach it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.harness import CliProcess, Servers

IRIS_ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]], dtype=np.float32)


def infer_labels(
    client: httpclient.InferenceServerClient | grpcclient.InferenceServerClient,
    module: object,
    name: str,
) -> np.ndarray:
    x = module.InferInput("input", list(IRIS_ROWS.shape), "FP32")  # type: ignore[attr-defined]
    x.set_data_from_numpy(IRIS_ROWS)
    return client.infer(name, [x]).as_numpy("label")  # type: ignore[no-any-return]


def test_artifact_in_the_folder_serves_over_rest_and_grpc(
    model_repo: Path, tmp_path: Path, serve: Servers
) -> None:
    shutil.copy(model_repo / "iris_onnx" / "1" / "model.onnx", tmp_path / "model.onnx")
    running = serve(tmp_path, model_name="iris")
    rest = httpclient.InferenceServerClient(running.url)
    grpc = grpcclient.InferenceServerClient(running.grpc_url)
    assert rest.is_model_ready("iris") and grpc.is_model_ready("iris", "1")
    labels = infer_labels(rest, httpclient, "iris")
    assert labels.shape == (2,)
    assert np.array_equal(infer_labels(grpc, grpcclient, "iris"), labels)
    assert [m["name"] for m in rest.get_model_repository_index()] == ["iris"]
    missing = httpx.get(f"{running.http}/v2/models/model")
    assert missing.status_code == 404 and "unknown model" in missing.json()["error"]
    grpc.close()
    rest.close()


def test_poll_mode_reloads_a_replaced_artifact(
    model_repo: Path, tmp_path: Path, serve: Servers
) -> None:
    shutil.copy(model_repo / "iris_onnx" / "1" / "model.onnx", tmp_path / "model.onnx")
    running = serve(tmp_path, model_name="m", model_control_mode="poll", repository_poll_secs=0.2)
    url = f"{running.http}/v2/models/m"
    assert httpx.get(url).json()["platform"] == "onnxruntime_onnx"
    (tmp_path / "model.onnx").unlink()
    shutil.copy(model_repo / "mlp_onnx" / "1" / "model.onnx", tmp_path / "model.onnx")
    deadline = time.monotonic() + 15
    while httpx.get(url).json()["inputs"][0]["shape"] != [-1, 256]:
        assert time.monotonic() < deadline, "the replaced artifact is served after two polls"
        time.sleep(0.1)


def test_command_line_flag_and_environment(model_repo: Path, tmp_path: Path) -> None:
    shutil.copytree(model_repo / "iris_sklearn" / "1", tmp_path / "1")
    args = ["serve", str(tmp_path), "--http-port", "0", "--grpc-port", "0"]
    with CliProcess(args, env={"MODELSERVE_MODEL_NAME": "iris-v2"}) as proc:
        port = proc.wait_ready()
        body = httpx.get(f"http://127.0.0.1:{port}/v2/models/iris-v2").json()
        assert body["versions"] == ["1"] and body["platform"] == "sklearn"
        proc.signal()
        assert proc.wait() == 0
    with CliProcess([*args, "--model-name", "../x"]) as bad:
        assert bad.wait() == 2
        assert "not a valid model name" in bad.log
