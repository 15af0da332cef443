"""What every payload sink shares: the bounded queue (a bus subscription), batching, retries
with jittered exponential backoff, the dead-letter file, the metrics and the flush at shutdown.
A sink type only says how to encode an event and how to send a batch (``Sender``).

The life of an event routed to a sink:
1. the bus queues it on the sink's subscription, or drops it (counted) when the queue is full
   by count or by bytes: a slow or dead sink costs requests nothing;
2. the worker takes a batch (up to ``batch_size`` events, waiting ``linger_ms`` for it to fill),
   encodes it and sends it; what was not delivered is retried after
   ``uniform(0, min(retry_backoff_max_ms, retry_backoff_ms * 2**n))`` (full jitter), so that
   delivery resumes by itself when the sink returns;
3. after ``max_retries`` retries, or at once for an error retrying cannot fix (a receiver's 4xx),
   the events go to the dead-letter file and count as failed.
At shutdown the worker delivers what is queued until the deadline, then dead-letters the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping
from typing import Any, Protocol

from modelserve.config.payload import SinkConfig
from modelserve.monitoring.events import InferenceEvent, Subscription
from modelserve.monitoring.records import LogPolicy, record_bytes
from modelserve.monitoring.sinks.deadletter import DeadLetter
from modelserve.monitoring.sinks.metrics import DROPPED, FAILED, SENT, PayloadMetrics

__all__ = ["DeliveryError", "Pending", "Sender", "SinkWorker"]

log = logging.getLogger("modelserve.monitoring.sinks")

CLOSE_TIMEOUT_S = 5.0
"""Longest a sink's client gets to close (flush and disconnect) at the end."""
FAIL_LOG_INTERVAL_S = 10.0
"""At most one warning about dead-lettered events per sink in this time."""


