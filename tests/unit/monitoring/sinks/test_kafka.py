"""The Kafka sink with no broker to reach (a closed port on 127.0.0.1): aiokafka's real
producer fails to connect, the worker retries, then dead-letters the events with the error and
counts them failed; nothing hangs. (Delivery to a real broker: tests/e2e/test_kafka.py.)"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import orjson
from prometheus_client import CollectorRegistry

from modelserve.config.payload import KafkaSinkConfig
from modelserve.monitoring.events import EventBus
from modelserve.monitoring.records import LogPolicy
from modelserve.monitoring.sinks.deadletter import DeadLetter, dead_letter_path
from modelserve.monitoring.sinks.delivery import SinkWorker
from modelserve.monitoring.sinks.kafka import KafkaSink
from modelserve.monitoring.sinks.metrics import PayloadMetrics
from modelserve.monitoring.sinks.registry import SinkContext, sink_name
from modelserve.types import InferenceRequest, Tensor


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_broker_dead_letters_after_the_retries(tmp_path: Path) -> None:
    config = KafkaSinkConfig.model_validate(
        {
            "type": "kafka",
            "bootstrap_servers": f"127.0.0.1:{_closed_port()}",
            "topic": "modelserve.iris",
            "max_retries": 1,
            "retry_backoff_ms": 10,
            "timeout_s": 2,
            "linger_ms": 1,
        }
    )
    name = sink_name(config)
    assert name.startswith("kafka:127.0.0.1:") and name.endswith("/modelserve.iris")
    bus = EventBus()
    subscription = bus.subscribe(name, models={"iris": 1.0})
    registry = CollectorRegistry()
    dead = DeadLetter(dead_letter_path(tmp_path, name), name)
    worker = SinkWorker(
        name,
        KafkaSink(config, SinkContext(tmp_path)),
        subscription,
        config,
        {"iris": LogPolicy()},
        PayloadMetrics(registry),
        dead,
    )
    worker.start()
    for i in range(3):
        data = np.zeros((1, 4), dtype=np.float32)
        request = InferenceRequest("iris", (Tensor("input", "FP32", (1, 4), data),), id=f"k{i}")
        bus.succeeded(request, "1", (), 0)
    started = time.monotonic()
    await worker.stop(time.monotonic() + 30)
    assert time.monotonic() - started < 30
    labels = {"model": "iris", "sink": name, "outcome": "failed"}
    assert registry.get_sample_value("modelserve_payload_events_total", labels) == 3
    lines = [orjson.loads(line) for line in dead.path.read_text().splitlines()]
    assert [line["event"]["id"] for line in lines] == ["k0", "k1", "k2"]
    assert "Kafka" in lines[0]["error"] or "onnect" in lines[0]["error"]
