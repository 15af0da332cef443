"""The Kafka sink (aiokafka, the ``kafka`` extra).

Each event is one message on ``topic``: key = the request id (so one request's retries land on
one partition, in order), value = the payload-log record (monitoring/records.py, JSON, as the
file sink writes it), headers ``model``, ``version``, ``status`` and
``content-type: application/json``.

The producer starts on the first batch, not when the sink is configured: a broker that is down
at startup is retried like any failed delivery, and a producer that could not start is thrown
away and made anew for the next attempt. A batch is handed to the producer at once (aiokafka
groups it into Kafka batches per partition) and each message is awaited; the ones the brokers
refused are retried by the worker (monitoring/sinks/delivery.py), those that can never be
accepted (too large) go to the dead-letter file at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from modelserve.config.payload import KafkaSinkConfig
from modelserve.monitoring.events import InferenceEvent
from modelserve.monitoring.records import LogPolicy, record_bytes
from modelserve.monitoring.sinks.delivery import Pending, describe
from modelserve.monitoring.sinks.registry import SinkContext

__all__ = ["KafkaSink", "kafka_options"]


def kafka_options(config: KafkaSinkConfig) -> dict[str, Any]:
    """The connection options of aiokafka's clients for ``config``."""
    options: dict[str, Any] = {
        "bootstrap_servers": config.bootstrap_servers,
        "security_protocol": config.security_protocol,
        "request_timeout_ms": int(config.timeout_s * 1000),
    }
    if config.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context()
    if config.sasl_mechanism is not None:
        options["sasl_mechanism"] = config.sasl_mechanism
        options["sasl_plain_username"] = config.sasl_username
        options["sasl_plain_password"] = config.sasl_password
    return options


class KafkaSink:
    def __init__(self, config: KafkaSinkConfig, context: SinkContext) -> None:
        self._config = config
        self._client_id = f"modelserve-{context.host}"
        self._producer: AIOKafkaProducer | None = None

    def encode(self, event: InferenceEvent, policy: LogPolicy) -> tuple[bytes, bytes, list[Any]]:
        headers = [
            ("model", event.model.encode()),
            ("version", event.version.encode()),
            ("status", event.status.encode()),
            ("content-type", b"application/json"),
        ]
        return event.id.encode(), record_bytes(event, policy), headers

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        config = self._config
        acks: int | str = "all" if config.acks == "all" else int(config.acks)
        producer = AIOKafkaProducer(
            client_id=self._client_id,
            acks=acks,
            compression_type=None if config.compression == "none" else config.compression,
            linger_ms=5,
            **kafka_options(config),
        )
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self._producer = producer
        return producer

    async def send(self, batch: list[Pending]) -> list[Pending]:
        producer = await self._started()
        topic = self._config.topic
        futures = []
        for pending in batch:
            key, value, headers = pending.payload
            futures.append(await producer.send(topic, value=value, key=key, headers=headers))
        results = await asyncio.gather(*futures, return_exceptions=True)
        left = []
        for pending, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                permanent = isinstance(result, MessageSizeTooLargeError)
                pending.fail(describe(result), permanent=permanent)
                left.append(pending)
        return left

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError):
                await producer.stop()
