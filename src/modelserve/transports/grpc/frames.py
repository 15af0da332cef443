"""HTTP/2 frames (RFC 9113) and the gRPC conventions carried in them (gRPC over HTTP/2).

Only what a gRPC server writes is encoded here: SETTINGS, their ACK, PING ACK, WINDOW_UPDATE,
RST_STREAM, GOAWAY, DATA and HEADERS. Header blocks are written as HPACK literals without
indexing (RFC 7541 §6.2.2), so the server keeps no encoder state and a whole answer is a few
joined byte strings; headers that never change are encoded once, at import.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable

import hpack

__all__ = [
    "ACK",
    "CONTINUATION",
    "DATA",
    "END_HEADERS",
    "END_STREAM",
    "GOAWAY",
    "HEADERS",
    "PADDED",
    "PING",
    "PREFACE",
    "PRIORITY",
    "PRIORITY_FLAG",
    "RESPONSE_HEADERS",
    "RST_STREAM",
    "SETTINGS",
    "WINDOW_UPDATE",
    "ErrorCode",
    "HeaderDecoder",
    "Setting",
    "data_frames",
    "frame",
    "goaway",
    "grpc_message",
    "header_block",
    "headers_frames",
    "parse_timeout",
    "rst_stream",
    "settings",
    "trailers",
    "window_update",
]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9

# flags
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

_HEAD = struct.Struct(">HBBBI")  # 24-bit length as (high 16, low 8), type, flags, stream id
_U32 = struct.Struct(">I")


class Setting:
    """SETTINGS identifiers."""

    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6


class ErrorCode:
    """RST_STREAM and GOAWAY error codes."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    ENHANCE_YOUR_CALM = 0xB


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    size = len(payload)
    return _HEAD.pack(size >> 8, size & 0xFF, kind, flags, stream_id) + payload


def settings(values: dict[int, int]) -> bytes:
    payload = b"".join(struct.pack(">HI", key, value) for key, value in values.items())
    return frame(SETTINGS, 0, 0, payload)


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(increment))


def rst_stream(stream_id: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream_id, _U32.pack(code))


def goaway(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, struct.pack(">II", last_stream_id, code) + debug)


def data_frames(stream_id: int, data: bytes | memoryview, max_frame: int) -> bytes:
    """``data`` as DATA frames of at most ``max_frame`` bytes (no END_STREAM)."""
    if len(data) <= max_frame:
        return frame(DATA, 0, stream_id, bytes(data))
    view = memoryview(data)
    return b"".join(
        frame(DATA, 0, stream_id, bytes(view[at : at + max_frame]))
        for at in range(0, len(view), max_frame)
    )


def headers_frames(stream_id: int, block: bytes, end_stream: bool, max_frame: int) -> bytes:
    """A header block as one HEADERS frame, or HEADERS + CONTINUATION frames past
    ``max_frame`` bytes."""
    first = END_STREAM if end_stream else 0
    if len(block) <= max_frame:
        return frame(HEADERS, first | END_HEADERS, stream_id, block)
    parts = [block[at : at + max_frame] for at in range(0, len(block), max_frame)]
    out = [frame(HEADERS, first, stream_id, parts[0])]
    for part in parts[1:-1]:
        out.append(frame(CONTINUATION, 0, stream_id, part))
    out.append(frame(CONTINUATION, END_HEADERS, stream_id, parts[-1]))
    return b"".join(out)


# ---- HPACK literals --------------------------------------------------------------------------


def _integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _literal(name: bytes, value: bytes) -> bytes:
    """A literal header field without indexing, new name, no Huffman coding."""
    return b"\x00" + _integer(len(name), 7) + name + _integer(len(value), 7) + value


def header_block(fields: Iterable[tuple[str, str | bytes]]) -> bytes:
    """Header fields as an HPACK block of literals. Keys ending in ``-bin`` carry bytes,
    sent base64-encoded as gRPC requires."""
    out = []
    for key, value in fields:
        if key.endswith("-bin"):
            raw = value if isinstance(value, bytes) else value.encode()
            encoded = base64.b64encode(raw).rstrip(b"=")
        else:
            encoded = value.encode("latin-1") if isinstance(value, str) else value
        out.append(_literal(key.encode("ascii"), encoded))
    return b"".join(out)


_STATUS_200 = b"\x88"  # indexed field 8 of the static table: ":status: 200"
RESPONSE_HEADERS = _STATUS_200 + header_block(
    (("content-type", "application/grpc"), ("grpc-accept-encoding", "identity,deflate,gzip"))
)
"""The header block that opens every answer."""

_OK_TRAILER = header_block((("grpc-status", "0"),))


def grpc_message(text: str) -> bytes:
    """``grpc-message``'s value: UTF-8, percent-encoded outside printable ASCII (and ``%``)."""
    out = bytearray()
    for byte in text.encode("utf-8"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)


def trailers(
    status: int,
    message: str = "",
    metadata: Iterable[tuple[str, str | bytes]] = (),
    *,
    only: bool = False,
) -> bytes:
    """The trailing header block: ``grpc-status``, ``grpc-message`` when there is one, then
    ``metadata``. ``only``: a trailers-only answer, which opens with the response headers."""
    block = _OK_TRAILER if status == 0 else header_block((("grpc-status", str(status)),))
    if message:
        block += _literal(b"grpc-message", grpc_message(message[:4096]))
    block += header_block(metadata)
    return RESPONSE_HEADERS + block if only else block


# ---- HPACK decoding --------------------------------------------------------------------------


class HeaderDecoder:
    """The ``hpack`` package's decoder (RFC 7541), remembering the blocks that left its dynamic
    table as it was: a client repeating its headers sends the same bytes every time once its
    table is warm (gRPC clients index all but ``grpc-timeout``), and those decode once."""

    CACHED = 256

    def __init__(self, max_header_list_size: int) -> None:
        self._decoder = hpack.Decoder()
        self._decoder.max_header_list_size = max_header_list_size
        self._known: dict[bytes, list[tuple[bytes, bytes]]] = {}

    def _state(self) -> tuple[int, object, int]:
        table = self._decoder.header_table
        entries = table.dynamic_entries
        return len(entries), entries[0] if entries else None, table.maxsize

    def decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        """``(name, value)`` pairs; ``hpack.HPACKError`` when the block does not decode."""
        known = self._known.get(block)
        if known is not None:
            return known
        size, first, maxsize = self._state()
        fields = [(bytes(n), bytes(v)) for n, v in self._decoder.decode(block, raw=True)]
        after = self._state()
        if after[0] == size and after[1] is first and after[2] == maxsize:
            if len(self._known) < self.CACHED:
                self._known[block] = fields
        else:  # indices moved: what was known may now mean other headers
            self._known.clear()
        return fields


# ---- gRPC request headers --------------------------------------------------------------------

_TIMEOUT_UNITS = {
    ord("H"): 3600.0,
    ord("M"): 60.0,
    ord("S"): 1.0,
    ord("m"): 1e-3,
    ord("u"): 1e-6,
    ord("n"): 1e-9,
}


def parse_timeout(value: bytes) -> float | None:
    """``grpc-timeout`` (``1S``, ``250m``, at most 8 digits and a unit) in seconds; None when
    malformed."""
    if not 2 <= len(value) <= 9 or not value[:-1].isdigit():
        return None
    unit = _TIMEOUT_UNITS.get(value[-1])
    return None if unit is None else int(value[:-1]) * unit
