"""AsyncClient's REST transport (http_async.py): what its failures say, against a loopback
socket that takes connections and never answers."""

from __future__ import annotations

import asyncio
import socket

from modelserve.client import DeadlineError
from modelserve.client.connection import parse_endpoint
from modelserve.client.http_async import AsyncHttpTransport
from modelserve.client.rest import HttpOptions, RestApi


async def test_a_full_pool_and_a_silent_server_are_told_apart() -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # the kernel completes connects; no answer
    url = f"127.0.0.1:{silent.getsockname()[1]}"
    options = HttpOptions(parse_endpoint(url, None, None), timeout=0.5, max_connections=1)
    transport = AsyncHttpTransport(options)
    api = RestApi()
    try:
        first, second = await asyncio.gather(
            transport.call(api.server_metadata("a" * 32)),
            transport.call(api.server_metadata("b" * 32)),
            return_exceptions=True,
        )
    finally:
        await transport.close()
        silent.close()
    messages = sorted(str(e) for e in (first, second) if isinstance(e, DeadlineError))
    assert len(messages) == 2, (first, second)
    assert "all 1 connections to http://" in messages[0] and "stayed busy for 0.5 s" in messages[0]
    assert "no answer from http://" in messages[1] and "within 0.5 s" in messages[1]
