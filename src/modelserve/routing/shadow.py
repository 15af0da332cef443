"""Shadow traffic: a copy of a request, once its primary answer is out, run on another version of
the same model, whose answer is compared with the primary's and then thrown away.

The mirror never touches the primary path: ``offer`` is a non-blocking put on a bounded queue
(full: the copy is shed and counted), ``concurrency`` worker tasks run the copies through the
``infer`` function they were given, and a copy that fails, raises or runs past ``timeout_s`` is
counted as failed, never raised. docs/experiments.md ("Shadow traffic") explains the figures.

Outputs are compared by name, row by row (the first dimension): an output of an integer,
string (BYTES) or BOOL datatype, or one named ``label``/``labels``/``class``/``classes``/
``predicted…``, is a class and compares by equality (the agreement ratio); any other
floating output compares by absolute difference (mean, p50, p99, max over its elements).

Metrics, on the injected registry:
- ``modelserve_shadow_requests_total{model,version,outcome}``: copies ``success`` (answered),
  ``failed`` (raised or timed out) or ``dropped`` (the queue was full, or the mirror stopped);
- ``modelserve_shadow_dropped_total{model,version}``: the copies shed;
- ``modelserve_shadow_comparisons_total{model,version,result}``: class rows that ``agree`` or
  ``disagree`` (their ratio over every worker process is the agreement ratio);
- ``modelserve_shadow_agreement_ratio{model,version}``: this process's agreement ratio;
- ``modelserve_shadow_abs_difference{model,version}``: histogram of the absolute differences
  of floating outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from modelserve.routing.shadow_share import SharedFigures, merged_document
from modelserve.serving.shared_memory import BYTE_SIZE, OFFSET, REGION
from modelserve.types import (
    InferenceRequest,
    InferenceResponse,
    Parameters,
    RequestedOutput,
    Tensor,
)

__all__ = ["ABS_DIFF_BUCKETS", "Comparison", "ShadowMirror", "compare_outputs", "detached"]

log = logging.getLogger(__name__)

ABS_DIFF_BUCKETS = (
    1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 100.0, 1000.0,
)  # fmt: skip
RESERVOIR = 4096
"""Absolute differences kept (a uniform sample of all of them) for the p50 and p99."""
SHARE_S = 0.5
"""With several processes, how often each one writes its figures and reads the others'."""
_CLASS_NAME = re.compile(r"^(labels?|class(es)?|predicted.*)$", re.IGNORECASE)
_CLASS_KINDS = "biuUSO"  # numpy kinds of integer, unsigned, bool, bytes, str, object (BYTES)

Infer = Callable[[InferenceRequest, str], Awaitable[InferenceResponse]]


# ---- comparing two answers ---------------------------------------------------------------------


def _is_class(tensor: Tensor) -> bool:
    return tensor.data.dtype.kind in _CLASS_KINDS or bool(_CLASS_NAME.match(tensor.name))


