"""The V2 REST API: the calls (``RestApi``), the tensor codec and how an answer is read; the
transports that carry them over HTTP/1.1 are http_pool.py (``Client``: pooled keep-alive
connections of its own, answers parsed by httptools) and http_async.py (``AsyncClient``: httpx).

Inference uses Triton's binary tensor extension in both directions when the server has it: a
JSON header (its length in ``Inference-Header-Content-Length``) followed by the raw
little-endian tensors, so no tensor is ever turned into JSON numbers. With ``binary=None`` (the
clients' default) the first inference asks the server (``GET /v2``: ``binary_tensor_data`` among
its extensions, as modelserve and Triton list it) and falls back to JSON tensors otherwise;
``binary=True``/``False`` decide without asking. modelserve's own endpoints (labels,
monitoring, experiments) answer ``UnsupportedError`` on a server that does not have them.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import quote

import orjson

from modelserve.client.calls import Call, ExperimentMethod, Label
from modelserve.client.connection import Endpoint
from modelserve.client.errors import (
    ClientError,
    InvalidInputError,
    TlsError,
    UnsupportedError,
    error_for_http,
)
from modelserve.client.results import RepositoryModel
from modelserve.client.retry import parse_retry_after
from modelserve.codecs.tensors import decode_raw, encode_raw
from modelserve.codecs.v2_json import decode_json_data
from modelserve.errors import ServerError
from modelserve.types import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ServerMetadata,
    Tensor,
    TensorSpec,
)

__all__ = [
    "HttpAnswer",
    "HttpCall",
    "HttpOptions",
    "RestApi",
    "as_http_call",
    "finish",
    "tls_cause",
    "tls_failure",
]

T = TypeVar("T")

HEADER_LENGTH = "inference-header-content-length"
BINARY_EXTENSION = "binary_tensor_data"
JSON_TYPE = "application/json"
OCTETS = "application/octet-stream"


@dataclass(slots=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str]
    """Looked up by lower-case name (http_pool.py lowers them; httpx.Headers ignores case)."""
    body: bytes


@dataclass(slots=True, kw_only=True)
class HttpCall(Call[T]):
    method: str
    path: str
    decode: Callable[[HttpAnswer], T]
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    accept: frozenset[int] = frozenset({200})
    """The statuses ``decode`` reads; any other is an error."""
    extension: str = ""
    """A modelserve extension (``labels``): 404 without a model error means the server does
    not have it."""


def _segment(value: str) -> str:
    return quote(value, safe="")


def _model_path(model: str, version: str) -> str:
    path = f"/v2/models/{_segment(model)}"
    return f"{path}/versions/{_segment(version)}" if version else path


def _json(answer: HttpAnswer) -> Any:
    return orjson.loads(answer.body) if answer.body.strip() else {}


def _spec(item: Mapping[str, Any]) -> TensorSpec:
    return TensorSpec(
        str(item["name"]), str(item["datatype"]), tuple(int(d) for d in item["shape"])
    )


def _metadata(answer: HttpAnswer) -> ModelMetadata:
    doc = _json(answer)
    return ModelMetadata(
        name=str(doc["name"]),
        versions=tuple(str(v) for v in doc.get("versions") or ()),
        platform=str(doc.get("platform", "")),
        inputs=tuple(_spec(item) for item in doc.get("inputs") or ()),
        outputs=tuple(_spec(item) for item in doc.get("outputs") or ()),
    )


def _server_metadata(answer: HttpAnswer) -> ServerMetadata:
    doc = _json(answer)
    return ServerMetadata(
        str(doc.get("name", "")),
        str(doc.get("version", "")),
        tuple(str(e) for e in doc.get("extensions") or ()),
    )


def _index(answer: HttpAnswer) -> list[RepositoryModel]:
    return [
        RepositoryModel(
            str(row["name"]),
            str(row.get("version", "")),
            str(row.get("state", "")),
            str(row.get("reason", "")),
        )
        for row in _json(answer)
    ]


def _is_ok(answer: HttpAnswer) -> bool:
    return answer.status == 200


def _nothing(answer: HttpAnswer) -> None:
    return None


def _document(answer: HttpAnswer) -> dict[str, Any]:
    doc = _json(answer)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return doc


# ---- inference ------------------------------------------------------------------------------


def _json_data(tensor: Tensor) -> Any:
    flat = tensor.data.reshape(-1)
    if tensor.datatype != "BYTES":
        return flat
    try:
        return [
            item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in flat.tolist()
        ]
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"input '{tensor.name}' holds bytes that are not UTF-8, which JSON cannot carry; "
            "use binary=True"
        ) from None


def encode_infer(request: InferenceRequest, binary: bool) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an infer request."""
    inputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for tensor in request.inputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if binary:
            raw = encode_raw(tensor.data, tensor.datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _json_data(tensor)
        inputs.append(entry)
    doc: dict[str, Any] = {"inputs": inputs}
    if request.id is not None:
        doc["id"] = request.id
    parameters = dict(request.parameters)
    if binary:
        parameters["binary_data_output"] = True
    if parameters:
        doc["parameters"] = parameters
    if request.outputs is not None:
        doc["outputs"] = [{"name": out.name} for out in request.outputs]
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not binary:
        return header, {"content-type": JSON_TYPE}
    headers = {"content-type": OCTETS, HEADER_LENGTH: str(len(header))}
    return header + b"".join(chunks), headers


def decode_infer(answer: HttpAnswer) -> tuple[InferenceResponse, str]:
    """The response (outputs as numpy arrays) and the request id the server answered under."""
    body = memoryview(answer.body)
    length = answer.headers.get(HEADER_LENGTH)
    if length is not None:
        size = int(length)
        if not 0 <= size <= len(body):
            raise ValueError(f"{HEADER_LENGTH} {size} is outside the body")
        header, binary = body[:size], body[size:]
    else:
        header, binary = body, body[0:0]
    doc = orjson.loads(header)
    outputs: list[Tensor] = []
    offset = 0
    for item in doc.get("outputs") or ():
        name, datatype = str(item["name"]), str(item["datatype"])
        shape = tuple(int(d) for d in item["shape"])
        parameters = dict(item.get("parameters") or {})
        size = parameters.pop("binary_data_size", None)
        if size is not None:
            data = decode_raw(name, datatype, shape, binary[offset : offset + int(size)])
            offset += int(size)
        else:
            data = decode_json_data(name, datatype, shape, item.get("data"))
        outputs.append(Tensor(name, datatype, shape, data, parameters))
    response = InferenceResponse(
        model_name=str(doc.get("model_name", "")),
        model_version=str(doc.get("model_version", "")),
        outputs=tuple(outputs),
        id=doc.get("id"),
        parameters=doc.get("parameters") or {},
    )
    return response, answer.headers.get("x-request-id", "")


# ---- the calls ------------------------------------------------------------------------------


class RestApi:
    """Builds the REST calls (calls.Api)."""

    def __init__(self, binary: bool | None = None) -> None:
        self.binary = binary
        """Binary tensors or JSON; None until the server's extensions are known."""

    def use_extensions(self, server: ServerMetadata | None) -> None:
        """Binary tensors if ``server`` (None: its metadata could not be read) lists them."""
        self.binary = server is not None and BINARY_EXTENSION in server.extensions

    def server_metadata(self, rid: str) -> HttpCall[ServerMetadata]:
        return HttpCall(
            what="server metadata",
            request_id=rid,
            method="GET",
            path="/v2",
            decode=_server_metadata,
        )

    def live(self, rid: str) -> HttpCall[bool]:
        return HttpCall(
            what="server live",
            request_id=rid,
            method="GET",
            path="/v2/health/live",
            decode=_is_ok,
            accept=frozenset({200, 503}),
        )

    def ready(self, rid: str) -> HttpCall[bool]:
        return HttpCall(
            what="server ready",
            request_id=rid,
            method="GET",
            path="/v2/health/ready",
            decode=_is_ok,
            accept=frozenset({200, 503}),
        )

    def model_ready(self, model: str, version: str, rid: str) -> HttpCall[bool]:
        return HttpCall(
            what=f"ready {model}",
            request_id=rid,
            method="GET",
            path=f"{_model_path(model, version)}/ready",
            decode=_is_ok,
            accept=frozenset({200, 503}),
        )

    def model_metadata(self, model: str, version: str, rid: str) -> HttpCall[ModelMetadata]:
        return HttpCall(
            what=f"metadata {model}",
            request_id=rid,
            method="GET",
            path=_model_path(model, version),
            decode=_metadata,
        )

    def index(self, ready_only: bool, rid: str) -> HttpCall[list[RepositoryModel]]:
        return HttpCall(
            what="repository index",
            request_id=rid,
            method="POST",
            path="/v2/repository/index",
            body=orjson.dumps({"ready": ready_only}),
            headers={"content-type": JSON_TYPE},
            decode=_index,
        )

    def load(self, model: str, config: Mapping[str, Any] | None, rid: str) -> HttpCall[None]:
        body: dict[str, Any] = {}
        if config is not None:
            body["parameters"] = {"config": orjson.dumps(dict(config)).decode()}
        return HttpCall(
            what=f"load {model}",
            request_id=rid,
            method="POST",
            idempotent=False,
            path=f"/v2/repository/models/{_segment(model)}/load",
            body=orjson.dumps(body),
            headers={"content-type": JSON_TYPE},
            decode=_nothing,
        )

    def unload(self, model: str, rid: str) -> HttpCall[None]:
        return HttpCall(
            what=f"unload {model}",
            request_id=rid,
            method="POST",
            idempotent=False,
            path=f"/v2/repository/models/{_segment(model)}/unload",
            body=b"{}",
            headers={"content-type": JSON_TYPE},
            decode=_nothing,
        )

    def infer(self, request: InferenceRequest, rid: str) -> HttpCall[tuple[InferenceResponse, str]]:
        body, headers = encode_infer(request, self.binary is not False)
        return HttpCall(
            what=f"infer {request.model_name}",
            request_id=rid,
            method="POST",
            path=f"{_model_path(request.model_name, request.model_version)}/infer",
            body=body,
            headers=headers,
            decode=decode_infer,
        )

    def labels(self, model: str, labels: Sequence[Label], rid: str) -> HttpCall[dict[str, Any]]:
        body = {"labels": [{"id": ident, "label": label} for ident, label in labels]}
        return HttpCall(
            what=f"labels {model}",
            request_id=rid,
            method="POST",
            idempotent=False,
            path=f"/v2/models/{_segment(model)}/labels",
            body=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
            headers={"content-type": JSON_TYPE},
            decode=_document,
            extension="labels",
        )

    def monitoring(self, model: str, rid: str) -> HttpCall[dict[str, Any]]:
        return HttpCall(
            what=f"monitoring {model}",
            request_id=rid,
            method="GET",
            path=f"/v2/models/{_segment(model)}/monitoring",
            decode=_document,
            extension="monitoring",
        )

    def experiment(
        self, model: str, method: ExperimentMethod, body: Mapping[str, Any] | None, rid: str
    ) -> HttpCall[dict[str, Any]]:
        return HttpCall(
            what=f"experiment {model}",
            request_id=rid,
            method=method,
            idempotent=method == "GET",
            path=f"/v2/models/{_segment(model)}/experiment",
            body=orjson.dumps(dict(body)) if body is not None else None,
            headers={"content-type": JSON_TYPE} if body is not None else {},
            decode=_document,
            extension="experiments",
        )


# ---- answers --------------------------------------------------------------------------------


def _error_message(answer: HttpAnswer) -> tuple[str, bool]:
    """The server's message, and whether it came as V2's ``{"error": ...}``."""
    try:
        doc = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        text = answer.body.decode("utf-8", "replace").strip()
        return (text[:200] or f"HTTP {answer.status}"), False
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return doc["error"], True
    return str(doc)[:200], False


def finish(call: HttpCall[T], answer: HttpAnswer, where: str) -> T:
    """The decoded answer, or the ClientError it stands for."""
    rid = answer.headers.get("x-request-id") or call.request_id
    if answer.status in call.accept:
        try:
            return call.decode(answer)
        except (ValueError, KeyError, TypeError, IndexError, ServerError) as exc:
            detail = exc.message if isinstance(exc, ServerError) else str(exc)
            raise ClientError(
                f"{call.what}: the answer from {where} is not a V2 answer: {detail}",
                request_id=rid,
            ) from None
    message, v2 = _error_message(answer)
    if (
        call.extension
        and answer.status in (404, 405, 501)
        and (not v2 or message.startswith("no route"))
    ):
        raise UnsupportedError(
            f"{call.what}: {where} does not have modelserve's {call.extension} endpoint "
            f"({call.method} {call.path} answered {answer.status}: {message})",
            status=answer.status,
            request_id=rid,
        )
    retry_after = parse_retry_after(answer.headers.get("retry-after"))
    raise error_for_http(answer.status, f"{call.what}: {message}", rid, retry_after)


def as_http_call(call: Call[T]) -> HttpCall[T]:
    if not isinstance(call, HttpCall):
        raise TypeError(f"a REST transport cannot run {type(call).__name__}")
    return cast("HttpCall[T]", call)


@dataclass(frozen=True, slots=True)
class HttpOptions:
    endpoint: Endpoint
    token: str | None = None
    timeout: float = 60.0
    max_connections: int = 100


def tls_cause(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a connection failure, if one is."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def tls_failure(call: HttpCall[Any], error: ssl.SSLError, where: str) -> TlsError:
    reason = (error.reason or "handshake failed").replace("_", " ").lower()
    detail = getattr(error, "verify_message", "")
    return TlsError(
        f"{call.what}: TLS with {where} failed: {reason}" + (f" ({detail})" if detail else ""),
        request_id=call.request_id,
    )
