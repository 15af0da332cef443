"""The gRPC codec, protobuf to neutral types and back, without a server: parameters, raw and
typed contents and refusals; what an independent client sends decodes to the values it sent, for
every datatype; answers read back in tritonclient as they were; hostile messages are refused
with InvalidArgument, never anything else."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from hypothesis import given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as triton_service
from tritonclient.utils import serialize_byte_tensor

from modelserve.errors import InvalidArgument
from modelserve.protocol import grpc_service_pb2 as pb
from modelserve.transports.grpc.codec import (
    decode_infer_request,
    decode_parameters,
    encode_infer_response,
    encode_parameters,
)
from modelserve.types import InferenceResponse, Tensor
from tests.unit.codecs.strategies import ALL, assert_same_tensor, named_tensors


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


# ---- valid messages decode to the values sent -------------------------------------------------

# What an independent client puts where (tritonclient's table): FP16 has no typed field.
TYPED_FIELDS = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def _raw(array: np.ndarray, datatype: str) -> bytes:
    """The raw encoding as tritonclient writes it (not the server's own encoder)."""
    if datatype == "BYTES":
        serialized = serialize_byte_tensor(array)
        return b"" if serialized.size == 0 else serialized.item()
    return np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()


@settings(max_examples=100, deadline=None)
@given(data=st.data(), typed=st.booleans(), request_id=st.text(max_size=8))
def test_valid_messages_decode_to_the_values_sent(
    data: st.DataObject, typed: bool, request_id: str
) -> None:
    datatypes = sorted(TYPED_FIELDS) if typed else ALL
    tensors = data.draw(named_tensors(datatypes), label="tensors")
    message = pb.ModelInferRequest(model_name="m", model_version="3", id=request_id)
    message.parameters["tag"].string_param = "t"
    for name, datatype, array in tensors:
        tensor = message.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
        if typed:
            getattr(tensor.contents, TYPED_FIELDS[datatype]).extend(array.reshape(-1).tolist())
        else:
            message.raw_input_contents.append(_raw(array, datatype))
    message.outputs.add(name="out").parameters["binary_data"].bool_param = True
    request = decode_infer_request(pb.ModelInferRequest.FromString(message.SerializeToString()))
    assert (request.model_name, request.model_version) == ("m", "3")
    assert request.id == (request_id or None)
    assert dict(request.parameters) == {"tag": "t"}
    assert [(o.name, dict(o.parameters)) for o in request.outputs or ()] == [
        ("out", {"binary_data": True})
    ]
    assert [(t.name, t.datatype, t.shape) for t in request.inputs] == [
        (name, datatype, array.shape) for name, datatype, array in tensors
    ]
    for decoded, (_, datatype, array) in zip(request.inputs, tensors, strict=True):
        assert_same_tensor(decoded.data, datatype, array)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_responses_encode_to_what_tritonclient_reads(data: st.DataObject) -> None:
    tensors = data.draw(named_tensors(), label="tensors")
    response = InferenceResponse(
        "m", "1", tuple(Tensor(n, dt, a.shape, a) for n, dt, a in tensors), id="r"
    )
    message = encode_infer_response(response)
    result = grpcclient.InferResult(
        triton_service.ModelInferResponse.FromString(message.SerializeToString())
    )
    assert result.get_response().id == "r"
    for name, datatype, array in tensors:
        output = result.get_output(name)
        assert (output.datatype, list(output.shape)) == (datatype, list(array.shape))
        read = result.as_numpy(name)
        assert read is not None
        if datatype == "BYTES":
            assert read.reshape(-1).tolist() == array.reshape(-1).tolist()
        else:
            assert_same_tensor(read, datatype, array)


# ---- hostile messages are refused cleanly ------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    shape=st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=40),
    datatype=st.sampled_from([*ALL, "X"]),
    raw=st.binary(max_size=64),
    limit=st.integers(min_value=1, max_value=10_000),
)
def test_hostile_messages_are_refused_cleanly(
    shape: list[int], datatype: str, raw: bytes, limit: int
) -> None:
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype=datatype, shape=shape)
    msg.raw_input_contents.append(raw)
    with contextlib.suppress(InvalidArgument):
        decode_infer_request(msg, limit)
