"""Inference events and the bounded in-process bus that fans them out.

The dataplane publishes one ``InferenceEvent`` per inference request (answered or failed) to the
``EventBus``. Consumers (payload sinks; next the prediction store, drift windows, shadow
comparison and the dashboard's time series) each ``subscribe`` with a bounded queue and take
batches of events off the hot path, on the event loop:

    subscription = bus.subscribe("drift", models={"iris": 1.0}, max_events=10_000)
    while batch := await subscription.get(256, linger_s=0.005):
        ...                                  # [] once the subscription is closed and empty

Rules the hot path relies on:
- Nothing is built for a request no consumer wants: with no subscription ``bus.active`` is
  False and the dataplane does not call the bus at all; a model no consumer follows costs one
  dict lookup.
- Publishing never blocks and never fails a request: a full queue (by count or by tensor bytes)
  drops the event and counts it, per consumer and per model; an exception while publishing is
  logged, never raised.
- An event references the request's and the response's tensors (numpy arrays); nothing is
  copied or encoded here. Consumers must not modify them. Sinks encode them to V2 JSON.
- Sampling: a consumer follows each model with a rate (0..1); one random draw per request is
  shared by every consumer, so consumers with the same rate see the same requests.

Everything runs on the event loop (the dataplane's), so there are no locks.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from modelserve.errors import ErrorCode
from modelserve.observability.context import (
    CURRENT,
    header_values,
    new_request_id,
    usable_id,
)
from modelserve.observability.metrics import OUTCOMES, SUCCESS
from modelserve.types import EMPTY_PARAMS, InferenceRequest, Parameters, Tensor

__all__ = [
    "BYTES_ELEMENT_ESTIMATE",
    "EVENT_OVERHEAD_BYTES",
    "EXPERIMENT_STATUS",
    "EventBus",
    "InferenceEvent",
    "Subscription",
]

log = logging.getLogger("modelserve.monitoring.events")

EMPTY_HEADERS: Mapping[str, str] = MappingProxyType({})
BYTES_ELEMENT_ESTIMATE = 64
"""Bytes counted per element of a BYTES tensor against a queue's byte bound (its array holds
only references, so the true size would need a pass over the elements)."""
EVENT_OVERHEAD_BYTES = 512
"""Bytes counted per event besides its tensors (the event, its strings and dicts)."""
EXPERIMENT_STATUS = "experiment"
"""The status of an event that records a traffic experiment's decision (no tensors; the
verdict, reason and figures as its parameters): routing/controller.py."""


@dataclass(slots=True, eq=False)
class InferenceEvent:
    """One inference request as consumers see it. Tensors are referenced, never copied."""

    id: str
    """The request id: the V2 ``id`` when the client gave a usable one, else the request's
    ``x-request-id`` (given or made up, as echoed to the client)."""
    model: str
    version: str
    """The version that answered; for a failure before one was chosen, what the client asked
    for ("" for none)."""
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    """Empty when the request failed."""
    parameters: Parameters
    """The request's parameters."""
    status: str
    """``success`` or the error code in lower case (as the metrics' ``outcome`` label)."""
    code: ErrorCode | None
    error: str | None
    """The message the client got, for a failure."""
    arrived_ns: int
    """Wall-clock time (``time.time_ns``) the request reached the server."""
    latency_ns: int
    """From its arrival to its answer."""
    transport: str
    """``http``, ``grpc``, ``stream`` or "" (called in-process)."""
    headers: Mapping[str, str]
    """The request headers some consumer asked for (``subscribe(headers=...)``)."""
    arm: str | None = None
    """The experiment arm that served the request, when traffic is split (else None)."""
    nbytes: int = 0
    """Tensor memory the event holds, as counted against queue byte bounds."""
    encoded: dict[Any, Any] | None = None
    """Encodings consumers made of this event, shared so that two sinks with the same policy
    encode it once (monitoring/records.py)."""


def _tensor_bytes(tensors: tuple[Tensor, ...]) -> int:
    total = 0
    for tensor in tensors:
        data = tensor.data
        total += data.size * BYTES_ELEMENT_ESTIMATE if data.dtype.kind == "O" else data.nbytes
    return total


