"""Triton model repositories: folders with config.pbtxt (as Triton's docs write them) served
unmodified to tritonclient over REST and gRPC; ``modelserve repo check`` and ``repo export``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.harness import Servers, run_cli
from tests.triton_repo import LABELS, densenet_scores, write_triton_repo


def test_a_triton_repository_serves_over_rest_and_grpc(tmp_path: Path, serve: Servers) -> None:
    running = serve(write_triton_repo(tmp_path, refused=True))
    rest = httpclient.InferenceServerClient(running.url)
    grpc = grpcclient.InferenceServerClient(running.grpc_url)
    image = np.random.default_rng(1).normal(size=(3, 4, 4)).astype(np.float32)
    for client, module in ((rest, httpclient), (grpc, grpcclient)):
        x = module.InferInput("data_0", [3, 4, 4], "FP32")
        x.set_data_from_numpy(image)
        scores = client.infer("densenet_onnx", [x]).as_numpy("fc6_1")
        assert scores.shape == (5,)
        np.testing.assert_allclose(scores, densenet_scores(image), rtol=1e-5)
        # Triton's image_client: the top 3 classes, labelled from label_filename
        top = module.InferRequestedOutput("fc6_1", class_count=3)
        classes = client.infer("densenet_onnx", [x], outputs=[top]).as_numpy("fc6_1")
        best = np.argsort(-scores)[:3]
        assert [c.decode() for c in classes] == [f"{scores[i]:f}:{i}:{LABELS[i]}" for i in best]
        a = np.arange(32, dtype=np.int32).reshape(2, 16)
        inputs = [module.InferInput(f"INPUT{i}", [2, 16], "INT32") for i in range(2)]
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(np.ones_like(a))
        for version in ("1", "2"):
            result = client.infer("simple", inputs, model_version=version)
            assert np.array_equal(result.as_numpy("OUTPUT0"), a + 1)
            assert np.array_equal(result.as_numpy("OUTPUT1"), a - 1)
        # the ensemble: simple twice, wired by tensor names as Triton wires it
        ensemble_inputs = [module.InferInput(f"IN{i}", [2, 16], "INT32") for i in range(2)]
        ensemble_inputs[0].set_data_from_numpy(a)
        ensemble_inputs[1].set_data_from_numpy(np.ones_like(a))
        result = client.infer("ensemble", ensemble_inputs)
        assert np.array_equal(result.as_numpy("OUT_SUM"), 2 * a)
        assert np.array_equal(result.as_numpy("OUT_DIFF"), 2 * np.ones_like(a))
    config = rest.get_model_config("densenet_onnx")
    assert config["input"][0]["dims"] == [3, 4, 4]
    assert config["input"][0]["reshape"] == {"shape": [1, 3, 4, 4]}
    assert config["output"][0]["label_filename"] == "densenet_labels.txt"
    assert config["instance_group"][0]["count"] == 2
    simple = grpc.get_model_config("simple", as_json=True)["config"]
    assert simple["max_batch_size"] == 8
    assert simple["dynamic_batching"]["preferred_batch_size"] == [4, 8]
    assert simple["dynamic_batching"]["default_queue_policy"]["max_queue_size"] == 32
    assert simple["parameters"]["note"]["string_value"] == "from Triton's docs"
    ensemble = rest.get_model_config("ensemble")
    assert ensemble["platform"] == "ensemble"
    steps = ensemble["ensemble_scheduling"]["step"]
    assert [(s["model_name"], s["model_version"]) for s in steps] == [("simple", 1), ("simple", -1)]
    assert steps[1]["input_map"] == {"INPUT0": "sum", "INPUT1": "diff"}
    index = {(m["name"], m.get("version", "")): m for m in rest.get_model_repository_index()}
    assert index[("simple", "1")]["state"] == index[("simple", "2")]["state"] == "READY"
    assert index[("ensemble", "1")]["state"] == "READY"
    assert "tensorrt_plan" in index[("plan", "")]["reason"]
    assert "TritonPythonModel" in index[("accumulate", "")]["reason"]
    refused = httpx.get(f"{running.http}/v2/models/plan/ready")
    assert refused.status_code in (400, 503)
    grpc.close()
    rest.close()


def test_an_unknown_field_refuses_the_model_naming_the_line(tmp_path: Path, serve: Servers) -> None:
    write_triton_repo(tmp_path)
    pbtxt = tmp_path / "simple" / "config.pbtxt"
    pbtxt.write_text(pbtxt.read_text() + "\nmax_batch_sise: 4\n")
    running = serve(tmp_path)
    index = httpx.post(f"{running.http}/v2/repository/index", json={}).json()
    reason = next(m["reason"] for m in index if m["name"] == "simple")
    assert "simple/config.pbtxt" in reason and "max_batch_sise" in reason
    assert str(tmp_path) not in reason


def test_repo_check_prints_mapped_ignored_and_unsupported(tmp_path: Path) -> None:
    write_triton_repo(tmp_path, refused=True)
    result = run_cli(["repo", "check", str(tmp_path)])
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert "densenet_onnx: config.pbtxt: ok" in lines
    densenet = result.stdout.split("densenet_onnx:")[1].split("ensemble:")[0]
    ensemble = result.stdout.split("ensemble: config.pbtxt: ok")[1].split("plan:")[0]
    assert "ensemble_scheduling.step.input_map" in ensemble
    assert "input.reshape" in densenet and "output.label_filename" in densenet
    assert "instance_group.kind (instances run on the CPU)" in densenet
    assert "input.format" in densenet
    assert any(
        line.startswith("plan: config.pbtxt: refused:") and "tensorrt_plan" in line
        for line in lines
    )
    assert "simple: config.pbtxt: ok" in lines
    assert "Traceback" not in result.stderr


def test_repo_export_writes_a_config_pbtxt_that_serves_the_same(
    model_repo: Path, tmp_path: Path, serve: Servers
) -> None:
    shutil.copytree(model_repo / "iris_onnx", tmp_path / "iris_onnx")
    shutil.copytree(model_repo / "python_add", tmp_path / "python_add")
    result = run_cli(["repo", "export", "--triton", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    assert "python_add" in result.stderr  # skipped: not ONNX
    exported = (tmp_path / "iris_onnx" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in exported and "max_batch_size: 64" in exported
    again = run_cli(["repo", "export", "--triton", str(tmp_path)])
    assert again.returncode == 2 and "--force" in again.stderr
    (tmp_path / "iris_onnx" / "model.yaml").unlink()
    shutil.rmtree(tmp_path / "python_add")
    check = run_cli(["repo", "check", str(tmp_path)])
    assert check.returncode == 0 and "iris_onnx: config.pbtxt: ok" in check.stdout
    running = serve(tmp_path)
    meta = httpx.get(f"{running.http}/v2/models/iris_onnx").json()
    assert meta["platform"] == "onnxruntime_onnx"
    assert [i["shape"] for i in meta["inputs"]] == [[-1, 4]]


def test_triton_wording_and_triton_json_in_the_load_api(tmp_path: Path, serve: Servers) -> None:
    running = serve(write_triton_repo(tmp_path, refused=True), model_control_mode="explicit")
    rest = httpclient.InferenceServerClient(running.url)
    grpc = grpcclient.InferenceServerClient(running.grpc_url)
    override = json.dumps(
        {
            "backend": "onnxruntime",
            "max_batch_size": 4,
            "input": [
                {"name": f"INPUT{i}", "data_type": "TYPE_INT32", "dims": [16]} for i in range(2)
            ],
            "output": [
                {"name": f"OUTPUT{i}", "data_type": "TYPE_INT32", "dims": [16]} for i in range(2)
            ],
        }
    )
    for client in (rest, grpc):
        with pytest.raises(InferenceServerException) as unknown:
            client.get_model_metadata("nope")
        assert "Request for unknown model: 'nope' is not found" in str(unknown.value)
        with pytest.raises(InferenceServerException) as failed:
            client.load_model("plan")
        assert "failed to load 'plan'" in str(failed.value)
        client.load_model("simple", config=override)
    assert rest.get_model_config("simple")["max_batch_size"] == 4
    with pytest.raises(InferenceServerException, match="version 7 is not found"):
        rest.get_model_metadata("simple", "7")
    grpc.close()
    rest.close()
