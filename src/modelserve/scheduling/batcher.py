"""Per-model-version scheduler: a bounded queue, dynamic batching, parallel instances, deadlines.

Rules (../docs/batching.md):
- When an instance is idle, what is queued runs at once: no waiting for company.
- While instances are busy, arrivals queue up and are merged along dimension 0 into the next
  batch, up to ``max_batch_size`` rows; requests whose non-batch shapes or datatypes differ are
  never merged.
- ``max_queue_delay_us`` only holds back a batch smaller than the smallest preferred size while
  another instance of the same model is still executing (so more requests are about to arrive
  together); it is an upper bound, never a sleep on an idle model.
- A full queue refuses at once (ResourceExhausted -> 503 / RESOURCE_EXHAUSTED); a request whose
  deadline passes while queued is answered DeadlineExceeded and never executed.
- A failed batch fails each of its requests with the cause; outputs whose row count does not
  match the batch are an error, never a silent mis-split. But when the model refuses a merged
  batch's input (a ValueError: the client's mistake), its requests run again one by one, so
  that only the request to blame is answered 400 and the others succeed.

Everything here runs on the event loop except the concatenate -> predict -> split step, which
takes one hop to the executor per batch, or runs on the loop itself for a model whose predict
reliably takes under 100 µs (``execution: auto``): for such models the hop costs more than the
model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from modelserve.errors import (
    DeadlineExceeded,
    ErrorCode,
    InternalError,
    InvalidArgument,
    ResourceExhausted,
    ServerError,
    Unavailable,
)
from modelserve.runtimes.base import Arrays

log = logging.getLogger("modelserve.scheduling.batcher")

Predict = Callable[[Arrays], Arrays]
Select = Callable[[frozenset[str]], Predict]
"""The predict for requests that want only some outputs (Runtime.predictor)."""

INLINE_BELOW_NS = 100_000
"""auto execution runs a model on the loop while its predict averages under this..."""
INLINE_AFTER_CALLS = 16
"""...and only after this many calls have been measured on the executor. One call ten times
slower than the bound sends the model back to the executor at once."""


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    max_batch_size: int = 0
    """Rows per execution; 0 = the model has no batch dimension (requests run one by one)."""
    dynamic: bool = False
    """Merge queued requests into one execution."""
    max_queue_delay_us: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 0
    """Requests that may wait; 0 = unbounded."""
    instances: int = 1
    execution: str = "auto"
    """``thread``: every batch runs on the executor. ``inline``: on the event loop. ``auto``:
    inline once predict has reliably taken under ``inline_below_ns``, and only with one
    instance."""
    inline_below_ns: int = INLINE_BELOW_NS


@dataclass(slots=True)
class Completed:
    """A request's share of a batch, with the timings the statistics need."""

    outputs: Arrays
    batch_size: int
    queue_ns: int
    compute_ns: int
    leads_batch: bool = True
    """True for exactly one request of each executed batch, so statistics count it once."""


@dataclass(slots=True, eq=False)
class _Pending:
    arrays: Arrays
    rows: int
    key: Hashable
    future: asyncio.Future[Completed]
    enqueued_ns: int
    deadline: float | None
    outputs: frozenset[str] | None = None
    """The only outputs it wants; None: all of them."""
    timer: asyncio.TimerHandle | None = field(default=None)


def merge_key(arrays: Arrays, outputs: frozenset[str] | None = None) -> Hashable:
    """Requests may share a batch only when every input has the same dtype and non-batch dims,
    and they want the same outputs."""
    shapes = tuple((name, a.dtype.str, a.shape[1:]) for name, a in sorted(arrays.items()))
    return shapes if outputs is None else (shapes, outputs)


