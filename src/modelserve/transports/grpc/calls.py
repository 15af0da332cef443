"""One gRPC call on an HTTP/2 stream: the request messages as they arrive, the handler that
answers them, and the ``grpc.aio.ServicerContext`` subset the handlers use (``abort``,
``invocation_metadata``, ``set_trailing_metadata``, ``write``, ``read``, ``code``...).

Handlers are grpcio's ``RpcMethodHandler`` tuples, so generated servicers, grpcio's health and
reflection services and our own guards run unchanged: a unary request starts its handler as soon
as its one message is complete; a streaming one gets an iterator of messages, each taken from
the stream's queue (the stream's flow-control window reopens only as messages are read).
Whatever ends the call (an answer, an abort, an unexpected error, the deadline, the client's
RST_STREAM, a lost connection) ends it once, with the right ``grpc-status``.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import struct
import time
import zlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc

from modelserve.transports.grpc import frames

if TYPE_CHECKING:
    from modelserve.transports.grpc.connection import GrpcConnection

__all__ = ["Call", "Metadata"]

log = logging.getLogger("modelserve.grpc")

Metadata = tuple[tuple[str, str | bytes], ...]

_PREFIX = struct.Struct(">BI")
_CANCELLED = grpc.StatusCode.CANCELLED
_DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda data: zlib.decompress(data, 16 + zlib.MAX_WBITS),
    "deflate": zlib.decompress,
    "identity": bytes,
}


class _Ended(Exception):
    """The call ended (cancelled by the client, deadline, connection lost) while a handler
    wrote or read."""


def _status_value(code: grpc.StatusCode) -> int:
    value: int = code.value[0]
    return value


class Call:
    """A call in progress; also the servicer context handed to its handler."""

    def __init__(
        self,
        connection: GrpcConnection,
        stream_id: int,
        method: str,
        metadata: Metadata,
        encoding: str | None,
        send_window: int,
    ) -> None:
        self._connection = connection
        self.stream_id = stream_id
        self.method = method
        self._metadata = metadata
        self._encoding = encoding
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.handler: grpc.RpcMethodHandler | None = None
        self.task: asyncio.Task[None] | None = None
        # request side
        self._buffer = bytearray()  # the start of a message not complete yet
        self._need = 0  # the bytes that message needs, with its prefix
        self._messages: collections.deque[bytes] = collections.deque()
        self._reader: asyncio.Future[None] | None = None
        self.remote_closed = False
        self.credit = 0  # bytes read from the stream and not yet given back (WINDOW_UPDATE)
        # answer side
        self.send_window = send_window
        self.pending = bytearray()  # DATA payload waiting for flow-control window
        self.pending_trailers: bytes | None = None
        self._drained: asyncio.Future[None] | None = None
        self._headers_sent = False
        self.ended = False
        self._code = grpc.StatusCode.OK
        self._details = ""
        self._trailing: Metadata = ()

    # ---- the servicer context (grpc.aio.ServicerContext) ------------------------------------

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        self._trailing = tuple(trailing_metadata)

    def trailing_metadata(self) -> Metadata:
        return self._trailing

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def set_details(self, details: str) -> None:
        self._details = details

    def details(self) -> str:
        return self._details

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()
    ) -> None:
        if code is grpc.StatusCode.OK:
            raise ValueError("abort() needs a status other than OK")
        self._code, self._details = code, details
        if trailing_metadata:
            self._trailing = tuple(trailing_metadata)
        raise grpc.aio.AbortError()

    async def send_initial_metadata(self, initial_metadata: Any) -> None:
        """The answer's headers carry no metadata of ours; they are sent with the first
        message."""

    def peer(self) -> str:
        return self._connection.peer

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def cancelled(self) -> bool:
        return self.ended and self._code is _CANCELLED

    def done(self) -> bool:
        return self.ended

    def disable_next_message_compression(self) -> None:
        """Answers are never compressed."""

    async def write(self, message: Any) -> None:
        if self.ended:
            raise _Ended()
        serialize = self.handler.response_serializer if self.handler else None
        self._send_message(serialize(message) if serialize else message)
        if len(self.pending) > self._connection.max_frame * 4:
            await self._wait_drained()

    async def read(self) -> Any:
        """The next request message, or ``grpc.aio.EOF`` after the last."""
        data = await self._next_message()
        if data is None:
            return grpc.aio.EOF
        return self._deserialize(data)

    # ---- requests ---------------------------------------------------------------------------

    def set_deadline(self, seconds: float) -> None:
        self._deadline = time.monotonic() + seconds
        self._timer = asyncio.get_running_loop().call_later(seconds, self._expire)

    def feed(self, data: bytes, end_stream: bool) -> None:
        """DATA of this stream: split into messages; a unary request starts its handler."""
        if data:
            self.credit += len(data)
            if self._buffer:  # a large message arrives in many frames: join them once
                self._buffer += data
                if len(self._buffer) < self._need and not end_stream:
                    self._connection.give_credit(self)
                    return
                data = bytes(self._buffer)
                self._buffer.clear()
            at, end = 0, len(data)
            while end - at >= 5:
                flag, size = _PREFIX.unpack_from(data, at)
                if size > self._connection.max_receive:
                    self._too_large(size)
                    return
                if end - at - 5 < size:
                    self._need = 5 + size
                    break
                message = data[at + 5 : at + 5 + size]
                at += 5 + size
                if flag and not self._decompress(message):
                    return
                if not flag:
                    self._messages.append(message)
            if at < end:
                if end - at < 5:
                    self._need = 5
                self._buffer += data[at:]
        if end_stream:
            self.remote_closed = True
            if self._buffer:
                self.fail(grpc.StatusCode.INTERNAL, "the request ended inside a message")
                return
        elif self.credit:
            self._connection.give_credit(self)
        self._wake()
        if (
            self.task is None
            and self.handler is not None
            and not self.ended
            and (self._messages or self.remote_closed)
        ):
            self._start()

    def _too_large(self, size: int) -> None:
        limit = self._connection.max_receive
        self.fail(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"Received message larger than max ({size} vs. {limit})",
        )

    def _decompress(self, message: bytes) -> bool:
        """Queue a compressed message decompressed; False when the call failed instead."""
        decompress = _DECOMPRESS.get(self._encoding or "")
        if decompress is None:
            self.fail(
                grpc.StatusCode.UNIMPLEMENTED,
                f"message compressed with an unsupported encoding ({self._encoding})",
            )
            return False
        try:
            message = decompress(message)
        except zlib.error:
            self.fail(grpc.StatusCode.INTERNAL, "cannot decompress the message")
            return False
        if len(message) > self._connection.max_receive:
            self._too_large(len(message))
            return False
        self._messages.append(message)
        return True

    @property
    def backlog(self) -> int:
        """Request messages received and not yet read by the handler."""
        return len(self._messages)

    def _wake(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    async def _next_message(self) -> bytes | None:
        while not self._messages:
            if self.remote_closed or self.ended:
                return None
            self._reader = asyncio.get_running_loop().create_future()
            await self._reader
        message = self._messages.popleft()
        if self.credit and not self.remote_closed:
            self._connection.give_credit(self)
        return message

    def _deserialize(self, data: bytes) -> Any:
        deserialize = self.handler.request_deserializer if self.handler else None
        return deserialize(data) if deserialize else data

    async def _requests(self) -> AsyncIterator[Any]:
        while (data := await self._next_message()) is not None:
            yield self._deserialize(data)

    # ---- running the handler ----------------------------------------------------------------

    def _start(self) -> None:
        handler = self.handler
        assert handler is not None
        if handler.request_streaming:
            body = self._run_streaming_request(handler)
        elif not self._messages:
            self.fail(grpc.StatusCode.INTERNAL, "the request carried no message")
            return
        else:
            body = self._run_unary_request(handler, self._messages.popleft())
        self.task = asyncio.get_running_loop().create_task(body)

    async def _run_unary_request(self, handler: grpc.RpcMethodHandler, data: bytes) -> None:
        try:
            request = self._deserialize(data)
            if handler.unary_unary is not None:
                answer = handler.unary_unary(request, self)
                if inspect.isawaitable(answer):
                    answer = await answer
                self._answer_unary(answer)
                return
            answers = handler.unary_stream(request, self)
            await self._stream_answers(answers)
        except BaseException as exc:  # every way out ends the call
            self._ended_by(exc)

    async def _run_streaming_request(self, handler: grpc.RpcMethodHandler) -> None:
        try:
            if handler.stream_unary is not None:
                answer = handler.stream_unary(self._requests(), self)
                if inspect.isawaitable(answer):
                    answer = await answer
                self._answer_unary(answer)
                return
            await self._stream_answers(handler.stream_stream(self._requests(), self))
        except BaseException as exc:  # every way out ends the call
            self._ended_by(exc)

    async def _stream_answers(self, answers: Any) -> None:
        if inspect.isasyncgen(answers):
            async for answer in answers:
                await self.write(answer)
        elif inspect.isawaitable(answers):  # writes through the context
            await answers
        else:
            for answer in answers:
                await self.write(answer)
        self.finish()

    def _answer_unary(self, answer: Any) -> None:
        if self.ended:
            return
        if answer is None and self._code is not grpc.StatusCode.OK:
            self.finish()  # the handler set a status and returned nothing
            return
        serialize = self.handler.response_serializer if self.handler else None
        payload = serialize(answer) if serialize else answer
        self._connection.cork()  # headers, message and trailers in one write
        try:
            self._send_message(payload)
            self.finish()
        finally:
            self._connection.uncork()

    def _ended_by(self, exc: BaseException) -> None:
        if isinstance(exc, grpc.aio.AbortError):
            self.finish()
        elif isinstance(exc, asyncio.CancelledError | _Ended):
            self.finish()  # status already decided by whoever ended the call
        elif isinstance(exc, Exception):
            if not self.ended:
                log.exception("unexpected error in %s", self.method)
            self._code = grpc.StatusCode.UNKNOWN
            self._details = f"Unexpected {type(exc)}: {exc}"
            self.finish()
        else:
            self.finish()
            raise exc

    # ---- answers ----------------------------------------------------------------------------

    def _send_message(self, payload: bytes) -> None:
        connection = self._connection
        if len(payload) > connection.max_send:
            self._code = grpc.StatusCode.RESOURCE_EXHAUSTED
            self._details = (
                f"Sent message larger than max ({len(payload)} vs. {connection.max_send})"
            )
            raise _Ended()
        head = b""
        if not self._headers_sent:
            self._headers_sent = True
            head = frames.headers_frames(
                self.stream_id, frames.RESPONSE_HEADERS, False, connection.max_frame
            )
        connection.send(self, head, _PREFIX.pack(0, len(payload)) + payload)

    def finish(self) -> None:
        """End the call with the status it has (OK unless set): the trailers."""
        if self.ended:
            return
        self.ended = True
        self._stop_timer()
        self._wake()
        block = frames.trailers(
            _status_value(self._code), self._details, self._trailing, only=not self._headers_sent
        )
        self._connection.end(self, block)

    def fail(self, code: grpc.StatusCode, details: str) -> None:
        """End the call now with ``code``, stopping its handler."""
        if self.ended:
            return
        self._code, self._details = code, details
        self.finish()
        if self.task is not None:
            self.task.cancel()

    def _expire(self) -> None:
        self._timer = None
        self.fail(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    def reset(self) -> None:
        """The client reset the stream, or the connection is gone: stop, answer nothing."""
        if not self.ended:
            self.ended = True
            self._code = _CANCELLED
            self._stop_timer()
        self._wake()
        self.pending.clear()
        self.pending_trailers = None
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)
        if self.task is not None:
            self.task.cancel()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _wait_drained(self) -> None:
        self._drained = asyncio.get_running_loop().create_future()
        await self._drained
        if self.ended and self._code is _CANCELLED:
            raise _Ended()

    def flushed(self) -> None:
        """The connection sent everything pending."""
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)
