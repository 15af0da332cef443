"""Triton's ``inference.GRPCInferenceService`` over ``grpc.aio``, plus the standard health and
reflection services.

The servicer only translates (codec.py) and calls the DataPlane. Every RPC goes through one
guard: request bytes that are not a valid message become INVALID_ARGUMENT (decoding.py), a
ServerError becomes the gRPC status of the one ErrorCode table (errors.py); anything else
becomes INTERNAL with a request id, logged. The stream RPC answers each request in-band instead,
so that one bad request does not end the stream.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message_factory import GetMessageClass
from grpc.aio import ServicerContext as Context
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from modelserve.codecs.tensors import DEFAULT_MAX_ELEMENTS
from modelserve.dataplane import DataPlane
from modelserve.errors import (
    ErrorCode,
    InvalidArgument,
    NotFound,
    ServerError,
    grpc_status_name,
)
from modelserve.observability import Observability, current_request_id
from modelserve.protocol import grpc_service_pb2 as pb
from modelserve.protocol import model_config_pb2 as mc
from modelserve.security.auth import Authenticator
from modelserve.transports.grpc.auth import AuthInterceptor
from modelserve.transports.grpc.codec import (
    decode_infer_request,
    encode_infer_response,
    model_config_response,
    model_metadata_response,
    repository_index_response,
    server_metadata_response,
    statistics_response,
)
from modelserve.transports.grpc.decoding import HandlerSink, Undecodable, tolerant
from modelserve.transports.grpc.observe import REQUEST_ID_KEY, observe_unary
from modelserve.transports.grpc.server import GrpcServer

log = logging.getLogger("modelserve.grpc")

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
SERVICE_NAME: str = SERVICE.full_name
STREAM_TARGET = f"/{SERVICE_NAME}/ModelStreamInfer"
RETRY_AFTER_KEY = "retry-after"
ROUTE_KEY = "x-modelserve-route"
"""Trailing metadata of every ModelInfer answer: ``<model>:<version>``, the version that answered
(as the REST header of that name)."""
STREAM_WINDOW = 64
"""Requests of one stream in flight at once; past it the stream is not read (flow control)."""

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

Unary = Callable[[Any, Any], Awaitable[Any]]
_Answer = tuple[
    "asyncio.Task[pb.ModelStreamInferResponse | None]",
    "asyncio.Queue[pb.ModelStreamInferResponse | None] | None",
]
"""One request of a stream: the task answering it, and for a decoupled model the queue its
responses come through (None: the task's result is the one answer)."""

Streaming = Callable[[AsyncIterator[Any], Any], AsyncIterator[Any]]


def describe_error(exc: Exception, where: str) -> tuple[grpc.StatusCode, str]:
    """The status and message a client gets for ``exc``. Unexpected errors are logged here."""
    if isinstance(exc, ServerError):
        return grpc.StatusCode[grpc_status_name(exc.code)], exc.message
    request_id = current_request_id()
    log.exception("internal error in %s (request %s)", where, request_id)
    return grpc.StatusCode.INTERNAL, f"internal server error (request id {request_id})"


def _retry_after(exc: Exception) -> tuple[tuple[str, str], ...]:
    """A full queue tells the client when to try again, as REST's ``Retry-After: 1`` does:
    trailing metadata ``retry-after`` (seconds), beside the request id. It tells a full queue
    apart from a message over the size limit, which is RESOURCE_EXHAUSTED too."""
    if isinstance(exc, ServerError) and exc.code is ErrorCode.RESOURCE_EXHAUSTED:
        return ((REQUEST_ID_KEY, current_request_id()), (RETRY_AFTER_KEY, "1"))
    return ()


def _guard_unary(name: str, method: Unary) -> Unary:
    async def call(request: Any, context: Any) -> Any:
        try:
            if isinstance(request, Undecodable):
                raise request.error()
            return await method(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            code, message = describe_error(exc, name)
            await context.abort(code, message, _retry_after(exc))

    return call


def _guard_streaming(name: str, method: Streaming) -> Streaming:
    async def call(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        try:
            async for answer in method(requests, context):
                yield answer
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            code, message = describe_error(exc, name)
            await context.abort(code, message)

    return call


# (client streaming, server streaming) -> handler factory and guard.
_KINDS: dict[tuple[bool, bool], tuple[Callable[..., Any], Callable[[str, Any], Any]]] = {
    (False, False): (grpc.unary_unary_rpc_method_handler, _guard_unary),
    (True, True): (grpc.stream_stream_rpc_method_handler, _guard_streaming),
}


def service_handlers(
    servicer: object, observability: Observability | None = None
) -> dict[str, grpc.RpcMethodHandler]:
    """Handlers for every RPC the proto declares, by method name, each wrapped in the error
    guard (and, given ``observability``, unary ones observed: observe.py); a missing method on
    ``servicer`` fails here, at start-up."""
    handlers = {}
    for method in SERVICE.methods:
        factory, guard = _KINDS[(method.client_streaming, method.server_streaming)]
        name = f"{SERVICE_NAME}/{method.name}"
        handler = guard(name, getattr(servicer, method.name))
        if observability is not None and not method.client_streaming:
            handler = observe_unary(name, handler, observability)
        handlers[method.name] = factory(
            handler,
            request_deserializer=tolerant(
                GetMessageClass(method.input_type).FromString, method.input_type.full_name
            ),
            response_serializer=GetMessageClass(method.output_type).SerializeToString,
        )
    return handlers


class InferenceServicer:
    """The GRPCInferenceService methods; names are the RPC names of the proto."""

    def __init__(
        self,
        dataplane: DataPlane,
        observability: Observability,
        max_elements: int = DEFAULT_MAX_ELEMENTS,
    ) -> None:
        self._dp = dataplane
        self._observability = observability
        self._max_elements = max_elements

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._dp.live())

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._dp.ready())

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self._dp.model_ready(request.name, request.version))

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return server_metadata_response(self._dp.server_metadata())

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        return model_metadata_response(self._dp.model_metadata(request.name, request.version))

    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: Context
    ) -> pb.ModelConfigResponse:
        return model_config_response(self._dp.model_config(request.name, request.version))

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Context
    ) -> pb.RepositoryIndexResponse:
        return repository_index_response(self._dp.repository_index(request.ready))

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        response = await self._dp.infer(self._decode(request))
        route = (ROUTE_KEY, f"{response.model_name}:{response.model_version}")
        context.set_trailing_metadata((*context.trailing_metadata(), route))
        return encode_infer_response(response)

    def _decode(self, request: pb.ModelInferRequest) -> Any:
        self._dp.check_capacity(request.model_name, request.model_version)  # before decoding
        try:
            return decode_infer_request(request, self._max_elements)
        except ServerError as exc:
            self._dp.record_rejected(
                request.model_name, request.model_version, exc.code, exc.message
            )
            raise

    async def ModelStreamInfer(
        self, requests: AsyncIterator[pb.ModelInferRequest | Undecodable], context: Context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Run up to STREAM_WINDOW requests at once; answer each, in order, with a response or
        an error message; a decoupled model's request with each of its responses in turn."""
        window = asyncio.Semaphore(STREAM_WINDOW)
        metadata = context.invocation_metadata()
        queue: asyncio.Queue[_Answer | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for request in requests:
                    await window.acquire()
                    if not isinstance(request, Undecodable) and self._dp.is_decoupled(
                        request.model_name, request.model_version
                    ):
                        out: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
                        streamed = self._stream_decoupled(request, metadata, out)
                        queue.put_nowait((asyncio.create_task(streamed), out))
                    else:
                        answered = self._stream_answer(request, metadata)
                        queue.put_nowait((asyncio.create_task(answered), None))
            finally:
                queue.put_nowait(None)

        reader = asyncio.create_task(read())
        item: _Answer | None = None
        try:
            while (item := await queue.get()) is not None:
                task, responses = item
                if responses is None:
                    answer = await task
                    assert answer is not None
                    window.release()
                    yield answer
                    continue
                while (response := await responses.get()) is not None:
                    yield response
                await task
                window.release()
            await reader
        finally:  # the client went away or the stream failed: stop the work still running
            reader.cancel()
            if item is not None:
                item[0].cancel()
            while not queue.empty():
                left = queue.get_nowait()
                if left is not None:
                    left[0].cancel()

    async def _stream_decoupled(
        self,
        request: pb.ModelInferRequest,
        metadata: Any,
        out: asyncio.Queue[pb.ModelStreamInferResponse | None],
    ) -> None:
        """A decoupled model's request on a stream: each response as the model yields it, then,
        when the client asked (``triton_enable_empty_final_response``), an empty response
        flagged ``triton_final_response``; an error is answered in-band."""
        observability = self._observability
        ctx = observability.begin(
            "grpc", "ModelStreamInfer", STREAM_TARGET, request.id or None, headers=metadata
        )
        status = "OK"
        try:
            decoded = self._decode(request)
            final = decoded.parameters.get("triton_enable_empty_final_response") is True
            async for response in self._dp.infer_stream(decoded):
                message = encode_infer_response(response)
                if final:
                    message.parameters["triton_final_response"].bool_param = False
                await out.put(pb.ModelStreamInferResponse(infer_response=message))
            if final:
                last = pb.ModelInferResponse(
                    model_name=request.model_name,
                    model_version=decoded.model_version or request.model_version,
                    id=request.id,
                )
                last.parameters["triton_final_response"].bool_param = True
                await out.put(pb.ModelStreamInferResponse(infer_response=last))
        except Exception as exc:
            code, message_text = describe_error(exc, f"{SERVICE_NAME}/ModelStreamInfer")
            status = code.name
            echo = pb.ModelInferResponse(
                model_name=request.model_name, model_version=request.model_version, id=request.id
            )
            await out.put(
                pb.ModelStreamInferResponse(error_message=message_text, infer_response=echo)
            )
        finally:
            observability.end(ctx, status)
            out.put_nowait(None)

    async def _stream_answer(
        self, request: pb.ModelInferRequest | Undecodable, metadata: Any
    ) -> pb.ModelStreamInferResponse:
        """One request of a stream, observed on its own (its id: the V2 ``id`` or a new one).
        An undecodable message is answered in-band like any other bad request."""
        if isinstance(request, Undecodable):
            request, undecodable = pb.ModelInferRequest(), request.error()
        else:
            undecodable = None
        observability = self._observability
        ctx = observability.begin(
            "grpc", "ModelStreamInfer", STREAM_TARGET, request.id or None, headers=metadata
        )
        status = "OK"
        try:
            if undecodable is not None:
                raise undecodable
            response = await self._dp.infer(self._decode(request))
            return pb.ModelStreamInferResponse(infer_response=encode_infer_response(response))
        except Exception as exc:
            code, message = describe_error(exc, f"{SERVICE_NAME}/ModelStreamInfer")
            status = code.name
        finally:
            observability.end(ctx, status)
        # The id lets a client match the error to its request.
        echo = pb.ModelInferResponse(
            model_name=request.model_name, model_version=request.model_version, id=request.id
        )
        return pb.ModelStreamInferResponse(error_message=message, infer_response=echo)

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: Context
    ) -> pb.ModelStatisticsResponse:
        return statistics_response(self._dp.model_statistics(request.name, request.version))

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> pb.RepositoryModelLoadResponse:
        config: str | None = None
        if "config" in request.parameters:
            parameter = request.parameters["config"]
            if parameter.WhichOneof("parameter_choice") != "string_param":
                raise InvalidArgument("parameter 'config' must be a JSON string")
            config = parameter.string_param
        await self._dp.load_model(request.model_name, config)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> pb.RepositoryModelUnloadResponse:
        await self._dp.unload_model(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    # ---- shared memory (Triton's extension; serving/shared_memory.py) ---------------------

    async def SystemSharedMemoryStatus(
        self, request: pb.SystemSharedMemoryStatusRequest, context: Context
    ) -> pb.SystemSharedMemoryStatusResponse:
        answer = pb.SystemSharedMemoryStatusResponse()
        for region in self._dp.shared_memory.status(request.name):
            answer.regions[region.name].CopyFrom(
                pb.SystemSharedMemoryStatusResponse.RegionStatus(
                    name=region.name,
                    key=region.key,
                    offset=region.offset,
                    byte_size=region.byte_size,
                )
            )
        return answer

    async def SystemSharedMemoryRegister(
        self, request: pb.SystemSharedMemoryRegisterRequest, context: Context
    ) -> pb.SystemSharedMemoryRegisterResponse:
        self._dp.shared_memory.register(
            request.name, request.key, request.offset, request.byte_size
        )
        return pb.SystemSharedMemoryRegisterResponse()

    async def SystemSharedMemoryUnregister(
        self, request: pb.SystemSharedMemoryUnregisterRequest, context: Context
    ) -> pb.SystemSharedMemoryUnregisterResponse:
        self._dp.shared_memory.unregister(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()

    async def CudaSharedMemoryStatus(
        self, request: pb.CudaSharedMemoryStatusRequest, context: Context
    ) -> pb.CudaSharedMemoryStatusResponse:
        return pb.CudaSharedMemoryStatusResponse()  # no CUDA regions, ever

    async def CudaSharedMemoryRegister(
        self, request: pb.CudaSharedMemoryRegisterRequest, context: Context
    ) -> pb.CudaSharedMemoryRegisterResponse:
        raise InvalidArgument("CUDA shared memory is not supported (no GPU)")

    async def CudaSharedMemoryUnregister(
        self, request: pb.CudaSharedMemoryUnregisterRequest, context: Context
    ) -> pb.CudaSharedMemoryUnregisterResponse:
        return pb.CudaSharedMemoryUnregisterResponse()  # nothing to unregister


class HealthServicer(health.aio.HealthServicer):  # type: ignore[misc]
    """grpc.health.v1: service "" is the server, any other service name a model. Check asks the
    DataPlane every time; Watch follows the statuses that ``GrpcTransport.refresh_health`` sets."""

    def __init__(self, dataplane: DataPlane) -> None:
        super().__init__()
        self._dp = dataplane

    def status(self, service: str) -> Any:
        """SERVING or NOT_SERVING; NotFound for an unknown model."""
        ready = self._dp.ready()
        if service:
            ready = self._dp.model_ready(service) and ready
        return SERVING if ready else NOT_SERVING

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> health_pb2.HealthCheckResponse:
        try:
            return health_pb2.HealthCheckResponse(status=self.status(request.service))
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, exc.message)


def _reflection_pool() -> DescriptorPool:
    """The files reflection describes: our service (which lives in its own pool, see
    modelserve/protocol/__init__.py), health and reflection itself."""
    pool = DescriptorPool()
    for file in (mc.DESCRIPTOR, pb.DESCRIPTOR, health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
        pool.AddSerializedFile(file.serialized_pb)
    return pool


class GrpcTransport:
    """The gRPC server (server.py) on the running event loop: inference service, health,
    reflection. ``tls``: an SSL context offering ALPN ``h2``."""

    def __init__(
        self,
        dataplane: DataPlane,
        observability: Observability,
        max_message_bytes: int,
        *,
        auth: Authenticator | None = None,
        tls: ssl.SSLContext | None = None,
        max_tensor_elements: int = DEFAULT_MAX_ELEMENTS,
    ) -> None:
        self._dp = dataplane
        self._observability = observability
        self._max_message_bytes = max_message_bytes
        self._auth = auth
        self._tls = tls
        self._max_tensor_elements = max_tensor_elements
        self._server: GrpcServer | None = None
        self._health = HealthServicer(dataplane)
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("gRPC server not started")
        return self._port

    async def start(self, host: str, port: int, reuse_port: bool = False) -> None:
        """Bind and serve. ``reuse_port`` shares the port with other modelserve processes
        (--workers); otherwise a taken port is an error, as for HTTP."""
        server = GrpcServer(
            interceptors=[AuthInterceptor(self._auth)] if self._auth is not None else (),
            max_receive_message_length=self._max_message_bytes,
            max_send_message_length=self._max_message_bytes,
        )
        servicer = InferenceServicer(self._dp, self._observability, self._max_tensor_elements)
        server.add_registered_method_handlers(
            SERVICE_NAME, service_handlers(servicer, self._observability)
        )
        others = HandlerSink()  # health and reflection, registered with their decoding guarded
        health_pb2_grpc.add_HealthServicer_to_server(self._health, others)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.aio.ReflectionServicer(
                (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME),
                pool=_reflection_pool(),
            ),
            others,
        )
        others.register(server)
        try:
            bound = await server.bind(host, port, self._tls, reuse_port)
        except OSError as exc:
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise OSError(f"cannot bind gRPC to {address}: {exc.strerror or exc}") from None
        await self.refresh_health()
        await server.start()
        self._server, self._port = server, bound

    async def refresh_health(self) -> None:
        """Publish the server's and each model's readiness to health Watch-ers; call it after
        readiness changes (models loaded or unloaded, server ready)."""
        await self._health.set("", self._health.status(""))
        for name in sorted({row.name for row in self._dp.repository_index()}):
            await self._health.set(name, self._health.status(name))

    async def stop(self, grace_s: float) -> None:
        """Report NOT_SERVING, refuse new RPCs, give running ones ``grace_s`` seconds."""
        await self._health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None