class DeliveryError(Exception):
    """A batch (or one event) could not be delivered. ``permanent``: retrying cannot help (the
    receiver refused the payload), so it goes to the dead-letter file at once."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Pending:
    """One event on its way to a sink: its encoding for that sink and, after a failed attempt,
    why it failed."""

    __slots__ = ("error", "event", "payload", "permanent", "policy")

    def __init__(self, event: InferenceEvent, policy: LogPolicy, payload: Any) -> None:
        self.event = event
        self.policy = policy
        self.payload = payload
        self.error = ""
        self.permanent = False

    def fail(self, error: str, permanent: bool = False) -> None:
        self.error = error
        self.permanent = permanent


class Sender(Protocol):
    """The part of a sink that knows its destination."""

    def encode(self, event: InferenceEvent, policy: LogPolicy) -> Any:
        """The event as this sink sends it (called on the event loop, off the hot path)."""
        ...

    async def send(self, batch: list[Pending]) -> list[Pending]:
        """Deliver ``batch``; return the events that were not delivered, each with ``fail``
        called. Raising means none was delivered."""
        ...

    async def close(self) -> None:
        """Flush and release connections or files."""
        ...


def describe(exc: BaseException) -> str:
    """``Type: message`` (once: some libraries' messages already start with their type)."""
    text, kind = str(exc), type(exc).__name__
    if not text:
        return kind
    return text if text.startswith(kind) else f"{kind}: {text}"


class SinkWorker:
    """Drives one sink: takes batches off its subscription and delivers them."""

    def __init__(
        self,
        name: str,
        sender: Sender,
        subscription: Subscription,
        config: SinkConfig,
        policies: Mapping[str, LogPolicy],
        metrics: PayloadMetrics,
        dead_letter: DeadLetter,
    ) -> None:
        self.name = name
        self.sender = sender
        self.subscription = subscription
        self.config = config
        self.policies = policies
        self._metrics = metrics
        self.dead_letter = dead_letter
        self._task: asyncio.Task[None] | None = None
        self._current: list[Pending] = []
        self._deadline: float | None = None
        self._healthy = True
        self._last_fail_log = -FAIL_LOG_INTERVAL_S
        self._failed_since_log = 0

    @property
    def in_delivery(self) -> int:
        """Events taken off the queue and not yet sent or failed."""
        return len(self._current)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"payload sink {self.name}")

    async def _run(self) -> None:
        subscription, config = self.subscription, self.config
        linger_s = config.linger_ms / 1000
        while events := await subscription.get(config.batch_size, linger_s):
            try:
                await self._deliver(events)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop the sink: count the events failed
                log.exception("payload sink %s: unexpected error delivering a batch", self.name)
                await self._fail(self._current, "internal error", 1)
            self._current = []

    def _policy(self, model: str) -> LogPolicy:
        return self.policies.get(model) or LogPolicy()

    async def _deliver(self, events: list[InferenceEvent]) -> None:
        batch: list[Pending] = []
        for event in events:
            policy = self._policy(event.model)
            try:
                batch.append(Pending(event, policy, self.sender.encode(event, policy)))
            except Exception as exc:
                log.exception("payload sink %s: cannot encode event %s", self.name, event.id)
                pending = Pending(event, policy, None)
                pending.fail(describe(exc), permanent=True)
                await self._fail([pending], pending.error, 0)
        self._current = batch
        config = self.config
        started = time.monotonic()
        attempts = 0
        delivered = 0
        while batch:
            attempts += 1
            try:
                left = await asyncio.wait_for(self.sender.send(batch), config.timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = describe(exc) if not isinstance(exc, TimeoutError) else "timed out"
                permanent = isinstance(exc, DeliveryError) and exc.permanent
                for pending in batch:
                    pending.fail(error, permanent)
                left = batch
            kept = {id(p) for p in left}
            sent = [p for p in batch if id(p) not in kept]
            self._count(sent, SENT)
            delivered += len(sent)
            self._current = batch = [p for p in left if not p.permanent]
            refused = [p for p in left if p.permanent]
            if refused:
                await self._fail(refused, refused[0].error, attempts)
            if not batch:
                break
            self._unhealthy(batch[0].error)
            delay = random.uniform(
                0.0,
                min(config.retry_backoff_max_ms, config.retry_backoff_ms * 2 ** (attempts - 1))
                / 1000,
            )
            out_of_time = self._deadline is not None and time.monotonic() + delay > self._deadline
            if attempts > config.max_retries or out_of_time:
                await self._fail(batch, batch[0].error, attempts)
                break
            await asyncio.sleep(delay)
        if delivered:
            self._metrics.delivery.labels(self.name).observe(time.monotonic() - started)
            if not self._healthy and not batch:
                self._healthy = True
                log.info("payload sink %s delivers again", self.name)

    def _unhealthy(self, error: str) -> None:
        if self._healthy:
            self._healthy = False
            log.warning("payload sink %s: delivery failed (%s); retrying", self.name, error)

    def _count(self, batch: list[Pending], outcome: str) -> None:
        per_model: dict[str, int] = {}
        for pending in batch:
            per_model[pending.event.model] = per_model.get(pending.event.model, 0) + 1
        for model, amount in per_model.items():
            self._metrics.count(model, self.name, outcome, amount)

    def _records(self, batch: list[Pending]) -> list[bytes]:
        return [record_bytes(p.event, p.policy) for p in batch]

    async def _fail(self, batch: list[Pending], error: str, attempts: int) -> None:
        """Give up on ``batch``: the dead-letter file, the failed counter."""
        if not batch:
            return
        self._failed_since_log += len(batch)
        now = time.monotonic()
        if now - self._last_fail_log >= FAIL_LOG_INTERVAL_S:
            log.warning(
                "payload sink %s: %d event(s) undeliverable after %d attempt(s) (%s); written "
                "to %s",
                self.name,
                self._failed_since_log,
                attempts,
                error,
                self.dead_letter.path,
            )
            self._last_fail_log, self._failed_since_log = now, 0
        await self.dead_letter.write(self._records(batch), error, attempts)
        self._count(batch, FAILED)
        done = {id(p) for p in batch}
        self._current = [p for p in self._current if id(p) not in done]

    def flush_drops(self) -> None:
        """Move the subscription's drop counts into the metrics; set the queue gauge."""
        for model, amount in self.subscription.take_dropped().items():
            self._metrics.count(model, self.name, DROPPED, amount)
        waiting = self.subscription.depth + self.in_delivery
        self._metrics.queue.labels(self.name).set(waiting)

    async def stop(self, deadline: float) -> None:
        """Deliver what is queued until ``deadline`` (monotonic), dead-letter what is left, close
        the sink."""
        self._deadline = deadline
        self.subscription.close()
        task = self._task
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
            if not done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                left = list(self._current)
                left += [
                    Pending(event, self._policy(event.model), None)
                    for event in self.subscription.take(self.subscription.depth)
                ]
                if left:
                    log.warning(
                        "payload sink %s: %d event(s) not delivered before the shutdown "
                        "timeout; written to %s",
                        self.name,
                        len(left),
                        self.dead_letter.path,
                    )
                    self.dead_letter.write_now(self._records(left), "shutdown timeout", 0)
                    self._count(left, FAILED)
                self._current = []
        try:
            await asyncio.wait_for(self.sender.close(), CLOSE_TIMEOUT_S)
        except Exception as exc:
            log.warning("payload sink %s did not close cleanly: %s", self.name, describe(exc))
        self.flush_drops()