def _rows(data: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The array as (rows, elements per row); a scalar is one row."""
    if data.ndim == 0:
        return data.reshape(1, 1)
    return data.reshape(data.shape[0], -1)


@dataclass
class Comparison:
    """What comparing one primary answer with its shadow's found."""

    rows: int = 0
    """Class rows compared."""
    agreed: int = 0
    differences: npt.NDArray[np.float64] = field(
        default_factory=lambda: np.empty(0, dtype=np.float64)
    )
    """Absolute differences of every element of the floating outputs (finite ones)."""
    mismatched: list[str] = field(default_factory=list)
    """Outputs of the primary the shadow did not answer alike (missing, or another shape)."""

    @property
    def compared(self) -> bool:
        return self.rows > 0 or len(self.differences) > 0


def compare_outputs(primary: InferenceResponse, shadow: InferenceResponse) -> Comparison:
    """Compare the outputs the primary returned with the shadow's of the same name (those the
    primary wrote to shared memory are not compared: their data are the client's now)."""
    result = Comparison()
    answers = {t.name: t for t in shadow.outputs}
    differences: list[npt.NDArray[np.float64]] = []
    for expected in primary.outputs:
        if expected.parameters and REGION in expected.parameters:
            continue
        got = answers.get(expected.name)
        if got is None or got.data.shape != expected.data.shape:
            result.mismatched.append(expected.name)
            continue
        if _is_class(expected):
            same = _rows(np.asarray(expected.data == got.data, dtype=bool))
            result.rows += same.shape[0]
            result.agreed += int(np.count_nonzero(same.all(axis=1)))
            continue
        try:
            a = np.asarray(expected.data, dtype=np.float64)
            b = np.asarray(got.data, dtype=np.float64)
        except (TypeError, ValueError):
            result.mismatched.append(expected.name)
            continue
        diff = np.abs(a - b).ravel()
        diff[np.isnan(a.ravel()) & np.isnan(b.ravel())] = 0.0
        differences.append(diff[np.isfinite(diff)])
    if differences:
        result.differences = np.concatenate(differences)
    return result


def _without_shared_memory(parameters: Parameters) -> dict[str, str | int | float | bool]:
    return {k: v for k, v in parameters.items() if k not in (REGION, BYTE_SIZE, OFFSET)}


def detached(request: InferenceRequest) -> InferenceRequest:
    """The copy a shadow runs: inputs the primary read from shared memory keep the data read
    (never read again: the client may have reused the region), outputs asked into shared memory
    come back in the answer instead (a shadow must never write into the client's region)."""
    inputs_shm = any(t.parameters and REGION in t.parameters for t in request.inputs)
    outputs_shm = request.outputs is not None and any(
        REGION in o.parameters for o in request.outputs
    )
    if not inputs_shm and not outputs_shm:
        return request
    inputs = tuple(
        Tensor(t.name, t.datatype, t.shape, t.data, _without_shared_memory(t.parameters))
        if t.parameters and REGION in t.parameters
        else t
        for t in request.inputs
    )
    outputs = request.outputs
    if outputs is not None:
        outputs = tuple(
            RequestedOutput(o.name, _without_shared_memory(o.parameters))
            if REGION in o.parameters
            else o
            for o in outputs
        )
    return InferenceRequest(
        request.model_name,
        inputs,
        request.model_version,
        request.id,
        request.parameters,
        outputs,
    )


# ---- per-version figures -----------------------------------------------------------------------


class _Figures:
    """One mirrored (model, version): counts, agreement and a reservoir of differences."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.mirrored = self.dropped = self.failed = self.compared = self.mismatched = 0
        self.rows = self.agreed = 0
        self.diff_count = 0
        self.diff_sum = 0.0
        self.diff_max = 0.0
        self.reservoir = np.empty(RESERVOIR, dtype=np.float64)
        self._rng = np.random.default_rng(0)

    def add(self, comparison: Comparison) -> None:
        self.mismatched += 1 if comparison.mismatched else 0
        if not comparison.compared:
            return
        self.compared += 1
        self.rows += comparison.rows
        self.agreed += comparison.agreed
        values = comparison.differences
        if len(values):
            self._sample(values)
            self.diff_sum += float(values.sum())
            self.diff_max = max(self.diff_max, float(values.max()))

    def _sample(self, values: npt.NDArray[np.float64]) -> None:
        """Algorithm R over a batch: value i of all seen so far replaces a random slot with
        probability RESERVOIR / (i + 1)."""
        seen = self.diff_count
        self.diff_count += len(values)
        room = max(0, min(RESERVOIR - seen, len(values)))
        self.reservoir[seen : seen + room] = values[:room]
        rest = values[room:]
        if len(rest):
            positions = np.arange(seen + room, seen + room + len(rest)) + 1
            slots = (self._rng.random(len(rest)) * positions).astype(np.int64)
            keep = slots < RESERVOIR
            self.reservoir[slots[keep]] = rest[keep]

    @property
    def agreement_ratio(self) -> float | None:
        return self.agreed / self.rows if self.rows else None

    def state(self) -> dict[str, Any]:
        """The figures as they add up over processes (routing/shadow_share.py)."""
        return {
            "mirrored": self.mirrored,
            "dropped": self.dropped,
            "failed": self.failed,
            "compared": self.compared,
            "mismatched": self.mismatched,
            "rows": self.rows,
            "agreed": self.agreed,
            "diff_count": self.diff_count,
            "diff_sum": self.diff_sum,
            "diff_max": self.diff_max,
            "kept": self.reservoir[: min(self.diff_count, RESERVOIR)].copy(),
        }

    def document(self) -> dict[str, Any]:
        return merged_document(self.version, [self.state()])


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("model", "version")
        self.requests = Counter(
            "modelserve_shadow_requests",
            "Shadow copies of requests: success (answered), failed (raised or timed out) or "
            "dropped (the mirror's queue was full, or it stopped).",
            (*labels, "outcome"),
            registry=registry,
        )
        self.dropped = Counter(
            "modelserve_shadow_dropped",
            "Shadow copies shed because the mirror's queue was full (or it stopped).",
            labels,
            registry=registry,
        )
        self.comparisons = Counter(
            "modelserve_shadow_comparisons",
            "Class rows of a shadow answer that agree or disagree with the primary's.",
            (*labels, "result"),
            registry=registry,
        )
        self.agreement = Gauge(
            "modelserve_shadow_agreement_ratio",
            "Share of class rows on which the shadow version agrees with the primary answer.",
            labels,
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.abs_difference = Histogram(
            "modelserve_shadow_abs_difference",
            "Absolute difference between the shadow's and the primary's floating outputs, per "
            "element.",
            labels,
            buckets=ABS_DIFF_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Counter | Gauge | Histogram, *labels: str) -> Any:
        """``metric.labels(*labels)``, kept: its lookup costs more than the update (a child is
        still made only on first use, so no empty series shows up)."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def observe(self, model: str, version: str, comparison: Comparison) -> None:
        if comparison.rows:
            agreed, rows = comparison.agreed, comparison.rows
            if agreed:
                self.child(self.comparisons, model, version, "agree").inc(agreed)
            if rows > agreed:
                self.child(self.comparisons, model, version, "disagree").inc(rows - agreed)
        values = comparison.differences
        if len(values):
            # One bulk add instead of an observe (two locks) per element: the same internals
            # observability/accumulate.py relies on.
            child = self.child(self.abs_difference, model, version)
            counts = np.bincount(
                np.searchsorted(ABS_DIFF_BUCKETS, values, side="left"),
                minlength=len(ABS_DIFF_BUCKETS) + 1,
            )
            for index, count in enumerate(counts.tolist()):
                if count:
                    child._buckets[index].inc(count)
            child._sum.inc(float(values.sum()))


# ---- the mirror --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Copy:
    model: str
    version: str
    request: InferenceRequest
    primary: InferenceResponse


class ShadowMirror:
    """Runs copies of answered requests on a shadow version and compares the answers."""

    def __init__(
        self,
        infer: Infer,
        *,
        capacity: int = 256,
        concurrency: int = 4,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = 30.0,
        drain_s: float = 5.0,
        share: SharedFigures | None = None,
        share_s: float = SHARE_S,
    ) -> None:
        """``infer(request, version)`` runs the request on that version of its model (the
        dataplane's path). ``timeout_s``: a copy running longer is cancelled and counted as
        failed. ``drain_s``: how long ``stop`` lets queued copies finish. ``registry``: where
        the metrics go (None: a registry of the mirror's own, not exported). ``share``: with
        several processes, where their figures meet (``stats`` then answers for all of them,
        the others' figures at most ~2 ``share_s`` old)."""
        if capacity < 1 or concurrency < 1:
            raise ValueError("capacity and concurrency must be at least 1")
        self._infer = infer
        self._capacity = capacity
        self._concurrency = concurrency
        self._clock = clock
        self._timeout_s = timeout_s
        self._drain_s = drain_s
        self._metrics = _Metrics(registry if registry is not None else CollectorRegistry())
        self._queue: asyncio.Queue[_Copy] = asyncio.Queue(maxsize=capacity)
        self._workers: list[asyncio.Task[None]] = []
        self._figures: dict[tuple[str, str], _Figures] = {}
        self._latest: dict[str, str] = {}
        self._since: dict[str, float] = {}
        """model -> when (epoch seconds) it was first mirrored to its latest version."""
        self._accepting = True
        self._share = share
        self._share_s = share_s
        self._sharer: asyncio.Task[None] | None = None
        self._others: list[dict[str, Any]] = []
        self._changes = 0
        self._published = -1

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._workers:
            return
        self._accepting = True
        self._workers = [
            asyncio.create_task(self._work(), name=f"shadow-mirror-{i}")
            for i in range(self._concurrency)
        ]
        if self._share is not None:
            self._sharer = asyncio.create_task(self._share_forever(), name="shadow-share")

    async def stop(self) -> None:
        """Stop taking copies, let the queued ones finish for up to ``drain_s``, then cancel
        what still runs; the copies left unrun are counted as dropped. Never hangs."""
        self._accepting = False
        deadline = self._clock() + self._drain_s
        if self._workers:
            drained = asyncio.ensure_future(self._queue.join())
            await asyncio.wait({drained}, timeout=max(0.0, deadline - self._clock()))
            drained.cancel()
        workers, self._workers = self._workers, []
        for task in workers:
            task.cancel()
        if workers:
            await asyncio.wait(workers, timeout=max(1.0, self._drain_s))
        while not self._queue.empty():
            left = self._queue.get_nowait()
            self._queue.task_done()
            self._drop(left.model, left.version)
        sharer, self._sharer = self._sharer, None
        if sharer is not None:
            sharer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sharer
            await self._exchange()  # the last figures, for the processes still serving

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    # ---- the primary's side ------------------------------------------------------------------

    def offer(
        self, model: str, version: str, request: InferenceRequest, primary: InferenceResponse
    ) -> bool:
        """Queue a copy of ``request`` for ``version`` of ``model``, to compare with ``primary``
        (the answer already sent). Never blocks: False, and the copy counted as dropped, when
        the queue is full or the mirror is stopping."""
        figures = self._figures_of(model, version)
        if self._latest.get(model) != version:
            self._latest[model] = version
            self._since[model] = time.time()
            self._changes += 1
        if not self._accepting:
            self._drop(model, version, figures)
            return False
        try:
            self._queue.put_nowait(_Copy(model, version, request, primary))
        except asyncio.QueueFull:
            self._drop(model, version, figures)
            return False
        return True

    def _figures_of(self, model: str, version: str) -> _Figures:
        figures = self._figures.get((model, version))
        if figures is None:
            figures = self._figures[(model, version)] = _Figures(version)
        return figures

    def _drop(self, model: str, version: str, figures: _Figures | None = None) -> None:
        (figures or self._figures_of(model, version)).dropped += 1
        self._changes += 1
        metrics = self._metrics
        metrics.child(metrics.dropped, model, version).inc()
        metrics.child(metrics.requests, model, version, "dropped").inc()

    # ---- the copies --------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            copy = await self._queue.get()
            try:
                await self._mirror(copy)
            except Exception:  # never let one copy end the worker
                log.exception("shadow copy for %s version %s", copy.model, copy.version)
            finally:
                self._queue.task_done()

    async def _mirror(self, copy: _Copy) -> None:
        figures = self._figures_of(copy.model, copy.version)
        self._changes += 1
        try:
            async with asyncio.timeout(self._timeout_s):
                answer = await self._infer(detached(copy.request), copy.version)
        except Exception as exc:
            figures.failed += 1
            self._metrics.child(self._metrics.requests, copy.model, copy.version, "failed").inc()
            log.debug("shadow copy on %s version %s failed: %s", copy.model, copy.version, exc)
            return
        figures.mirrored += 1
        self._metrics.child(self._metrics.requests, copy.model, copy.version, "success").inc()
        comparison = compare_outputs(copy.primary, answer)
        figures.add(comparison)
        self._metrics.observe(copy.model, copy.version, comparison)
        ratio = figures.agreement_ratio
        if ratio is not None:
            self._metrics.child(self._metrics.agreement, copy.model, copy.version).set(ratio)

    # ---- figures -----------------------------------------------------------------------------

    def stats(self, model: str) -> dict[str, Any]:
        """The figures of the version ``model`` was last mirrored to: ``version``, ``mirrored``
        (answered), ``dropped``, ``failed``, ``compared`` (answers with something to compare),
        ``mismatched`` (answers missing an output or with another shape), ``rows`` (class rows
        compared), ``agreement_ratio`` (None without class outputs) and ``abs_diff`` (``count``,
        ``mean``, ``p50``, ``p99``, ``max``; None without floating outputs). Empty figures
        (version None) for a model never mirrored. With ``share``, those of every process."""
        version = self._latest.get(model)
        if self._share is None:
            if version is None:
                return _empty()
            return self._figures[(model, version)].document()
        since = self._since.get(model, float("-inf"))
        for other in self._others:
            latest = other.get("latest", {}).get(model)
            if latest is not None and (version is None or latest[1] > since):
                version, since = str(latest[0]), float(latest[1])
        if version is None:
            return _empty()
        own = self._figures.get((model, version))
        states = [own.state()] if own is not None else []
        for other in self._others:
            state = other.get("figures", {}).get(model, {}).get(version)
            if state is not None:
                states.append(state)
        return merged_document(version, states)

    def forget(self, model: str) -> None:
        """Drop the figures of ``model`` (its experiment ended); its metrics stay."""
        self._latest.pop(model, None)
        self._since.pop(model, None)
        self._changes += 1
        for key in [key for key in self._figures if key[0] == model]:
            del self._figures[key]

    # ---- several processes -------------------------------------------------------------------

    async def _share_forever(self) -> None:
        while True:
            await asyncio.sleep(self._share_s)
            await self._exchange()

    async def _exchange(self) -> None:
        """Write this process's figures if they changed, and read the other processes'."""
        share = self._share
        if share is None:
            return
        changes, document = self._changes, None
        if changes != self._published:
            document = {
                "latest": {m: [v, self._since[m]] for m, v in self._latest.items()},
                "figures": self._states(),
            }

        def swap() -> list[dict[str, Any]]:
            if document is not None:
                share.publish(document)
            return share.others()

        try:
            self._others = await asyncio.to_thread(swap)
        except Exception as exc:  # a full disk, a removed folder: the figures stay this process's
            log.warning("cannot share the shadow figures in %s: %s", share.directory, exc)
            return
        if document is not None:
            self._published = changes

    def _states(self) -> dict[str, dict[str, dict[str, Any]]]:
        states: dict[str, dict[str, dict[str, Any]]] = {}
        for (model, version), figures in self._figures.items():
            states.setdefault(model, {})[version] = figures.state()
        return states


def _empty() -> dict[str, Any]:
    """The figures of a model never mirrored."""
    document = _Figures("").document()
    document["version"] = None
    return document
