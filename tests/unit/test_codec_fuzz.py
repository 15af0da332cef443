"""Hostile request bodies through both codecs: any shape, any JSON value as data, any element
limit. A request is decoded or refused with InvalidArgument (400), never anything else."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from modelserve.codecs.tensors import MAX_DIMS, check_shape
from modelserve.codecs.v2_json import decode_infer_request
from modelserve.errors import InvalidArgument
from modelserve.protocol import grpc_service_pb2 as pb
from modelserve.transports.grpc.codec import decode_infer_request as decode_grpc

DATATYPES = ["BOOL", "UINT8", "INT32", "INT64", "UINT64", "FP16", "FP32", "FP64", "BYTES", "X"]
dims = st.one_of(
    st.integers(min_value=0, max_value=8),
    st.integers(min_value=-2, max_value=2**64 + 5),
)
shapes = st.lists(dims, max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=40,
)


def _refused_or_decoded(call: Any) -> None:
    with contextlib.suppress(InvalidArgument):
        call()


@settings(max_examples=300, deadline=None)
@given(
    shape=shapes,
    datatype=st.sampled_from(DATATYPES),
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
    _refused_or_decoded(lambda: decode_infer_request(raw, None, "m", max_elements=limit))


@settings(max_examples=200, deadline=None)
@given(
    shape=st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=40),
    datatype=st.sampled_from(DATATYPES),
    raw=st.binary(max_size=64),
    limit=st.integers(min_value=1, max_value=10_000),
)
def test_grpc_codec_refuses_cleanly(
    shape: list[int], datatype: str, raw: bytes, limit: int
) -> None:
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype=datatype, shape=shape)
    msg.raw_input_contents.append(raw)
    _refused_or_decoded(lambda: decode_grpc(msg, limit))


@given(shape=shapes, limit=st.integers(min_value=1, max_value=10**6))
def test_accepted_shapes_are_within_the_limits(shape: list[int], limit: int) -> None:
    try:
        dims_ = check_shape("x", shape, limit)
    except InvalidArgument:
        return
    assert len(dims_) <= MAX_DIMS
    span = 1
    for dim in dims_:
        assert dim >= 0
        span *= max(dim, 1)
    assert span <= limit