class Subscription:
    """One consumer's bounded queue on the bus. ``offer`` is called by the bus on the hot path;
    the consumer awaits ``get``. Counters: ``accepted`` (queued), ``dropped`` (refused because
    the queue was full or closed; per model, taken by ``take_dropped`` for metrics)."""

    __slots__ = (
        "_bytes",
        "_closed",
        "_queue",
        "_waiter",
        "accepted",
        "dropped",
        "dropped_total",
        "headers",
        "max_bytes",
        "max_events",
        "models",
        "name",
    )

    def __init__(
        self,
        name: str,
        models: Mapping[str, float] | None,
        max_events: int,
        max_bytes: int,
        headers: Collection[str],
    ) -> None:
        self.name = name
        self.models = dict(models) if models is not None else None
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.headers = frozenset(h.lower() for h in headers)
        self.accepted = 0
        self.dropped: dict[str, int] = {}
        self.dropped_total = 0
        self._queue: deque[InferenceEvent] = deque()
        self._bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    # ---- the bus side ------------------------------------------------------------------------

    def offer(self, event: InferenceEvent) -> bool:
        """Queue ``event`` unless the queue is full or closed (then count it dropped)."""
        if (
            self._closed
            or len(self._queue) >= self.max_events
            or self._bytes + event.nbytes > self.max_bytes
        ):
            self.dropped[event.model] = self.dropped.get(event.model, 0) + 1
            self.dropped_total += 1
            return False
        self._queue.append(event)
        self._bytes += event.nbytes
        self.accepted += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    # ---- the consumer side -------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Events waiting."""
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    @property
    def closed(self) -> bool:
        return self._closed

    async def get(self, max_events: int, linger_s: float = 0.0) -> list[InferenceEvent]:
        """The next batch, oldest first: waits for a first event, then up to ``linger_s`` for
        the batch to fill to ``max_events``. Returns [] only once closed and empty."""
        while not self._queue:
            if self._closed:
                return []
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if linger_s > 0 and len(self._queue) < max_events and not self._closed:
            await asyncio.sleep(linger_s)
        return self.take(max_events)

    def take(self, max_events: int) -> list[InferenceEvent]:
        """Up to ``max_events`` waiting events, without waiting."""
        queue = self._queue
        batch = [queue.popleft() for _ in range(min(max_events, len(queue)))]
        self._bytes -= sum(event.nbytes for event in batch)
        return batch

    def take_dropped(self) -> dict[str, int]:
        """Drops per model since the last call (for the metrics)."""
        dropped, self.dropped = self.dropped, {}
        return dropped

    def close(self) -> None:
        """Accept no more events; ``get`` returns what is left, then []."""
        self._closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Route:
    """The consumers of one model, precomputed when subscriptions change."""

    __slots__ = ("min_rate", "targets")

    def __init__(self, targets: tuple[tuple[Subscription, float], ...]) -> None:
        self.targets = targets
        self.min_rate = min((rate for _, rate in targets), default=1.0)


_NO_ROUTE = _Route(())


