"""The Redis Streams sink (redis-py's asyncio client, the ``redis`` extra).

Each event is one stream entry, added with ``XADD <stream> MAXLEN ~ <maxlen> * ...`` (``=`` with
``exact_maxlen``), fields:

- ``key``: the request id (what a Kafka message's key is);
- ``model``, ``version``, ``status``: for consumers that filter without parsing;
- ``event``: the payload-log record (monitoring/records.py), JSON, as the file sink writes it.

A batch goes out as one pipeline (one round trip, no transaction). The client reconnects by
itself, so delivery resumes when Redis is back (the worker retries the batch). An entry Redis
refuses (a wrong type at the key, out of memory) fails with the error Redis gave.
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from modelserve.config.payload import RedisSinkConfig
from modelserve.monitoring.events import InferenceEvent
from modelserve.monitoring.records import LogPolicy, record_bytes
from modelserve.monitoring.sinks.delivery import Pending, describe
from modelserve.monitoring.sinks.registry import SinkContext

__all__ = ["RedisSink", "redis_client"]


def redis_client(url: str, timeout_s: float) -> aioredis.Redis:
    """A pooled asyncio client for ``url`` that gives up on an operation after ``timeout_s``."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=min(timeout_s, 5.0),
        health_check_interval=30,
    )
    return client


class RedisSink:
    def __init__(self, config: RedisSinkConfig, context: SinkContext) -> None:
        del context
        self._stream = config.stream
        self._maxlen = config.maxlen
        self._approximate = not config.exact_maxlen
        self._client = redis_client(config.url, config.timeout_s)

    def encode(self, event: InferenceEvent, policy: LogPolicy) -> dict[str, Any]:
        return {
            "key": event.id,
            "model": event.model,
            "version": event.version,
            "status": event.status,
            "event": record_bytes(event, policy),
        }

    async def send(self, batch: list[Pending]) -> list[Pending]:
        async with self._client.pipeline(transaction=False) as pipe:
            for pending in batch:
                pipe.xadd(
                    self._stream,
                    pending.payload,
                    maxlen=self._maxlen,
                    approximate=self._approximate,
                )
            results = await pipe.execute(raise_on_error=False)
        left = []
        for pending, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                # A command Redis refused will be refused again; a lost connection will not.
                permanent = isinstance(result, ResponseError)
                pending.fail(describe(result), permanent=permanent)
                left.append(pending)
        return left

    async def close(self) -> None:
        with contextlib.suppress(RedisError):
            await self._client.aclose()
