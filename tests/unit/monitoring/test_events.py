"""The event bus: routing by model, shared sampling, bounded queues that drop with a count,
batches for consumers, and events that reference (never copy) the request's tensors."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from modelserve.errors import ErrorCode
from modelserve.monitoring.events import (
    BYTES_ELEMENT_ESTIMATE,
    EVENT_OVERHEAD_BYTES,
    EventBus,
    InferenceEvent,
)
from modelserve.observability import Observability
from modelserve.types import InferenceRequest, Tensor, as_object_array


def _request(model: str = "iris", rows: int = 1, id: str | None = None) -> InferenceRequest:
    data = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
    return InferenceRequest(model, (Tensor("input", "FP32", data.shape, data),), id=id)


def _outputs(rows: int = 1) -> tuple[Tensor, ...]:
    label = np.zeros(rows, dtype=np.int64)
    return (Tensor("label", "INT64", label.shape, label),)


def test_no_subscription_means_inactive_and_nothing_built() -> None:
    bus = EventBus()
    assert bus.active is False
    subscription = bus.subscribe("drift", models={"iris": 1.0})
    assert bus.active is True
    bus.succeeded(_request("other"), "1", _outputs(), 0)  # a model nobody follows
    assert subscription.depth == 0 and subscription.accepted == 0
    bus.unsubscribe(subscription)
    assert bus.active is False and subscription.closed


def test_events_reference_the_request_tensors() -> None:
    bus = EventBus()
    subscription = bus.subscribe("store", models=None)  # every model
    request, outputs = _request("anything", rows=3, id="req-1"), _outputs(3)
    bus.succeeded(request, "2", outputs, 0)
    [event] = subscription.take(10)
    assert event.inputs is request.inputs and event.outputs is outputs
    assert event.inputs[0].data is request.inputs[0].data
    assert (event.id, event.model, event.version, event.status) == (
        "req-1",
        "anything",
        "2",
        "success",
    )
    assert event.code is None and event.error is None and event.arm is None
    assert event.nbytes == 3 * 4 * 4 + 3 * 8 + EVENT_OVERHEAD_BYTES
    assert event.transport == "" and event.latency_ns >= 0


def test_failures_carry_code_and_message() -> None:
    bus = EventBus()
    subscription = bus.subscribe("log", models={"iris": 1.0})
    bus.failed(_request(id="bad"), "", ErrorCode.INVALID_ARGUMENT, "shape is wrong", None)
    [event] = subscription.take(1)
    assert (event.status, event.code, event.error) == (
        "invalid_argument",
        ErrorCode.INVALID_ARGUMENT,
        "shape is wrong",
    )
    assert event.outputs == ()


def test_an_unusable_v2_id_is_replaced() -> None:
    bus = EventBus()
    subscription = bus.subscribe("log")
    bus.succeeded(_request(id="line\nbreak"), "1", _outputs(), 0)
    [event] = subscription.take(1)
    assert len(event.id) == 32 and event.id.isalnum()


def test_request_context_gives_id_timing_transport_and_headers() -> None:
    observability = Observability(process_metrics=False)
    bus = EventBus()
    subscription = bus.subscribe("log", headers=["X-User"])
    headers = {"x-user": "ada", "authorization": "Bearer secret"}
    ctx = observability.begin("http", "POST", "/v2/models/iris/infer", "given-id", headers=headers)
    try:
        bus.succeeded(_request(), "1", _outputs(), 0)  # no V2 id: the x-request-id
    finally:
        observability.end(ctx, 200)
    arrived = ctx.started_wall_ns
    grpc_metadata = (("x-user", "bob"), ("trace-bin", b"\x00"))
    ctx = observability.begin("grpc", "ModelInfer", "/x", None, headers=grpc_metadata)
    try:
        bus.succeeded(_request(id="v2-id"), "1", _outputs(), 0)
    finally:
        observability.end(ctx, "OK")
    first, second = subscription.take(2)
    assert (first.id, first.transport, dict(first.headers)) == (
        "given-id",
        "http",
        {"x-user": "ada"},
    )
    assert first.arrived_ns == arrived
    assert (second.id, second.transport, dict(second.headers)) == (
        "v2-id",
        "grpc",
        {"x-user": "bob"},
    )


def test_sampling_is_one_draw_shared_by_consumers() -> None:
    bus = EventBus()
    half_a = bus.subscribe("a", models={"iris": 0.5})
    half_b = bus.subscribe("b", models={"iris": 0.5})
    everything = bus.subscribe("c", models={"iris": 1.0})
    never = bus.subscribe("d", models={"iris": 0.0})
    for i in range(2000):
        bus.succeeded(_request(id=f"r{i}"), "1", _outputs(), 0)
    ids_a = [e.id for e in half_a.take(5000)]
    assert ids_a == [e.id for e in half_b.take(5000)]
    assert 800 < len(ids_a) < 1200
    assert everything.depth == 2000 and never.depth == 0


def test_full_queue_drops_and_counts_by_count_and_by_bytes() -> None:
    bus = EventBus()
    by_count = bus.subscribe("count", models={"iris": 1.0}, max_events=3)
    one_event = 4 * 4 + 8 + EVENT_OVERHEAD_BYTES
    by_bytes = bus.subscribe("bytes", models={"iris": 1.0}, max_bytes=2 * one_event)
    for _ in range(5):
        bus.succeeded(_request(), "1", _outputs(), 0)
    assert (by_count.depth, by_count.dropped_total) == (3, 2)
    assert (by_bytes.depth, by_bytes.dropped_total, by_bytes.queued_bytes) == (2, 3, 2 * one_event)
    assert by_count.take_dropped() == {"iris": 2} and by_count.take_dropped() == {}
    by_bytes.take(1)
    bus.succeeded(_request(), "1", _outputs(), 0)
    assert by_bytes.depth == 2  # room again


def test_bytes_tensors_are_estimated() -> None:
    bus = EventBus()
    subscription = bus.subscribe("log")
    data = as_object_array([b"a", b"b"]).reshape(1, 2)
    bus.succeeded(InferenceRequest("m", (Tensor("t", "BYTES", (1, 2), data),)), "1", (), 0)
    [event] = subscription.take(1)
    assert event.nbytes == 2 * BYTES_ELEMENT_ESTIMATE + EVENT_OVERHEAD_BYTES


async def test_consumers_get_batches_and_an_empty_one_once_closed() -> None:
    bus = EventBus()
    subscription = bus.subscribe("log", models={"iris": 1.0})
    got: list[list[InferenceEvent]] = []

    async def consume() -> None:
        while batch := await subscription.get(4, linger_s=0.01):
            got.append(batch)

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    for i in range(10):
        bus.succeeded(_request(id=f"r{i}"), "1", _outputs(), 0)
    await asyncio.sleep(0.05)
    bus.unsubscribe(subscription)
    bus.succeeded(_request(id="late"), "1", _outputs(), 0)  # after close: not routed
    await asyncio.wait_for(consumer, 1)
    assert [len(batch) for batch in got] == [4, 4, 2]
    assert [e.id for batch in got for e in batch] == [f"r{i}" for i in range(10)]


async def test_a_closed_subscription_refuses_and_counts() -> None:
    bus = EventBus()
    subscription = bus.subscribe("log", models={"iris": 1.0})
    subscription.close()
    bus.succeeded(_request(), "1", _outputs(), 0)
    assert subscription.dropped_total == 1
    assert await subscription.get(10) == []


def test_update_changes_models_and_rates() -> None:
    bus = EventBus()
    subscription = bus.subscribe("log", models={"a": 1.0})
    bus.update(subscription, {"b": 1.0})
    bus.succeeded(_request("a"), "1", _outputs(), 0)
    bus.succeeded(_request("b"), "1", _outputs(), 0)
    assert [e.model for e in subscription.take(5)] == ["b"]
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        bus.update(subscription, {"b": 1.5})


def test_publishing_never_raises() -> None:
    bus = EventBus()
    bus.subscribe("log")
    broken = InferenceRequest("m", (Tensor("t", "FP32", (1,), "not an array"),))  # type: ignore[arg-type]
    bus.succeeded(broken, "1", (), 0)  # logged, not raised
