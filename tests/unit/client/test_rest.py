"""The REST requests the client builds, read by a real HTTP server started here (the standard
library's, tests/recorder.py), which records each request and answers what the test scripts:
the endpoints of the monitoring and experiment issues, the binary extension, errors, retries."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import orjson
import pytest

from modelserve.client import (
    AsyncClient,
    Client,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
    UnsupportedError,
)
from modelserve.codecs.v2_json import encode_infer_response
from modelserve.types import InferenceResponse, Tensor
from tests.recorder import Recorder, recording_server


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with recording_server() as rec:
        yield rec


IRIS_META = {
    "name": "iris",
    "versions": ["1"],
    "platform": "onnxruntime_onnx",
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}],
}


def _binary_answer(labels: list[int]) -> tuple[bytes, dict[str, str]]:
    data = np.array(labels, dtype=np.int64)
    response = InferenceResponse("iris", "1", (Tensor("label", "INT64", data.shape, data),))
    body, length = encode_infer_response(response, {"binary_data_output": True})
    assert length is not None
    return body, {"inference_header_content_length": str(length)}


def test_labels_request_and_answer(recorder: Recorder) -> None:
    recorder.answer("/v2/models/iris/labels", 200, {"accepted": 2, "unknown": 1})
    with Client(recorder.url, token="secret-token-0123456789") as client:
        answer = client.send_labels("iris", ["a", "b", "c"], np.array([0, 2, 1]))
    assert answer == {"accepted": 2, "unknown": 1}
    (seen,) = recorder.seen
    assert (seen.method, seen.path) == ("POST", "/v2/models/iris/labels")
    assert seen.json() == {
        "labels": [{"id": "a", "label": 0}, {"id": "b", "label": 2}, {"id": "c", "label": 1}]
    }
    assert seen.headers["authorization"] == "Bearer secret-token-0123456789"
    assert len(seen.headers["x-request-id"]) == 32
    with Client(recorder.url) as client, pytest.raises(InvalidInputError, match="2 ids but 1"):
        client.send_labels("iris", ["a", "b"], [1])


def test_monitoring_and_experiment_requests(recorder: Recorder) -> None:
    recorder.answer("/v2/models/iris/monitoring", 200, {"model": "iris", "versions": {}})
    recorder.answer("/v2/models/iris/experiment", 200, {"state": "running"})
    spec = {"candidates": [{"version": "1", "weight": 90}, {"version": "2", "weight": 10}]}
    with Client(recorder.url) as client:
        assert client.monitoring("iris") == {"model": "iris", "versions": {}}
        client.experiment("iris", spec)
        client.experiment("iris")
        client.experiment("iris", action="promote")
        client.experiment("iris", action="rollback")
        client.experiment("iris", action="stop")
        with pytest.raises(InvalidInputError, match="not both"):
            client.experiment("iris", spec, action="stop")
    calls = [(s.method, s.path, s.body and s.json()) for s in recorder.seen]
    path = "/v2/models/iris/experiment"
    assert calls == [
        ("GET", "/v2/models/iris/monitoring", b""),
        ("PUT", path, spec),
        ("GET", path, b""),
        ("PUT", path, {"action": "promote"}),
        ("PUT", path, {"action": "rollback"}),
        ("DELETE", path, b""),
    ]


def test_missing_extension_endpoints_are_unsupported_but_unknown_models_are_not(
    recorder: Recorder,
) -> None:
    recorder.answer("/v2/models/triton/monitoring", 404, b"Not Found", content_type="text/plain")
    recorder.answer("/v2/models/gone/monitoring", 404, {"error": "unknown model 'gone'"})
    with Client(recorder.url) as client:
        with pytest.raises(UnsupportedError, match="does not have modelserve's labels endpoint"):
            client.send_labels("iris", ["a"], [1])  # "no route for ..."
        with pytest.raises(UnsupportedError, match="monitoring endpoint"):
            client.monitoring("triton")
        with pytest.raises(NotFoundError, match="unknown model 'gone'"):
            client.monitoring("gone")


SERVER_META = {"name": "triton", "version": "2.50.0", "extensions": ["binary_tensor_data"]}


def test_binary_infer_request_and_answer(recorder: Recorder) -> None:
    recorder.answer("/v2", 200, SERVER_META)
    recorder.answer("/v2/models/iris", 200, IRIS_META)
    body, headers = _binary_answer([1, 2])
    recorder.answer("/v2/models/iris/infer", 200, body, **headers)
    with Client(recorder.url) as client:
        out = client.predict("iris", np.ones((2, 4)), id="my-id")
        assert client.predict("iris", np.ones((2, 4))).tolist() == [1, 2]
    assert out.tolist() == [1, 2] and out.model_version == "1" and out.id == "my-id"
    meta, server, infer, again = recorder.seen
    assert (meta.path, server.path, again.path) == ("/v2/models/iris", "/v2", infer.path)
    length = int(infer.headers["inference-header-content-length"])
    header = orjson.loads(infer.body[:length])
    assert header == {
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": [2, 4],
             "parameters": {"binary_data_size": 32}},
        ],
        "id": "my-id",
        "parameters": {"binary_data_output": True},
    }  # fmt: skip
    assert np.frombuffer(infer.body[length:], "<f4").tolist() == [1.0] * 8
    assert infer.headers["x-request-id"] == "my-id"


def test_an_id_the_server_could_not_keep_is_refused(recorder: Recorder) -> None:
    recorder.answer("/v2/models/iris", 200, IRIS_META)
    with Client(recorder.url) as client:
        for bad in ("é", "a\nb", "x" * 129, ""):
            with pytest.raises(InvalidInputError, match="printable ASCII"):
                client.predict("iris", np.ones((1, 4)), id=bad)
    assert recorder.seen == [], "nothing is sent"


def test_json_infer_request_and_version(recorder: Recorder) -> None:
    recorder.answer("/v2/models/iris/versions/2", 200, IRIS_META)
    answer = {
        "model_name": "iris",
        "model_version": "2",
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [1], "data": [2]}],
    }
    recorder.answer("/v2/models/iris/versions/2/infer", 200, answer)
    with Client(recorder.url, binary=False) as client:
        out = client.predict("iris", [[1, 2, 3, 4]], version=2, outputs=["label"])
    assert out == [{"label": 2}] and out.model_version == "2"
    body = recorder.seen[-1].json()
    assert body == {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}],
        "outputs": [{"name": "label"}],
    }
    assert recorder.seen[-1].headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("status", "server"),
    [
        (200, {"name": "kserve", "version": "0.13", "extensions": []}),
        (404, {"error": "no route for /v2"}),
        (401, {"error": "no token"}),
    ],
)
def test_json_tensors_for_a_server_without_the_binary_extension(
    recorder: Recorder, status: int, server: dict[str, object]
) -> None:
    """The default asks GET /v2 once; a server that does not list binary_tensor_data, or does
    not answer it, gets JSON tensors (every V2 server reads them)."""
    recorder.answer("/v2", status, server)
    recorder.answer("/v2/models/iris", 200, IRIS_META)
    answer = {
        "model_name": "iris",
        "model_version": "1",
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [2], "data": [2, 0]}],
    }
    recorder.answer("/v2/models/iris/infer", 200, answer)
    with Client(recorder.url, retries=0) as client:
        assert client.predict("iris", np.ones((2, 4))).tolist() == [2, 0]
        assert client.predict("iris", np.ones((2, 4))).tolist() == [2, 0]
    assert [s.path for s in recorder.seen].count("/v2") == 1
    for infer in recorder.seen[-2:]:
        assert infer.headers["content-type"] == "application/json"
        assert infer.json()["inputs"][0]["data"] == [1.0] * 8


def test_a_server_busy_at_the_first_question_is_asked_again(recorder: Recorder) -> None:
    recorder.answer("/v2", 503, {"error": "draining"}, retry_after="0")
    recorder.answer("/v2", 200, SERVER_META)
    recorder.answer("/v2/models/iris", 200, IRIS_META)
    body, headers = _binary_answer([1])
    recorder.answer("/v2/models/iris/infer", 200, body, **headers)
    with Client(recorder.url, retries=0) as client:
        with pytest.raises(UnavailableError, match="draining"):
            client.predict("iris", np.ones(4))
        assert int(client.predict("iris", np.ones(4))) == 1
    assert recorder.seen[-1].headers["content-type"] == "application/octet-stream"


async def test_async_client_asks_for_the_extension_too(recorder: Recorder) -> None:
    recorder.answer("/v2", 200, {"name": "kserve", "version": "0.13", "extensions": []})
    recorder.answer("/v2/models/iris", 200, IRIS_META)
    answer = {
        "model_name": "iris",
        "model_version": "1",
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [1], "data": [1]}],
    }
    recorder.answer("/v2/models/iris/infer", 200, answer)
    async with AsyncClient(recorder.url) as client:
        assert int(await client.predict("iris", np.ones(4))) == 1
    assert recorder.seen[-1].json()["inputs"][0]["data"] == [1.0] * 4


def test_load_sends_the_config_as_a_json_string(recorder: Recorder) -> None:
    recorder.answer("/v2/repository/models/iris/load", 200, {})
    with Client(recorder.url) as client:
        client.load("iris", {"max_batch_size": 8})
    assert recorder.seen[0].json() == {"parameters": {"config": '{"max_batch_size":8}'}}


def test_503_is_retried_after_retry_after_with_the_same_request_id(recorder: Recorder) -> None:
    recorder.answer("/v2/models/iris", 503, {"error": "busy"}, retry_after="0.3")
    recorder.answer("/v2/models/iris", 200, IRIS_META)
    with Client(recorder.url, retries=2) as client:
        started = time.monotonic()
        assert client.metadata("iris").name == "iris"
        assert time.monotonic() - started >= 0.3
    first, second = recorder.seen
    assert first.headers["x-request-id"] == second.headers["x-request-id"]


def test_503_without_retries_and_400_never_retried(recorder: Recorder) -> None:
    recorder.answer("/v2/models/iris", 503, {"error": "busy"}, retry_after="1")
    recorder.answer("/v2/models/bad", 400, {"error": "bad request"})
    with Client(recorder.url, retries=0) as client, pytest.raises(UnavailableError) as caught:
        client.metadata("iris")
    assert caught.value.retry_after == 1.0 and caught.value.status == 503
    with Client(recorder.url, retries=3) as client, pytest.raises(InvalidInputError):
        client.metadata("bad")
    assert [s.path for s in recorder.seen] == ["/v2/models/iris", "/v2/models/bad"]


async def test_async_client_builds_the_same_requests(recorder: Recorder) -> None:
    recorder.answer("/v2", 200, SERVER_META)
    recorder.answer("/v2/models/iris/labels", 200, {"accepted": 1, "unknown": 0})
    recorder.answer("/v2/models/iris", 200, IRIS_META)
    body, headers = _binary_answer([0])
    recorder.answer("/v2/models/iris/infer", 200, body, **headers)
    async with AsyncClient(recorder.url) as client:
        out = await client.predict("iris", np.ones(4))
        assert await client.send_labels("iris", [out.id], [0]) == {"accepted": 1, "unknown": 0}
    assert int(out) == 0
    assert recorder.seen[-2].headers["content-type"] == "application/octet-stream"
    assert recorder.seen[-1].json() == {"labels": [{"id": out.id, "label": 0}]}
