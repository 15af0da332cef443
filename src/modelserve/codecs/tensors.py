"""THE dtype table, and the raw tensor encoding shared by REST binary data and gRPC."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from modelserve.errors import InvalidArgument
from modelserve.types import as_object_array

# V2 datatype -> numpy dtype. BYTES is an object array holding ``bytes``.
V2_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}

# V2 datatype -> Triton model-configuration data_type.
V2_TO_TRITON: dict[str, str] = {
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
    "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64",
    "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "FP16": "TYPE_FP16",
    "FP32": "TYPE_FP32",
    "FP64": "TYPE_FP64",
    "BYTES": "TYPE_STRING",
}

_NUMPY_KIND_TO_V2: dict[str, str] = {
    np.dtype(np.bool_).str: "BOOL",
    np.dtype(np.uint8).str: "UINT8",
    np.dtype(np.uint16).str: "UINT16",
    np.dtype(np.uint32).str: "UINT32",
    np.dtype(np.uint64).str: "UINT64",
    np.dtype(np.int8).str: "INT8",
    np.dtype(np.int16).str: "INT16",
    np.dtype(np.int32).str: "INT32",
    np.dtype(np.int64).str: "INT64",
    np.dtype(np.float16).str: "FP16",
    np.dtype(np.float32).str: "FP32",
    np.dtype(np.float64).str: "FP64",
}

DATATYPES: frozenset[str] = frozenset(V2_TO_NUMPY)


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    try:
        return V2_TO_NUMPY[datatype]
    except KeyError:
        raise InvalidArgument(
            f"unsupported datatype '{datatype}'; expected one of {sorted(DATATYPES)}"
        ) from None


def v2_datatype(dtype: np.dtype[Any]) -> str:
    """The V2 datatype of a numpy dtype; strings and objects are BYTES."""
    if dtype.kind in "OSU":
        return "BYTES"
    try:
        return _NUMPY_KIND_TO_V2[dtype.newbyteorder("=").str]
    except KeyError:
        raise ValueError(f"numpy dtype {dtype} has no V2 datatype") from None


def element_count(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


DEFAULT_MAX_ELEMENTS = 64 * 1024 * 1024
"""Most tensor elements one request may declare (Settings.max_tensor_elements)."""
MAX_DIMS = 32
"""Most dimensions of a request tensor (numpy 1.x's own limit)."""


def check_shape(
    name: str, shape: object, max_elements: int = DEFAULT_MAX_ELEMENTS, counted: int = 0
) -> tuple[int, ...]:
    """A request shape: a list of non-negative integers (no -1), at most MAX_DIMS of them,
    whose product (zeros counted as 1, so that no reshape can overflow) plus the ``counted``
    elements of the request's earlier inputs is at most ``max_elements``. Checked before any
    data is decoded, so a lying shape allocates nothing."""
    if not isinstance(shape, list | tuple):
        raise InvalidArgument(f"input '{name}': shape must be a list of integers")
    if len(shape) > MAX_DIMS:
        raise InvalidArgument(f"input '{name}': shape has {len(shape)} dimensions, over {MAX_DIMS}")
    dims: list[int] = []
    span = 1  # a scalar (shape []) is one element too
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise InvalidArgument(f"input '{name}': shape must be a list of integers, got {shape}")
        if dim < 0:
            raise InvalidArgument(
                f"input '{name}': shape {list(shape)} has a negative dimension; "
                "a request must give the actual size of every dimension"
            )
        span *= max(dim, 1)
        if counted + span > max_elements:
            break
        dims.append(dim)
    if counted + span > max_elements:
        raise InvalidArgument(
            f"input '{name}': shape {list(shape)} exceeds the server's limit of "
            f"{max_elements} tensor elements per request (all inputs together)"
        )
    return tuple(dims)


def to_bytes_element(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, bytearray | memoryview):
        return bytes(item)
    if isinstance(item, np.str_):
        return str(item).encode("utf-8")
    raise TypeError(f"cannot convert {type(item).__name__} to bytes")


def decode_raw(
    name: str, datatype: str, shape: tuple[int, ...], buf: bytes | memoryview
) -> npt.NDArray[Any]:
    """Decode a little-endian row-major raw tensor (binary extension / gRPC raw contents)."""
    dtype = numpy_dtype(datatype)
    count = element_count(shape)
    if datatype == "BYTES":
        return decode_bytes_raw(name, buf, count).reshape(shape)
    expected = count * dtype.itemsize
    if len(buf) != expected:
        raise InvalidArgument(
            f"input '{name}': {len(buf)} bytes of data given, but shape {list(shape)} "
            f"of {datatype} needs {expected} bytes"
        )
    return np.frombuffer(buf, dtype=dtype.newbyteorder("<")).reshape(shape)


def decode_bytes_raw(name: str, buf: bytes | memoryview, count: int) -> npt.NDArray[np.object_]:
    view = memoryview(buf)
    items: list[bytes] = []
    offset = 0
    total = len(view)
    while offset < total:
        if offset + 4 > total:
            raise InvalidArgument(f"input '{name}': truncated BYTES element length prefix")
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if offset + length > total:
            raise InvalidArgument(
                f"input '{name}': BYTES element of {length} bytes runs past the end of the data"
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if len(items) != count:
        raise InvalidArgument(
            f"input '{name}': {len(items)} BYTES elements given, but the shape needs {count}"
        )
    return as_object_array(items)


def encode_raw(array: npt.NDArray[Any], datatype: str) -> bytes:
    """Encode a tensor as raw little-endian row-major bytes."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for item in array.reshape(-1):
            data = to_bytes_element(item)
            parts.append(struct.pack("<I", len(data)))
            parts.append(data)
        return b"".join(parts)
    dtype = V2_TO_NUMPY[datatype].newbyteorder("<")
    return np.ascontiguousarray(array, dtype=dtype).tobytes()
