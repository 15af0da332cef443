"""The V2 REST API: ``RestApp.handle(HttpRequest) -> Reply``, served by the HTTP server next to
it (server.py).

Routing is a split of the path, not a framework router: for small models the server's own
overhead is the latency. Every error leaves as ``{"error": "..."}`` with the status from the
one ErrorCode table.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from modelserve.codecs.tensors import DEFAULT_MAX_ELEMENTS
from modelserve.codecs.v2_json import (
    decode_infer_request,
    encode_infer_response,
    is_raw_body,
    json_object,
    raw_infer_request,
)
from modelserve.dataplane import DataPlane
from modelserve.errors import (
    FailedPrecondition,
    InvalidArgument,
    MethodNotAllowed,
    NotFound,
    ServerError,
)
from modelserve.monitoring.service import Monitoring
from modelserve.observability import Observability, current_request_id
from modelserve.routing.controller import Experiments
from modelserve.routing.shadow import ShadowMirror
from modelserve.security.auth import Authenticator
from modelserve.transports.access import rest_action
from modelserve.transports.http.messages import (
    JSON,
    OCTETS,
    HttpRequest,
    Reply,
    error_reply,
    json_reply,
)
from modelserve.transports.http.openapi import static_document
from modelserve.transports.statistics import statistics_document
from modelserve.types import ModelMetadata, TensorSpec

if TYPE_CHECKING:  # the dashboard's modules are imported only with --ui (server/compose.py)
    from modelserve.transports.http.dashboard import Dashboard

log = logging.getLogger("modelserve.rest")

HEADER_LENGTH = "inference-header-content-length"
HEADER_LENGTH_B = HEADER_LENGTH.encode()
ROUTE_HEADER = b"x-modelserve-route"
"""On every answer of an inference: ``<model>:<version>``, the version that answered."""


def _tensor_meta(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}


def _metadata_doc(meta: ModelMetadata) -> dict[str, Any]:
    return {
        "name": meta.name,
        "versions": list(meta.versions),
        "platform": meta.platform,
        "inputs": [_tensor_meta(t) for t in meta.inputs],
        "outputs": [_tensor_meta(t) for t in meta.outputs],
    }


class RestApp:
    """The V2 REST API. ``handle`` does the routing and translation; the DataPlane does the work;
    ``observability`` sees every request (request id, access log, traces, metrics)."""

    def __init__(
        self,
        dataplane: DataPlane,
        observability: Observability,
        *,
        auth: Authenticator | None = None,
        max_tensor_elements: int = DEFAULT_MAX_ELEMENTS,
        dashboard: Dashboard | None = None,
        monitoring: Monitoring | None = None,
        experiments: Experiments | None = None,
        shadow: ShadowMirror | None = None,
    ) -> None:
        """``dashboard``: the ``/ui`` routes (``--ui``), None when off. ``monitoring``: labels
        and the monitoring read API (docs/monitoring.md). ``experiments``: the experiments API
        (docs/experiments.md)."""
        self._dp = dataplane
        self._experiments = experiments
        self._shadow = shadow
        self._dashboard = dashboard
        self._monitoring = monitoring
        self._observability = observability
        self._auth = auth
        self._max_tensor_elements = max_tensor_elements

    async def handle(self, request: HttpRequest) -> Reply:
        """Answer one request; never raises. It is observed around ``_answer``: request id
        (echoed as ``x-request-id``), access log line, trace spans."""
        headers = request.headers
        ctx = self._observability.begin(
            "http",
            request.method,
            request.path,
            headers.get("x-request-id"),
            headers.get("traceparent"),
            headers.get("tracestate"),
            headers,
        )
        reply: Reply | None = None
        try:
            reply = await self._answer(request)
            reply.headers.append((b"x-request-id", ctx.request_id.encode()))
            return reply
        finally:
            self._observability.end(ctx, reply.status if reply is not None else 499)

    async def _answer(self, request: HttpRequest) -> Reply:
        """Answer one request; never raises. With authentication on, every request is checked
        here, before routing (the route's action: transports/access.py)."""
        try:
            if self._dashboard is not None and self._dashboard.owns(request.path):
                return await self._dashboard.handle(request)  # its own auth: Basic too
            if self._auth is not None:
                action, model = rest_action(request.path)
                self._auth.check(request.headers.get("authorization"), action, model)
            return await self._dispatch(request)
        except ServerError as exc:
            reply = error_reply(exc)
            if not self._dp.accepting:
                reply.headers.append((b"connection", b"close"))  # draining: go elsewhere
            return reply
        except Exception:
            request_id = current_request_id()
            log.exception(
                "internal error handling %s %s (request %s)",
                request.method,
                request.path,
                request_id,
            )
            return json_reply({"error": f"internal server error (request id {request_id})"}, 500)

    async def _dispatch(self, request: HttpRequest) -> Reply:
        method = request.method
        parts = request.path.strip("/").split("/")
        if request.path == "/metrics":
            _allow(method, "GET")
            body, content_type = await self._observability.exposition(request.headers.get("accept"))
            return Reply(200, body, [(b"content-type", content_type.encode())])
        if not parts or parts[0] != "v2":
            document = static_document(request.path)
            if document is None:
                raise NotFound(f"no route for {request.path}")
            _allow(method, "GET")
            return Reply(200, document.body, [(b"content-type", document.content_type)])
        rest = parts[1:]
        if not rest:
            _allow(method, "GET")
            meta = self._dp.server_metadata()
            return json_reply(
                {"name": meta.name, "version": meta.version, "extensions": list(meta.extensions)}
            )
        head = rest[0]
        if rest == ["models", "stats"]:
            _allow(method, "GET")
            return json_reply(statistics_document(self._dp.model_statistics()))
        if head == "models" and len(rest) >= 2:
            return await self._model_route(request, rest[1], rest[2:])
        if head == "health" and len(rest) == 2 and rest[1] in ("live", "ready"):
            _allow(method, "GET")
            ok = self._dp.live() if rest[1] == "live" else self._dp.ready()
            return json_reply({rest[1]: ok}, 200 if ok else 503)
        if head == "repository" and len(rest) == 4 and rest[1] == "models":
            if rest[3] not in ("load", "unload"):
                raise NotFound(f"no route for {request.path}")
            _allow(method, "POST")
            params = _repository_parameters(request.body)
            if rest[3] == "load":
                config = params.get("config")
                if config is not None and not isinstance(config, str):
                    raise InvalidArgument("parameter 'config' must be a JSON string")
                await self._dp.load_model(rest[2], config)
            else:
                await self._dp.unload_model(rest[2])
            return json_reply({})
        if head in ("systemsharedmemory", "cudasharedmemory"):
            return self._shared_memory_route(request, head == "cudasharedmemory", rest[1:])
        if head == "repository" and rest[1:] == ["index"]:
            _allow(method, "POST")
            rows = self._dp.repository_index(_index_ready_flag(request.body))
            return json_reply(
                [
                    {
                        "name": r.name,
                        "version": r.version,
                        "state": r.state.value,
                        "reason": r.reason,
                    }
                    for r in rows
                ]
            )
        raise NotFound(f"no route for {request.path}")

    def _shared_memory_route(self, request: HttpRequest, cuda: bool, tail: list[str]) -> Reply:
        """Triton's shared-memory extension: ``status``, ``unregister`` (all regions), and
        ``region/{name}/status|register|unregister``. CUDA: empty status, unregister is a
        no-op, register is refused."""
        name = ""
        if len(tail) == 3 and tail[0] == "region" and tail[1]:
            name, tail = tail[1], tail[2:]
        if tail == ["status"]:
            _allow(request.method, "GET")
            if cuda:
                return json_reply([])
            return json_reply(
                [
                    {"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size}
                    for r in self._dp.shared_memory.status(name)
                ]
            )
        if tail == ["unregister"]:
            _allow(request.method, "POST")
            if not cuda:
                self._dp.shared_memory.unregister(name)
            return json_reply({})
        if tail == ["register"] and name:
            _allow(request.method, "POST")
            if cuda:
                raise InvalidArgument("CUDA shared memory is not supported (no GPU)")
            body = _json_object(request.body)
            key, offset, size = body.get("key"), body.get("offset", 0), body.get("byte_size")
            if not isinstance(key, str):
                raise InvalidArgument("'key' must be a string")
            if isinstance(offset, bool) or not isinstance(offset, int):
                raise InvalidArgument("'offset' must be an integer")
            if isinstance(size, bool) or not isinstance(size, int):
                raise InvalidArgument("'byte_size' must be an integer")
            self._dp.shared_memory.register(name, key, offset, size)
            return json_reply({})
        raise NotFound(f"no route for {request.path}")

    async def _model_route(self, request: HttpRequest, name: str, tail: list[str]) -> Reply:
        method = request.method
        version = ""
        if len(tail) >= 2 and tail[0] == "versions":
            version, tail = tail[1], tail[2:]
            if not version:
                raise NotFound("empty model version in path")
        action = tail[0] if len(tail) == 1 else "" if not tail else None
        if action == "infer":
            _allow(method, "POST")
            return await self._infer(request, name, version)
        if action == "":
            _allow(method, "GET")
            return json_reply(_metadata_doc(self._dp.model_metadata(name, version)))
        if action == "ready":
            _allow(method, "GET")
            ready = self._dp.model_ready(name, version)
            return json_reply({"name": name, "ready": ready}, 200 if ready else 503)
        if action == "config":
            _allow(method, "GET")
            return json_reply(self._dp.model_config(name, version))
        if action == "stats":
            _allow(method, "GET")
            return json_reply(statistics_document(self._dp.model_statistics(name, version)))
        if action == "validation":
            _allow(method, "GET")
            return json_reply(self._dp.validation_report(name, version))
        if action in ("labels", "monitoring") and not version:
            return await self._monitoring_route(request, name, action)
        if action == "experiment" and not version:
            return await self._experiment_route(request, name)
        raise NotFound(f"no route for {request.path}")

    async def _experiment_route(self, request: HttpRequest, name: str) -> Reply:
        """``GET``, ``PUT`` and ``DELETE …/experiment`` (docs/experiments.md)."""
        method = request.method
        if method not in ("GET", "HEAD", "PUT", "DELETE"):
            raise MethodNotAllowed(f"method {method} is not allowed here; use GET, PUT or DELETE")
        experiments = self._experiments
        if experiments is None:
            raise FailedPrecondition("this server runs no traffic experiments")
        if method == "DELETE":
            return json_reply(await experiments.act(name, "stop"))
        if method == "PUT":
            body = json_object(request.body)
            if set(body) == {"action"}:
                action = body["action"]
                if action not in ("promote", "rollback", "stop"):
                    raise InvalidArgument("'action' is one of promote, rollback, stop")
                return json_reply(await experiments.act(name, action))
            return json_reply(await experiments.start(name, body))
        document = await experiments.status(name)
        document["shadow"] = self._shadow_stats(name)
        return json_reply(document)

    async def _monitoring_route(self, request: HttpRequest, name: str, action: str) -> Reply:
        """``POST …/labels`` and ``GET …/monitoring`` (docs/monitoring.md)."""
        _allow(request.method, "POST" if action == "labels" else "GET")
        self._dp.model_ready(name)  # NotFound for a model the repository does not know
        if self._monitoring is None:
            raise FailedPrecondition(f"model '{name}' is not monitored: this server has none")
        if action == "labels":
            return json_reply(await self._monitoring.labels(name, json_object(request.body)))
        report = await self._monitoring.report(name)
        shadow = self._shadow_stats(name)
        if shadow is not None:
            report["shadow"] = shadow
        return json_reply(report)

    def _shadow_stats(self, name: str) -> dict[str, Any] | None:
        """The shadow comparison of ``name`` (docs/experiments.md), None when never mirrored."""
        if self._shadow is None:
            return None
        stats = self._shadow.stats(name)
        return stats if stats.get("version") is not None else None

    async def _infer(self, request: HttpRequest, name: str, version: str) -> Reply:
        self._dp.check_capacity(name, version)  # a full queue refuses before decoding
        header_length: int | None = None
        raw_length = request.headers.get(HEADER_LENGTH)
        if raw_length is not None:
            try:
                header_length = int(raw_length)
            except ValueError:
                raise InvalidArgument(
                    "Inference-Header-Content-Length must be an integer"
                ) from None
        try:
            if is_raw_body(request.body, header_length):
                inputs = self._dp.model_metadata(name, version).inputs
                decoded = raw_infer_request(request.body, inputs, name, version)
            else:
                decoded = decode_infer_request(
                    request.body, header_length, name, version, self._max_tensor_elements
                )
        except ServerError as exc:
            self._dp.record_rejected(name, version, exc.code, exc.message)
            raise
        response = await self._dp.infer(decoded)
        payload, json_length = encode_infer_response(response, decoded.parameters, decoded.outputs)
        route = (ROUTE_HEADER, f"{response.model_name}:{response.model_version}".encode())
        if json_length is None:
            return Reply(200, payload, [(b"content-type", JSON), route])
        return Reply(
            200,
            payload,
            [(b"content-type", OCTETS), (HEADER_LENGTH_B, str(json_length).encode()), route],
        )


def _allow(method: str, allowed: str) -> None:
    """Refuse another method than ``allowed``; HEAD is allowed wherever GET is (the HTTP server
    sends the GET answer's status and headers without its body)."""
    if method != allowed and not (method == "HEAD" and allowed == "GET"):
        raise MethodNotAllowed(f"method {method} is not allowed here; use {allowed}")


def _json_object(body: bytes) -> dict[str, Any]:
    """An optional JSON object body (empty means {})."""
    return json_object(body) if body.strip() else {}


def _repository_parameters(body: bytes) -> dict[str, Any]:
    params = _json_object(body).get("parameters", {})
    if not isinstance(params, dict):
        raise InvalidArgument("'parameters' must be a JSON object")
    return params


def _index_ready_flag(body: bytes) -> bool:
    ready = _json_object(body).get("ready", False)
    if not isinstance(ready, bool):
        raise InvalidArgument("'ready' must be a boolean")
    return ready
