"""One HTTP/2 connection of the gRPC server: an ``asyncio.Protocol`` that parses frames as they
arrive, opens a Call per request stream, keeps both directions' flow control, and writes each
answer with as few ``transport.write`` calls as possible (headers, message and trailers of a
unary answer in one).

HPACK decoding is the ``hpack`` package's (the request headers' dynamic table is the client's
choice); encoding needs no state (frames.py). Errors of the connection itself (a bad preface,
a frame too large, a header block that does not decode) end it with GOAWAY; errors of one
stream end that stream with RST_STREAM or a gRPC status.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import struct
from typing import TYPE_CHECKING, Any, cast

import grpc
import hpack

from modelserve.transports.grpc import frames
from modelserve.transports.grpc.calls import Call

if TYPE_CHECKING:
    from modelserve.transports.grpc.server import GrpcServer

__all__ = ["GrpcConnection"]

log = logging.getLogger("modelserve.grpc")

MAX_FRAME = 1 << 20
"""The largest frame we accept (SETTINGS_MAX_FRAME_SIZE); clients send fewer, larger frames."""
STREAM_WINDOW = 1 << 22
"""Each stream's receive window (SETTINGS_INITIAL_WINDOW_SIZE)."""
CONNECTION_WINDOW = 1 << 26
"""The connection's receive window, raised from HTTP/2's 65,535 by the first WINDOW_UPDATE."""
MAX_HEADER_LIST = 1 << 16
"""The largest header list a request may carry (SETTINGS_MAX_HEADER_LIST_SIZE)."""
MAX_BACKLOG = 64
"""Unread messages of one request stream past which its window is not reopened."""
_DEFAULT_WINDOW = 65_535
_U32 = struct.Struct(">I")
_HEAD = struct.Struct(">HBBBI")
_PSEUDO_OR_RESERVED = frozenset(
    (b"te", b"content-type", b"grpc-timeout", b"grpc-encoding", b"grpc-accept-encoding")
)


def _peer(transport: asyncio.BaseTransport) -> str:
    address = transport.get_extra_info("peername")
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"
    return "unknown"


