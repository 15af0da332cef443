"""The V2 API over gRPC (grpcio): Triton's ``inference.GRPCInferenceService``, whose messages
are the project's generated ones (``modelserve.protocol``, shared with the server's transport,
in their own descriptor pool so that tritonclient can live in the same process).

Tensors go as ``raw_input_contents`` and come back as ``raw_output_contents`` (typed
``contents`` too, which some servers answer with). Metadata carries ``x-request-id`` and the
bearer token; the server's ``x-request-id`` and ``retry-after`` come back as trailing metadata.
Labels, monitoring and experiments are REST endpoints: over gRPC they are ``UnsupportedError``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import grpc
import numpy as np
import numpy.typing as npt
import orjson

from modelserve.client.calls import Call, ExperimentMethod, Label
from modelserve.client.connection import Endpoint
from modelserve.client.errors import (
    ClientError,
    ConnectionFailedError,
    DeadlineError,
    TlsError,
    UnsupportedError,
    error_for_grpc,
)
from modelserve.client.results import RepositoryModel
from modelserve.client.retry import parse_retry_after
from modelserve.codecs.tensors import V2_TO_NUMPY, decode_raw, encode_raw
from modelserve.errors import ServerError
from modelserve.protocol import grpc_service_pb2 as pb
from modelserve.types import (
    EMPTY_PARAMS,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    Parameters,
    ServerMetadata,
    Tensor,
    TensorSpec,
)

__all__ = ["AsyncGrpcTransport", "GrpcApi", "GrpcCall", "GrpcOptions", "GrpcTransport"]

T = TypeVar("T")

SERVICE = "/inference.GRPCInferenceService/"
MAX_MESSAGE = 2**31 - 1
"""The client takes any size; the server enforces its own limit (grpc_max_message_bytes)."""

# Typed contents fields by datatype (the V2 gRPC protocol); FP16 has none.
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


@dataclass(slots=True)
class GrpcAnswer:
    message: Any
    trailing: Mapping[str, str]


@dataclass(slots=True, kw_only=True)
class GrpcCall(Call[T]):
    method: str
    """The RPC name: ``ModelInfer``."""
    request: Any
    response_type: Any
    decode: Callable[[GrpcAnswer], T]


# ---- messages -------------------------------------------------------------------------------


def _set_parameters(target: Any, parameters: Parameters) -> None:
    for key, value in parameters.items():
        if isinstance(value, bool):
            target[key].bool_param = value
        elif isinstance(value, int):
            target[key].int64_param = value
        elif isinstance(value, float):
            target[key].double_param = value
        else:
            target[key].string_param = str(value)


def _parameters(source: Any) -> dict[str, Any]:
    return {
        key: getattr(value, value.WhichOneof("parameter_choice")) for key, value in source.items()
    }


def encode_infer(request: InferenceRequest) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(
        model_name=request.model_name,
        model_version=request.model_version,
        id=request.id or "",
    )
    _set_parameters(message.parameters, request.parameters)
    for tensor in request.inputs:
        entry = message.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        _set_parameters(entry.parameters, tensor.parameters)
        message.raw_input_contents.append(encode_raw(tensor.data, tensor.datatype))
    for output in request.outputs or ():
        message.outputs.add(name=output.name)
    return message


def _typed(output: Any, shape: tuple[int, ...]) -> npt.NDArray[Any]:
    field = _CONTENTS.get(output.datatype)
    if field is None:
        raise ValueError(f"output '{output.name}': no typed contents for {output.datatype}")
    values = list(getattr(output.contents, field))
    if output.datatype == "BYTES":
        array = np.empty(len(values), dtype=object)
        array[:] = values
    else:
        array = np.array(values, dtype=V2_TO_NUMPY[output.datatype])
    return array.reshape(shape)


def decode_infer(answer: GrpcAnswer) -> tuple[InferenceResponse, str]:
    message = answer.message
    raw = message.raw_output_contents
    outputs: list[Tensor] = []
    for position, output in enumerate(message.outputs):
        shape = tuple(output.shape)
        if raw:
            data = decode_raw(output.name, output.datatype, shape, raw[position])
        else:
            data = _typed(output, shape)
        parameters = _parameters(output.parameters) if output.parameters else EMPTY_PARAMS
        outputs.append(Tensor(output.name, output.datatype, shape, data, parameters))
    response = InferenceResponse(
        model_name=message.model_name,
        model_version=message.model_version,
        outputs=tuple(outputs),
        id=message.id or None,
        parameters=_parameters(message.parameters) if message.parameters else EMPTY_PARAMS,
    )
    return response, answer.trailing.get("x-request-id", "")


def _specs(tensors: Any) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(t.name, t.datatype, tuple(int(d) for d in t.shape)) for t in tensors)


def _metadata(answer: GrpcAnswer) -> ModelMetadata:
    m = answer.message
    return ModelMetadata(m.name, tuple(m.versions), m.platform, _specs(m.inputs), _specs(m.outputs))


def _server_metadata(answer: GrpcAnswer) -> ServerMetadata:
    m = answer.message
    return ServerMetadata(m.name, m.version, tuple(m.extensions))


def _index(answer: GrpcAnswer) -> list[RepositoryModel]:
    return [RepositoryModel(r.name, r.version, r.state, r.reason) for r in answer.message.models]


def _live(answer: GrpcAnswer) -> bool:
    return bool(answer.message.live)


def _ready(answer: GrpcAnswer) -> bool:
    return bool(answer.message.ready)


def _nothing(answer: GrpcAnswer) -> None:
    return None


class GrpcApi:
    """Builds the gRPC calls (calls.Api)."""

    def _call(
        self,
        what: str,
        rid: str,
        method: str,
        request: Any,
        response_type: Any,
        decode: Callable[[GrpcAnswer], T],
        idempotent: bool = True,
    ) -> GrpcCall[T]:
        return GrpcCall(
            what=what,
            request_id=rid,
            idempotent=idempotent,
            method=method,
            request=request,
            response_type=response_type,
            decode=decode,
        )

    def server_metadata(self, rid: str) -> GrpcCall[ServerMetadata]:
        return self._call(
            "server metadata",
            rid,
            "ServerMetadata",
            pb.ServerMetadataRequest(),
            pb.ServerMetadataResponse,
            _server_metadata,
        )

    def live(self, rid: str) -> GrpcCall[bool]:
        return self._call(
            "server live", rid, "ServerLive", pb.ServerLiveRequest(), pb.ServerLiveResponse, _live
        )

    def ready(self, rid: str) -> GrpcCall[bool]:
        request = pb.ServerReadyRequest()
        return self._call(
            "server ready", rid, "ServerReady", request, pb.ServerReadyResponse, _ready
        )

    def model_ready(self, model: str, version: str, rid: str) -> GrpcCall[bool]:
        request = pb.ModelReadyRequest(name=model, version=version)
        return self._call(
            f"ready {model}", rid, "ModelReady", request, pb.ModelReadyResponse, _ready
        )

    def model_metadata(self, model: str, version: str, rid: str) -> GrpcCall[ModelMetadata]:
        request = pb.ModelMetadataRequest(name=model, version=version)
        return self._call(
            f"metadata {model}", rid, "ModelMetadata", request, pb.ModelMetadataResponse, _metadata
        )

    def index(self, ready_only: bool, rid: str) -> GrpcCall[list[RepositoryModel]]:
        request = pb.RepositoryIndexRequest(ready=ready_only)
        return self._call(
            "repository index", rid, "RepositoryIndex", request, pb.RepositoryIndexResponse, _index
        )

    def load(self, model: str, config: Mapping[str, Any] | None, rid: str) -> GrpcCall[None]:
        request = pb.RepositoryModelLoadRequest(model_name=model)
        if config is not None:
            request.parameters["config"].string_param = orjson.dumps(dict(config)).decode()
        return self._call(
            f"load {model}",
            rid,
            "RepositoryModelLoad",
            request,
            pb.RepositoryModelLoadResponse,
            _nothing,
            idempotent=False,
        )

    def unload(self, model: str, rid: str) -> GrpcCall[None]:
        return self._call(
            f"unload {model}",
            rid,
            "RepositoryModelUnload",
            pb.RepositoryModelUnloadRequest(model_name=model),
            pb.RepositoryModelUnloadResponse,
            _nothing,
            idempotent=False,
        )

    def infer(self, request: InferenceRequest, rid: str) -> GrpcCall[tuple[InferenceResponse, str]]:
        return self._call(
            f"infer {request.model_name}",
            rid,
            "ModelInfer",
            encode_infer(request),
            pb.ModelInferResponse,
            decode_infer,
        )

    def _rest_only(self, what: str) -> UnsupportedError:
        return UnsupportedError(
            f"{what} is a REST endpoint of modelserve, not a gRPC call; "
            "use a client made with protocol='http' for it"
        )

    def labels(self, model: str, labels: Sequence[Label], rid: str) -> GrpcCall[dict[str, Any]]:
        raise self._rest_only("labels")

    def monitoring(self, model: str, rid: str) -> GrpcCall[dict[str, Any]]:
        raise self._rest_only("monitoring")

    def experiment(
        self, model: str, method: ExperimentMethod, body: Mapping[str, Any] | None, rid: str
    ) -> GrpcCall[dict[str, Any]]:
        raise self._rest_only("experiment")


# ---- transports -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GrpcOptions:
    endpoint: Endpoint
    token: str | None = None
    timeout: float = 60.0


def _grpc(call: Call[T]) -> GrpcCall[T]:
    if not isinstance(call, GrpcCall):
        raise TypeError(f"a gRPC transport cannot run {type(call).__name__}")
    return cast("GrpcCall[T]", call)


def _channel_args(options: GrpcOptions) -> tuple[str, Any, list[tuple[str, Any]]]:
    """(target, credentials or None, channel options)."""
    settings = [
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.primary_user_agent", "modelserve-client"),
    ]
    tls = options.endpoint.tls
    credentials = None
    if tls is not None:
        root, key, chain = tls.grpc_material()
        credentials = grpc.ssl_channel_credentials(root, key, chain)
    return options.endpoint.address, credentials, settings


def _metadata_for(call: GrpcCall[Any], token: str | None) -> tuple[tuple[str, str], ...]:
    if token:
        return (("x-request-id", call.request_id), ("authorization", f"Bearer {token}"))
    return (("x-request-id", call.request_id),)


def _trailing(metadata: Any) -> dict[str, str]:
    return {str(key): str(value) for key, value in metadata or () if isinstance(value, str)}


def _finish(call: GrpcCall[T], message: Any, trailing: Mapping[str, str], where: str) -> T:
    try:
        return call.decode(GrpcAnswer(message, trailing))
    except (ValueError, KeyError, TypeError, IndexError, ServerError) as exc:
        detail = exc.message if isinstance(exc, ServerError) else str(exc)
        raise ClientError(
            f"{call.what}: the answer from {where} is not a V2 answer: {detail}",
            request_id=trailing.get("x-request-id") or call.request_id,
        ) from None


_NOT_CONNECTED = ("failed to connect", "connection refused", "dns resolution", "name resolution")


def _failure(
    call: GrpcCall[Any],
    code: grpc.StatusCode,
    details: str,
    trailing: Mapping[str, str],
    where: str,
) -> ClientError:
    rid = trailing.get("x-request-id") or call.request_id
    lowered = details.lower()
    if code is grpc.StatusCode.UNAVAILABLE and "x-request-id" not in trailing:
        # No request id back: no modelserve handler answered, the connection itself failed.
        if "handshake" in lowered or "ssl" in lowered or "certificate" in lowered:
            return TlsError(f"{call.what}: TLS with {where} failed: {details}", request_id=rid)
        sent = not any(marker in lowered for marker in _NOT_CONNECTED)
        return ConnectionFailedError(
            f"{call.what}: cannot reach {where}: {details}", sent=sent, request_id=rid
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED and "x-request-id" not in trailing:
        return DeadlineError(
            f"{call.what}: no answer from {where} in time: {details}", request_id=rid
        )
    retry_after = parse_retry_after(trailing.get("retry-after"))
    return error_for_grpc(code.name, f"{call.what}: {details}", rid, retry_after)


class GrpcTransport:
    """Runs gRPC calls on one channel (HTTP/2, thread-safe)."""

    def __init__(self, options: GrpcOptions) -> None:
        self._options = options
        self._where = f"grpc{'s' if options.endpoint.tls else ''}://{options.endpoint.address}"
        target, credentials, settings = _channel_args(options)
        self._channel = (
            grpc.secure_channel(target, credentials, options=settings)
            if credentials is not None
            else grpc.insecure_channel(target, options=settings)
        )
        self._stubs: dict[str, Any] = {}

    def _stub(self, call: GrpcCall[Any]) -> Any:
        stub = self._stubs.get(call.method)
        if stub is None:
            stub = self._channel.unary_unary(
                SERVICE + call.method,
                request_serializer=type(call.request).SerializeToString,
                response_deserializer=call.response_type.FromString,
            )
            self._stubs[call.method] = stub
        return stub

    def call(self, call: Call[T]) -> T:
        """The answer; its request id is the one sent (modelserve answers under the caller's
        id, which the client makes sure it can use), so the trailing metadata of a success is
        not read: ``with_call`` would cost a call object per request."""
        grpc_call = _grpc(call)
        try:
            message = self._stub(grpc_call)(
                grpc_call.request,
                timeout=self._options.timeout,
                metadata=_metadata_for(grpc_call, self._options.token),
            )
        except grpc.RpcError as exc:
            failed = cast(grpc.Call, exc)
            raise _failure(
                grpc_call,
                failed.code(),
                failed.details() or "",
                _trailing(failed.trailing_metadata()),
                self._where,
            ) from None
        return _finish(grpc_call, message, {}, self._where)

    def close(self) -> None:
        self._channel.close()


class AsyncGrpcTransport:
    """Runs gRPC calls on one ``grpc.aio`` channel, made on the event loop of the first call."""

    def __init__(self, options: GrpcOptions) -> None:
        self._options = options
        self._where = f"grpc{'s' if options.endpoint.tls else ''}://{options.endpoint.address}"
        self._target, self._credentials, self._settings = _channel_args(options)
        self._channel: grpc.aio.Channel | None = None
        self._stubs: dict[str, Any] = {}

    def _stub(self, call: GrpcCall[Any]) -> Any:
        if self._channel is None:
            self._channel = (
                grpc.aio.secure_channel(self._target, self._credentials, options=self._settings)
                if self._credentials is not None
                else grpc.aio.insecure_channel(self._target, options=self._settings)
            )
        stub = self._stubs.get(call.method)
        if stub is None:
            stub = self._channel.unary_unary(
                SERVICE + call.method,
                request_serializer=type(call.request).SerializeToString,
                response_deserializer=call.response_type.FromString,
            )
            self._stubs[call.method] = stub
        return stub

    def call(self, call: Call[T]) -> Awaitable[T]:
        return self._call(_grpc(call))

    async def _call(self, call: GrpcCall[T]) -> T:
        rpc = self._stub(call)(
            call.request,
            timeout=self._options.timeout,
            metadata=_metadata_for(call, self._options.token),
        )
        try:
            message = await rpc
            trailing = _trailing(await rpc.trailing_metadata())
        except grpc.aio.AioRpcError as exc:
            raise _failure(
                call,
                exc.code(),
                exc.details() or "",
                _trailing(exc.trailing_metadata()),
                self._where,
            ) from None
        return _finish(call, message, trailing, self._where)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
