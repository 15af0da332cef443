"""Codec properties: raw and JSON round trips for every datatype, and garbage never crashes."""

from __future__ import annotations

import contextlib
import json
import struct

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelserve.codecs.tensors import V2_TO_NUMPY, decode_raw, encode_raw
from modelserve.codecs.v2_json import decode_infer_request, encode_infer_response
from modelserve.errors import InvalidArgument
from modelserve.types import InferenceResponse, RequestedOutput, Tensor

NUMERIC = sorted(k for k in V2_TO_NUMPY if k != "BYTES")
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)


@settings(max_examples=60, deadline=None)
@given(datatype=st.sampled_from(NUMERIC), data=st.data())
def test_raw_round_trip(datatype: str, data: st.DataObject) -> None:
    array = data.draw(hnp.arrays(V2_TO_NUMPY[datatype], shapes))
    decoded = decode_raw("x", datatype, array.shape, encode_raw(array, datatype))
    np.testing.assert_array_equal(decoded, array)


@settings(max_examples=60, deadline=None)
@given(items=st.lists(st.binary(max_size=20), max_size=10))
def test_bytes_raw_round_trip(items: list[bytes]) -> None:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    raw = encode_raw(array, "BYTES")
    assert len(raw) == sum(4 + len(i) for i in items)
    assert list(decode_raw("x", "BYTES", (len(items),), raw)) == items


def test_bytes_raw_truncated_is_invalid() -> None:
    with pytest.raises(InvalidArgument):
        decode_raw("x", "BYTES", (1,), struct.pack("<I", 10) + b"abc")
    with pytest.raises(InvalidArgument):
        decode_raw("x", "BYTES", (2,), struct.pack("<I", 1) + b"a")


@settings(max_examples=60, deadline=None)
@given(
    datatype=st.sampled_from(["INT32", "INT64", "FP32", "FP64", "UINT8", "BOOL"]),
    data=st.data(),
)
def test_json_request_round_trip(datatype: str, data: st.DataObject) -> None:
    array = data.draw(
        hnp.arrays(
            V2_TO_NUMPY[datatype],
            shapes,
            elements={"allow_nan": False, "allow_infinity": False}
            if datatype.startswith("FP")
            else None,
        )
    )
    body = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": datatype,
                    "shape": list(array.shape),
                    "data": array.tolist(),
                }
            ]
        }
    )
    request = decode_infer_request(body, None, "m")
    np.testing.assert_array_equal(request.inputs[0].data, array)
    response = InferenceResponse("m", "1", (Tensor("y", datatype, array.shape, array),))
    payload, length = encode_infer_response(response, {"binary_data_output": True})
    assert length is not None
    header = orjson.loads(payload[:length])
    decoded = decode_raw("y", datatype, tuple(header["outputs"][0]["shape"]), payload[length:])
    np.testing.assert_array_equal(decoded, array)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200), header=st.one_of(st.none(), st.integers(-5, 300)))
def test_garbage_is_invalid_argument_never_a_crash(body: bytes, header: int | None) -> None:
    with contextlib.suppress(InvalidArgument):
        decode_infer_request(body, header, "m")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


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


def test_requested_binary_overrides_request_level() -> None:
    array = np.arange(3, dtype=np.int32)
    response = InferenceResponse("m", "1", (Tensor("y", "INT32", (3,), array),))
    payload, length = encode_infer_response(
        response, {"binary_data_output": True}, [RequestedOutput("y", {"binary_data": False})]
    )
    assert length is None
    assert orjson.loads(payload)["outputs"][0]["data"] == [0, 1, 2]
