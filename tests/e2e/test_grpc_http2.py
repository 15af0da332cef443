"""The gRPC server's HTTP/2 (transports/grpc/server.py) against grpcio's C-core clients: messages
larger than every flow-control window in both directions, compressed requests, deadlines, a
call cancelled by the client, unknown methods, many calls on one connection, and a client that
does not speak HTTP/2."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from modelserve.protocol import grpc_service_pb2 as pb
from tests.conftest import ECHO_MODEL, RunningServer, Servers, echo_config
from tests.harness import write_python_model

SLOW_MODEL = """
import time

class Slow:
    def predict(self, inputs):
        time.sleep(float(inputs["IN"].ravel()[0]))
        return {"OUT": inputs["IN"]}
"""


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory, serve_module: Servers) -> RunningServer:
    repo: Path = tmp_path_factory.mktemp("slow_models")
    write_python_model(repo, "slow", SLOW_MODEL, echo_config("FP32"), entrypoint="Slow")
    write_python_model(repo, "echo", ECHO_MODEL, echo_config("FP32"), entrypoint="Echo")
    return serve_module(repo)


def _echo(client: grpcclient.InferenceServerClient, model: str, array: np.ndarray, **kw: object):
    tensor = grpcclient.InferInput("IN", list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)
    return client.infer(model, [tensor], **kw)  # type: ignore[arg-type]


def test_messages_larger_than_every_window_both_ways(server: RunningServer) -> None:
    """8 MB each way: more than HTTP/2's 64 KiB default windows and our 4 MiB stream window,
    so both sides wait for WINDOW_UPDATEs mid-message."""
    array = np.arange(2_000_000, dtype=np.float32).reshape(1, -1)
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        answer = _echo(client, "echo_fp32", array)
    np.testing.assert_array_equal(answer.as_numpy("OUT"), array)


def test_compressed_requests_are_answered(server: RunningServer) -> None:
    array = np.ones((1, 4096), dtype=np.float32)
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        for algorithm in ("gzip", "deflate"):
            answer = _echo(client, "echo_fp32", array, compression_algorithm=algorithm)
            np.testing.assert_array_equal(answer.as_numpy("OUT"), array)


def test_deadline_exceeded_and_the_server_keeps_serving(slow_server: RunningServer) -> None:
    with grpcclient.InferenceServerClient(slow_server.grpc_url) as client:
        started = time.monotonic()
        with pytest.raises(InferenceServerException) as raised:
            _echo(client, "slow", np.full((1, 1), 3.0, np.float32), client_timeout=0.3)
        assert raised.value.status() == "StatusCode.DEADLINE_EXCEEDED"
        assert time.monotonic() - started < 2.5
        answer = _echo(client, "echo", np.ones((1, 2), np.float32))
        np.testing.assert_array_equal(answer.as_numpy("OUT"), np.ones((1, 2), np.float32))


def test_a_cancelled_call_leaves_the_connection_usable(slow_server: RunningServer) -> None:
    request = pb.ModelInferRequest(model_name="slow")
    tensor = request.inputs.add(name="IN", datatype="FP32", shape=[1, 1])
    request.raw_input_contents.append(np.full((1, 1), 0.5, np.float32).tobytes())
    with grpc.insecure_channel(slow_server.grpc_url) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        future = call.future(request)
        time.sleep(0.05)
        assert future.cancel()
        with pytest.raises(grpc.FutureCancelledError):
            future.result()
        tensor.shape[:] = [1, 1]
        request.model_name = "echo"
        answer = call(request, timeout=30)
    assert answer.raw_output_contents[0] == request.raw_input_contents[0]


def test_unknown_method_is_unimplemented(server: RunningServer) -> None:
    with grpc.insecure_channel(server.grpc_url) as channel:
        method = channel.unary_unary("/inference.GRPCInferenceService/NoSuchMethod")
        with pytest.raises(grpc.RpcError) as raised:
            method(b"", timeout=30)
    assert raised.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_many_calls_at_once_on_one_connection(server: RunningServer) -> None:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:

        def one(i: int) -> bool:
            array = np.full((1, 64), i, dtype=np.float32)
            return bool(np.array_equal(_echo(client, "echo_fp32", array).as_numpy("OUT"), array))

        with ThreadPoolExecutor(16) as pool:
            assert all(pool.map(one, range(200)))


def test_a_client_that_does_not_speak_http2_is_disconnected(server: RunningServer) -> None:
    host, port = server.grpc_url.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while chunk := sock.recv(4096):  # our SETTINGS, then the connection closes
            received += chunk
    assert received[3] == 4  # a SETTINGS frame
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        assert client.is_server_live()
