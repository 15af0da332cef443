"""Runs one pipeline request through its planned stages: the scheduler of a pipeline version.

A model step is a request to that model through ``StepCall`` (the dataplane's ``run_step``:
the router, the model's input checks, its batcher, its statistics and metrics), so a step is
batched with everything else that model serves and is observed as the model it is. Transforms
run on the inference executor, those of one stage in a single hop, or on the event loop when
they are all cheap. A failing step fails the request with its error code and the step named.

The pipeline's own timings: ``queue_ns`` adds up the time its model steps waited in their
models' queues, ``compute_ns`` the time they executed plus the time of its transforms.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from concurrent.futures import Executor
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from modelserve.errors import (
    DeadlineExceeded,
    InternalError,
    InvalidArgument,
    ResourceExhausted,
    ServerError,
    Unavailable,
)
from modelserve.pipelines.graph import Graph, Stage, Step
from modelserve.runtimes.base import Arrays
from modelserve.scheduling.batcher import Completed

__all__ = ["PipelineRunner", "StepCall"]

log = logging.getLogger("modelserve.pipelines")

StageResult = tuple[dict[str, npt.NDArray[Any]], int, int]
"""Tensors produced, queue ns, compute ns."""


class StepCall(Protocol):
    """Runs one model step as a request to that model; returns every output it declares."""

    async def __call__(
        self, model: str, version: str, arrays: Arrays, deadline: float | None, /
    ) -> Completed: ...


class PipelineRunner:
    """The scheduler of one pipeline version (serving.model.Scheduler). ``max_in_flight``
    bounds the requests running at once (model.yaml's max_queue_size; 0 = no bound)."""

    def __init__(
        self,
        name: str,
        graph: Graph,
        call: StepCall,
        executor: Executor,
        max_in_flight: int = 0,
    ) -> None:
        self.name = name
        self.graph = graph
        self._call = call
        self._executor = executor
        self._max_in_flight = max_in_flight
        self._running = 0
        self._closed = False
        self._idle_waiters: list[asyncio.Future[None]] = []

    # ---- Scheduler ---------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return 0

    @property
    def in_flight(self) -> int:
        return self._running

    def close(self) -> None:
        self._closed = True

    async def wait_idle(self) -> None:
        while self._running:
            waiter = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            await waiter

    def check_capacity(self) -> None:
        if self._max_in_flight and self._running >= self._max_in_flight:
            raise ResourceExhausted(
                f"pipeline '{self.name}' is running {self._max_in_flight} requests already"
            )

    async def submit(
        self,
        arrays: Arrays,
        rows: int,
        deadline: float | None = None,
        outputs: frozenset[str] | None = None,
    ) -> Completed:
        if self._closed:
            raise Unavailable(f"model '{self.name}' is unloading")
        self.check_capacity()
        self._running += 1
        try:
            return await self._run(arrays, rows, deadline)
        finally:
            self._running -= 1
            if not self._running:
                waiters, self._idle_waiters = self._idle_waiters, []
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)

    # ---- running -----------------------------------------------------------------------------

    async def _run(self, arrays: Arrays, rows: int, deadline: float | None) -> Completed:
        tensors: dict[str, npt.NDArray[Any]] = dict(arrays)
        queue_ns = compute_ns = 0
        for stage in self.graph.stages:
            if deadline is not None and time.monotonic() >= deadline:
                first = (stage.transforms + stage.models)[0]
                raise DeadlineExceeded(
                    f"pipeline '{self.name}' ran out of time before {first.label}"
                )
            jobs = [self._model_step(step, tensors, deadline) for step in stage.models]
            if stage.transforms:
                jobs.insert(0, self._transforms(stage, tensors))
            results = await asyncio.gather(*jobs, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            for produced, waited, computed in results:  # type: ignore[misc]
                tensors.update(produced)
                queue_ns += waited
                compute_ns += computed
        outputs: Arrays = {}
        for spec in self.graph.outputs:
            value = tensors[spec.name]
            if value.dtype == object and spec.datatype != "BYTES":
                raise InvalidArgument(
                    f"pipeline output '{spec.name}' holds images of different sizes; resize "
                    "them in the pipeline"
                )
            outputs[spec.name] = value
        return Completed(outputs, rows, queue_ns, compute_ns)

    async def _transforms(self, stage: Stage, tensors: Mapping[str, Any]) -> StageResult:
        if stage.inline:
            return run_transforms(stage.transforms, tensors)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, run_transforms, stage.transforms, tensors)

    async def _model_step(
        self, step: Step, tensors: Mapping[str, Any], deadline: float | None
    ) -> StageResult:
        assert step.model is not None
        arrays = {name: tensors[tensor] for name, tensor in step.input_map.items()}
        try:
            done = await self._call(step.model, step.version, arrays, deadline)
        except ServerError as exc:
            raise type(exc)(f"{step.label}: {exc.message}") from None
        except Exception as exc:
            log.exception("%s failed", step.label)
            raise InternalError(f"{step.label} failed: {type(exc).__name__}: {exc}") from None
        produced = {}
        for name, tensor in step.output_map.items():
            value = done.outputs.get(name)
            if value is None:
                raise InternalError(f"{step.label} did not produce output '{name}'")
            produced[tensor] = value
        return produced, done.queue_ns, done.compute_ns


def run_transforms(steps: tuple[Step, ...], tensors: Mapping[str, Any]) -> StageResult:
    """Run transform steps one after the other (each sees the earlier ones' outputs)."""
    started = time.perf_counter_ns()
    local = dict(tensors)
    produced: dict[str, npt.NDArray[Any]] = {}
    for step in steps:
        assert step.transform is not None
        inputs = {name: np.asarray(local[tensor]) for name, tensor in step.input_map.items()}
        try:
            out = step.transform(inputs)
        except ServerError as exc:
            raise type(exc)(f"{step.label}: {exc.message}") from None
        except Exception as exc:
            log.exception("%s failed", step.label)
            raise InternalError(f"{step.label} failed: {type(exc).__name__}: {exc}") from None
        for name, tensor in step.output_map.items():
            produced[tensor] = local[tensor] = out[name]
    return produced, 0, time.perf_counter_ns() - started
