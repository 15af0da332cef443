"""The delivery logic every sink shares, driven through the real file sink: batching, retries
that resume by themselves when the destination is back, dead letters after the retries, the
flush (and the dead letters) at shutdown, and counters that account for every event."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import numpy as np
import orjson
from prometheus_client import CollectorRegistry

from modelserve.config.payload import FileSinkConfig
from modelserve.monitoring.events import EventBus
from modelserve.monitoring.records import LogPolicy
from modelserve.monitoring.sinks.deadletter import DeadLetter, dead_letter_path
from modelserve.monitoring.sinks.delivery import SinkWorker
from modelserve.monitoring.sinks.file import FileSink
from modelserve.monitoring.sinks.metrics import PayloadMetrics
from modelserve.monitoring.sinks.registry import SinkContext
from modelserve.types import InferenceRequest, Tensor


def _publish(bus: EventBus, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        data = np.full((1, 4), i, dtype=np.float32)
        request = InferenceRequest("iris", (Tensor("input", "FP32", (1, 4), data),), id=f"r{i}")
        bus.succeeded(request, "1", (), 0)


def _counts(registry: CollectorRegistry, sink: str) -> dict[str, float]:
    out = {}
    for outcome in ("sent", "dropped", "failed"):
        labels = {"model": "iris", "sink": sink, "outcome": outcome}
        out[outcome] = registry.get_sample_value("modelserve_payload_events_total", labels) or 0.0
    return out


def _worker(tmp_path: Path, **config: object) -> tuple[EventBus, SinkWorker, CollectorRegistry]:
    settings = {"type": "file", "path": "out/payloads.jsonl", **config}
    sink_config = FileSinkConfig.model_validate(settings)
    context = SinkContext(tmp_path)
    bus = EventBus()
    subscription = bus.subscribe(
        "file", models={"iris": 1.0}, max_events=sink_config.max_queue_events
    )
    registry = CollectorRegistry()
    worker = SinkWorker(
        "file",
        FileSink(sink_config, context),
        subscription,
        sink_config,
        {"iris": LogPolicy()},
        PayloadMetrics(registry),
        DeadLetter(dead_letter_path(tmp_path, "file"), "file"),
    )
    worker.start()
    return bus, worker, registry


async def _until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def _ids(path: Path) -> list[str]:
    return [orjson.loads(line)["id"] for line in path.read_text().splitlines()]


async def test_batches_are_written_in_order(tmp_path: Path) -> None:
    bus, worker, registry = _worker(tmp_path, batch_size=16)
    _publish(bus, 100)
    await worker.stop(time.monotonic() + 5)
    assert _ids(tmp_path / "out" / "payloads.jsonl") == [f"r{i}" for i in range(100)]
    assert _counts(registry, "file") == {"sent": 100, "dropped": 0, "failed": 0}
    assert registry.get_sample_value("modelserve_payload_delivery_seconds_count", {"sink": "file"})


async def test_delivery_resumes_when_the_destination_is_back(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file where the folder should be")  # writes fail
    bus, worker, registry = _worker(
        tmp_path, max_retries=1000, retry_backoff_ms=5, retry_backoff_max_ms=20
    )
    _publish(bus, 10)
    await _until(lambda: worker.in_delivery == 10)
    await asyncio.sleep(0.1)  # retrying
    assert _counts(registry, "file")["sent"] == 0
    (tmp_path / "out").unlink()  # the destination is back
    await _until(lambda: _counts(registry, "file")["sent"] == 10)
    await worker.stop(time.monotonic() + 5)
    assert _ids(tmp_path / "out" / "payloads.jsonl") == [f"r{i}" for i in range(10)]


async def test_undeliverable_batches_go_to_the_dead_letter_file(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("blocks the folder")
    bus, worker, registry = _worker(
        tmp_path, max_retries=2, retry_backoff_ms=1, max_queue_events=5, batch_size=5, linger_ms=50
    )
    _publish(bus, 12)  # 5 queued, 7 dropped
    await _until(lambda: _counts(registry, "file")["failed"] == 5)
    worker.flush_drops()
    assert _counts(registry, "file") == {"sent": 0, "dropped": 7, "failed": 5}
    lines = [orjson.loads(x) for x in dead_letter_path(tmp_path, "file").read_text().splitlines()]
    assert [x["event"]["id"] for x in lines] == [f"r{i}" for i in range(5)]
    assert {x["attempts"] for x in lines} == {3} and {x["sink"] for x in lines} == {"file"}
    assert "Error" in lines[0]["error"]
    assert lines[0]["event"]["inputs"][0]["data"] == [0.0] * 4  # replayable: the whole record
    await worker.stop(time.monotonic() + 5)


async def test_shutdown_dead_letters_what_it_could_not_deliver_in_time(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("blocks the folder")
    bus, worker, registry = _worker(tmp_path, max_retries=1000, retry_backoff_ms=10, batch_size=4)
    _publish(bus, 10)
    await _until(lambda: worker.in_delivery > 0)
    started = time.monotonic()
    await worker.stop(time.monotonic() + 0.3)
    assert time.monotonic() - started < 2
    assert _counts(registry, "file") == {"sent": 0, "dropped": 0, "failed": 10}
    dead = dead_letter_path(tmp_path, "file").read_text().splitlines()
    assert sorted(orjson.loads(x)["event"]["id"] for x in dead) == sorted(
        f"r{i}" for i in range(10)
    )


async def test_shutdown_flushes_what_is_queued(tmp_path: Path) -> None:
    bus, worker, registry = _worker(tmp_path, linger_ms=1000, batch_size=1000)
    _publish(bus, 50)
    await worker.stop(time.monotonic() + 5)
    assert len(_ids(tmp_path / "out" / "payloads.jsonl")) == 50
    assert _counts(registry, "file")["sent"] == 50


async def test_rotation_by_size_keeps_the_newest(tmp_path: Path) -> None:
    bus, worker, _ = _worker(tmp_path, rotate_mb=0.002, keep=2, batch_size=5, linger_ms=0)
    for start in range(0, 60, 5):
        _publish(bus, 5, start)
        await asyncio.sleep(0.02)
    await worker.stop(time.monotonic() + 5)
    folder = tmp_path / "out"
    rotated = sorted(p for p in folder.iterdir() if p.name != "payloads.jsonl")
    assert len(rotated) == 2
    assert all(p.name.startswith("payloads-") and p.suffix == ".jsonl" for p in rotated)
    assert all(p.stat().st_size <= 0.002 * 1024 * 1024 + 2000 for p in rotated)
    ids = [i for p in [*rotated, folder / "payloads.jsonl"] for i in _ids(p)]
    assert ids == sorted(ids, key=lambda x: int(x[1:]))  # in order across files
    assert ids[-1] == "r59"
    shutil.rmtree(folder)
