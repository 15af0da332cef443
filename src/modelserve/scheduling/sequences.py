"""Stateful sequences (Triton's sequence batcher): requests carrying a ``sequence_id`` (an integer
or a string), with ``sequence_start`` on the first and ``sequence_end`` on the last, run in the
order they arrive, one at a time per sequence, on the instance the sequence was given at its
start; the model (python runtime) gets a ``SequenceContext``: the id, the flags, the instance and
a ``state`` dict kept for the sequence until it ends or stays idle longer than
``max_sequence_idle_us``.

Requests still go through the model's batcher (its queue bound, deadlines, instances, metrics):
the context travels with the request's arrays under a reserved key that the python runtime takes
out again. Sequences live in one process: with ``--workers N`` a request of a sequence this
process never saw start is refused with the reason, never run on a fresh state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelserve.errors import InvalidArgument
from modelserve.runtimes.base import SEQUENCE_KEY, Arrays, SequenceContext
from modelserve.scheduling.batcher import Completed
from modelserve.types import Parameters

__all__ = ["SequenceRequest", "Sequences", "sequence_request"]

SWEEP_EVERY_S = 0.1

Submit = Callable[[Arrays, int, float | None], Awaitable[Completed]]


@dataclass(frozen=True, slots=True)
class SequenceRequest:
    id: int | str
    start: bool
    end: bool


def sequence_request(model: str, parameters: Parameters) -> SequenceRequest:
    """The sequence parameters of a request to a sequence model, as tritonclient sends them
    (``sequence_id``, ``sequence_start``, ``sequence_end``); InvalidArgument in Triton's words
    when there is no id."""
    seq_id = parameters.get("sequence_id")
    if isinstance(seq_id, bool) or not isinstance(seq_id, int | str | None):
        raise InvalidArgument("parameter 'sequence_id' must be an integer or a string")
    if seq_id is None or seq_id == 0 or seq_id == "":
        raise InvalidArgument(
            f"inference request to model '{model}' must specify a non-zero or non-empty "
            "correlation ID (the 'sequence_id' parameter)"
        )
    flags = []
    for key in ("sequence_start", "sequence_end"):
        value = parameters.get(key, False)
        if not isinstance(value, bool):
            raise InvalidArgument(f"parameter '{key}' must be a boolean")
        flags.append(value)
    return SequenceRequest(seq_id, flags[0], flags[1])


@dataclass(slots=True)
class _Sequence:
    instance: int
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    state: dict[str, Any] = field(default_factory=dict)
    started: bool = False
    pending: int = 0
    last: float = field(default_factory=time.monotonic)


class Sequences:
    """The sequences of one model version in this process."""

    def __init__(self, model: str, instances: int, max_idle_us: int) -> None:
        self.model = model
        self._instances = max(1, instances)
        self._max_idle_s = max_idle_us / 1e6
        self._table: dict[int | str, _Sequence] = {}
        self._swept = time.monotonic()

    def __len__(self) -> int:
        return len(self._table)

    def _sweep(self, now: float) -> None:
        if now - self._swept < SWEEP_EVERY_S:
            return
        self._swept = now
        idle = [
            key
            for key, seq in self._table.items()
            if seq.pending == 0 and now - seq.last > self._max_idle_s
        ]
        for key in idle:
            del self._table[key]

    def _instance(self) -> int:
        """The instance with the fewest sequences."""
        counts = [0] * self._instances
        for seq in self._table.values():
            counts[seq.instance] += 1
        return counts.index(min(counts))

    async def submit(
        self,
        submit: Submit,
        arrays: Arrays,
        rows: int,
        deadline: float | None,
        request: SequenceRequest,
    ) -> Completed:
        """Run one request of a sequence after the ones before it. Nothing here awaits before
        the request has its place in the sequence, so the arrival order is the run order."""
        now = time.monotonic()
        self._sweep(now)
        seq = self._table.get(request.id)
        if seq is None:
            if not request.start:
                raise InvalidArgument(self._not_started(request.id))
            seq = self._table[request.id] = _Sequence(self._instance())
        seq.pending += 1
        seq.last = now
        try:
            async with seq.lock:
                if request.start:
                    seq.state, seq.started = {}, True
                elif not seq.started:
                    raise InvalidArgument(self._not_started(request.id))
                context = SequenceContext(
                    request.id, request.start, request.end, seq.instance, seq.state
                )
                holder = np.empty((), dtype=object)
                holder[()] = context
                done = await submit({**arrays, SEQUENCE_KEY: holder}, rows, deadline)
                if request.end:
                    seq.started, seq.state = False, {}
                return done
        finally:
            seq.pending -= 1
            seq.last = time.monotonic()
            if not seq.started and seq.pending == 0 and self._table.get(request.id) is seq:
                del self._table[request.id]

    def _not_started(self, seq_id: int | str) -> str:
        return (
            f"inference request for sequence {seq_id} to model '{self.model}' must specify the "
            "START flag on the first request of the sequence (this server process has no "
            "sequence with that id: it ended, stayed idle longer than max_sequence_idle_us, or "
            "started on another worker process; with --workers N each sequence must keep its "
            "connection)"
        )
