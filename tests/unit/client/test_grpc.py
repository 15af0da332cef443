"""The gRPC messages the client builds and reads (modelserve.protocol), including typed contents,
which servers other than modelserve may answer with."""

from __future__ import annotations

import numpy as np
import pytest

from modelserve.client.errors import UnsupportedError
from modelserve.client.grpc import GrpcAnswer, GrpcApi, decode_infer, encode_infer
from modelserve.protocol import grpc_service_pb2 as pb
from modelserve.types import InferenceRequest, RequestedOutput, Tensor


def test_infer_request_has_raw_contents_parameters_and_outputs() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    names = np.array([b"a", b"bc"], dtype=object)
    request = InferenceRequest(
        "m",
        (Tensor("x", "FP32", (2, 3), x), Tensor("s", "BYTES", (2,), names)),
        model_version="2",
        id="rid",
        parameters={"timeout": 5, "flag": True, "name": "n", "ratio": 0.5},
        outputs=(RequestedOutput("y"),),
    )
    message = encode_infer(request)
    assert (message.model_name, message.model_version, message.id) == ("m", "2", "rid")
    assert [(i.name, i.datatype, list(i.shape)) for i in message.inputs] == [
        ("x", "FP32", [2, 3]),
        ("s", "BYTES", [2]),
    ]
    assert np.frombuffer(message.raw_input_contents[0], "<f4").tolist() == x.ravel().tolist()
    assert message.raw_input_contents[1] == b"\x01\x00\x00\x00a\x02\x00\x00\x00bc"
    params = message.parameters
    assert params["timeout"].int64_param == 5 and params["flag"].bool_param
    assert params["name"].string_param == "n" and params["ratio"].double_param == 0.5
    assert [o.name for o in message.outputs] == ["y"]


def test_typed_contents_are_read_as_raw_ones_are() -> None:
    message = pb.ModelInferResponse(model_name="m", model_version="1", id="v2-id")
    out = message.outputs.add(name="y", datatype="INT32", shape=[2, 2])
    out.contents.int_contents.extend([1, 2, 3, 4])
    text = message.outputs.add(name="t", datatype="BYTES", shape=[1])
    text.contents.bytes_contents.append(b"hello")
    response, rid = decode_infer(GrpcAnswer(message, {"x-request-id": "abc"}))
    y, t = response.outputs
    assert y.data.dtype == np.int32 and y.data.tolist() == [[1, 2], [3, 4]]
    assert t.data.tolist() == [b"hello"]
    assert (rid, response.id, response.model_version) == ("abc", "v2-id", "1")


def test_rest_only_calls_are_unsupported_over_grpc() -> None:
    with pytest.raises(UnsupportedError, match="REST endpoint"):
        GrpcApi().labels("m", [("a", 1)], "rid")
    with pytest.raises(UnsupportedError, match="REST endpoint"):
        GrpcApi().monitoring("m", "rid")
