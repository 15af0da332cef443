"""Kafka end to end, against a real broker: the payload sink and inference from a topic.

No Kafka broker can be installed from the package registries this project's machines reach
(Debian carries only clients, PyPI and npm no broker), so these tests run when
``MODELSERVE_TEST_KAFKA_BOOTSTRAP`` names one (host:port), e.g. a local Redpanda or Kafka
container (docs/payload-logging.md, "Testing with Kafka"), and are reported as skipped, with
that reason, otherwise. The queueing, retries, dead letters, metrics and the stream source's
serving logic they use are the ones the Redis and CloudEvents tests run against real servers.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.harness import Servers
from tests.payload_helpers import BODY, make_repo, payload_metric, wait_for

BOOTSTRAP = os.environ.get("MODELSERVE_TEST_KAFKA_BOOTSTRAP", "")
pytestmark = pytest.mark.skipif(
    not BOOTSTRAP,
    reason="no Kafka broker: set MODELSERVE_TEST_KAFKA_BOOTSTRAP=host:port to run the Kafka tests",
)


async def _consume(topic: str, count: int, timeout_s: float = 60.0) -> list[Any]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(records) < count and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def _produce(topic: str, messages: list[tuple[bytes, bytes, str]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await producer.start()
    try:
        for key, value, content_type in messages:
            headers = [("content-type", content_type.encode())]
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


def test_kafka_sink(model_repo: Path, tmp_path: Path, serve: Servers) -> None:
    topic = f"modelserve.test.{uuid.uuid4().hex[:8]}"
    sink = {"type": "kafka", "bootstrap_servers": BOOTSTRAP, "topic": topic, "linger_ms": 5}
    repo = make_repo(model_repo, tmp_path / "repo", iris={"sinks": [sink]})
    running = serve(repo, log_dir=tmp_path / "logs")
    with httpx.Client(base_url=running.http) as client:
        for i in range(50):
            assert client.post("/v2/models/iris/infer", json={**BODY, "id": f"k{i}"}).is_success
    name = f"kafka:{BOOTSTRAP}/{topic}"
    labels = {"model": "iris", "sink": name, "outcome": "sent"}
    wait_for(
        lambda: payload_metric(running.http, "modelserve_payload_events_total", **labels) == 50
    )
    records = asyncio.run(_consume(topic, 50))
    assert sorted(r.key.decode() for r in records) == sorted(f"k{i}" for i in range(50))
    record = orjson.loads(records[0].value)
    assert record["model"] == "iris" and record["status"] == "success"
    assert dict(records[0].headers)["model"] == b"iris"


def test_inference_from_a_kafka_topic(model_repo: Path, tmp_path: Path, serve: Servers) -> None:
    topic = f"modelserve.requests.{uuid.uuid4().hex[:8]}"
    messages = [
        (f"r{i}".encode(), orjson.dumps({**BODY, "id": f"r{i}"}), "application/json")
        for i in range(30)
    ]
    messages.append((b"bad", b'{"inputs": []}', "application/json"))
    asyncio.run(_produce(topic, messages))
    repo = make_repo(model_repo, tmp_path / "repo", iris_onnx=None)
    serve(repo, stream_source=[f"kafka://{BOOTSTRAP}/{topic}?model=iris_onnx"])
    responses = asyncio.run(_consume(f"{topic}.responses", 30))
    assert sorted(r.key.decode() for r in responses) == sorted(f"r{i}" for i in range(30))
    [error] = asyncio.run(_consume(f"{topic}.errors", 1))
    assert orjson.loads(error.value)["code"] == "invalid_argument"
