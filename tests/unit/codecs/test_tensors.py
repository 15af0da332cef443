"""The dtype table and the raw tensor encoding (binary extension, gRPC raw contents): every
datatype round-trips, truncated data is refused, and a shape is accepted exactly when it is
within the limits."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelserve.codecs.tensors import (
    MAX_DIMS,
    V2_TO_NUMPY,
    check_shape,
    decode_raw,
    encode_raw,
    numpy_dtype,
    v2_datatype,
)
from modelserve.errors import InvalidArgument
from tests.unit.codecs.strategies import ALL, NUMERIC, arrays, assert_same_tensor

hostile_dims = st.one_of(
    st.integers(min_value=0, max_value=8),
    st.integers(min_value=-2, max_value=2**64 + 5),
)


@settings(max_examples=100, deadline=None)
@given(datatype=st.sampled_from(ALL), data=st.data())
def test_raw_round_trip(datatype: str, data: st.DataObject) -> None:
    array = data.draw(arrays(datatype))
    raw = encode_raw(array, datatype)
    if datatype != "BYTES":  # little-endian, row-major, as an independent encoder writes it
        assert raw == np.ascontiguousarray(array, V2_TO_NUMPY[datatype].newbyteorder("<")).tobytes()
    assert_same_tensor(decode_raw("x", datatype, array.shape, raw), datatype, array)


@settings(max_examples=60, deadline=None)
@given(items=st.lists(st.binary(max_size=20), max_size=10))
def test_bytes_raw_round_trip(items: list[bytes]) -> None:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    raw = encode_raw(array, "BYTES")
    assert raw == b"".join(struct.pack("<I", len(item)) + item for item in items)
    assert list(decode_raw("x", "BYTES", (len(items),), raw)) == items


def test_bytes_raw_truncated_is_invalid() -> None:
    with pytest.raises(InvalidArgument):
        decode_raw("x", "BYTES", (1,), struct.pack("<I", 10) + b"abc")
    with pytest.raises(InvalidArgument):
        decode_raw("x", "BYTES", (2,), struct.pack("<I", 1) + b"a")


@pytest.mark.parametrize("datatype", NUMERIC)
def test_raw_data_of_the_wrong_size_is_invalid(datatype: str) -> None:
    raw = np.zeros(3, dtype=V2_TO_NUMPY[datatype]).tobytes()
    assert decode_raw("x", datatype, (3,), raw).shape == (3,)
    with pytest.raises(InvalidArgument, match="bytes"):
        decode_raw("x", datatype, (4,), raw)


@pytest.mark.parametrize("datatype", NUMERIC)
def test_dtype_table_goes_both_ways(datatype: str) -> None:
    assert v2_datatype(numpy_dtype(datatype)) == datatype
    assert v2_datatype(numpy_dtype(datatype).newbyteorder(">")) == datatype


def test_unknown_datatype_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="unsupported datatype 'FP8'"):
        numpy_dtype("FP8")


@given(shape=st.lists(hostile_dims, max_size=40), limit=st.integers(min_value=1, max_value=10**6))
def test_accepted_shapes_are_within_the_limits(shape: list[int], limit: int) -> None:
    try:
        dims = check_shape("x", shape, limit)
    except InvalidArgument:
        return
    assert len(dims) <= MAX_DIMS
    span = 1
    for dim in dims:
        assert dim >= 0
        span *= max(dim, 1)
    assert span <= limit


@given(
    shape=st.lists(st.integers(min_value=0, max_value=6), max_size=MAX_DIMS),
    limit=st.integers(min_value=1, max_value=10**4),
    counted=st.integers(min_value=0, max_value=100),
)
def test_shapes_within_the_limits_are_accepted(shape: list[int], limit: int, counted: int) -> None:
    """The other half: a valid shape is refused only for going over the limit (zeros count as
    one, earlier inputs' ``counted`` elements too), so a check that refused everything fails."""
    span = int(np.prod([max(dim, 1) for dim in shape]))
    if counted + span <= limit:
        assert check_shape("x", shape, limit, counted) == tuple(shape)
    else:
        with pytest.raises(InvalidArgument, match="limit"):
            check_shape("x", shape, limit, counted)
