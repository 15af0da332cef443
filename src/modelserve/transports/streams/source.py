"""Inference from a stream: what the Redis Streams and Kafka sources share.

A source reads V2 inference requests from a stream (``--stream-source``), runs each through the
dataplane (the same path, batcher and inference events as REST and gRPC), writes the answer to
``<stream>.responses`` (or the error to ``<stream>.errors``) and only then acknowledges the
request: at-least-once, with a consumer group so that a restarted server goes on where it
stopped and never re-reads what it acknowledged.

- At most ``in_flight`` requests are served at once (default 32); the source reads no more
  while they are all busy.
- A request body is V2 JSON (``content-type: application/json``, the default) or a V2
  ``ModelInferRequest`` protobuf (``application/x-protobuf``, ``application/protobuf`` or
  ``application/grpc+proto``); the answer has the same form.
- A request the server cannot take now (``UNAVAILABLE``, ``RESOURCE_EXHAUSTED``: a full queue,
  a model still loading) is tried again with backoff; while the server stops it is left
  unacknowledged, for the next start. Any other error is the request's answer, on the errors
  stream.
- A broker that is down is retried with backoff (reads and writes); nothing is acknowledged
  before its answer was written.

``Backend`` is the part that knows the broker (streams/redis.py, streams/kafka.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from typing import Protocol

import orjson

from modelserve.codecs.v2_json import decode_infer_request, encode_infer_response
from modelserve.config.streams import StreamSourceConfig
from modelserve.dataplane import DataPlane
from modelserve.errors import ErrorCode, InvalidArgument, ServerError, http_status
from modelserve.observability import Observability
from modelserve.observability.context import usable_id
from modelserve.protocol import grpc_service_pb2 as pb
from modelserve.transports.grpc import codec as grpc_codec

__all__ = [
    "PROTOBUF_TYPES",
    "Backend",
    "StreamMessage",
    "StreamReply",
    "StreamSource",
]

log = logging.getLogger("modelserve.streams")

PROTOBUF_TYPES = frozenset(
    {"application/x-protobuf", "application/protobuf", "application/grpc+proto"}
)
JSON_TYPE = "application/json"
PROTOBUF_TYPE = "application/x-protobuf"
RETRY_LATER = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.RESOURCE_EXHAUSTED})
RETRIES = 8
"""Tries of a request the server could not take now, before its answer is that error."""
BACKOFF_S = 0.05
BACKOFF_MAX_S = 5.0
READ_DRAIN_S = 3.0
"""How long ``stop`` lets a read in progress finish (a read waits about a second for entries)
before cancelling it: a read cancelled after the broker handed out its entries would leave them
taken and unanswered until the next start."""


@dataclass(slots=True)
class StreamMessage:
    """One request as read from the broker."""

    position: str
    """Where it is in the stream: the Redis entry id, or ``<partition>:<offset>`` for Kafka."""
    body: bytes
    content_type: str = JSON_TYPE
    key: str | None = None
    """The request id the producer gave (the entry's ``id`` field, the Kafka message key)."""


@dataclass(slots=True)
class StreamReply:
    """The answer to one request, written to the responses or the errors stream."""

    key: str
    """The request id."""
    body: bytes
    content_type: str
    error: bool
    status_code: int


class Backend(Protocol):
    async def start(self) -> None:
        """Connect; create the consumer group when it does not exist."""
        ...

    async def read(self, count: int) -> list[StreamMessage]:
        """Up to ``count`` requests, waiting at most about a second for one."""
        ...

    async def answer(self, message: StreamMessage, reply: StreamReply) -> None:
        """Write ``reply`` and acknowledge ``message`` (raising when the broker failed)."""
        ...

    async def close(self) -> None: ...


def _backoff(attempt: int) -> float:
    return random.uniform(0.0, min(BACKOFF_MAX_S, BACKOFF_S * 2**attempt))


class StreamSource:
    """Reads one stream and serves its requests with the dataplane."""

    def __init__(
        self,
        config: StreamSourceConfig,
        model: str,
        backend: Backend,
        dataplane: DataPlane,
        observability: Observability,
        max_elements: int,
    ) -> None:
        self.config = config
        self.model = model
        self.backend = backend
        self._dp = dataplane
        self._obs = observability
        self._max_elements = max_elements
        self._slots = asyncio.Semaphore(config.in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.served = 0
        """Requests answered and acknowledged (responses and errors)."""

    @property
    def name(self) -> str:
        return self.config.text

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read_loop(), name=f"stream source {self.name}")

    async def _read_loop(self) -> None:
        attempt = 0
        started = False
        while not self._stopping.is_set():
            try:
                if not started:
                    await self.backend.start()
                    started = True
                    log.info("stream source %s: serving model %s", self.name, self.model)
                await self._slots.acquire()
                if self._stopping.is_set():
                    self._slots.release()
                    break
                free = 1
                while free < self.config.in_flight and not self._slots.locked():
                    await self._slots.acquire()
                    free += 1
                try:
                    messages = await self.backend.read(free)
                except BaseException:
                    for _ in range(free):
                        self._slots.release()
                    raise
                for _ in range(free - len(messages)):
                    self._slots.release()
                for message in messages:
                    task = asyncio.create_task(self._serve(message))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                if attempt:
                    log.info("stream source %s: reading again", self.name)
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempt == 0:
                    log.warning("stream source %s: %s; retrying", self.name, _describe(exc))
                delay = _backoff(attempt)
                attempt = min(attempt + 1, 10)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)

    async def _serve(self, message: StreamMessage) -> None:
        try:
            reply = await self._reply(message)
            if reply is None:  # the server stops: left for the next start
                return
            attempt = 0
            while True:
                try:
                    await self.backend.answer(message, reply)
                    self.served += 1
                    return
                except Exception as exc:
                    if self._stopping.is_set() and attempt >= 2:
                        log.warning(
                            "stream source %s: could not write the answer to %s (%s); it "
                            "stays unacknowledged and is served again after the restart",
                            self.name,
                            message.position,
                            _describe(exc),
                        )
                        return
                    if attempt == 0:
                        log.warning(
                            "stream source %s: writing an answer failed (%s); retrying",
                            self.name,
                            _describe(exc),
                        )
                    await asyncio.sleep(_backoff(attempt))
                    attempt = min(attempt + 1, 10)
        except Exception:
            log.exception("stream source %s: cannot serve %s", self.name, message.position)
        finally:
            self._slots.release()

    async def _reply(self, message: StreamMessage) -> StreamReply | None:
        protobuf = message.content_type.split(";")[0].strip().lower() in PROTOBUF_TYPES
        attempt = 0
        while True:
            ctx = self._obs.begin(
                "stream", "infer", f"{self.config.kind}:{self.config.stream}", message.key
            )
            rid = ctx.request_id
            status: int | str = 500
            try:
                body, v2_id = await self._infer(message, protobuf)
                if message.key is None and usable_id(v2_id):
                    rid = v2_id
                status = 200
                content_type = PROTOBUF_TYPE if protobuf else JSON_TYPE
                return StreamReply(rid, body, content_type, False, 200)
            except ServerError as exc:
                status = http_status(exc.code)
                if exc.code in RETRY_LATER:
                    if self._stopping.is_set():
                        return None
                    if attempt < RETRIES:
                        await asyncio.sleep(_backoff(attempt))
                        attempt += 1
                        continue
                return _error_reply(rid, exc.code.name.lower(), exc.message, status)
            except Exception:
                log.exception("stream source %s: internal error", self.name)
                return _error_reply(rid, "internal", f"internal error (request {rid})", 500)
            finally:
                self._obs.end(ctx, status)

    async def _infer(self, message: StreamMessage, protobuf: bool) -> tuple[bytes, str | None]:
        """The encoded answer, and the V2 ``id`` of the request."""
        model, version = self.model, self.config.version
        try:
            if protobuf:
                try:
                    msg = pb.ModelInferRequest.FromString(message.body)
                except Exception:
                    raise InvalidArgument("the body is not a ModelInferRequest protobuf") from None
                if msg.model_name and msg.model_name != model:
                    raise InvalidArgument(
                        f"the request is for model '{msg.model_name}'; this stream serves '{model}'"
                    )
                msg.model_name, msg.model_version = model, msg.model_version or version
                request = grpc_codec.decode_infer_request(msg, self._max_elements)
            else:
                request = decode_infer_request(
                    message.body, None, model, version, self._max_elements
                )
        except ServerError as exc:
            self._dp.record_rejected(model, version, exc.code, exc.message)
            raise
        response = await self._dp.infer(request)
        if protobuf:
            encoded: bytes = grpc_codec.encode_infer_response(response).SerializeToString()
            return encoded, request.id
        body, _ = encode_infer_response(response)
        return body, request.id

    async def stop(self, timeout_s: float) -> None:
        """Read no more; let the requests being served finish and be answered (bounded by
        ``timeout_s``); what is left stays unacknowledged for the next start.

        The read in progress is let finish (at most ``READ_DRAIN_S``) rather than cancelled,
        so that entries the broker already handed out are served now, not at the next start."""
        self._stopping.set()
        deadline = time.monotonic() + timeout_s
        if self._reader is not None:
            wait_s = max(0.0, min(READ_DRAIN_S, deadline - time.monotonic()))
            done, _ = await asyncio.wait({self._reader}, timeout=wait_s)
            if not done:
                self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._tasks:
            _, pending = await asyncio.wait(
                set(self._tasks), timeout=max(0.0, deadline - time.monotonic())
            )
            for task in pending:
                task.cancel()
            if pending:
                log.warning(
                    "stream source %s: %d request(s) unanswered at the shutdown timeout; "
                    "they are served again after the restart",
                    self.name,
                    len(pending),
                )
                await asyncio.gather(*pending, return_exceptions=True)
        try:
            await asyncio.wait_for(self.backend.close(), 5.0)
        except Exception as exc:
            log.warning("stream source %s did not close cleanly: %s", self.name, _describe(exc))


def _error_reply(rid: str, code: str, message: str, status: int) -> StreamReply:
    body = orjson.dumps({"id": rid, "error": message, "code": code, "status_code": status})
    return StreamReply(rid, body, JSON_TYPE, True, status)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
