"""Pipelines against a real server: steps that are python models and transforms, tritonclient
over REST and gRPC, statistics and metrics of the pipeline and of its step models, a failing
step, and the loading order (a pipeline is READY only while its step models are)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import yaml
from tritonclient.utils import InferenceServerException

from tests.conftest import Servers
from tests.harness import RunningServer, write_python_model

SCALE = """
import numpy as np

class Model:
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    outputs = [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]

    def predict(self, inputs):
        x = inputs["x"]
        if (x < 0).any():
            raise ValueError("negative values are not parts")
        return {"y": x * 2}
"""

PIPE: dict[str, Any] = {
    "runtime": "pipeline",
    "max_batch_size": 8,
    "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [
        {"name": "best", "datatype": "INT64", "shape": [-1, 2]},
        {"name": "best_scores", "datatype": "FP32", "shape": [-1, 2]},
        {"name": "alert", "datatype": "BOOL", "shape": [-1, 4]},
    ],
    "steps": [
        {"model": "scale", "input_map": {"x": "features"}, "output_map": {"y": "scaled"}},
        {
            "name": "top2",
            "transform": "topk",
            "parameters": {"k": 2},
            "input_map": {"scores": "scaled"},
            "output_map": {"indices": "best", "scores": "best_scores"},
        },
        {
            "transform": "threshold",
            "parameters": {"threshold": 5},
            "input_map": {"values": "scaled"},
            "output_map": {"mask": "alert"},
        },
    ],
}
FEATURES = np.array([[1, 4, 2, 3], [0.5, 0.25, 3, 1]], dtype=np.float32)


def write_pipeline(repo: Path, name: str = "pipe", **changes: Any) -> None:
    folder = repo / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "model.yaml").write_text(yaml.safe_dump({**PIPE, **changes}, sort_keys=False))


def write_scale(repo: Path) -> None:
    write_python_model(repo, "scale", SCALE, {"max_batch_size": 8, "dynamic_batching": {}})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write_scale(tmp_path)
    write_pipeline(tmp_path)
    return tmp_path


def index(server: RunningServer) -> dict[str, dict[str, str]]:
    rows = httpx.post(f"{server.http}/v2/repository/index").json()
    return {r["name"]: r for r in rows}


def stats(server: RunningServer, model: str) -> dict[str, Any]:
    doc = httpx.get(f"{server.http}/v2/models/{model}/stats").json()
    return doc["model_stats"][0]  # type: ignore[no-any-return]


def wait_for(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.05)


def test_a_pipeline_answers_tritonclient_over_rest_and_grpc(serve: Servers, repo: Path) -> None:
    server = serve(repo)
    http = httpclient.InferenceServerClient(server.url)
    tensor = httpclient.InferInput("features", [2, 4], "FP32")
    tensor.set_data_from_numpy(FEATURES, binary_data=True)
    result = http.infer("pipe", [tensor])
    np.testing.assert_array_equal(result.as_numpy("best"), [[1, 3], [2, 3]])
    np.testing.assert_allclose(result.as_numpy("best_scores"), [[8, 6], [6, 2]])
    np.testing.assert_array_equal(result.as_numpy("alert"), FEATURES * 2 >= 5)
    metadata = http.get_model_metadata("pipe")
    assert metadata["platform"] == "ensemble"
    assert [o["name"] for o in metadata["outputs"]] == ["best", "best_scores", "alert"]

    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("features", [2, 4], "FP32")
    tensor.set_data_from_numpy(FEATURES)
    answer = grpc.infer("pipe", [tensor], outputs=[grpcclient.InferRequestedOutput("best")])
    np.testing.assert_array_equal(answer.as_numpy("best"), [[1, 3], [2, 3]])
    assert answer.as_numpy("alert") is None
    config = grpc.get_model_config("pipe", as_json=True)["config"]
    assert config["platform"] == "ensemble"
    (step,) = config["ensemble_scheduling"]["step"]
    assert step["model_name"] == "scale" and step["model_version"] == "-1"
    assert step["input_map"] == {"x": "features"} and step["output_map"] == {"y": "scaled"}
    assert '"transform":"topk"' in config["parameters"]["pipeline"]["string_value"]
    rest_config = http.get_model_config("pipe")
    assert rest_config["ensemble_scheduling"]["step"][0]["model_version"] == -1

    # each request counted once for the pipeline, and once as a request to its step model
    for model in ("pipe", "scale"):
        inference = stats(server, model)
        assert inference["inference_stats"]["success"]["count"] == 2
        assert inference["inference_count"] == 4  # rows
    metrics = httpx.get(f"{server.http}/metrics").text
    for model in ("pipe", "scale"):
        line = (
            f'modelserve_inference_requests_total{{model="{model}",outcome="success",'
            'version="1"} 2.0'
        )
        assert line in metrics


def test_a_failing_step_fails_the_request_with_the_step_named(serve: Servers, repo: Path) -> None:
    server = serve(repo)
    bad = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4],
                       "data": [1, -1, 2, 3]}]}  # fmt: skip
    reply = httpx.post(f"{server.http}/v2/models/pipe/infer", json=bad)
    assert reply.status_code == 400
    assert reply.json()["error"] == (
        "step 'scale' (model 'scale'): model 'scale' rejected the input: "
        "negative values are not parts"
    )
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("features", [1, 4], "FP32")
    tensor.set_data_from_numpy(-FEATURES[:1])
    with pytest.raises(InferenceServerException, match="step 'scale'") as caught:
        grpc.infer("pipe", [tensor])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert stats(server, "pipe")["inference_stats"]["fail"]["count"] == 2
    assert stats(server, "scale")["inference_stats"]["fail"]["count"] == 2


def test_explicit_mode_loads_the_steps_and_follows_their_unload(serve: Servers, repo: Path) -> None:
    server = serve(repo, model_control_mode="explicit", load_models=("pipe",))
    rows = index(server)
    assert rows["pipe"]["state"] == "READY" and rows["scale"]["state"] == "READY"
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4],
                        "data": [1, 2, 3, 4]}]}  # fmt: skip
    url = f"{server.http}/v2/models/pipe/infer"
    assert httpx.post(url, json=body).status_code == 200

    assert httpx.post(f"{server.http}/v2/repository/models/scale/unload").status_code == 200
    row = index(server)["pipe"]
    assert row["state"] == "UNAVAILABLE"
    assert row["reason"] == (
        "step 'scale' needs model 'scale': model 'scale' has no READY version "
        "(version 1 UNAVAILABLE: unloaded)"
    )
    refused = httpx.post(url, json=body)
    assert refused.status_code == 503 and "step 'scale' needs model 'scale'" in refused.text
    assert httpx.get(f"{server.http}/v2/models/pipe/ready").status_code == 503

    assert httpx.post(f"{server.http}/v2/repository/models/scale/load").status_code == 200
    assert index(server)["pipe"]["state"] == "READY"
    assert httpx.post(url, json=body).status_code == 200
    # unloading the pipeline leaves its step serving
    assert httpx.post(f"{server.http}/v2/repository/models/pipe/unload").status_code == 200
    assert index(server)["scale"]["state"] == "READY"


def test_a_pipeline_waits_for_a_step_model_that_arrives_later(
    serve: Servers, tmp_path: Path
) -> None:
    write_pipeline(tmp_path)
    server = serve(tmp_path, model_control_mode="poll", repository_poll_secs=0.1)
    row = index(server)["pipe"]
    assert row["state"] == "UNAVAILABLE"
    assert (
        row["reason"]
        == "step 'scale' needs model 'scale': Request for unknown model: 'scale' is not found"
    )
    staging = tmp_path.parent / f"{tmp_path.name}-staging"
    write_scale(staging)
    shutil.move(staging / "scale", tmp_path / "scale")
    wait_for(lambda: index(server)["pipe"]["state"] == "READY")
    assert index(server)["scale"]["state"] == "READY"
    shutil.rmtree(tmp_path / "scale")
    wait_for(lambda: index(server)["pipe"]["state"] == "UNAVAILABLE")


def test_a_step_model_that_does_not_fit_the_wiring_keeps_it_unavailable(
    serve: Servers, repo: Path
) -> None:
    write_pipeline(
        repo,
        "wrong",
        inputs=[{"name": "features", "datatype": "FP64", "shape": [-1, 4]}],
    )
    server = serve(repo)
    row = index(server)["wrong"]
    assert row["state"] == "UNAVAILABLE"
    assert row["reason"] == (
        "step 'scale' (model 'scale'): input 'x' is FP32, but tensor 'features' is FP64"
    )
    assert index(server)["pipe"]["state"] == "READY"


def test_pipelines_on_a_cycle_are_unavailable(serve: Servers, tmp_path: Path) -> None:
    loop = {
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "best", "datatype": "INT64", "shape": [-1, 2]}],
    }
    for name, other in (("ping", "pong"), ("pong", "ping")):
        write_pipeline(
            tmp_path,
            name,
            **loop,
            steps=[
                {"model": other, "input_map": {"features": "features"},
                 "output_map": {"best": "best"}},
            ],
        )  # fmt: skip
    server = serve(tmp_path)
    rows = index(server)
    for name in ("ping", "pong"):
        assert rows[name]["state"] == "UNAVAILABLE"
        assert rows[name]["reason"].startswith("dependency cycle: ")


def test_a_raw_body_needs_a_model_with_one_bytes_input(serve: Servers, repo: Path) -> None:
    server = serve(repo)
    reply = httpx.post(f"{server.http}/v2/models/pipe/infer", content=b"\xff\xd8\xff\xe0 jpeg")
    assert reply.status_code == 400
    assert reply.json()["error"] == (
        "the body is not a JSON inference request; a raw body (a file posted as it is) is the "
        "input only of a model with one BYTES input, and model 'pipe' has inputs: "
        "features (FP32)"
    )
