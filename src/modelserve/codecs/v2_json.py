"""V2 REST bodies: JSON tensors and Triton's binary tensor data extension, both directions.

A request body is a JSON header optionally followed by raw tensor bytes; the header's length is
given by the ``Inference-Header-Content-Length`` HTTP header.

A *raw body* is modelserve's shortcut for posting a file as it is (``curl --data-binary
@part.jpg``): a body that cannot be a JSON request (its first byte is not ``{`` or white space)
sent without that header, or any body sent with ``Inference-Header-Content-Length: 0`` (no
JSON header at all), is the one element of the model's only input, which must be BYTES. The
answer is the usual JSON one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from modelserve.codecs.tensors import (
    DEFAULT_MAX_ELEMENTS,
    check_shape,
    decode_raw,
    element_count,
    encode_raw,
    numpy_dtype,
)
from modelserve.errors import InvalidArgument
from modelserve.types import (
    EMPTY_PARAMS,
    InferenceRequest,
    InferenceResponse,
    Parameters,
    RequestedOutput,
    Tensor,
    TensorSpec,
    as_object_array,
)

_INT_KINDS = frozenset("iu")
_FLOAT_OK_KINDS = frozenset("iuf")


SHM_REGION = "shared_memory_region"
"""A tensor parameter naming the shared-memory region that holds its data (Triton's system
shared-memory extension): such an input carries no data here, the dataplane reads it; such an
output is answered without data, the dataplane wrote it."""


def _parameters(where: str, value: object) -> Parameters:
    if value is None:
        return EMPTY_PARAMS
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where}: 'parameters' must be a JSON object")
    for key, item in value.items():
        if not isinstance(item, str | int | float | bool):
            raise InvalidArgument(f"{where}: parameter '{key}' must be a string, number or boolean")
    return value


def _flatten_strings(name: str, data: Any, out: list[bytes]) -> None:
    """Depth-first, without recursion: JSON may nest deeper than Python's recursion limit."""
    stack = [iter((data,))]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            if not isinstance(item, str):
                raise InvalidArgument(
                    f"input '{name}': BYTES data must be strings, got {type(item).__name__}"
                )
            out.append(item.encode("utf-8"))
        else:
            stack.pop()


def decode_json_data(
    name: str, datatype: str, shape: tuple[int, ...], data: object
) -> npt.NDArray[Any]:
    """Turn a JSON ``data`` value (flat or nested) into an array of ``shape``."""
    dtype = numpy_dtype(datatype)
    count = element_count(shape)
    if not isinstance(data, list):
        data = [data]
    if datatype == "BYTES":
        items: list[bytes] = []
        _flatten_strings(name, data, items)
        array: npt.NDArray[Any] = as_object_array(items)
    else:
        try:
            probe = np.asarray(data)
        except (ValueError, TypeError) as exc:
            raise InvalidArgument(f"input '{name}': data is not a regular array: {exc}") from None
        kind = probe.dtype.kind
        allowed = (
            "b" if datatype == "BOOL" else _INT_KINDS if dtype.kind in "iu" else _FLOAT_OK_KINDS
        )
        if probe.size and dtype.kind in "iu" and kind in "fO":
            # Integers beyond int64 (UINT64's upper half) make numpy pick float or object.
            probe = _large_integers(name, data, dtype)
            kind = probe.dtype.kind
        if probe.size and kind not in allowed:
            raise InvalidArgument(
                f"input '{name}': data holds {_kind_name(kind)} values, which do not fit "
                f"datatype {datatype}"
            )
        if probe.size and dtype.kind in "iu":
            info = np.iinfo(dtype)
            if probe.min() < info.min or probe.max() > info.max:
                raise InvalidArgument(f"input '{name}': a value is out of range for {datatype}")
        if dtype.kind == "f" and dtype.itemsize < probe.dtype.itemsize:
            # JSON numbers are float64: one beyond FP32/FP16 range would silently become inf
            with np.errstate(over="raise"):
                try:
                    array = probe.astype(dtype, copy=False)
                except FloatingPointError:
                    raise InvalidArgument(
                        f"input '{name}': a value is out of range for {datatype}"
                    ) from None
        else:
            array = probe.astype(dtype, copy=False)
    if array.size != count:
        raise InvalidArgument(
            f"input '{name}': {array.size} elements given, but shape {list(shape)} needs {count}"
        )
    return array.reshape(shape)


