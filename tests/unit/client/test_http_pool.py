"""Client's own HTTP/1.1 connections (http_pool.py) against raw sockets on loopback: answers
ended by the close, a server that hangs up without answering, idle connections the server
closed, and descriptors past select's limit."""

from __future__ import annotations

import os
import resource
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from modelserve.client import Client, ClientError, ConnectionFailedError
from modelserve.client.http_pool import _dropped


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@contextmanager
def raw_server(answer: Callable[[socket.socket, bytes], None]) -> Iterator[str]:
    """A one-thread server on 127.0.0.1: each connection's first request goes to ``answer``,
    then the connection is closed."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                if not stop.is_set():
                    answer(conn, _read_request(conn))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        socket.create_connection(listener.getsockname()).close()  # wakes the accept
        thread.join(5)
        listener.close()


def test_an_answer_ended_by_the_close_is_read_whole() -> None:
    body = b'{"name": "raw", "version": "1", "extensions": ["a"]}'

    def answer(conn: socket.socket, request: bytes) -> None:
        assert request.startswith(b"GET /v2 HTTP/1.1\r\n")
        conn.sendall(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + body[:10])
        conn.sendall(body[10:])

    with raw_server(answer) as url, Client(url, retries=0) as client:
        meta = client.server_metadata()
        assert (meta.name, meta.version, meta.extensions) == ("raw", "1", ("a",))
        # the connection was not kept: the next call opens another and works the same
        assert client.server_metadata().name == "raw"


def test_a_server_that_hangs_up_without_answering_is_a_clear_error() -> None:
    with (
        raw_server(lambda conn, request: None) as url,
        Client(url, retries=0) as client,
        pytest.raises(ConnectionFailedError, match="closed the connection before answering"),
    ):
        client.server_metadata()


def test_a_half_sent_answer_is_a_clear_error() -> None:
    def answer(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"name"')

    with (
        raw_server(answer) as url,
        Client(url, retries=0) as client,
        pytest.raises(ConnectionFailedError, match="closed the connection before answering"),
    ):
        client.server_metadata()


def test_not_http_is_a_clear_error() -> None:
    with (
        raw_server(lambda conn, request: conn.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")) as url,
        Client(url, retries=0) as client,
        pytest.raises(ClientError, match=r"did not answer in HTTP/1\.1"),
    ):
        client.server_metadata()


@pytest.fixture
def high_descriptor() -> int:
    """A descriptor number past select's FD_SETSIZE (1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2100:
        pytest.fail(f"the open files limit ({hard}) is too low for this test")
    if soft != resource.RLIM_INFINITY and soft < 2100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (2100, hard))
    return 2048


def test_dropped_tells_idle_from_closed_past_fd_setsize(high_descriptor: int) -> None:
    ours, theirs = socket.socketpair()
    os.dup2(ours.fileno(), high_descriptor)
    high = socket.socket(fileno=high_descriptor)
    ours.close()
    try:
        assert not _dropped(high), "an idle open connection is kept"
        theirs.close()
        assert _dropped(high), "a connection the peer closed is dropped"
    finally:
        high.close()
