"""Protobuf <-> neutral types for the gRPC transport (Triton's ``inference`` package).

Infer requests carry their tensors either as ``raw_input_contents`` (one entry per input, the
byte encoding of REST's binary data extension) or as typed ``contents``; answers always use
``raw_output_contents``, one entry per output, because that is all tritonclient's ``as_numpy``
reads. Validation and messages mirror the REST codec (codecs/v2_json.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf import json_format
from google.protobuf.message import Message

from modelserve.codecs.tensors import (
    DEFAULT_MAX_ELEMENTS,
    check_shape,
    decode_raw,
    element_count,
    encode_raw,
    numpy_dtype,
)
from modelserve.errors import InvalidArgument
from modelserve.observability import Duration, ModelStatistics
from modelserve.protocol import grpc_service_pb2 as pb
from modelserve.protocol import model_config_pb2 as mc
from modelserve.transports.statistics import BATCH_DURATIONS, DURATIONS
from modelserve.types import (
    EMPTY_PARAMS,
    IndexEntry,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    Parameters,
    ParamValue,
    RequestedOutput,
    ServerMetadata,
    Tensor,
    as_object_array,
)

# V2 datatype -> the InferTensorContents field that carries it. FP16 has none (raw only).
TYPED_CONTENTS_FIELD: dict[str, str] = {
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

_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


# ---- parameters ------------------------------------------------------------------------------


def decode_parameters(where: str, params: Mapping[str, Any]) -> Parameters:
    """A ``map<string, InferParameter>`` as plain Python scalars."""
    if not params:
        return EMPTY_PARAMS
    out: dict[str, ParamValue] = {}
    for key, value in params.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is None:
            raise InvalidArgument(f"{where}: parameter '{key}' has no value")
        out[key] = getattr(value, choice)
    return out


def encode_parameters(target: Any, params: Parameters) -> None:
    """Fill a ``map<string, InferParameter>`` from plain Python scalars."""
    for key, value in params.items():
        slot = target[key]
        if isinstance(value, bool):
            slot.bool_param = value
        elif isinstance(value, int):
            if _INT64_MIN <= value <= _INT64_MAX:
                slot.int64_param = value
            elif 0 <= value <= _UINT64_MAX:
                slot.uint64_param = value
            else:
                slot.string_param = str(value)
        elif isinstance(value, float):
            slot.double_param = value
        else:
            slot.string_param = str(value)


SHM_REGION = "shared_memory_region"

# ---- infer -----------------------------------------------------------------------------------


def decode_infer_request(
    msg: pb.ModelInferRequest, max_elements: int = DEFAULT_MAX_ELEMENTS
) -> InferenceRequest:
    """A ``ModelInferRequest`` as a neutral request, checked like a REST body (shapes declare
    at most ``max_elements`` elements together)."""
    if not msg.inputs:
        raise InvalidArgument("'inputs' must be a non-empty list")
    raw = msg.raw_input_contents
    # inputs in shared memory take no raw_input_contents entry (as in Triton)
    in_shm = [SHM_REGION in item.parameters for item in msg.inputs]
    if raw:
        wanted = len(in_shm) - sum(in_shm)
        if len(raw) != wanted:
            raise InvalidArgument(
                f"{len(raw)} raw_input_contents given for {wanted} inputs; give exactly one "
                "per input not in shared memory, in the order of the inputs"
            )
        for item in msg.inputs:
            if item.HasField("contents"):
                raise InvalidArgument(
                    f"input '{item.name}': typed 'contents' cannot be mixed with "
                    "raw_input_contents in one request"
                )
    inputs: list[Tensor] = []
    seen: set[str] = set()
    counted = 0
    next_raw = 0
    for position, item in enumerate(msg.inputs):
        raw_item = None
        if raw and not in_shm[position]:
            raw_item, next_raw = raw[next_raw], next_raw + 1
        tensor = _decode_input(position, item, raw_item, max_elements, counted)
        counted += tensor.data.size
        if tensor.name in seen:
            raise InvalidArgument(f"input '{tensor.name}' is given more than once")
        seen.add(tensor.name)
        inputs.append(tensor)
    outputs = tuple(
        RequestedOutput(out.name, decode_parameters(f"output '{out.name}'", out.parameters))
        for out in msg.outputs
    )
    for position, out in enumerate(outputs):
        if not out.name:
            raise InvalidArgument(f"outputs[{position}]: 'name' must be a non-empty string")
    return InferenceRequest(
        model_name=msg.model_name,
        model_version=msg.model_version,
        id=msg.id or None,
        inputs=tuple(inputs),
        parameters=decode_parameters("request", msg.parameters),
        outputs=outputs or None,
    )


def _decode_input(
    position: int,
    item: pb.ModelInferRequest.InferInputTensor,
    raw: bytes | None,
    max_elements: int,
    counted: int,
) -> Tensor:
    name: str = item.name
    if not name:
        raise InvalidArgument(f"inputs[{position}]: 'name' must be a non-empty string")
    datatype: str = item.datatype
    numpy_dtype(datatype)
    shape = check_shape(name, list(item.shape), max_elements, counted)
    params = decode_parameters(f"input '{name}'", item.parameters)
    if SHM_REGION in params:
        if raw is not None or item.HasField("contents"):
            raise InvalidArgument(f"input '{name}': its data is in shared memory; send none")
        data = np.empty(0, dtype=numpy_dtype(datatype))  # read by the dataplane
    elif raw is not None:
        data = decode_raw(name, datatype, shape, raw)
    else:
        data = _decode_contents(name, datatype, shape, item.contents)
    return Tensor(name, datatype, shape, data, params)


def _decode_contents(
    name: str, datatype: str, shape: tuple[int, ...], contents: pb.InferTensorContents
) -> npt.NDArray[Any]:
    field = TYPED_CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidArgument(
            f"input '{name}': {datatype} has no typed contents field; send it in raw_input_contents"
        )
    for descriptor, _ in contents.ListFields():
        if descriptor.name != field:
            raise InvalidArgument(
                f"input '{name}': datatype {datatype} takes its data in contents.{field}, "
                f"not contents.{descriptor.name}"
            )
    values = getattr(contents, field)
    count = element_count(shape)
    if len(values) != count:
        raise InvalidArgument(
            f"input '{name}': {len(values)} elements given, but shape {list(shape)} needs {count}"
        )
    dtype = numpy_dtype(datatype)
    if datatype == "BYTES":
        array: npt.NDArray[Any] = as_object_array(list(values))
    elif dtype.kind in "iu" and dtype.itemsize < 4:
        wide = np.array(values, dtype=np.int64)
        info = np.iinfo(dtype)
        if wide.size and (wide.min() < info.min or wide.max() > info.max):
            raise InvalidArgument(f"input '{name}': a value is out of range for {datatype}")
        array = wide.astype(dtype)
    else:
        array = np.array(values, dtype=dtype)
    return array.reshape(shape)


def encode_infer_response(response: InferenceResponse) -> pb.ModelInferResponse:
    """A neutral response as a ``ModelInferResponse`` with raw output contents."""
    msg = pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version,
        id=response.id or "",
    )
    encode_parameters(msg.parameters, response.parameters)
    raw = msg.raw_output_contents
    for tensor in response.outputs:
        out = msg.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        encode_parameters(out.parameters, tensor.parameters)
        in_shm = tensor.parameters and SHM_REGION in tensor.parameters  # written there
        raw.append(b"" if in_shm else encode_raw(tensor.data, tensor.datatype))
    return msg


# ---- documents -------------------------------------------------------------------------------


def server_metadata_response(meta: ServerMetadata) -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(
        name=meta.name, version=meta.version, extensions=meta.extensions
    )


def model_metadata_response(meta: ModelMetadata) -> pb.ModelMetadataResponse:
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=meta.name,
        versions=meta.versions,
        platform=meta.platform,
        inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.inputs],
        outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.outputs],
    )


def model_config_response(config: dict[str, Any]) -> pb.ModelConfigResponse:
    """The DataPlane's protobuf-JSON-shaped Triton configuration as a ``ModelConfigResponse``.
    Keys our reduced model_config.proto does not declare are dropped."""
    message: Message = json_format.ParseDict(config, mc.ModelConfig(), ignore_unknown_fields=True)
    return pb.ModelConfigResponse(config=message)


def repository_index_response(rows: list[IndexEntry]) -> pb.RepositoryIndexResponse:
    index = pb.RepositoryIndexResponse.ModelIndex
    return pb.RepositoryIndexResponse(
        models=[
            index(name=r.name, version=r.version, state=r.state.value, reason=r.reason)
            for r in rows
        ]
    )


# ---- statistics ------------------------------------------------------------------------------


def _fill(target: Any, value: Duration) -> None:
    target.count = value.count
    target.ns = value.ns


def statistics_response(stats: list[ModelStatistics]) -> pb.ModelStatisticsResponse:
    """The ModelStatistics RPC."""
    response = pb.ModelStatisticsResponse()
    for s in stats:
        message = response.model_stats.add(
            name=s.name,
            version=s.version,
            last_inference=s.last_inference,
            inference_count=s.inference_count,
            execution_count=s.execution_count,
        )
        for key in DURATIONS:
            _fill(getattr(message.inference_stats, key), getattr(s, key))
        for b in s.batch_stats:
            batch = message.batch_stats.add(batch_size=b.batch_size)
            for key in BATCH_DURATIONS:
                _fill(getattr(batch, key), getattr(b, key))
    return response