class EventBus:
    """Fans inference events out to subscriptions. ``active`` is False while there is none,
    so that the dataplane skips events altogether."""

    def __init__(self) -> None:
        self.active = False
        self._subscriptions: list[Subscription] = []
        self._routes: dict[str, _Route] = {}
        self._wildcard = _NO_ROUTE
        self._headers: frozenset[str] = frozenset()
        self._errors = 0

    # ---- subscriptions -----------------------------------------------------------------------

    def subscribe(
        self,
        name: str,
        *,
        models: Mapping[str, float] | None = None,
        max_events: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        headers: Collection[str] = (),
    ) -> Subscription:
        """A new consumer: ``models`` maps each model it follows to its sample rate (None: every
        model, every request); its queue holds at most ``max_events`` events and ``max_bytes``
        of tensors; ``headers`` are request headers it wants on the events."""
        if max_events < 1 or max_bytes < 1:
            raise ValueError("a subscription needs room for at least one event")
        _check_rates(models)
        subscription = Subscription(name, models, max_events, max_bytes, headers)
        self._subscriptions.append(subscription)
        self._rebuild()
        return subscription

    def update(
        self,
        subscription: Subscription,
        models: Mapping[str, float] | None,
        headers: Collection[str] | None = None,
    ) -> None:
        """Change which models (and rates, and headers) a subscription follows."""
        _check_rates(models)
        subscription.models = dict(models) if models is not None else None
        if headers is not None:
            subscription.headers = frozenset(h.lower() for h in headers)
        self._rebuild()

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop routing events to ``subscription`` and close it (its consumer drains what is
        queued)."""
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
            self._rebuild()
        subscription.close()

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subscriptions)

    def _rebuild(self) -> None:
        everywhere = tuple((s, 1.0) for s in self._subscriptions if s.models is None)
        routes: dict[str, list[tuple[Subscription, float]]] = {}
        for subscription in self._subscriptions:
            for model, rate in (subscription.models or {}).items():
                if rate > 0:
                    routes.setdefault(model, []).append((subscription, rate))
        self._routes = {model: _Route((*targets, *everywhere)) for model, targets in routes.items()}
        self._wildcard = _Route(everywhere)
        self._headers = frozenset().union(*(s.headers for s in self._subscriptions))
        self.active = bool(self._routes) or bool(everywhere)

    # ---- publishing (the dataplane) ----------------------------------------------------------

    def succeeded(
        self,
        request: InferenceRequest,
        version: str,
        outputs: tuple[Tensor, ...],
        started_ns: int,
        arm: str | None = None,
    ) -> None:
        """An answered request of ``request.model_name``, served by ``version`` (the
        experiment ``arm`` that chose it, if any)."""
        try:
            route = self._routes.get(request.model_name, self._wildcard)
            if route.targets:
                draw = random.random() if route.min_rate < 1.0 else 0.0
                event = self._event(request, version, outputs, SUCCESS, None, None, started_ns)
                event.arm = arm
                self._publish(route, event, draw)
        except Exception:
            self._failed_to_publish()

    def failed(
        self,
        request: InferenceRequest,
        version: str,
        code: ErrorCode,
        message: str,
        started_ns: int | None,
        arm: str | None = None,
    ) -> None:
        """A request that failed with ``code`` (inputs are empty when it was never decoded)."""
        try:
            route = self._routes.get(request.model_name, self._wildcard)
            if route.targets:
                draw = random.random() if route.min_rate < 1.0 else 0.0
                status = OUTCOMES[code]
                event = self._event(request, version, (), status, code, message, started_ns)
                event.arm = arm
                self._publish(route, event, draw)
        except Exception:
            self._failed_to_publish()

    def publish(self, event: InferenceEvent) -> None:
        """Publish an event built elsewhere (its ``nbytes`` is set here)."""
        route = self._routes.get(event.model, self._wildcard)
        if route.targets:
            event.nbytes = (
                _tensor_bytes(event.inputs) + _tensor_bytes(event.outputs) + EVENT_OVERHEAD_BYTES
            )
            draw = random.random() if route.min_rate < 1.0 else 0.0
            self._publish(route, event, draw)

    def broadcast(self, event: InferenceEvent) -> None:
        """Publish an event built elsewhere to every consumer of its model, whatever their
        sample rates (monitoring's alerts: rare, and none may be sampled away)."""
        route = self._routes.get(event.model, self._wildcard)
        if route.targets:
            event.nbytes = (
                _tensor_bytes(event.inputs) + _tensor_bytes(event.outputs) + EVENT_OVERHEAD_BYTES
            )
            self._publish(route, event, 0.0)

    @staticmethod
    def _publish(route: _Route, event: InferenceEvent, draw: float) -> None:
        for subscription, rate in route.targets:
            if draw < rate:
                subscription.offer(event)

    def _event(
        self,
        request: InferenceRequest,
        version: str,
        outputs: tuple[Tensor, ...],
        status: str,
        code: ErrorCode | None,
        message: str | None,
        started_ns: int | None,
    ) -> InferenceEvent:
        now = time.perf_counter_ns()
        ctx = CURRENT.get()
        v2_id = request.id
        if ctx is not None:
            latency = now - ctx.started_ns
            arrived = ctx.started_wall_ns
            transport = ctx.transport
            rid = v2_id if usable_id(v2_id) else ctx.request_id
            wanted = self._headers
            headers = header_values(ctx.headers, wanted) if wanted else EMPTY_HEADERS
        else:
            latency = now - started_ns if started_ns is not None else 0
            arrived = time.time_ns() - latency
            transport = ""
            rid = v2_id if usable_id(v2_id) else new_request_id()
            headers = EMPTY_HEADERS
        inputs = request.inputs
        return InferenceEvent(
            rid,
            request.model_name,
            version or request.model_version,
            inputs,
            outputs,
            request.parameters or EMPTY_PARAMS,
            status,
            code,
            message,
            arrived,
            latency,
            transport,
            headers,
            None,
            _tensor_bytes(inputs) + _tensor_bytes(outputs) + EVENT_OVERHEAD_BYTES,
        )

    def _failed_to_publish(self) -> None:
        self._errors += 1
        if self._errors == 1 or self._errors % 10_000 == 0:
            log.exception("could not publish an inference event (%d so far)", self._errors)


def _check_rates(models: Mapping[str, float] | None) -> None:
    for model, rate in (models or {}).items():
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"sample rate of model '{model}' must be within 0..1, got {rate}")
