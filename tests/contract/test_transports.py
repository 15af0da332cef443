"""One set of cases over both transports: REST (tritonclient.http) and gRPC (tritonclient.grpc)
must answer the same requests with the same results and the same ErrorCode."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as triton_model_config
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from modelserve.errors import STATUS_TABLE, ErrorCode
from tests.conftest import ALL_DATATYPES, RunningServer

TRANSPORTS = ("rest", "grpc")


class Client:
    """tritonclient.http or tritonclient.grpc behind one small interface."""

    def __init__(self, transport: str, server: RunningServer) -> None:
        self.transport = transport
        self.module: Any = httpclient if transport == "rest" else grpcclient
        url = server.url if transport == "rest" else server.grpc_url
        self.raw: Any = self.module.InferenceServerClient(url)

    def tensor(self, name: str, array: np.ndarray, shape: list[int] | None = None) -> Any:
        """An input holding ``array``; ``shape`` overrides the declared shape (to lie)."""
        tensor = self.module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        if shape is not None:
            tensor.set_shape(shape)
        return tensor

    def infer(
        self,
        model: str,
        inputs: dict[str, np.ndarray] | list[Any],
        outputs: list[str] | None = None,
        request_id: str = "",
    ) -> Any:
        tensors = (
            [self.tensor(name, array) for name, array in inputs.items()]
            if isinstance(inputs, dict)
            else inputs
        )
        requested = (
            None if outputs is None else [self.module.InferRequestedOutput(o) for o in outputs]
        )
        return self.raw.infer(model, tensors, outputs=requested, request_id=request_id)

    def output_names(self, result: Any) -> list[str]:
        response = result.get_response()
        if self.transport == "rest":
            return [out["name"] for out in response["outputs"]]
        return [out.name for out in response.outputs]

    def response_id(self, result: Any) -> str:
        response = result.get_response()
        return str(response.get("id", "")) if self.transport == "rest" else str(response.id)


def error_codes(transport: str, exc: InferenceServerException) -> set[ErrorCode]:
    """The ErrorCodes whose status (per the one table) is the one the client saw."""
    status = str(exc.status())
    if transport == "rest":
        return {code for code, (http, _) in STATUS_TABLE.items() if str(http) == status}
    name = status.removeprefix("StatusCode.")
    return {code for code, (_, grpc_name) in STATUS_TABLE.items() if grpc_name == name}


@pytest.fixture(scope="module")
def clients(server: RunningServer) -> Iterator[dict[str, Client]]:
    made = {transport: Client(transport, server) for transport in TRANSPORTS}
    yield made
    for client in made.values():
        client.raw.close()
    # tritonclient.http's __del__ closes again and fails in any thread but this one: collect
    # it here, not whenever a later test's server thread happens to trigger the collector.
    made.clear()
    gc.collect()


@pytest.fixture(params=TRANSPORTS)
def client(request: pytest.FixtureRequest, clients: dict[str, Client]) -> Client:
    return clients[request.param]


def iris_batch(rows: int = 3) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(rows, 4)).astype(np.float32)


def add_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    return {
        "INPUT0": rng.normal(size=(2, 16)).astype(np.float32),
        "INPUT1": rng.normal(size=(2, 16)).astype(np.float32),
    }


# ---- success ---------------------------------------------------------------------------------


def test_iris_onnx(client: Client) -> None:
    result = client.infer("iris_onnx", {"input": iris_batch()})
    assert client.output_names(result) == ["label", "probabilities"]
    labels, probabilities = result.as_numpy("label"), result.as_numpy("probabilities")
    assert labels.dtype == np.int64 and labels.shape == (3,)
    assert set(labels.tolist()) <= {0, 1, 2}
    assert probabilities.dtype == np.float32 and probabilities.shape == (3, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(labels, probabilities.argmax(axis=1))


@pytest.mark.parametrize(("model", "labelled"), [("iris_onnx", False), ("iris_sklearn", True)])
def test_classification_extension(client: Client, model: str, labelled: bool) -> None:
    rows = iris_batch().astype(np.float32 if model == "iris_onnx" else np.float64)
    scores = client.infer(model, {"input": rows}).as_numpy("probabilities")
    wanted = [client.module.InferRequestedOutput("probabilities", class_count=2)]
    result = client.raw.infer(model, [client.tensor("input", rows)], outputs=wanted)
    top = result.as_numpy("probabilities")
    assert top.shape == (3, 2)
    for answered, row in zip(top, scores, strict=True):
        best = np.argsort(-row, kind="stable")[:2]
        expected = [f"{row[i]:f}:{i}" + (f":{i}" if labelled else "") for i in best]
        assert [item.decode() for item in answered] == expected
    assert "classification" in client.raw.get_server_metadata(**_as_json(client))["extensions"]


def _as_json(client: Client) -> dict[str, bool]:
    return {"as_json": True} if client.transport == "grpc" else {}


def test_python_add(client: Client) -> None:
    inputs = add_inputs()
    result = client.infer("python_add", inputs)
    assert client.output_names(result) == ["OUTPUT0", "OUTPUT1"]
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), inputs["INPUT0"] + inputs["INPUT1"])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), inputs["INPUT0"] - inputs["INPUT1"])


@pytest.mark.parametrize("wanted", [["OUTPUT1"], ["OUTPUT1", "OUTPUT0"], ["OUTPUT0"]])
def test_requested_output_subset(client: Client, wanted: list[str]) -> None:
    inputs = add_inputs()
    result = client.infer("python_add", inputs, outputs=wanted)
    assert client.output_names(result) == wanted
    if "OUTPUT0" not in wanted:
        assert result.as_numpy("OUTPUT0") is None
    expected = inputs["INPUT0"] - inputs["INPUT1"]
    if "OUTPUT1" in wanted:
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), expected)


def test_request_id_is_echoed(client: Client) -> None:
    result = client.infer("python_add", add_inputs(), request_id="req-42/é")
    assert client.response_id(result) == "req-42/é"


def test_same_answer_over_both_transports(clients: dict[str, Client]) -> None:
    batch = iris_batch(5)
    rest = clients["rest"].infer("iris_onnx", {"input": batch})
    grpc = clients["grpc"].infer("iris_onnx", {"input": batch})
    for name in ("label", "probabilities"):
        np.testing.assert_array_equal(rest.as_numpy(name), grpc.as_numpy(name))


def _datatype_values(datatype: str) -> np.ndarray:
    """A [2, 3] array of ``datatype`` with its awkward values: limits, non-ASCII text..."""
    if datatype == "BYTES":
        items = [
            b"plain",
            "héllo wörld".encode(),
            "日本語".encode(),
            b"",
            b"\x00\xff\x01",
            b"x" * 300,
        ]
        array = np.empty(6, dtype=object)
        array[:] = items
        return array.reshape(2, 3)
    if datatype == "BOOL":
        return np.array([[True, False, True], [False, False, True]])
    dtype = np.dtype(
        {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}.get(datatype)
        or datatype.lower()
    )
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.array([[info.min, info.max, 0], [1, info.max - 1, info.min + 1]], dtype=dtype)
    finfo = np.finfo(dtype)
    return np.array([[finfo.max, finfo.min, finfo.tiny], [-0.0, np.inf, 1.0 / 3.0]], dtype=dtype)


@pytest.mark.parametrize("datatype", ALL_DATATYPES)
def test_every_datatype_round_trips(client: Client, datatype: str) -> None:
    array = _datatype_values(datatype)
    result = client.infer(f"echo_{datatype.lower()}", {"IN": array})
    out = result.as_numpy("OUT")
    assert out.shape == array.shape
    if datatype == "BYTES":
        assert out.tolist() == array.tolist()
    else:
        assert out.dtype == array.dtype
        np.testing.assert_array_equal(out, array)


def test_datatype_limits_survive(client: Client) -> None:
    uint64 = np.array([[np.iinfo(np.uint64).max]], dtype=np.uint64)
    assert client.infer("echo_uint64", {"IN": uint64}).as_numpy("OUT")[0, 0] == 2**64 - 1
    int8 = np.array([[-128]], dtype=np.int8)
    assert client.infer("echo_int8", {"IN": int8}).as_numpy("OUT")[0, 0] == -128


# ---- errors ----------------------------------------------------------------------------------


def _unknown_model(c: Client) -> Any:
    return c.infer("no_such_model", {"input": iris_batch()})


def _unknown_input(c: Client) -> Any:
    return c.infer("python_add", {**add_inputs(), "BOGUS": np.zeros((2, 16), np.float32)})


def _wrong_datatype(c: Client) -> Any:
    return c.infer("iris_onnx", {"input": iris_batch().astype(np.float64)})


def _shape_mismatch(c: Client) -> Any:
    return c.infer("iris_onnx", {"input": np.zeros((3, 5), np.float32)})


def _negative_dimension(c: Client) -> Any:
    return c.infer("iris_onnx", [c.tensor("input", iris_batch(1), shape=[-1, 4])])


def _element_count_mismatch(c: Client) -> Any:
    # 2 rows of data declared as 1 row.
    return c.infer("iris_onnx", [c.tensor("input", iris_batch(2), shape=[1, 4])])


def _missing_input(c: Client) -> Any:
    return c.infer("python_add", {"INPUT0": np.zeros((2, 16), np.float32)})


def _unknown_output(c: Client) -> Any:
    return c.infer("python_add", add_inputs(), outputs=["OUTPUT0", "OUTPUT9"])


def _batch_too_large(c: Client) -> Any:
    return c.infer("iris_onnx", {"input": iris_batch(65)})


ERROR_CASES = {
    "unknown model": (
        _unknown_model,
        ErrorCode.NOT_FOUND,
        "Request for unknown model: 'no_such_model' is not found",
    ),
    "unknown input": (_unknown_input, ErrorCode.INVALID_ARGUMENT, "has no input 'BOGUS'"),
    "wrong datatype": (_wrong_datatype, ErrorCode.INVALID_ARGUMENT, "datatype FP64 given"),
    "shape mismatch": (_shape_mismatch, ErrorCode.INVALID_ARGUMENT, "does not match"),
    "negative dimension": (_negative_dimension, ErrorCode.INVALID_ARGUMENT, "negative dimension"),
    "element count": (_element_count_mismatch, ErrorCode.INVALID_ARGUMENT, "needs 16 bytes"),
    "missing input": (_missing_input, ErrorCode.INVALID_ARGUMENT, "needs input(s) ['INPUT1']"),
    "unknown output": (_unknown_output, ErrorCode.INVALID_ARGUMENT, "has no output 'OUTPUT9'"),
    "batch too large": (_batch_too_large, ErrorCode.INVALID_ARGUMENT, "max_batch_size"),
}


@pytest.mark.parametrize("case", ERROR_CASES)
def test_error(client: Client, case: str) -> None:
    send, code, fragment = ERROR_CASES[case]
    with pytest.raises(InferenceServerException) as info:
        send(client)
    assert code in error_codes(client.transport, info.value), info.value.status()
    assert fragment in str(info.value.message())


@pytest.mark.parametrize("case", ERROR_CASES)
def test_error_message_is_the_same(clients: dict[str, Client], case: str) -> None:
    send = ERROR_CASES[case][0]
    messages = []
    for transport in TRANSPORTS:
        with pytest.raises(InferenceServerException) as info:
            send(clients[transport])
        messages.append(info.value.message())
    assert messages[0] == messages[1]


# ---- metadata and documents ------------------------------------------------------------------


def _grpc_metadata_doc(meta: Any) -> dict[str, Any]:
    def tensor(t: Any) -> dict[str, Any]:
        return {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}

    return {
        "name": meta.name,
        "versions": list(meta.versions),
        "platform": meta.platform,
        "inputs": [tensor(t) for t in meta.inputs],
        "outputs": [tensor(t) for t in meta.outputs],
    }


@pytest.mark.parametrize(
    "model", ["iris_onnx", "mlp_onnx", "iris_sklearn", "python_add", "echo_bytes"]
)
def test_model_metadata_and_config_agree(clients: dict[str, Client], model: str) -> None:
    rest, grpc = clients["rest"].raw, clients["grpc"].raw
    assert rest.get_model_metadata(model) == _grpc_metadata_doc(grpc.get_model_metadata(model))
    # Parse REST's JSON with Triton's own ModelConfig definition: same message on both sides,
    # which also proves our reduced model_config.proto uses Triton's field numbers.
    expected = json_format.ParseDict(
        rest.get_model_config(model), triton_model_config.ModelConfig()
    )
    assert grpc.get_model_config(model).config == expected


def test_server_metadata_agrees(clients: dict[str, Client]) -> None:
    rest = clients["rest"].raw.get_server_metadata()
    grpc = clients["grpc"].raw.get_server_metadata()
    assert rest == {"name": grpc.name, "version": grpc.version, "extensions": list(grpc.extensions)}


def test_repository_index_agrees(clients: dict[str, Client]) -> None:
    rest = clients["rest"].raw.get_model_repository_index()
    grpc = clients["grpc"].raw.get_model_repository_index().models
    assert rest == [
        {"name": m.name, "version": m.version, "state": m.state, "reason": m.reason} for m in grpc
    ]


def test_health_agrees(client: Client) -> None:
    assert client.raw.is_server_live()
    assert client.raw.is_server_ready()
    assert client.raw.is_model_ready("python_add")


def test_shared_memory_when_off_is_refused_alike(clients: dict[str, Client]) -> None:
    messages = {}
    for transport, c in clients.items():
        with pytest.raises(InferenceServerException) as caught:
            c.raw.register_system_shared_memory("r", "/modelserve_x", 64)
        assert ErrorCode.FAILED_PRECONDITION in error_codes(transport, caught.value)
        messages[transport] = caught.value.message()
    assert messages["rest"] == messages["grpc"]
    assert "--shared-memory system" in messages["rest"]
