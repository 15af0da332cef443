"""The response cache against a real server: hits answered without running the model, counted
in Triton's statistics (tritonclient, REST and gRPC) and in Prometheus, keyed by inputs and
requested outputs, bounded, off for non-deterministic models, on pipelines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import yaml

from tests.conftest import Servers
from tests.harness import RunningServer, write_python_model

DOUBLE = """
import numpy as np

class Model:
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    outputs = [
        {"name": "y", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "total", "datatype": "FP32", "shape": [-1, 1]},
    ]

    def predict(self, inputs):
        x = inputs["x"]
        return {"y": x * 2, "total": x.sum(axis=1, keepdims=True)}
"""
X = np.array([[1, 2, 3, 4]], dtype=np.float32)


def write_double(repo: Path, name: str = "double", **config: Any) -> None:
    base = {"max_batch_size": 8, "response_cache": {"max_mb": 1}}
    write_python_model(repo, name, DOUBLE, {**base, **config})


def infer(
    server: RunningServer, model: str, x: np.ndarray, outputs: list[str] | None = None
) -> Any:
    body: dict[str, Any] = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.tolist()}]
    }
    if outputs is not None:
        body["outputs"] = [{"name": name} for name in outputs]
    reply = httpx.post(f"{server.http}/v2/models/{model}/infer", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def stats(server: RunningServer, model: str) -> dict[str, Any]:
    return httpx.get(f"{server.http}/v2/models/{model}/stats").json()["model_stats"][0]  # type: ignore[no-any-return]


def test_identical_requests_are_answered_from_the_cache(serve: Servers, tmp_path: Path) -> None:
    write_double(tmp_path)
    server = serve(tmp_path)
    http = httpclient.InferenceServerClient(server.url)
    tensor = httpclient.InferInput("x", [1, 4], "FP32")
    tensor.set_data_from_numpy(X, binary_data=True)
    answers = [http.infer("double", [tensor]).as_numpy("y") for _ in range(3)]
    for y in answers:
        np.testing.assert_array_equal(y, X * 2)

    doc = http.get_inference_statistics("double")["model_stats"][0]
    figures = doc["inference_stats"]
    assert figures["cache_hit"]["count"] == 2 and figures["cache_hit"]["ns"] > 0
    assert figures["cache_miss"]["count"] == 1 and figures["cache_miss"]["ns"] > 0
    assert figures["success"]["count"] == 3 and figures["queue"]["count"] == 3
    assert figures["compute_infer"]["count"] == 1 and figures["compute_input"]["count"] == 1
    assert doc["inference_count"] == 1 and doc["execution_count"] == 1  # hits do not run
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    over_grpc = grpc.get_inference_statistics("double", as_json=True)["model_stats"][0]
    assert int(over_grpc["inference_stats"]["cache_hit"]["count"]) == 2
    assert int(over_grpc["inference_stats"]["cache_miss"]["count"]) == 1

    # other inputs, or other requested outputs, are other answers
    infer(server, "double", X + 1)
    only_total = infer(server, "double", X, outputs=["total"])
    assert [o["name"] for o in only_total["outputs"]] == ["total"]
    assert infer(server, "double", X, outputs=["total"])["outputs"] == only_total["outputs"]
    figures = stats(server, "double")["inference_stats"]
    assert (figures["cache_hit"]["count"], figures["cache_miss"]["count"]) == (3, 3)

    metrics = httpx.get(f"{server.http}/metrics").text
    assert 'modelserve_response_cache_hits_total{model="double",version="1"} 3.0' in metrics
    assert 'modelserve_response_cache_misses_total{model="double",version="1"} 3.0' in metrics
    assert 'modelserve_response_cache_entries{model="double",version="1"} 3.0' in metrics
    config = http.get_model_config("double")
    assert config["response_cache"] == {"enable": True}


def test_the_cache_is_bounded_by_its_size(serve: Servers, tmp_path: Path) -> None:
    # each answer is about 300 bytes: three fit in 0.001 MiB
    write_double(tmp_path, response_cache={"max_mb": 0.001})
    server = serve(tmp_path)
    for i in range(5):
        infer(server, "double", X + i)
    metrics = httpx.get(f"{server.http}/metrics").text
    assert 'modelserve_response_cache_entries{model="double",version="1"} 3.0' in metrics
    infer(server, "double", X + 4)  # recent: still there
    infer(server, "double", X)  # the oldest: evicted
    figures = stats(server, "double")["inference_stats"]
    assert (figures["cache_hit"]["count"], figures["cache_miss"]["count"]) == (1, 6)


def test_a_non_deterministic_model_cannot_cache(serve: Servers, tmp_path: Path) -> None:
    write_double(tmp_path, deterministic=False)
    server = serve(tmp_path)
    rows = httpx.post(f"{server.http}/v2/repository/index").json()
    (row,) = [r for r in rows if r["name"] == "double"]
    assert row["state"] == "UNAVAILABLE"
    assert "response_cache needs a deterministic model" in row["reason"]


def test_a_server_total_of_zero_turns_caching_off(serve: Servers, tmp_path: Path) -> None:
    write_double(tmp_path)
    server = serve(tmp_path, response_cache_mb=0)
    for _ in range(2):
        infer(server, "double", X)
    figures = stats(server, "double")["inference_stats"]
    assert figures["cache_hit"]["count"] == 0 and figures["cache_miss"]["count"] == 0
    assert "response_cache" not in httpx.get(f"{server.http}/v2/models/double/config").json()


def pipeline(repo: Path, step: str) -> None:
    folder = repo / "pipe"
    (folder / "1").mkdir(parents=True)
    document = {
        "runtime": "pipeline",
        "max_batch_size": 8,
        "response_cache": {"max_mb": 1},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "top", "datatype": "INT64", "shape": [-1, 1]}],
        "steps": [
            {"model": step, "input_map": {"x": "x"}, "output_map": {"y": "doubled"}},
            {
                "transform": "topk",
                "parameters": {"k": 1},
                "input_map": {"scores": "doubled"},
                "output_map": {"indices": "top"},
            },
        ],
    }
    (folder / "model.yaml").write_text(yaml.safe_dump(document))


@pytest.mark.parametrize("deterministic", [True, False])
def test_a_pipeline_caches_only_while_its_steps_are_deterministic(
    serve: Servers, tmp_path: Path, deterministic: bool
) -> None:
    write_python_model(
        tmp_path, "step", DOUBLE, {"max_batch_size": 8, "deterministic": deterministic}
    )
    pipeline(tmp_path, "step")
    server = serve(tmp_path, model_control_mode="explicit", load_models=("pipe",))
    for _ in range(3):
        assert infer(server, "pipe", X)["outputs"][0]["data"] == [3]
    figures = stats(server, "pipe")["inference_stats"]
    step_runs = stats(server, "step")["inference_count"]
    if deterministic:
        assert (figures["cache_hit"]["count"], figures["cache_miss"]["count"]) == (2, 1)
        assert step_runs == 1
        # a new version of the step makes the pipeline's answers stale: they are dropped
        httpx.post(f"{server.http}/v2/repository/models/step/unload").raise_for_status()
        httpx.post(f"{server.http}/v2/repository/models/step/load").raise_for_status()
        infer(server, "pipe", X)
        assert stats(server, "pipe")["inference_stats"]["cache_miss"]["count"] == 2
    else:
        assert (figures["cache_hit"]["count"], figures["cache_miss"]["count"]) == (0, 0)
        assert step_runs == 3