class GrpcConnection(asyncio.Protocol):
    def __init__(self, server: GrpcServer) -> None:
        self._server = server
        self.max_receive = server.max_receive
        self.max_send = server.max_send
        self.max_frame = 16_384  # the client's SETTINGS_MAX_FRAME_SIZE
        self.peer = "unknown"
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()  # the start of a frame not complete yet
        self._need = 0  # the bytes that frame needs
        self._preface = False
        self._decoder = frames.HeaderDecoder(MAX_HEADER_LIST)
        self._corked: list[bytes] | None = None
        self._calls: dict[int, Call] = {}
        self._last_stream = 0
        self._open_headers: tuple[int, int, bytearray] | None = None  # waiting for CONTINUATION
        self._initial_send_window = _DEFAULT_WINDOW
        self._send_window = _DEFAULT_WINDOW
        self._received = 0  # connection bytes not yet given back
        self._blocked: dict[int, Call] = {}
        self._going_away = False
        self.closed = asyncio.get_running_loop().create_future()

    @property
    def active(self) -> int:
        return len(self._calls)

    # ---- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, base)
        self._transport = transport
        self.peer = _peer(transport)
        self._server.connections.add(self)
        transport.write(
            frames.settings(
                {
                    frames.Setting.MAX_FRAME_SIZE: MAX_FRAME,
                    frames.Setting.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                    frames.Setting.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
                }
            )
            + frames.window_update(0, CONNECTION_WINDOW - _DEFAULT_WINDOW)
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None
        for call in list(self._calls.values()):
            call.reset()
        self._calls.clear()
        self._blocked.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._buffer:  # a large frame arrives in many pieces: join them once
            self._buffer += data
            if len(self._buffer) < self._need:
                return
            data = bytes(self._buffer)
            self._buffer.clear()
        buffer = data
        at = 0
        if not self._preface:
            if len(buffer) < len(frames.PREFACE):
                if not frames.PREFACE.startswith(buffer):
                    self._close()
                self._buffer, self._need = bytearray(buffer), len(frames.PREFACE)
                return
            if not buffer.startswith(frames.PREFACE):
                self._close()
                return
            self._preface = True
            at = len(frames.PREFACE)
        end = len(buffer)
        self.cork()
        try:
            while end - at >= 9:
                high, low, kind, flags, stream_id = _HEAD.unpack_from(buffer, at)
                size = (high << 8) | low
                if size > MAX_FRAME:
                    raise _ConnectionError(frames.ErrorCode.FRAME_SIZE_ERROR)
                if end - at - 9 < size:
                    self._need = 9 + size
                    break
                payload = buffer[at + 9 : at + 9 + size]
                at += 9 + size
                self._frame(kind, flags, stream_id & 0x7FFFFFFF, payload)
                if self._transport is None:
                    return
        except _ConnectionError as exc:
            self._fail(exc.code)
            return
        finally:
            self.uncork()
        if at < end:
            self._buffer += buffer[at:]
            self._need = max(self._need, 9) if end - at >= 9 else 9

    # ---- frames -----------------------------------------------------------------------------

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._open_headers is not None and kind != frames.CONTINUATION:
            raise _ConnectionError(frames.ErrorCode.PROTOCOL_ERROR)
        if kind == frames.DATA:
            self._data(flags, stream_id, payload)
        elif kind == frames.HEADERS:
            self._headers(flags, stream_id, payload)
        elif kind == frames.CONTINUATION:
            self._continuation(flags, stream_id, payload)
        elif kind == frames.SETTINGS:
            if not flags & frames.ACK:
                self._settings(payload)
        elif kind == frames.WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif kind == frames.PING:
            if not flags & frames.ACK:
                self._write(frames.frame(frames.PING, frames.ACK, 0, payload))
        elif kind == frames.RST_STREAM:
            call = self._calls.pop(stream_id, None)
            if call is not None:
                self._blocked.pop(stream_id, None)
                call.reset()
                self._maybe_done()
        elif kind == frames.PUSH_PROMISE:
            raise _ConnectionError(frames.ErrorCode.PROTOCOL_ERROR)
        # PRIORITY, GOAWAY and unknown frames need nothing from a server

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        size = len(payload)
        self._received += size
        if self._received >= CONNECTION_WINDOW // 2:
            self._write(frames.window_update(0, self._received))
            self._received = 0
        if flags & frames.PADDED:
            payload = _unpad(payload)
        call = self._calls.get(stream_id)
        if call is None or call.remote_closed:
            return  # reset or ended: the connection window was given back above
        call.feed(payload, bool(flags & frames.END_STREAM))

    def _headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if flags & frames.PADDED:
            payload = _unpad(payload)
        if flags & frames.PRIORITY_FLAG:
            payload = payload[5:]
        if flags & frames.END_HEADERS:
            self._header_block(stream_id, flags, payload)
        else:
            self._open_headers = (stream_id, flags, bytearray(payload))

    def _continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self._open_headers is None or self._open_headers[0] != stream_id:
            raise _ConnectionError(frames.ErrorCode.PROTOCOL_ERROR)
        block = self._open_headers[2]
        block += payload
        if len(block) > 1 << 17:
            raise _ConnectionError(frames.ErrorCode.ENHANCE_YOUR_CALM)
        if flags & frames.END_HEADERS:
            first_flags = self._open_headers[1]
            self._open_headers = None
            self._header_block(stream_id, first_flags, bytes(block))

    def _header_block(self, stream_id: int, flags: int, block: bytes) -> None:
        try:
            fields = self._decoder.decode(block)
        except hpack.HPACKError:
            raise _ConnectionError(frames.ErrorCode.COMPRESSION_ERROR) from None
        end_stream = bool(flags & frames.END_STREAM)
        call = self._calls.get(stream_id)
        if call is not None:  # trailers of a request stream: its end
            call.feed(b"", True)
            return
        if stream_id % 2 == 0 or stream_id <= self._last_stream:
            if stream_id > self._last_stream or stream_id % 2 == 0:
                raise _ConnectionError(frames.ErrorCode.PROTOCOL_ERROR)
            return  # a closed stream's trailers
        self._last_stream = stream_id
        if self._going_away:
            self._write(frames.rst_stream(stream_id, frames.ErrorCode.REFUSED_STREAM))
            return
        self._open(stream_id, fields, end_stream)

    def _open(self, stream_id: int, fields: Any, end_stream: bool) -> None:
        path = method = content_type = b""
        encoding = timeout = None
        metadata: list[tuple[str, str | bytes]] = []
        for name, value in fields:
            if name[0] == 58:  # b":"
                if name == b":path":
                    path = value
                elif name == b":method":
                    method = value
            elif name in _PSEUDO_OR_RESERVED:
                if name == b"content-type":
                    content_type = value
                elif name == b"grpc-timeout":
                    timeout = frames.parse_timeout(value)
                elif name == b"grpc-encoding":
                    encoding = value.decode("latin-1")
            elif name.endswith(b"-bin"):
                metadata.append((name.decode("latin-1"), _b64decode(value)))
            else:
                metadata.append((name.decode("latin-1"), value.decode("latin-1")))
        if method != b"POST" or not content_type.startswith(b"application/grpc"):
            block = b"\x00" + bytes((7,)) + b":status" + b"\x03415"
            self._write(frames.headers_frames(stream_id, block, True, self.max_frame))
            if not end_stream:
                self._write(frames.rst_stream(stream_id, frames.ErrorCode.NO_ERROR))
            return
        call = Call(
            self,
            stream_id,
            path.decode("latin-1"),
            tuple(metadata),
            encoding,
            self._initial_send_window,
        )
        self._calls[stream_id] = call
        if timeout is not None:
            call.set_deadline(timeout)
        handler = self._server.handler(call.method)
        if handler is not None:
            call.handler = handler
            call.feed(b"", end_stream)
        else:
            asyncio.get_running_loop().create_task(self._find(call, end_stream))

    async def _find(self, call: Call, end_stream: bool) -> None:
        """Look the handler up through the interceptors, then serve the call."""
        try:
            handler = await self._server.intercepted_handler(call.method, call)
        except Exception:
            log.exception("interceptor failed for %s", call.method)
            call.fail(grpc.StatusCode.INTERNAL, "the server could not route the call")
            return
        if call.ended:
            return
        if handler is None:
            call.fail(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
            return
        call.handler = handler
        call.feed(b"", False)

    def _settings(self, payload: bytes) -> None:
        if len(payload) % 6:
            raise _ConnectionError(frames.ErrorCode.FRAME_SIZE_ERROR)
        for at in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HI", payload, at)
            if key == frames.Setting.INITIAL_WINDOW_SIZE:
                if value > 0x7FFFFFFF:
                    raise _ConnectionError(frames.ErrorCode.FLOW_CONTROL_ERROR)
                delta = value - self._initial_send_window
                self._initial_send_window = value
                for call in self._calls.values():
                    call.send_window += delta
            elif key == frames.Setting.MAX_FRAME_SIZE:
                if not 16_384 <= value <= 16_777_215:
                    raise _ConnectionError(frames.ErrorCode.PROTOCOL_ERROR)
                self.max_frame = value
        self._write(frames.frame(frames.SETTINGS, frames.ACK, 0))
        self._flush_blocked()

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ConnectionError(frames.ErrorCode.FRAME_SIZE_ERROR)
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            self._send_window += increment
            self._flush_blocked()
            return
        call = self._calls.get(stream_id)
        if call is not None:
            call.send_window += increment
            if stream_id in self._blocked:
                self._flush(call)

    # ---- answers ----------------------------------------------------------------------------

    def send(self, call: Call, head: bytes, payload: bytes) -> None:
        """One message of ``call``'s answer (``head``: its response headers, if not sent yet),
        as far as the flow-control windows allow; the rest when they open."""
        if self._transport is None or call.stream_id not in self._calls:
            return
        if call.pending:
            call.pending += payload
            if head:
                self._write(head)
            return
        room = min(self._send_window, call.send_window)
        size = len(payload)
        if size <= room:
            self._send_window -= size
            call.send_window -= size
            self._write(head + frames.data_frames(call.stream_id, payload, self.max_frame))
            return
        if head:
            self._write(head)
        call.pending += payload
        self._blocked[call.stream_id] = call
        self._flush(call)

    def end(self, call: Call, trailers: bytes) -> None:
        """``call``'s trailers (after its pending data); the stream is closed on our side."""
        if self._transport is None:
            return
        if call.pending:
            call.pending_trailers = trailers
            return
        self._close_stream(call, trailers)

    def _close_stream(self, call: Call, trailers: bytes) -> None:
        out = frames.headers_frames(call.stream_id, trailers, True, self.max_frame)
        if not call.remote_closed:  # the client still sends: tell it to stop
            out += frames.rst_stream(call.stream_id, frames.ErrorCode.NO_ERROR)
        self._write(out)
        self._calls.pop(call.stream_id, None)
        self._blocked.pop(call.stream_id, None)
        self._maybe_done()

    def _flush(self, call: Call) -> None:
        room = min(self._send_window, call.send_window, len(call.pending))
        if room > 0:
            chunk = bytes(call.pending[:room])
            del call.pending[:room]
            self._send_window -= room
            call.send_window -= room
            self._write(frames.data_frames(call.stream_id, chunk, self.max_frame))
        if call.pending:
            return
        self._blocked.pop(call.stream_id, None)
        call.flushed()
        if call.pending_trailers is not None:
            trailers, call.pending_trailers = call.pending_trailers, None
            self._close_stream(call, trailers)

    def _flush_blocked(self) -> None:
        for call in list(self._blocked.values()):
            if self._send_window <= 0:
                return
            self._flush(call)

    def give_credit(self, call: Call) -> None:
        """Reopen ``call``'s receive window for the bytes it took, unless its handler lags."""
        if call.credit >= STREAM_WINDOW // 4 and call.backlog < MAX_BACKLOG:
            self._write(frames.window_update(call.stream_id, call.credit))
            call.credit = 0

    # ---- the connection ---------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._corked is not None:
            self._corked.append(data)
        elif self._transport is not None:
            self._transport.write(data)

    def cork(self) -> None:
        """Hold writes until ``uncork``: what one step produces goes out in one ``write``."""
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        held, self._corked = self._corked, None
        if held and self._transport is not None:
            self._transport.write(b"".join(held))

    def go_away(self) -> None:
        """Refuse new streams; the running ones finish."""
        if not self._going_away:
            self._going_away = True
            self._write(frames.goaway(self._last_stream, frames.ErrorCode.NO_ERROR))
            self._maybe_done()

    def _maybe_done(self) -> None:
        if self._going_away and not self._calls:
            self._close()

    def cancel_calls(self) -> None:
        """Stop every running call (the server's grace period is over)."""
        for call in list(self._calls.values()):
            call.fail(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
        self._close()

    def _fail(self, code: int) -> None:
        self._write(frames.goaway(self._last_stream, code))
        self.uncork()
        self._close()

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class _ConnectionError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _unpad(payload: bytes) -> bytes:
    if not payload or payload[0] >= len(payload):
        raise _ConnectionError(frames.ErrorCode.PROTOCOL_ERROR)
    return payload[1 : len(payload) - payload[0]]


def _b64decode(value: bytes) -> bytes:
    return base64.b64decode(value + b"=" * (-len(value) % 4))
