"""V2 JSON and binary request bodies: what a real client (tritonclient.http) encodes decodes to
the values it sent, for every datatype, as JSON data or binary data; responses encode to what
the client reads back; hostile bodies are refused with InvalidArgument (400), never anything
else."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import numpy as np
import orjson
import tritonclient.http as httpclient
from hypothesis import given, settings
from hypothesis import strategies as st

from modelserve.codecs.tensors import V2_TO_NUMPY, decode_raw
from modelserve.codecs.v2_json import decode_infer_request, encode_infer_response
from modelserve.errors import InvalidArgument
from modelserve.types import InferenceResponse, RequestedOutput, Tensor
from tests.unit.codecs.strategies import (
    ALL,
    arrays,
    assert_same_tensor,
    json_values,
    named_tensors,
    object_array,
)

HOSTILE_DATATYPES = ["BOOL", "UINT8", "INT32", "INT64", "UINT64", "FP16", "FP32", "FP64", "BYTES"]
hostile_dims = st.one_of(
    st.integers(min_value=0, max_value=8),
    st.integers(min_value=-2, max_value=2**64 + 5),
)


# ---- valid bodies decode to the values sent --------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(data=st.data(), request_id=st.text(max_size=8), params=st.dictionaries(
    st.sampled_from(["mode", "tag", "flag"]), st.integers(0, 9) | st.text(max_size=3)
))  # fmt: skip
def test_what_tritonclient_sends_decodes_to_the_same_tensors(
    data: st.DataObject, request_id: str, params: dict[str, Any]
) -> None:
    binary = data.draw(st.booleans(), label="binary")
    tensors = data.draw(named_tensors(for_json=not binary), label="tensors")
    inputs = []
    for name, datatype, array in tensors:
        tensor = httpclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    outputs = [httpclient.InferRequestedOutput("out", binary_data=False)]
    body, header_length = httpclient.InferenceServerClient.generate_request_body(
        inputs, outputs=outputs, request_id=request_id, parameters=params or None
    )
    assert (header_length is not None) == binary
    request = decode_infer_request(body, header_length, "m", "2")
    assert (request.model_name, request.model_version) == ("m", "2")
    assert request.id == (request_id or None)
    assert dict(request.parameters) == params
    assert [(o.name, dict(o.parameters)) for o in request.outputs or ()] == [
        ("out", {"binary_data": False})
    ]
    assert [(t.name, t.datatype, t.shape) for t in request.inputs] == [
        (name, datatype, array.shape) for name, datatype, array in tensors
    ]
    for decoded, (_, datatype, array) in zip(request.inputs, tensors, strict=True):
        assert_same_tensor(decoded.data, datatype, array)


@settings(max_examples=60, deadline=None)
@given(datatype=st.sampled_from(ALL), data=st.data())
def test_nested_and_flat_json_data_decode_alike(datatype: str, data: st.DataObject) -> None:
    array = data.draw(arrays(datatype, for_json=True))
    values = array.tolist() if datatype != "BYTES" else _strings(array).tolist()
    flat = np.asarray(values, dtype=object).reshape(-1).tolist() if array.size else []
    for payload in (values, flat):
        doc = {"inputs": [{"name": "x", "datatype": datatype, "shape": list(array.shape)}]}
        doc["inputs"][0]["data"] = payload
        request = decode_infer_request(orjson.dumps(doc), None, "m")
        assert_same_tensor(request.inputs[0].data, datatype, array)


def _strings(array: np.ndarray) -> np.ndarray:
    return object_array([item.decode() for item in array.reshape(-1)], array.shape)


# ---- responses encode to what the client reads back ------------------------------------------


@settings(max_examples=100, deadline=None)
@given(datatype=st.sampled_from(ALL), binary=st.booleans(), data=st.data())
def test_responses_encode_to_what_the_client_reads(
    datatype: str, binary: bool, data: st.DataObject
) -> None:
    array = data.draw(arrays(datatype, for_json=not binary))
    response = InferenceResponse("m", "1", (Tensor("y", datatype, array.shape, array),), id="r")
    payload, length = encode_infer_response(response, {"binary_data_output": binary})
    assert (length is not None) == binary
    header = orjson.loads(payload[:length] if length is not None else payload)
    assert (header["model_name"], header["model_version"], header["id"]) == ("m", "1", "r")
    (output,) = header["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == (
        "y",
        datatype,
        list(array.shape),
    )
    if binary:
        decoded = decode_raw("y", datatype, array.shape, payload[length:])
        assert_same_tensor(decoded, datatype, array)
    else:
        if datatype == "BYTES":
            assert output["data"] == _strings(array).reshape(-1).tolist()
        else:  # each number as its datatype prints it: the same value once read as that type
            sent = np.asarray(output["data"], dtype=V2_TO_NUMPY[datatype])
            np.testing.assert_array_equal(sent, array.reshape(-1))
    result = httpclient.InferResult.from_response_body(payload, header_length=length)
    client_view = result.as_numpy("y")
    assert client_view is not None
    if datatype == "BYTES":
        assert [_as_bytes(item) for item in client_view.reshape(-1)] == array.reshape(-1).tolist()
    else:
        np.testing.assert_array_equal(client_view.reshape(array.shape), array)


def _as_bytes(item: object) -> bytes:
    return item if isinstance(item, bytes) else str(item).encode()


def test_requested_binary_overrides_request_level() -> None:
    array = np.arange(3, dtype=np.int32)
    response = InferenceResponse("m", "1", (Tensor("y", "INT32", (3,), array),))
    payload, length = encode_infer_response(
        response, {"binary_data_output": True}, [RequestedOutput("y", {"binary_data": False})]
    )
    assert length is None
    assert orjson.loads(payload)["outputs"][0]["data"] == [0, 1, 2]


# ---- hostile bodies are refused cleanly --------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200), header=st.one_of(st.none(), st.integers(-5, 300)))
def test_garbage_is_invalid_argument_never_a_crash(body: bytes, header: int | None) -> None:
    with contextlib.suppress(InvalidArgument):
        decode_infer_request(body, header, "m")


@settings(max_examples=300, deadline=None)
@given(
    name=st.one_of(st.just("x"), json_values),
    datatype=st.one_of(st.sampled_from(sorted(V2_TO_NUMPY)), json_values),
    shape=st.one_of(st.lists(st.integers(-2, 5), max_size=3), json_values),
    data=json_values,
    outputs=st.one_of(st.none(), json_values),
)
def test_structured_garbage_is_invalid_argument(
    name: object, datatype: object, shape: object, data: object, outputs: object
) -> None:
    doc: dict[str, object] = {
        "inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}]
    }
    if outputs is not None:
        doc["outputs"] = outputs
    with contextlib.suppress(InvalidArgument):
        decode_infer_request(json.dumps(doc).encode(), None, "m")


@settings(max_examples=300, deadline=None)
@given(
    shape=st.lists(hostile_dims, max_size=40),
    datatype=st.sampled_from([*HOSTILE_DATATYPES, "X"]),
    data=json_values,
    limit=st.integers(min_value=1, max_value=10_000),
)
def test_json_codec_refuses_cleanly(shape: list[int], datatype: str, data: Any, limit: int) -> None:
    body = {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]}
    try:
        raw = orjson.dumps(body)
    except TypeError:  # integers past 64 bits: send them as text
        raw = (
            b'{"inputs":[{"name":"x","datatype":"'
            + datatype.encode()
            + b'","shape":'
            + repr(shape).encode()
            + b',"data":[]}]}'
        )
    with contextlib.suppress(InvalidArgument):
        decode_infer_request(raw, None, "m", max_elements=limit)
