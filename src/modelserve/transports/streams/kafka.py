"""Inference from a Kafka topic (aiokafka, the ``kafka`` extra).

Requests are messages on the topic: the value is the V2 request (JSON or protobuf), the
``content-type`` header says which (default ``application/json``), the key is the request id
(optional). The consumer is in the group ``modelserve-<model>`` with automatic commits off: an
offset is committed only once the answers of it and of every offset before it in its partition
were written (to ``<topic>.responses`` or ``<topic>.errors``, key = the request id, headers
``content-type``, ``source`` (``<partition>:<offset>``) and ``status_code``), so a restarted
server goes on after the last answered request and never reads an answered one again. A new
group starts at the topic's earliest offset.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from modelserve.config.streams import StreamSourceConfig
from modelserve.transports.streams.source import JSON_TYPE, StreamMessage, StreamReply

__all__ = ["KafkaBackend", "OffsetTracker"]

log = logging.getLogger("modelserve.streams")

POLL_MS = 1000


class OffsetTracker:
    """Which offset of each partition may be committed. Offsets are read in order, so every
    offset read below the lowest one still being served was answered: the position to commit
    is that lowest open offset, or the one after the highest read when none is open (offsets
    may have gaps, e.g. transaction markers)."""

    def __init__(self) -> None:
        self._open: dict[int, set[int]] = {}
        self._highest: dict[int, int] = {}
        self._committed: dict[int, int] = {}

    def taken(self, partition: int, offset: int) -> None:
        self._open.setdefault(partition, set()).add(offset)
        self._highest[partition] = max(offset, self._highest.get(partition, -1))
        # the first offset read is where the group stood: nothing to commit below it
        self._committed.setdefault(partition, offset)

    def answered(self, partition: int, offset: int) -> None:
        self._open.get(partition, set()).discard(offset)

    def committable(self) -> dict[int, int]:
        """Partition -> the offset to commit (the next one to read after a restart), for the
        partitions that moved since the last call."""
        out = {}
        for partition, highest in self._highest.items():
            still_open = self._open.get(partition)
            position = min(still_open) if still_open else highest + 1
            if position > self._committed.get(partition, -1):
                self._committed[partition] = position
                out[partition] = position
        return out

    def forget(self) -> None:
        """After a rebalance: what this consumer holds may now belong to another."""
        self._open.clear()
        self._highest.clear()
        self._committed.clear()


class KafkaBackend:
    def __init__(self, config: StreamSourceConfig, group: str, client_id: str) -> None:
        self._config = config
        self._group = group
        self._client_id = client_id
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._offsets = OffsetTracker()

    async def start(self) -> None:
        common: dict[str, Any] = {
            "bootstrap_servers": self._config.connection,
            "client_id": self._client_id,
        }
        producer = AIOKafkaProducer(acks="all", **common)
        consumer = AIOKafkaConsumer(
            self._config.stream,
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **common,
        )
        try:
            await producer.start()
            await consumer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self._producer, self._consumer = producer, consumer

    async def read(self, count: int) -> list[StreamMessage]:
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("the Kafka source is not started")
        batches = await consumer.getmany(timeout_ms=POLL_MS, max_records=count)
        messages = []
        for partition, records in batches.items():
            for record in records:
                headers = {k.lower(): v for k, v in (record.headers or ())}
                content_type = headers.get("content-type", JSON_TYPE.encode())
                self._offsets.taken(partition.partition, record.offset)
                messages.append(
                    StreamMessage(
                        position=f"{partition.partition}:{record.offset}",
                        body=record.value or b"",
                        content_type=content_type.decode("utf-8", "replace"),
                        key=record.key.decode("utf-8", "replace") if record.key else None,
                    )
                )
        return messages

    async def answer(self, message: StreamMessage, reply: StreamReply) -> None:
        producer, consumer = self._producer, self._consumer
        if producer is None or consumer is None:
            raise RuntimeError("the Kafka source is not started")
        config = self._config
        headers = [
            ("content-type", reply.content_type.encode()),
            ("source", message.position.encode()),
            ("status_code", str(reply.status_code).encode()),
        ]
        await producer.send_and_wait(
            config.errors if reply.error else config.responses,
            value=reply.body,
            key=reply.key.encode(),
            headers=headers,
        )
        partition, _, offset = message.position.partition(":")
        self._offsets.answered(int(partition), int(offset))
        moved = self._offsets.committable()
        if moved:
            offsets = {TopicPartition(config.stream, p): o for p, o in moved.items()}
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:  # a rebalance: the new owner reads them again
                log.warning("stream source %s: commit failed (%s)", config.text, exc)
                self._offsets.forget()

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        if consumer is not None:
            with contextlib.suppress(KafkaError):
                await consumer.stop()
        if producer is not None:
            with contextlib.suppress(KafkaError):
                await producer.stop()
