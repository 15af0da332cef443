"""The gRPC transport end to end: tritonclient.grpc (sync, async, streaming), raw stubs for typed
contents, the standard health and reflection services, message size limits."""

from __future__ import annotations

import contextlib
import gc
import logging
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import json_format
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from tritonclient.grpc import model_config_pb2 as triton_model_config
from tritonclient.utils import InferenceServerException

from modelserve.observability import Observability
from modelserve.protocol import grpc_service_pb2 as pb
from modelserve.server.compose import bind_socket
from modelserve.transports.grpc.service import GrpcTransport
from tests.conftest import ECHO_MODEL, RunningServer, Servers, add_echo_models
from tests.harness import write_python_model

# model -> {input: (datatype, shape)}
EXAMPLES: dict[str, dict[str, tuple[str, tuple[int, ...]]]] = {
    "iris_onnx": {"input": ("FP32", (3, 4))},
    "mlp_onnx": {"input": ("FP32", (2, 256))},
    "iris_sklearn": {"input": ("FP64", (3, 4))},
    "iris_xgboost": {"input": ("FP32", (3, 4))},
    "iris_lightgbm": {"input": ("FP64", (3, 4))},
    "python_add": {"INPUT0": ("FP32", (2, 16)), "INPUT1": ("FP32", (2, 16))},
}

SMALL_LIMIT = 4096
BOOM_MODEL = """
class Boom:
    def predict(self, inputs):
        raise RuntimeError("the model exploded")
"""


def _arrays(model: str, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        name: rng.normal(size=shape).astype(np.float32 if dt == "FP32" else np.float64)
        for name, (dt, shape) in EXAMPLES[model].items()
    }


def _datatype(array: np.ndarray) -> str:
    return "FP32" if array.dtype == np.float32 else "FP64"


def _grpc_inputs(arrays: dict[str, np.ndarray]) -> list[grpcclient.InferInput]:
    tensors = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), _datatype(array))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[grpcclient.InferenceServerClient]:
    made = grpcclient.InferenceServerClient(server.grpc_url)
    yield made
    made.close()