def _large_integers(name: str, data: object, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    items = np.asarray(data, dtype=object)
    if not all(type(item) is int for item in items.flat):
        return items
    try:
        return np.asarray(data, dtype=dtype)
    except OverflowError:
        raise InvalidArgument(f"input '{name}': a value is out of range for {dtype}") from None


def _kind_name(kind: str) -> str:
    return {
        "b": "boolean",
        "i": "integer",
        "u": "integer",
        "f": "floating-point",
        "U": "string",
        "O": "mixed",
    }.get(kind, "non-numeric")


def json_object(data: bytes | memoryview) -> dict[str, Any]:
    """A request body that must be a JSON object; anything else is the client's mistake."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"malformed JSON in request body: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return doc


def is_raw_body(body: bytes, header_length: int | None) -> bool:
    """Whether a request body is a raw body (see the module's docstring)."""
    if header_length is not None:
        return header_length == 0
    return bool(body) and body[:1] not in b"{ \t\r\n"


def raw_infer_request(
    body: bytes, inputs: tuple[TensorSpec, ...], model_name: str, model_version: str = ""
) -> InferenceRequest:
    """A raw body as the one BYTES element of the model's only input (shape: the input's,
    with 1 for every variable dimension)."""
    if len(inputs) != 1 or inputs[0].datatype != "BYTES":
        described = ", ".join(f"{s.name} ({s.datatype})" for s in inputs) or "none"
        raise InvalidArgument(
            "the body is not a JSON inference request; a raw body (a file posted as it is) is "
            f"the input only of a model with one BYTES input, and model '{model_name}' has "
            f"inputs: {described}"
        )
    spec = inputs[0]
    shape = tuple(1 if dim == -1 else dim for dim in spec.shape)
    if element_count(shape) != 1:
        raise InvalidArgument(
            f"a raw body is one element, but input '{spec.name}' has shape {list(spec.shape)}"
        )
    data = as_object_array([bytes(body)]).reshape(shape)
    tensor = Tensor(spec.name, "BYTES", shape, data)
    return InferenceRequest(model_name=model_name, model_version=model_version, inputs=(tensor,))


def decode_infer_request(
    body: bytes,
    header_length: int | None,
    model_name: str,
    model_version: str = "",
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> InferenceRequest:
    """Decode an infer request body. ``header_length`` is the value of
    Inference-Header-Content-Length, or None when the body is plain JSON. The inputs' shapes
    may declare at most ``max_elements`` elements together."""
    view = memoryview(body)
    if header_length is None:
        header, binary = view, view[0:0]
    else:
        if header_length < 0 or header_length > len(body):
            raise InvalidArgument(
                f"Inference-Header-Content-Length {header_length} is outside the body "
                f"of {len(body)} bytes"
            )
        header, binary = view[:header_length], view[header_length:]
    doc = json_object(header)

    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidArgument("'inputs' must be a non-empty list")
    inputs: list[Tensor] = []
    seen: set[str] = set()
    offset = 0
    counted = 0
    for position, item in enumerate(raw_inputs):
        tensor, used = _decode_input(position, item, binary, offset, max_elements, counted)
        counted += tensor.data.size
        if tensor.name in seen:
            raise InvalidArgument(f"input '{tensor.name}' is given more than once")
        seen.add(tensor.name)
        inputs.append(tensor)
        offset += used
    if offset != len(binary):
        raise InvalidArgument(
            f"the body has {len(binary) - offset} bytes of binary data that no input's "
            "binary_data_size accounts for"
        )

    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidArgument("'id' must be a string")
    return InferenceRequest(
        model_name=model_name,
        model_version=model_version,
        id=request_id,
        inputs=tuple(inputs),
        parameters=_parameters("request", doc.get("parameters")),
        outputs=_decode_outputs(doc.get("outputs")),
    )


def _decode_input(
    position: int, item: object, binary: memoryview, offset: int, max_elements: int, counted: int
) -> tuple[Tensor, int]:
    if not isinstance(item, dict):
        raise InvalidArgument(f"inputs[{position}] must be a JSON object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"inputs[{position}]: 'name' must be a non-empty string")
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidArgument(f"input '{name}': 'datatype' must be a string")
    numpy_dtype(datatype)
    if "shape" not in item:
        raise InvalidArgument(f"input '{name}': 'shape' is missing")
    shape = check_shape(name, item["shape"], max_elements, counted)
    params = _parameters(f"input '{name}'", item.get("parameters"))
    if SHM_REGION in params:
        if "data" in item or "binary_data_size" in params:
            raise InvalidArgument(f"input '{name}': its data is in shared memory; send none")
        return Tensor(name, datatype, shape, np.empty(0, numpy_dtype(datatype)), params), 0
    size = params.get("binary_data_size")
    if size is not None:
        if "data" in item:
            raise InvalidArgument(f"input '{name}': give either 'data' or binary_data_size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidArgument(
                f"input '{name}': binary_data_size must be a non-negative integer"
            )
        if offset + size > len(binary):
            raise InvalidArgument(
                f"input '{name}': binary_data_size {size} runs past the end of the body "
                f"({len(binary) - offset} binary bytes left)"
            )
        data = decode_raw(name, datatype, shape, binary[offset : offset + size])
        return Tensor(name, datatype, shape, data, params), size
    if "data" not in item:
        raise InvalidArgument(f"input '{name}': 'data' is missing")
    data = decode_json_data(name, datatype, shape, item["data"])
    return Tensor(name, datatype, shape, data, params), 0


def _decode_outputs(value: object) -> tuple[RequestedOutput, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidArgument("'outputs' must be a list")
    outputs: list[RequestedOutput] = []
    for position, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidArgument(f"outputs[{position}] must be an object with a string 'name'")
        name = item["name"]
        outputs.append(
            RequestedOutput(name, _parameters(f"output '{name}'", item.get("parameters")))
        )
    return tuple(outputs)


def _wants_binary(
    name: str, request_params: Parameters, requested: Mapping[str, Parameters]
) -> bool:
    params = requested.get(name)
    if params is not None and "binary_data" in params:
        return bool(params["binary_data"])
    return bool(request_params.get("binary_data_output", False))


def _json_data(tensor: Tensor) -> object:
    flat = tensor.data.reshape(-1)
    if tensor.datatype == "BYTES":
        try:
            return [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in flat]
        except UnicodeDecodeError:
            raise InvalidArgument(
                f"output '{tensor.name}' holds bytes that are not UTF-8; "
                "request it with binary_data"
            ) from None
    return np.ascontiguousarray(flat)


def encode_infer_response(
    response: InferenceResponse,
    request_params: Parameters = EMPTY_PARAMS,
    requested: Sequence[RequestedOutput] | None = None,
) -> tuple[bytes, int | None]:
    """Encode a response; returns (body, json header length or None when all JSON)."""
    wanted = {out.name: out.parameters for out in requested or ()}
    outputs: list[dict[str, object]] = []
    chunks: list[bytes] = []
    for tensor in response.outputs:
        entry: dict[str, object] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if tensor.parameters and SHM_REGION in tensor.parameters:  # the data is in shm
            # binary_data_size 0: Triton's C++ client (perf_analyzer) reads it from any output
            # that has parameters
            entry["parameters"] = {**tensor.parameters, "binary_data_size": 0}
        elif _wants_binary(tensor.name, request_params, wanted):
            raw = encode_raw(tensor.data, tensor.datatype)
            entry["parameters"] = {**tensor.parameters, "binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            if tensor.parameters:
                entry["parameters"] = dict(tensor.parameters)
            entry["data"] = _json_data(tensor)
        outputs.append(entry)
    doc: dict[str, object] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": outputs,
    }
    if response.id is not None:
        doc["id"] = response.id
    if response.parameters:
        doc["parameters"] = dict(response.parameters)
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)
