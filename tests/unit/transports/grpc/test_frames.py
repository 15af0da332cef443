"""HTTP/2 frames and HPACK blocks as the gRPC server writes and reads them, checked with the
``hpack`` package's own encoder and decoder."""

from __future__ import annotations

import struct

import hpack
import pytest

from modelserve.transports.grpc import frames


def _split(data: bytes) -> list[tuple[int, int, int, bytes]]:
    out = []
    while data:
        high, low, kind, flags, stream = struct.unpack_from(">HBBBI", data)
        size = (high << 8) | low
        out.append((kind, flags, stream, data[9 : 9 + size]))
        data = data[9 + size :]
    return out


def test_trailers_decode_with_status_message_and_metadata() -> None:
    block = frames.trailers(
        3, "bad input: 'x' ≠ 100%", (("x-request-id", "r1"), ("trace-bin", b"\x00\xff"))
    )
    fields = hpack.Decoder().decode(block)
    assert fields == [
        ("grpc-status", "3"),
        ("grpc-message", "bad input: 'x' %E2%89%A0 100%25"),
        ("x-request-id", "r1"),
        ("trace-bin", "AP8"),
    ]


def test_a_trailers_only_answer_opens_with_the_response_headers() -> None:
    fields = hpack.Decoder().decode(frames.trailers(0, only=True))
    assert fields[:2] == [(":status", "200"), ("content-type", "application/grpc")]
    assert fields[-1] == ("grpc-status", "0")


def test_long_header_blocks_continue_in_continuation_frames() -> None:
    block = frames.header_block((("x-long", "v" * 40_000),))
    parts = _split(frames.headers_frames(7, block, True, 16_384))
    assert [(kind, flags) for kind, flags, _, _ in parts] == [
        (frames.HEADERS, frames.END_STREAM),
        (frames.CONTINUATION, 0),
        (frames.CONTINUATION, frames.END_HEADERS),
    ]
    assert b"".join(payload for *_, payload in parts) == block
    assert {stream for _, _, stream, _ in parts} == {7}


def test_data_is_split_at_the_peers_frame_size() -> None:
    parts = _split(frames.data_frames(3, b"x" * 40_000, 16_384))
    assert [len(payload) for *_, payload in parts] == [16_384, 16_384, 7_232]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(b"1S", 1.0), (b"250m", 0.25), (b"2H", 7200.0), (b"99999999n", 0.099999999), (b"5u", 5e-6)],
)
def test_grpc_timeout(value: bytes, seconds: float) -> None:
    assert frames.parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [b"", b"S", b"1", b"1x", b"123456789S", b"-1S", b"1.5S"])
def test_malformed_grpc_timeout_is_none(value: bytes) -> None:
    assert frames.parse_timeout(value) is None


def test_header_decoder_remembers_blocks_only_while_the_table_stands_still() -> None:
    encoder, decoder = hpack.Encoder(), frames.HeaderDecoder(1 << 16)
    first = [(":path", "/a/B"), ("authorization", "Bearer one")]
    warm = encoder.encode(first)
    assert decoder.decode(warm) == [(b":path", b"/a/B"), (b"authorization", b"Bearer one")]
    again = encoder.encode(first)  # all indexed now: the same bytes each time
    assert again == encoder.encode(first)
    assert decoder.decode(again) == decoder.decode(again)
    # a new header enters the table and moves the indices of the old ones
    other = encoder.encode([("x-new", "1"), (":path", "/a/B"), ("authorization", "Bearer two")])
    assert decoder.decode(other)[2] == (b"authorization", b"Bearer two")
    assert decoder.decode(encoder.encode(first)) == [
        (b":path", b"/a/B"),
        (b"authorization", b"Bearer one"),
    ]


def test_settings_and_control_frames() -> None:
    ((kind, flags, stream, payload),) = _split(
        frames.settings({frames.Setting.MAX_FRAME_SIZE: 1 << 20})
    )
    assert (kind, flags, stream) == (frames.SETTINGS, 0, 0)
    assert struct.unpack(">HI", payload) == (frames.Setting.MAX_FRAME_SIZE, 1 << 20)
    assert _split(frames.window_update(5, 1000)) == [
        (frames.WINDOW_UPDATE, 0, 5, struct.pack(">I", 1000))
    ]
    assert _split(frames.rst_stream(5, frames.ErrorCode.CANCEL))[0][3] == struct.pack(">I", 8)
    assert _split(frames.goaway(9, 0))[0][3] == struct.pack(">II", 9, 0)