class Batcher:
    def __init__(
        self,
        name: str,
        predict: Predict,
        executor: Executor,
        policy: BatchPolicy,
        select: Select | None = None,
    ) -> None:
        self.name = name
        self._predict = predict
        self._select = select
        self._predictors: dict[frozenset[str], Predict] = {}
        self._executor = executor
        self.policy = policy
        self._queue: deque[_Pending] = deque()
        self._free = policy.instances
        self._delay_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._target = min(policy.preferred_batch_sizes, default=policy.max_batch_size)
        self._inline = policy.execution == "inline"
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._tick_scheduled = False
        self._ewma_ns = float(policy.inline_below_ns)
        self._observed = 0
        if policy.execution == "auto" and policy.instances > 1:
            self.policy = replace(policy, execution="thread")

    # ---- state -------------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return self.policy.instances - self._free

    @property
    def idle(self) -> bool:
        return not self._queue and self._free == self.policy.instances

    def close(self) -> None:
        """Refuse new work; queued and running requests still complete."""
        self._closed = True

    async def wait_idle(self) -> None:
        """Return once nothing is queued or running."""
        while not self.idle:
            waiter = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            await waiter

    def _wake_idle_waiters(self) -> None:
        if self.idle and self._idle_waiters:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    # ---- submit ------------------------------------------------------------------------------

    def check_capacity(self) -> None:
        """ResourceExhausted when the queue is full: a request submitted now would be refused.
        Cheap, so that transports can ask before decoding a body (docs/batching.md)."""
        if self.policy.max_queue_size and len(self._queue) >= self.policy.max_queue_size:
            raise ResourceExhausted(
                f"model '{self.name}' queue is full ({self.policy.max_queue_size} requests)"
            )

    async def submit(
        self,
        arrays: Arrays,
        rows: int,
        deadline: float | None = None,
        outputs: frozenset[str] | None = None,
    ) -> Completed:
        """Queue one request (``rows`` on dimension 0) and wait for its outputs.

        ``deadline`` is a ``time.monotonic()`` instant after which the request is dropped.
        ``outputs``: the only outputs the request wants (None: all); the model may compute
        just those (Runtime.predictor), and only requests wanting the same ones are merged."""
        if self._closed:
            raise Unavailable(f"model '{self.name}' is unloading")
        self.check_capacity()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Completed] = loop.create_future()
        if self._select is None:
            outputs = None
        key = merge_key(arrays, outputs) if self.policy.dynamic else None
        pending = _Pending(arrays, rows, key, future, time.perf_counter_ns(), deadline, outputs)
        if deadline is not None:
            if deadline <= time.monotonic():
                raise DeadlineExceeded(f"request to '{self.name}' timed out before it was queued")
            pending.timer = loop.call_at(_loop_time(loop, deadline), self._expire, pending)
        self._queue.append(pending)
        self._pump()
        return await future

    def _expire(self, pending: _Pending) -> None:
        try:
            self._queue.remove(pending)
        except ValueError:
            return  # already taken into a batch
        if not pending.future.done():
            pending.future.set_exception(
                DeadlineExceeded(f"request to '{self.name}' timed out in the queue")
            )
        self._wake_idle_waiters()

    # ---- scheduling --------------------------------------------------------------------------

    def _pump(self) -> None:
        if self._inline and self.policy.dynamic:
            # Batch per loop tick: requests that arrived in this iteration of the event loop
            # are all queued before the model runs on it.
            self._schedule_tick()
            return
        self._dispatch()
        self._wake_idle_waiters()

    def _schedule_tick(self) -> None:
        if not self._tick_scheduled:
            self._tick_scheduled = True
            asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self._tick_scheduled = False
        self._dispatch()
        self._wake_idle_waiters()

    def _dispatch(self) -> None:
        while self._free > 0 and self._queue:
            batch = self._take_batch()
            if batch is None:
                return
            if batch:
                self._free -= 1
                if self._inline:
                    self._execute_inline(batch)
                    if self._queue and self.policy.dynamic:
                        # One batch per loop iteration: the answers just computed are written
                        # and the requests that arrived meanwhile are read (and join the queue)
                        # before the next batch forms, so batches stay full and nobody's answer
                        # waits for the batches queued behind it.
                        self._schedule_tick()
                        return
                else:
                    asyncio.get_running_loop().create_task(self._execute(batch))

    def _take_batch(self) -> list[_Pending] | None:
        """The next batch; [] when only cancelled requests were at the head, None to wait."""
        queue = self._queue
        while queue and queue[0].future.done():  # cancelled by the caller
            _cancel_timer(queue.popleft())
        if not queue:
            return []
        head = queue[0]
        limit = self.policy.max_batch_size
        if not self.policy.dynamic or limit <= 0:
            queue.popleft()
            _cancel_timer(head)
            return [head]
        rows = 0
        chosen: list[_Pending] = []
        for pending in queue:
            if pending.future.done() or pending.key != head.key:
                continue  # requests of another shape wait for a batch of their own
            if rows + pending.rows > limit:
                break  # keep arrival order: nobody overtakes a request that did not fit
            chosen.append(pending)
            rows += pending.rows
        if self._should_wait(rows, head):
            return None
        _trim_to_preferred(chosen, rows, self.policy.preferred_batch_sizes, limit)
        for pending in chosen:
            queue.remove(pending)
            _cancel_timer(pending)
        return chosen

    def _should_wait(self, rows: int, head: _Pending) -> bool:
        delay = self.policy.max_queue_delay_us
        if delay <= 0 or rows >= self._target or self.in_flight == 0:
            return False
        waited_us = (time.perf_counter_ns() - head.enqueued_ns) / 1000
        if waited_us >= delay:
            return False
        if self._delay_timer is None:
            loop = asyncio.get_running_loop()
            self._delay_timer = loop.call_later((delay - waited_us) / 1e6, self._delay_over)
        return True

    def _delay_over(self) -> None:
        self._delay_timer = None
        self._pump()

    async def _execute(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter_ns()
        try:
            parts, predict_ns = await loop.run_in_executor(self._executor, self._run_batch, batch)
        except Exception as exc:
            self._fail_batch(batch, exc)
        else:
            self._complete(batch, parts, started, predict_ns)
        finally:
            self._free += 1
            if self._queue:
                self._pump()
            self._wake_idle_waiters()

    def _execute_inline(self, batch: list[_Pending]) -> None:
        """Run a batch of a fast model on the loop itself: no thread hop, no task."""
        started = time.perf_counter_ns()
        try:
            parts, predict_ns = self._run_batch(batch)
        except Exception as exc:
            self._fail_batch(batch, exc)
        else:
            self._complete(batch, parts, started, predict_ns)
        finally:
            self._free += 1
            self._wake_idle_waiters()

    def _complete(
        self, batch: list[_Pending], parts: list[Arrays | Exception], started: int, predict_ns: int
    ) -> None:
        """Answer each request of an executed batch with its outputs, or with its own error
        when the batch was re-run request by request (``_run_alone``)."""
        self._observe(predict_ns)
        compute_ns = time.perf_counter_ns() - started
        alone = any(isinstance(part, Exception) for part in parts)
        size = sum(p.rows for p in batch)
        leads = True
        for pending, outputs in zip(batch, parts, strict=True):
            if pending.future.done():
                continue
            if isinstance(outputs, Exception):
                pending.future.set_exception(self._failure(outputs, 1))
            elif alone:
                queue_ns = started - pending.enqueued_ns
                pending.future.set_result(Completed(outputs, pending.rows, queue_ns, compute_ns))
            else:
                pending.future.set_result(
                    Completed(outputs, size, started - pending.enqueued_ns, compute_ns, leads)
                )
                leads = False

    def _fail_batch(self, batch: list[_Pending], exc: Exception) -> None:
        _fail(batch, self._failure(exc, len(batch)))

    def _failure(self, exc: Exception, requests: int) -> ServerError:
        """What the requests of a failed execution are answered with; a fault is logged."""
        if not isinstance(exc, ServerError):
            log.error(
                "model '%s' failed on a batch of %d request(s)",
                self.name,
                requests,
                exc_info=exc,
            )
            return InternalError(f"model '{self.name}' failed: {type(exc).__name__}: {exc}")
        if exc.code is ErrorCode.INTERNAL:
            log.error("model '%s' batch failed: %s", self.name, exc.message)
        return exc

    def _observe(self, predict_ns: int) -> None:
        """Adaptive execution: a model whose predict reliably takes under ``inline_below_ns``
        runs on the loop; one that gets slower goes back to the executor."""
        if self.policy.execution != "auto":
            return
        bound = self.policy.inline_below_ns
        self._ewma_ns += (predict_ns - self._ewma_ns) * 0.2
        self._observed += 1
        if self._inline:
            if self._ewma_ns > 2 * bound or predict_ns > 10 * bound:
                self._inline = False
        elif self._observed >= INLINE_AFTER_CALLS and self._ewma_ns < bound:
            self._inline = True

    def _run_batch(self, batch: list[_Pending]) -> tuple[list[Arrays | Exception], int]:
        """Concatenate, predict, split; returns the parts and predict's own duration. When the
        model refuses a merged batch's input (InvalidArgument: a ValueError), one request's
        input may be to blame: the requests run one by one, so that only the guilty fail."""
        started = time.perf_counter_ns()
        predict = self._predictor(batch[0].outputs)
        if len(batch) == 1:
            produced = _call(predict, batch[0].arrays, self.name)
            return [produced], time.perf_counter_ns() - started
        names = batch[0].arrays.keys()
        merged = {n: np.concatenate([p.arrays[n] for p in batch], axis=0) for n in names}
        try:
            produced = _call(predict, merged, self.name)
        except InvalidArgument:
            return self._run_alone(batch, predict), time.perf_counter_ns() - started
        predict_ns = time.perf_counter_ns() - started
        bounds: list[tuple[int, int]] = []
        total = 0
        for pending in batch:
            bounds.append((total, total + pending.rows))
            total += pending.rows
        outputs: list[tuple[str, npt.NDArray[Any]]] = []
        for out_name, value in produced.items():
            array = np.asarray(value)
            if array.ndim == 0 or array.shape[0] != total:
                got = array.shape[0] if array.ndim else "no"
                raise InternalError(
                    f"model '{self.name}' returned {got} rows for output '{out_name}' "
                    f"from a batch of {total}"
                )
            outputs.append((out_name, array))
        # each request's rows as views of the batch's outputs (no copy; np.split costs more)
        parts: list[Arrays | Exception] = [
            {name: array[start:stop] for name, array in outputs} for start, stop in bounds
        ]
        return parts, predict_ns

    def _predictor(self, outputs: frozenset[str] | None) -> Predict:
        if outputs is None or self._select is None:
            return self._predict
        predict = self._predictors.get(outputs)
        if predict is None:
            predict = self._predictors[outputs] = self._select(outputs)
        return predict

    def _run_alone(self, batch: list[_Pending], predict: Predict) -> list[Arrays | Exception]:
        """Each request of a batch on its own: its outputs, or what it raised."""
        parts: list[Arrays | Exception] = []
        for pending in batch:
            try:
                parts.append(_call(predict, pending.arrays, self.name))
            except Exception as exc:
                parts.append(exc)
        return parts


def _trim_to_preferred(
    chosen: list[_Pending], rows: int, preferred: tuple[int, ...], limit: int
) -> None:
    """Cut the batch back to the largest preferred size it reaches (never below one request)."""
    if not preferred or rows in preferred or rows >= limit:
        return
    fitting = [size for size in preferred if size <= rows]
    if not fitting:
        return
    best, kept = max(fitting), 0
    for index, pending in enumerate(chosen):
        if kept + pending.rows > best and index > 0:
            del chosen[index:]
            return
        kept += pending.rows


def _call(predict: Predict, arrays: Arrays, name: str) -> Arrays:
    try:
        return predict(arrays)
    except ValueError as exc:
        # Frameworks raise ValueError for input they cannot take (NaN, out-of-range values):
        # a client mistake, not a server fault.
        raise InvalidArgument(f"model '{name}' rejected the input: {exc}") from exc


def _fail(batch: list[_Pending], exc: ServerError) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(exc)


def _cancel_timer(pending: _Pending) -> None:
    if pending.timer is not None:
        pending.timer.cancel()
        pending.timer = None


def _loop_time(loop: asyncio.AbstractEventLoop, deadline: float) -> float:
    """Convert a time.monotonic() instant to the loop's clock."""
    return loop.time() + (deadline - time.monotonic())
