"""grpc_codec: protobuf <-> neutral types, without a server."""

from __future__ import annotations

import numpy as np
import pytest

from modelserve.errors import InvalidArgument
from modelserve.protocol import grpc_service_pb2 as pb
from modelserve.transports.grpc.codec import (
    decode_infer_request,
    decode_parameters,
    encode_infer_response,
    encode_parameters,
)
from modelserve.types import InferenceResponse, Tensor


def test_parameters_become_plain_python_values() -> None:
    request = pb.ModelInferRequest(
        parameters={
            "flag": pb.InferParameter(bool_param=False),
            "count": pb.InferParameter(int64_param=-3),
            "big": pb.InferParameter(uint64_param=2**64 - 1),
            "ratio": pb.InferParameter(double_param=0.25),
            "tag": pb.InferParameter(string_param="é"),
        }
    )
    params = decode_parameters("request", request.parameters)
    assert params == {"flag": False, "count": -3, "big": 2**64 - 1, "ratio": 0.25, "tag": "é"}
    assert type(params["flag"]) is bool and type(params["count"]) is int


def test_parameters_round_trip() -> None:
    values = {"flag": True, "count": -(2**63), "big": 2**64 - 1, "ratio": -1.5, "tag": "x"}
    message = pb.ModelInferResponse()
    encode_parameters(message.parameters, values)
    assert message.parameters["flag"].WhichOneof("parameter_choice") == "bool_param"
    assert message.parameters["big"].WhichOneof("parameter_choice") == "uint64_param"
    assert decode_parameters("response", message.parameters) == values


def test_decode_raw_and_typed_inputs() -> None:
    raw = pb.ModelInferRequest(
        model_name="m",
        model_version="2",
        id="r",
        inputs=[pb.ModelInferRequest.InferInputTensor(name="a", datatype="INT16", shape=[2])],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="o")],
        raw_input_contents=[np.array([-2, 7], dtype="<i2").tobytes()],
    )
    request = decode_infer_request(raw)
    assert (request.model_name, request.model_version, request.id) == ("m", "2", "r")
    assert [o.name for o in request.outputs or ()] == ["o"]
    assert request.inputs[0].data.tolist() == [-2, 7]
    typed = pb.ModelInferRequest(
        model_name="m",
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name="a",
                datatype="UINT8",
                shape=[1, 2],
                contents=pb.InferTensorContents(uint_contents=[0, 255]),
            )
        ],
    )
    request = decode_infer_request(typed)
    assert request.id is None and request.outputs is None
    assert request.inputs[0].data.dtype == np.uint8
    assert request.inputs[0].data.tolist() == [[0, 255]]


@pytest.mark.parametrize(
    ("tensor", "fragment"),
    [
        (
            pb.ModelInferRequest.InferInputTensor(
                name="a",
                datatype="UINT8",
                shape=[1],
                contents=pb.InferTensorContents(uint_contents=[256]),
            ),
            "out of range for UINT8",
        ),
        (
            pb.ModelInferRequest.InferInputTensor(name="a", datatype="FP32", shape=[-1, 2]),
            "negative dimension",
        ),
        (pb.ModelInferRequest.InferInputTensor(name="a", datatype="FP32", shape=[2]), "needs 2"),
        (pb.ModelInferRequest.InferInputTensor(name="", datatype="FP32", shape=[0]), "'name'"),
    ],
)
def test_decode_rejects(tensor: pb.ModelInferRequest.InferInputTensor, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        decode_infer_request(pb.ModelInferRequest(model_name="m", inputs=[tensor]))


def test_empty_requested_output_name_is_rejected() -> None:
    request = pb.ModelInferRequest(
        model_name="m",
        inputs=[pb.ModelInferRequest.InferInputTensor(name="a", datatype="FP32", shape=[0])],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="")],
    )
    with pytest.raises(InvalidArgument, match="outputs\\[0\\]"):
        decode_infer_request(request)


def test_encode_uses_raw_contents_one_per_output() -> None:
    words = np.empty(2, dtype=object)
    words[:] = [b"ab", "ü".encode()]
    response = InferenceResponse(
        model_name="m",
        model_version="1",
        id=None,
        outputs=(
            Tensor("x", "FP16", (2,), np.array([1.5, -2], dtype=np.float16)),
            Tensor("w", "BYTES", (2,), words),
        ),
    )
    message = encode_infer_response(response)
    assert message.id == "" and [o.name for o in message.outputs] == ["x", "w"]
    assert not message.outputs[0].HasField("contents")
    assert message.raw_output_contents[0] == np.array([1.5, -2], dtype="<f2").tobytes()
    assert message.raw_output_contents[1] == b"\x02\x00\x00\x00ab\x02\x00\x00\x00\xc3\xbc"
