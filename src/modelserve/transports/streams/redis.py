"""Inference from a Redis stream (redis-py's asyncio client, the ``redis`` extra).

Requests are stream entries with the fields ``body`` (the V2 request: JSON or protobuf),
``content-type`` (default ``application/json``) and ``id`` (the request id, optional). They are
read with ``XREADGROUP`` in the consumer group (``modelserve-<model>``, made with ``MKSTREAM``
from the stream's start when it does not exist), so every entry goes to one consumer of the
group. An answer is written and its request acknowledged in one ``MULTI``/``EXEC`` transaction:
``XADD <stream>.responses`` (or ``<stream>.errors``) with ``key`` (the request id), ``source``
(the request's entry id), ``content-type``, ``status_code`` and ``body``, then ``XACK``.

At start the consumer first serves the entries it read before and did not acknowledge (its
pending list: a server that stopped mid-request serves them again), then takes over entries
another consumer of the group left unacknowledged for ``claim_idle_s`` (``XAUTOCLAIM``: a
worker process that died), then reads new entries.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import ResponseError

from modelserve.config.streams import StreamSourceConfig
from modelserve.monitoring.sinks.redis import redis_client
from modelserve.transports.streams.source import JSON_TYPE, StreamMessage, StreamReply

__all__ = ["RedisBackend"]

BLOCK_MS = 1000
CONNECTION_TIMEOUT_S = 10.0


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _entries(reply: Any) -> list[Any]:
    """The entries of an XREADGROUP reply on one stream: ``[[stream, entries]]`` (RESP2) or
    ``{stream: [entries]}`` (RESP3)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        value = next(iter(reply.values()))
        return list(value[0]) if value and isinstance(value[0], list) else list(value)
    return list(reply[0][1])


class RedisBackend:
    def __init__(self, config: StreamSourceConfig, group: str, consumer: str) -> None:
        self._config = config
        self._group = group
        self._consumer = consumer
        # reads block for BLOCK_MS, so the socket must wait longer than that
        self._client = redis_client(config.connection, CONNECTION_TIMEOUT_S)
        self._pending_from: str | None = "0"
        """Where the next read of this consumer's own pending list starts (None: done)."""
        self._claim_from: str | None = "0-0"
        """Where the next XAUTOCLAIM starts (None: done)."""

    async def start(self) -> None:
        try:
            await self._client.xgroup_create(
                self._config.stream, self._group, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, count: int) -> list[StreamMessage]:
        stream = self._config.stream
        if self._pending_from is not None:
            reply = await self._client.xreadgroup(
                self._group, self._consumer, {stream: self._pending_from}, count=count
            )
            entries = _entries(reply)
            if entries:
                self._pending_from = _text(entries[-1][0])
                return self._messages(entries)
            self._pending_from = None
        if self._claim_from is not None:
            idle_ms = int(self._config.claim_idle_s * 1000)
            claimed: Any = await self._client.xautoclaim(
                stream, self._group, self._consumer, idle_ms, self._claim_from, count=count
            )
            following, entries = _text(claimed[0]), claimed[1]
            self._claim_from = None if following == "0-0" else following
            entries = [entry for entry in entries if entry is not None and entry[1] is not None]
            if entries:
                return self._messages(entries)
        reply = await self._client.xreadgroup(
            self._group, self._consumer, {stream: ">"}, count=count, block=BLOCK_MS
        )
        return self._messages(_entries(reply))

    @staticmethod
    def _messages(entries: list[Any]) -> list[StreamMessage]:
        messages = []
        for entry_id, fields in entries:
            fields = {_text(k).lower(): v for k, v in (fields or {}).items()}
            body = fields.get("body", b"")
            key = fields.get("id")
            messages.append(
                StreamMessage(
                    position=_text(entry_id),
                    body=body if isinstance(body, bytes) else str(body).encode(),
                    content_type=_text(fields.get("content-type", JSON_TYPE)),
                    key=_text(key) if key else None,
                )
            )
        return messages

    async def answer(self, message: StreamMessage, reply: StreamReply) -> None:
        config = self._config
        target = config.errors if reply.error else config.responses
        fields = {
            "key": reply.key,
            "source": message.position,
            "content-type": reply.content_type,
            "status_code": str(reply.status_code),
            "body": reply.body,
        }
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.xadd(target, fields, maxlen=config.maxlen, approximate=True)  # type: ignore[arg-type]
            pipe.xack(config.stream, self._group, message.position)
            await pipe.execute()

    async def close(self) -> None:
        await self._client.aclose()
