"""modelserve.client against a real server over each protocol: every input kind round-trips and
comes back in its own kind, every datatype survives, the model calls and errors behave as the
REST and gRPC APIs do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from modelserve.client import (
    AsyncClient,
    Client,
    ClientError,
    InvalidInputError,
    NotFoundError,
    Outputs,
    PredictedArray,
    Rows,
    UnsupportedError,
)
from modelserve.errors import ErrorCode
from tests.conftest import ALL_DATATYPES, RunningServer, Servers

PROTOCOLS = ("http", "grpc")
X = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]])


def url_of(server: RunningServer, protocol: str) -> str:
    return server.http if protocol == "http" else f"grpc://{server.grpc_url}"


@pytest.fixture(params=PROTOCOLS)
def client(request: pytest.FixtureRequest, server: RunningServer) -> Iterator[Client]:
    with Client(url_of(server, request.param)) as made:
        yield made


@pytest.fixture(scope="module")
def expected(server: RunningServer) -> dict[str, Any]:
    """iris_onnx's answer for X, asked in plain V2 JSON with httpx."""
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [3, 4], "data": X.tolist()}]}
    reply = httpx.post(f"{server.http}/v2/models/iris_onnx/infer", json=body).json()
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in reply["outputs"]}


def test_array_in_outputs_out(client: Client, expected: dict[str, Any]) -> None:
    out = client.predict("iris_onnx", X)
    assert isinstance(out, Outputs) and out.model_version == "1" and len(out.id) == 32
    assert out["label"].tolist() == expected["label"].tolist()
    np.testing.assert_allclose(out["probabilities"], expected["probabilities"], rtol=1e-6)
    one = client.predict("iris_onnx", X, outputs=["label"])
    assert isinstance(one, PredictedArray) and one.tolist() == expected["label"].tolist()
    single = client.predict("iris_onnx", X[2])
    assert single["label"] == expected["label"][2] and single["probabilities"].shape == (3,)


def test_dict_in_dict_out(client: Client, expected: dict[str, Any]) -> None:
    out = client.predict("iris_onnx", {"input": X.astype(np.float32)})
    assert isinstance(out, Outputs) and out["label"].tolist() == expected["label"].tolist()


def test_frame_in_frame_out(client: Client, expected: dict[str, Any]) -> None:
    frame = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"], index=["a", "b", "c"])
    out = client.predict("iris_onnx", frame)
    assert isinstance(out, pd.DataFrame) and list(out.index) == ["a", "b", "c"]
    assert out["label"].tolist() == expected["label"].tolist()
    np.testing.assert_allclose(out["probabilities[1]"], expected["probabilities"][:, 1], rtol=1e-6)
    assert out.model_version == "1" and len(out.id) == 32
    by_name = client.predict("iris_onnx", pd.DataFrame({"input": list(X)}))
    assert by_name["label"].tolist() == expected["label"].tolist()


def test_rows_and_records_in_rows_out(client: Client, expected: dict[str, Any]) -> None:
    out = client.predict("iris_onnx", X.tolist())
    assert isinstance(out, Rows) and [row["label"] for row in out] == expected["label"].tolist()
    assert out[0]["probabilities"] == pytest.approx(expected["probabilities"][0].tolist())
    records = [{"INPUT0": [1.0] * 16, "INPUT1": [float(i)] * 16} for i in range(3)]
    added = client.predict("python_add", records)
    assert [row["OUTPUT0"][0] for row in added] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("binary", [True, False])
def test_every_datatype_round_trips(server: RunningServer, binary: bool) -> None:
    with Client(server.http, binary=binary) as client:
        for datatype in ALL_DATATYPES:
            data = _sample(datatype)
            out = client.predict(f"echo_{datatype.lower()}", {"IN": data})
            assert out["OUT"].shape == data.shape, datatype
            assert out["OUT"].tolist() == data.tolist(), datatype