@pytest.fixture(scope="module")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_url) as made:
        yield made


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Echo models, a model whose predict raises, and one that cannot load."""
    repo = tmp_path_factory.mktemp("small_models")
    add_echo_models(repo)
    write_python_model(
        repo,
        "boom",
        BOOM_MODEL,
        {
            "inputs": [{"name": "IN", "datatype": "FP32", "shape": [-1]}],
            "outputs": [{"name": "OUT", "datatype": "FP32", "shape": [-1]}],
        },
        entrypoint="Boom",
    )
    write_python_model(
        repo,
        "batched",
        ECHO_MODEL,
        {
            "max_batch_size": 8,
            "instances": 2,
            "dynamic_batching": {"max_queue_delay_us": 100, "preferred_batch_sizes": [2, 4]},
            "max_queue_size": 16,
            "default_timeout_ms": 500,
            "parameters": {"threshold": 0.5, "mode": "fast"},
            "inputs": [{"name": "IN", "datatype": "FP32", "shape": [-1, 3]}],
            "outputs": [{"name": "OUT", "datatype": "FP32", "shape": [-1, 3]}],
        },
        entrypoint="Echo",
    )
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "model.yaml").write_text("runtime: no_such_runtime\n")
    return repo


@pytest.fixture(scope="module")
def small_server(small_repo: Path, serve_module: Servers) -> RunningServer:
    """A second server whose gRPC messages may not exceed SMALL_LIMIT bytes."""
    return serve_module(small_repo, grpc_max_message_bytes=SMALL_LIMIT)


# ---- inference through tritonclient ----------------------------------------------------------


@pytest.fixture(scope="module")
def rest_client(server: RunningServer) -> Iterator[httpclient.InferenceServerClient]:
    made = httpclient.InferenceServerClient(server.url)
    yield made
    made.close()
    # Its __del__ closes again and fails outside this thread: collect it here and now.
    del made
    gc.collect()


@pytest.mark.parametrize("model", sorted(EXAMPLES))
def test_sync_infer_every_example(
    client: grpcclient.InferenceServerClient,
    rest_client: httpclient.InferenceServerClient,
    model: str,
) -> None:
    arrays = _arrays(model)
    result = client.infer(model, _grpc_inputs(arrays), request_id=f"id-{model}")
    response = result.get_response()
    assert response.model_name == model and response.id == f"id-{model}"
    assert len(response.raw_output_contents) == len(response.outputs) > 0
    # The same request over REST gives the same numbers.
    rest_inputs = []
    for name, array in arrays.items():
        tensor = httpclient.InferInput(name, list(array.shape), _datatype(array))
        tensor.set_data_from_numpy(array)
        rest_inputs.append(tensor)
    expected = rest_client.infer(model, rest_inputs)
    batch = next(iter(arrays.values())).shape[0]
    for out in response.outputs:
        value = result.as_numpy(out.name)
        assert value is not None and value.shape[0] == batch
        assert list(value.shape) == list(out.shape)
        np.testing.assert_array_equal(value, expected.as_numpy(out.name))


def test_async_infer_calls_back(client: grpcclient.InferenceServerClient) -> None:
    arrays = _arrays("python_add")
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.async_infer(
        "python_add",
        _grpc_inputs(arrays),
        callback=lambda result, error: answers.put((result, error)),
        request_id="async-1",
    )
    result, error = answers.get(timeout=10)
    assert error is None
    assert result.get_response().id == "async-1"
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), arrays["INPUT0"] + arrays["INPUT1"])


def test_stream_answers_every_request_and_survives_an_error(server: RunningServer) -> None:
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        arrays = _arrays("python_add")
        good = _grpc_inputs(arrays)
        bad = [grpcclient.InferInput("NOPE", [2, 16], "FP32")]
        bad[0].set_data_from_numpy(arrays["INPUT0"])
        client.async_stream_infer("python_add", good, request_id="s-1")
        client.async_stream_infer("python_add", bad, request_id="s-2")
        client.async_stream_infer("python_add", good, request_id="s-3")
        got = [answers.get(timeout=10) for _ in range(3)]
        client.stop_stream()
    finally:
        client.close()
    (first, err1), (second, err2), (third, err3) = got
    assert err1 is None and first.get_response().id == "s-1"
    assert second is None and "has no input 'NOPE'" in err2.message()
    assert err3 is None and third.get_response().id == "s-3"
    np.testing.assert_array_equal(third.as_numpy("OUTPUT1"), arrays["INPUT0"] - arrays["INPUT1"])


def test_stream_keeps_order_of_many_requests(server: RunningServer) -> None:
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        for i in range(20):
            # A small model and the big one interleaved: answers still come in order.
            model = "mlp_onnx" if i % 2 else "iris_onnx"
            client.async_stream_infer(model, _grpc_inputs(_arrays(model, i)), request_id=str(i))
        ids = [answers.get(timeout=10)[0].get_response().id for _ in range(20)]
        client.stop_stream()
    finally:
        client.close()
    assert ids == [str(i) for i in range(20)]


# ---- metadata, config, repository ----------------------------------------------------------


def test_model_ready(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("iris_onnx")
    with pytest.raises(InferenceServerException) as info:
        client.is_model_ready("no_such_model")
    assert info.value.status() == "StatusCode.NOT_FOUND"


def test_model_config(client: grpcclient.InferenceServerClient) -> None:
    config = client.get_model_config("iris_sklearn").config
    assert config.name == "iris_sklearn"
    assert config.max_batch_size == 64
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("input", triton_type("TYPE_FP64"), [4])
    ]
    assert [o.name for o in config.output] == ["label", "probabilities"]
    assert config.instance_group[0].kind == config.instance_group[0].KIND_CPU
    assert config.version_policy.latest.num_versions == 1
    as_json = client.get_model_config("python_add", as_json=True)
    assert as_json["config"]["input"][0] == {
        "name": "INPUT0",
        "data_type": "TYPE_FP32",
        "dims": ["16"],
    }
    with pytest.raises(InferenceServerException) as info:
        client.get_model_config("no_such_model")
    assert info.value.status() == "StatusCode.NOT_FOUND"


def triton_type(name: str) -> int:
    return int(triton_model_config.DataType.Value(name))


def test_every_config_key_survives_grpc(small_server: RunningServer) -> None:
    """REST's config JSON, read with Triton's own ModelConfig (unknown keys are errors), equals
    what gRPC sends: our reduced model_config.proto drops nothing the DataPlane fills."""
    rest = httpclient.InferenceServerClient(small_server.url)
    client = grpcclient.InferenceServerClient(small_server.grpc_url)
    try:
        doc = rest.get_model_config("batched")
        config = client.get_model_config("batched").config
    finally:
        rest.close()
        client.close()
    assert config == json_format.ParseDict(doc, triton_model_config.ModelConfig())
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 16
    assert config.parameters["mode"].string_value == "fast"
    assert config.instance_group[0].count == 2


def test_repository_index(client: grpcclient.InferenceServerClient) -> None:
    models = client.get_model_repository_index().models
    names = {m.name for m in models}
    assert set(EXAMPLES) <= names
    assert all(m.state == "READY" and m.version == "1" for m in models if m.name in EXAMPLES)


def test_repository_index_ready_filter(small_server: RunningServer) -> None:
    with grpc.insecure_channel(small_server.grpc_url) as channel:
        index = channel.unary_unary(
            "/inference.GRPCInferenceService/RepositoryIndex",
            request_serializer=pb.RepositoryIndexRequest.SerializeToString,
            response_deserializer=pb.RepositoryIndexResponse.FromString,
        )
        every = {m.name: m for m in index(pb.RepositoryIndexRequest(), timeout=10).models}
        ready = {m.name for m in index(pb.RepositoryIndexRequest(ready=True), timeout=10).models}
    assert every["broken"].state == "UNAVAILABLE" and "no_such_runtime" in every["broken"].reason
    assert every["echo_fp32"].state == "READY"
    assert "broken" not in ready and "echo_fp32" in ready


def test_model_control_needs_explicit_mode(
    client: grpcclient.InferenceServerClient,
) -> None:
    """The session server runs in model-control mode 'none': load/unload are refused with the
    same code as over REST (409 there)."""
    for call in (
        lambda: client.load_model("iris_onnx"),
        lambda: client.unload_model("iris_onnx"),
    ):
        with pytest.raises(InferenceServerException) as info:
            call()
        assert info.value.status() == "StatusCode.FAILED_PRECONDITION"
    assert client.is_model_ready("iris_onnx")


# ---- typed contents and raw stubs ------------------------------------------------------------


def _model_infer(channel: grpc.Channel, request: Any) -> Any:
    call = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelInferResponse.FromString,
    )
    return call(request, timeout=10)


def _typed_input(name: str, datatype: str, shape: list[int], **contents: Any) -> Any:
    return pb.ModelInferRequest.InferInputTensor(
        name=name, datatype=datatype, shape=shape, contents=pb.InferTensorContents(**contents)
    )


def test_typed_fp32_contents(channel: grpc.Channel) -> None:
    a = np.arange(32, dtype=np.float32).reshape(2, 16)
    b = np.full((2, 16), 0.5, dtype=np.float32)
    request = pb.ModelInferRequest(
        model_name="python_add",
        id="typed",
        inputs=[
            _typed_input("INPUT0", "FP32", [2, 16], fp32_contents=a.ravel().tolist()),
            _typed_input("INPUT1", "FP32", [2, 16], fp32_contents=b.ravel().tolist()),
        ],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="OUTPUT0")],
    )
    response = _model_infer(channel, request)
    assert response.id == "typed"
    assert [o.name for o in response.outputs] == ["OUTPUT0"]
    assert list(response.outputs[0].shape) == [2, 16]
    out = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(2, 16)
    np.testing.assert_array_equal(out, a + b)


@pytest.mark.parametrize(
    ("model", "datatype", "field", "values", "dtype"),
    [
        ("echo_bool", "BOOL", "bool_contents", [True, False], np.bool_),
        ("echo_int8", "INT8", "int_contents", [-128, 127], np.int8),
        ("echo_uint16", "UINT16", "uint_contents", [0, 65535], np.uint16),
        ("echo_int64", "INT64", "int64_contents", [-(2**63), 2**63 - 1], np.int64),
        ("echo_uint64", "UINT64", "uint64_contents", [0, 2**64 - 1], np.uint64),
        ("echo_fp64", "FP64", "fp64_contents", [1e300, -0.5], np.float64),
    ],
)
def test_typed_contents_of_each_field(
    channel: grpc.Channel, model: str, datatype: str, field: str, values: list[Any], dtype: Any
) -> None:
    request = pb.ModelInferRequest(
        model_name=model, inputs=[_typed_input("IN", datatype, [1, 2], **{field: values})]
    )
    response = _model_infer(channel, request)
    out = np.frombuffer(response.raw_output_contents[0], dtype=np.dtype(dtype).newbyteorder("<"))
    assert out.tolist() == values


def test_typed_bytes_contents(channel: grpc.Channel) -> None:
    items = ["ünï".encode(), b"", b"\x00\xff"]
    request = pb.ModelInferRequest(
        model_name="echo_bytes",
        inputs=[_typed_input("IN", "BYTES", [1, 3], bytes_contents=items)],
    )
    raw = _model_infer(channel, request).raw_output_contents[0]
    decoded, offset = [], 0
    while offset < len(raw):
        length = int.from_bytes(raw[offset : offset + 4], "little")
        decoded.append(raw[offset + 4 : offset + 4 + length])
        offset += 4 + length
    assert decoded == items


def _fp32_input(name: str = "INPUT0") -> Any:
    return _typed_input(name, "FP32", [1, 16], fp32_contents=[0.0] * 16)


BAD_REQUESTS = {
    "raw count": (
        pb.ModelInferRequest(
            model_name="python_add",
            inputs=[
                pb.ModelInferRequest.InferInputTensor(
                    name="INPUT0", datatype="FP32", shape=[1, 16]
                ),
                pb.ModelInferRequest.InferInputTensor(
                    name="INPUT1", datatype="FP32", shape=[1, 16]
                ),
            ],
            raw_input_contents=[bytes(64)],
        ),
        "1 raw_input_contents given for 2 inputs",
    ),
    "raw and typed mixed": (
        pb.ModelInferRequest(
            model_name="python_add",
            inputs=[
                _fp32_input(),
                pb.ModelInferRequest.InferInputTensor(
                    name="INPUT1", datatype="FP32", shape=[1, 16]
                ),
            ],
            raw_input_contents=[bytes(64), bytes(64)],
        ),
        "cannot be mixed",
    ),
    "typed count": (
        pb.ModelInferRequest(
            model_name="python_add",
            inputs=[_typed_input("INPUT0", "FP32", [1, 16], fp32_contents=[1.0] * 15)],
        ),
        "15 elements given, but shape [1, 16] needs 16",
    ),
    "wrong typed field": (
        pb.ModelInferRequest(
            model_name="python_add",
            inputs=[_typed_input("INPUT0", "FP32", [1, 16], int_contents=[1] * 16)],
        ),
        "takes its data in contents.fp32_contents",
    ),
    "fp16 typed": (
        pb.ModelInferRequest(
            model_name="echo_fp16",
            inputs=[_typed_input("IN", "FP16", [1, 1], fp32_contents=[1.0])],
        ),
        "FP16 has no typed contents",
    ),
    "int8 out of range": (
        pb.ModelInferRequest(
            model_name="echo_int8",
            inputs=[_typed_input("IN", "INT8", [1, 1], int_contents=[128])],
        ),
        "out of range for INT8",
    ),
    "unknown datatype": (
        pb.ModelInferRequest(
            model_name="python_add",
            inputs=[_typed_input("INPUT0", "FP8", [1, 16], fp32_contents=[1.0] * 16)],
        ),
        "unsupported datatype 'FP8'",
    ),
    "duplicate input": (
        pb.ModelInferRequest(model_name="python_add", inputs=[_fp32_input(), _fp32_input()]),
        "given more than once",
    ),
    "no inputs": (pb.ModelInferRequest(model_name="python_add"), "'inputs' must be"),
    "parameter without value": (
        pb.ModelInferRequest(
            model_name="python_add",
            inputs=[_fp32_input(), _fp32_input("INPUT1")],
            parameters={"empty": pb.InferParameter()},
        ),
        "parameter 'empty' has no value",
    ),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_raw_request(channel: grpc.Channel, case: str) -> None:
    request, fragment = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as info:
        _model_infer(channel, request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in info.value.details()


def test_request_parameters_are_accepted(channel: grpc.Channel) -> None:
    request = pb.ModelInferRequest(
        model_name="python_add",
        inputs=[_fp32_input(), _fp32_input("INPUT1")],
        parameters={
            "flag": pb.InferParameter(bool_param=True),
            "count": pb.InferParameter(int64_param=-3),
            "big": pb.InferParameter(uint64_param=2**64 - 1),
            "ratio": pb.InferParameter(double_param=0.25),
            "tag": pb.InferParameter(string_param="x"),
        },
    )
    assert len(_model_infer(channel, request).raw_output_contents) == 2


# ---- errors from the model, message size -----------------------------------------------------


def test_model_fault_is_internal(small_server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(small_server.grpc_url)
    try:
        tensor = grpcclient.InferInput("IN", [2], "FP32")
        tensor.set_data_from_numpy(np.ones(2, np.float32))
        with pytest.raises(InferenceServerException) as info:
            client.infer("boom", [tensor])
        assert info.value.status() == "StatusCode.INTERNAL"
        with pytest.raises(InferenceServerException) as unavailable:
            client.infer("broken", [tensor])
        assert unavailable.value.status() == "StatusCode.UNAVAILABLE"
    finally:
        client.close()


class ExplodingDataPlane:
    """Stands in for the DataPlane: inference fails with an exception no one expected."""

    def ready(self) -> bool:
        return True

    def model_ready(self, name: str, version: str = "") -> bool:
        return True

    def repository_index(self, ready_only: bool = False) -> list[Any]:
        return []

    def is_decoupled(self, name: str, version: str = "") -> bool:
        return False

    async def infer(self, request: Any) -> Any:
        raise RuntimeError("secret internals")


async def test_unexpected_error_is_internal_with_a_logged_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = GrpcTransport(ExplodingDataPlane(), Observability(), 1 << 20)  # type: ignore[arg-type]
    await transport.start("127.0.0.1", 0)
    request = pb.ModelInferRequest(model_name="m", id="r1", inputs=[_fp32_input()])
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{transport.port}") as channel:
            infer = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await infer(request, timeout=10)
            stream = channel.stream_stream(
                "/inference.GRPCInferenceService/ModelStreamInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelStreamInferResponse.FromString,
            )
            answers = [answer async for answer in stream(iter([request, request]), timeout=10)]
    finally:
        await transport.stop(0)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    details = info.value.details()
    assert details.startswith("internal server error (request id ") and "secret" not in details
    request_id = details.rsplit(" ", 1)[-1].rstrip(")")
    assert any(request_id in r.getMessage() and r.exc_info for r in caplog.records)
    assert len(answers) == 2
    for answer in answers:
        assert answer.error_message.startswith("internal server error (request id ")
        assert answer.infer_response.id == "r1"


def test_oversized_message_is_resource_exhausted(small_server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(small_server.grpc_url)
    try:
        small = grpcclient.InferInput("IN", [1, 16], "FP32")
        small.set_data_from_numpy(np.ones((1, 16), np.float32))
        assert client.infer("echo_fp32", [small]).as_numpy("OUT").shape == (1, 16)
        big = grpcclient.InferInput("IN", [2, 1024], "FP32")
        big.set_data_from_numpy(np.ones((2, 1024), np.float32))
        with pytest.raises(InferenceServerException) as info:
            client.infer("echo_fp32", [big])
        assert info.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        # The server is still fine afterwards.
        assert client.infer("echo_fp32", [small]).as_numpy("OUT").shape == (1, 16)
    finally:
        client.close()


def test_oversized_answer_is_resource_exhausted(small_server: RunningServer) -> None:
    """A request of exactly the limit is taken; its echo, a few bytes larger, cannot be sent."""

    def request(size: int) -> Any:
        tensor = pb.ModelInferRequest.InferInputTensor(name="IN", datatype="UINT8", shape=[1, size])
        return pb.ModelInferRequest(
            model_name="echo_uint8", inputs=[tensor], raw_input_contents=[bytes(size)]
        )

    size = next(n for n in range(SMALL_LIMIT) if request(n).ByteSize() == SMALL_LIMIT)
    with grpc.insecure_channel(small_server.grpc_url) as channel:
        with pytest.raises(grpc.RpcError) as info:
            _model_infer(channel, request(size))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "Sent message larger than max" in info.value.details()
        assert len(_model_infer(channel, request(size - 64)).raw_output_contents[0]) == size - 64


def test_a_taken_grpc_port_fails_start_up(
    server: RunningServer, small_repo: Path, serve: Servers
) -> None:
    taken = int(server.grpc_url.rsplit(":", 1)[1])
    with contextlib.closing(bind_socket("127.0.0.1", 0)) as probe:
        http_port = probe.getsockname()[1]  # free once closed
    with pytest.raises(OSError, match="cannot bind gRPC"):
        serve(small_repo, http_port=http_port, grpc_port=taken)
    # the HTTP socket it had bound is closed (it was left open: a ResourceWarning later)
    bind_socket("127.0.0.1", http_port).close()


# ---- health and reflection -------------------------------------------------------------------


def _check(channel: grpc.Channel, service: str) -> Any:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


def test_health_check(channel: grpc.Channel) -> None:
    serving = health_pb2.HealthCheckResponse.SERVING
    assert _check(channel, "") == serving
    assert _check(channel, "iris_onnx") == serving
    with pytest.raises(grpc.RpcError) as info:
        _check(channel, "no_such_model")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_of_a_model_that_failed_to_load(small_server: RunningServer) -> None:
    with grpc.insecure_channel(small_server.grpc_url) as channel:
        assert _check(channel, "broken") == health_pb2.HealthCheckResponse.NOT_SERVING
        assert _check(channel, "echo_fp32") == health_pb2.HealthCheckResponse.SERVING


def test_health_watch_follows_shutdown(small_repo: Path, serve: Servers) -> None:
    running = serve(small_repo)
    statuses: queue.Queue[Any] = queue.Queue()
    stopper = threading.Thread(target=running.stop)
    try:
        with grpc.insecure_channel(running.grpc_url) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            watch = stub.Watch(health_pb2.HealthCheckRequest(service="echo_fp32"), timeout=30)

            def follow() -> None:
                with contextlib.suppress(grpc.RpcError):
                    for answer in watch:
                        statuses.put(answer.status)
                        if answer.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                            watch.cancel()  # lets the server stop without waiting on this call

            threading.Thread(target=follow, daemon=True).start()
            assert statuses.get(timeout=10) == health_pb2.HealthCheckResponse.SERVING
            stopper.start()
            assert statuses.get(timeout=10) == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        if stopper.ident is None:  # the test failed before stopping the server
            stopper.start()
        stopper.join(timeout=30)
    assert not stopper.is_alive()


def test_reflection_lists_and_describes_the_services(channel: grpc.Channel) -> None:
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= services
    pool = DescriptorPool(database)
    service = pool.FindServiceByName("inference.GRPCInferenceService")
    assert {"ModelInfer", "ModelStreamInfer", "ModelConfig", "RepositoryIndex"} <= {
        m.name for m in service.methods
    }
    request = pool.FindMessageTypeByName("inference.ModelInferRequest")
    assert request.fields_by_name["raw_input_contents"].number == 7
    config = pool.FindMessageTypeByName("inference.ModelConfig")
    assert config.fields_by_name["backend"].number == 17


GARBAGE = b"\xff\xff\xff\xff\x0f not a protobuf message"


def _identity(data: bytes) -> bytes:
    return data


@pytest.mark.parametrize(
    "method",
    [
        "/inference.GRPCInferenceService/ModelInfer",
        "/inference.GRPCInferenceService/ServerLive",
        "/inference.GRPCInferenceService/RepositoryModelLoad",
        "/grpc.health.v1.Health/Check",
    ],
)
def test_undecodable_request_is_invalid_argument_and_not_logged_as_error(
    server: RunningServer, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    with grpc.insecure_channel(server.grpc_url) as raw:
        call = raw.unary_unary(
            method, request_serializer=_identity, response_deserializer=_identity
        )
        with caplog.at_level("INFO"), pytest.raises(grpc.RpcError) as info:
            call(GARBAGE, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert "not a valid" in info.value.details()
        assert raw.unary_unary(
            "/inference.GRPCInferenceService/ServerLive",
            request_serializer=pb.ServerLiveRequest.SerializeToString,
            response_deserializer=pb.ServerLiveResponse.FromString,
        )(pb.ServerLiveRequest(), timeout=10).live
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_undecodable_stream_messages_are_answered_in_band(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    good = pb.ModelInferRequest(
        model_name="echo_fp32",
        id="good",
        inputs=[pb.ModelInferRequest.InferInputTensor(name="IN", datatype="FP32", shape=[1, 1])],
        raw_input_contents=[np.float32(1).tobytes()],
    ).SerializeToString()
    with grpc.insecure_channel(server.grpc_url) as raw:
        stream = raw.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            request_serializer=_identity,
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )
        with caplog.at_level("INFO"):
            answers = list(stream(iter([good, GARBAGE, good]), timeout=10))
    assert [a.error_message for a in answers][0::2] == ["", ""]
    assert "not a valid inference.ModelInferRequest" in answers[1].error_message
    assert [a.infer_response.id for a in answers][0::2] == ["good", "good"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_undecodable_reflection_request_is_invalid_argument(server: RunningServer) -> None:
    with grpc.insecure_channel(server.grpc_url) as raw:
        stream = raw.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=_identity,
            response_deserializer=_identity,
        )
        with pytest.raises(grpc.RpcError) as info:
            list(stream(iter([GARBAGE]), timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