def _sample(datatype: str) -> np.ndarray[Any, Any]:
    if datatype == "BYTES":
        return np.array([[b"a", b"\xc3\xa9t\xc3\xa9"], [b"", b"xyz"]], dtype=object)
    if datatype == "BOOL":
        return np.array([[True, False], [False, True]])
    from modelserve.codecs.tensors import V2_TO_NUMPY

    dtype = V2_TO_NUMPY[datatype]
    info = np.iinfo(dtype) if dtype.kind in "iu" else np.finfo(dtype)
    return np.array([[info.min, info.max], [0, 1]], dtype=dtype)


def test_model_calls(client: Client) -> None:
    assert client.live() and client.ready() and client.ready("iris_onnx")
    assert client.ready("iris_onnx", version=1)
    meta = client.metadata("iris_onnx")
    assert meta.inputs[0].name == "input" and [o.name for o in meta.outputs] == [
        "label",
        "probabilities",
    ]
    models = {(m.name, m.version): m.state for m in client.models()}
    assert models[("iris_onnx", "1")] == "READY"
    assert "binary_tensor_data" in client.server_metadata().extensions


def test_errors(client: Client) -> None:
    with pytest.raises(NotFoundError) as missing:
        client.predict("no_such_model", X)
    assert missing.value.code is ErrorCode.NOT_FOUND and missing.value.request_id
    with pytest.raises(InvalidInputError, match="no input 'wrong'"):
        client.predict("iris_onnx", {"wrong": X})
    with pytest.raises(InvalidInputError, match="takes 4 features"):
        client.predict("iris_onnx", pd.DataFrame(X[:, :3]))
    with pytest.raises(ClientError, match="model control mode") as refused:
        client.load("iris_onnx")
    assert refused.value.code is ErrorCode.FAILED_PRECONDITION
    with pytest.raises(NotFoundError):
        client.ready("no_such_model")


def test_request_id_is_sent_and_returned(client: Client) -> None:
    out = client.predict("iris_onnx", X, id="order-1234")
    assert out.id == "order-1234"


def test_monitoring_calls_on_a_model_that_is_not_monitored(
    client: Client, request: pytest.FixtureRequest
) -> None:
    """Over REST the server says the model is not monitored (409, docs/monitoring.md); over
    gRPC the client says the call is REST-only."""
    if request.node.callspec.params["client"] == "grpc":
        with pytest.raises(UnsupportedError):
            client.monitoring("iris_onnx")
        return
    with pytest.raises(ClientError, match="is not monitored") as caught:
        client.monitoring("iris_onnx")
    assert caught.value.status == 409 and not isinstance(caught.value, UnsupportedError)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_async_client_runs_calls_concurrently(
    server: RunningServer, protocol: str, expected: dict[str, Any]
) -> None:
    async with AsyncClient(url_of(server, protocol)) as client:
        answers = await asyncio.gather(*(client.predict("iris_onnx", X) for _ in range(8)))
        assert await client.ready("iris_onnx")
    assert len({answer.id for answer in answers}) == 8
    for answer in answers:
        assert answer["label"].tolist() == expected["label"].tolist()


def test_a_connection_the_server_closed_while_idle_is_not_reused(
    serve: Servers, model_repo: Path
) -> None:
    """The server closes idle keep-alive connections after 0.3 s; the client's next call must
    open a new one rather than fail on the dead one (with no retry to hide it)."""
    running = serve(model_repo, load_models=("iris_onnx",), keepalive_timeout_s=0.3)
    with Client(running.http, retries=0) as client:
        first = client.predict("iris_onnx", X, outputs=["label"])
        time.sleep(1.2)
        assert client.predict("iris_onnx", X, outputs=["label"]).tolist() == first.tolist()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_load_and_unload(serve: Servers, model_repo: Path, protocol: str) -> None:
    running = serve(model_repo, model_control_mode="explicit", load_models=("echo_fp32",))
    with Client(url_of(running, protocol)) as client:
        assert not client.ready("iris_sklearn")
        client.load("iris_sklearn", {"max_batch_size": 4})
        assert client.ready("iris_sklearn")
        assert client.predict("iris_sklearn", X[:2], outputs=["label"]).shape == (2,)
        with pytest.raises(InvalidInputError, match="batch"):
            client.predict("iris_sklearn", np.tile(X, (2, 1)))
        client.unload("iris_sklearn")
        assert not client.ready("iris_sklearn")
