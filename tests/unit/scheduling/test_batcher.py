"""The scheduler: merging, splitting, mixed shapes, failures, backpressure, deadlines."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from modelserve.errors import DeadlineExceeded, InternalError, InvalidArgument, ResourceExhausted
from modelserve.runtimes.base import Arrays
from modelserve.scheduling.batcher import Batcher, BatchPolicy


class GatedModel:
    """A real predict function: doubles ``x``; each call can be held until released."""

    def __init__(self, transform: Callable[[np.ndarray], Any] | None = None) -> None:
        self.batches: list[np.ndarray] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)
        self.transform = transform or (lambda x: x * 2)

    def predict(self, arrays: Arrays) -> Arrays:
        self.batches.append(arrays["x"].copy())
        self.entered.release()
        assert self.gate.wait(10)
        return {"y": self.transform(arrays["x"])}

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.acquire, True, 10)


@pytest.fixture
def executor() -> Any:
    with ThreadPoolExecutor(4) as pool:
        yield pool


def rows(start: int, n: int, width: int = 3) -> Arrays:
    return {"x": np.arange(start, start + n * width, dtype=np.float32).reshape(n, width)}


def make(model: GatedModel, executor: ThreadPoolExecutor, **policy: Any) -> Batcher:
    defaults: dict[str, Any] = {"max_batch_size": 16, "dynamic": True, "execution": "thread"}
    return Batcher("m", model.predict, executor, BatchPolicy(**{**defaults, **policy}))


async def test_idle_model_runs_at_once_even_with_a_delay(executor: ThreadPoolExecutor) -> None:
    model = GatedModel()
    # a delay far longer than any stall of a loaded machine: waiting for it cannot pass
    batcher = make(model, executor, max_queue_delay_us=60_000_000, preferred_batch_sizes=(8,))
    started = time.monotonic()
    done = await asyncio.wait_for(batcher.submit(rows(0, 1), 1), 50)
    assert time.monotonic() - started < 30
    assert done.batch_size == 1
    np.testing.assert_array_equal(done.outputs["y"], rows(0, 1)["x"] * 2)


async def test_arrivals_while_busy_are_merged_and_split_back(executor: ThreadPoolExecutor) -> None:
    model = GatedModel()
    batcher = make(model, executor)
    model.gate.clear()
    first = asyncio.ensure_future(batcher.submit(rows(0, 1), 1))
    await model.wait_entered()
    inputs = [rows(100 * i, i) for i in range(1, 5)]  # 1 + 2 + 3 + 4 rows
    rest = [asyncio.ensure_future(batcher.submit(a, a["x"].shape[0])) for a in inputs]
    await asyncio.sleep(0.01)
    assert batcher.queue_depth == 4
    model.gate.set()
    await first
    results = await asyncio.gather(*rest)
    assert [b.shape[0] for b in model.batches] == [1, 10]
    for arrays, done in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(done.outputs["y"], arrays["x"] * 2)
        assert done.batch_size == 10
        assert done.queue_ns > 0 and done.compute_ns > 0


async def test_max_batch_size_is_respected(executor: ThreadPoolExecutor) -> None:
    model = GatedModel()
    batcher = make(model, executor, max_batch_size=4)
    model.gate.clear()
    first = asyncio.ensure_future(batcher.submit(rows(0, 1), 1))
    await model.wait_entered()
    rest = [asyncio.ensure_future(batcher.submit(rows(i, 3), 3)) for i in range(3)]
    await asyncio.sleep(0.01)
    model.gate.set()
    await asyncio.gather(first, *rest)
    assert [b.shape[0] for b in model.batches] == [1, 3, 3, 3]


async def test_mixed_shapes_are_never_merged(executor: ThreadPoolExecutor) -> None:
    model = GatedModel()
    batcher = make(model, executor)
    model.gate.clear()
    first = asyncio.ensure_future(batcher.submit(rows(0, 1), 1))
    await model.wait_entered()
    narrow = [asyncio.ensure_future(batcher.submit(rows(i, 1, width=3), 1)) for i in range(2)]
    wide = [asyncio.ensure_future(batcher.submit(rows(i, 1, width=5), 1)) for i in range(2)]
    await asyncio.sleep(0.01)
    model.gate.set()
    await asyncio.gather(first, *narrow, *wide)
    assert sorted((b.shape[0], b.shape[1]) for b in model.batches[1:]) == [(2, 3), (2, 5)]
    for future in wide:
        assert future.result().outputs["y"].shape == (1, 5)


async def test_failed_batch_fails_every_request_with_the_cause(
    executor: ThreadPoolExecutor,
) -> None:
    def explode(x: np.ndarray) -> np.ndarray:
        raise RuntimeError("kaboom")

    model = GatedModel(explode)
    batcher = make(model, executor)
    model.gate.clear()
    requests = [asyncio.ensure_future(batcher.submit(rows(i, 1), 1)) for i in range(3)]
    await model.wait_entered()
    await asyncio.sleep(0.01)
    model.gate.set()
    results = await asyncio.gather(*requests, return_exceptions=True)
    assert all(isinstance(r, InternalError) and "kaboom" in str(r) for r in results)
    # a ValueError from the framework is the client's mistake
    bad = make(GatedModel(lambda x: (_ for _ in ()).throw(ValueError("NaN"))), executor)
    with pytest.raises(InvalidArgument, match="NaN"):
        await bad.submit(rows(0, 1), 1)


@pytest.mark.parametrize("execution", ["thread", "inline"])
async def test_a_refused_input_fails_only_its_own_request(
    executor: ThreadPoolExecutor, execution: str
) -> None:
    """The model refuses a merged batch because of one request's rows (a ValueError): the
    batch runs again request by request, and only that request gets InvalidArgument."""

    def no_negatives(x: np.ndarray) -> np.ndarray:
        if (x < 0).any():
            raise ValueError("negative input")
        return x * 2

    model = GatedModel(no_negatives)
    batcher = make(model, executor, execution=execution)
    inputs = [rows(10, 2), {"x": -rows(20, 1)["x"]}, rows(30, 3)]
    if execution == "thread":
        model.gate.clear()
        first = asyncio.ensure_future(batcher.submit(rows(0, 1), 1))
        await model.wait_entered()
    requests = [asyncio.ensure_future(batcher.submit(a, a["x"].shape[0])) for a in inputs]
    if execution == "thread":
        await asyncio.sleep(0.01)
        model.gate.set()
        await first
    good, bad, other = await asyncio.gather(*requests, return_exceptions=True)
    assert isinstance(bad, InvalidArgument) and "negative input" in bad.message
    for arrays, done in ((inputs[0], good), (inputs[2], other)):
        assert not isinstance(done, BaseException), done
        np.testing.assert_array_equal(done.outputs["y"], arrays["x"] * 2)
        assert done.batch_size == arrays["x"].shape[0] and done.leads_batch
    assert [b.shape[0] for b in model.batches][-4:] == [6, 2, 1, 3], "merged, then one by one"


async def test_wrong_row_count_is_an_error_not_a_mis_split(executor: ThreadPoolExecutor) -> None:
    model = GatedModel(lambda x: x[:-1])
    batcher = make(model, executor)
    model.gate.clear()
    requests = [asyncio.ensure_future(batcher.submit(rows(i, 2), 2)) for i in range(3)]
    await model.wait_entered()
    await asyncio.sleep(0.01)
    model.gate.set()
    results = await asyncio.gather(*requests, return_exceptions=True)
    assert len(model.batches) == 2
    assert all(isinstance(r, InternalError) and "rows" in str(r) for r in results[1:])


async def test_full_queue_refuses_at_once(executor: ThreadPoolExecutor) -> None:
    model = GatedModel()
    batcher = make(model, executor, max_queue_size=2)
    model.gate.clear()
    running = asyncio.ensure_future(batcher.submit(rows(0, 1), 1))
    await model.wait_entered()
    queued = [asyncio.ensure_future(batcher.submit(rows(i, 1), 1)) for i in range(2)]
    await asyncio.sleep(0)
    started = time.monotonic()
    with pytest.raises(ResourceExhausted):
        await batcher.submit(rows(9, 1), 1)
    assert time.monotonic() - started < 0.5
    model.gate.set()
    await asyncio.gather(running, *queued)


async def test_request_expiring_in_queue_is_never_executed(executor: ThreadPoolExecutor) -> None:
    model = GatedModel()
    batcher = make(model, executor, dynamic=False)
    model.gate.clear()
    running = asyncio.ensure_future(batcher.submit(rows(0, 1), 1))
    await model.wait_entered()
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await batcher.submit(rows(500, 1), 1, deadline=time.monotonic() + 0.05)
    assert time.monotonic() - started < 1.0, "answered at its deadline, not when the model freed"
    assert batcher.queue_depth == 0
    model.gate.set()
    await running
    await batcher.submit(rows(7, 1), 1)
    assert not any(500 in b for b in model.batches)


async def test_without_dynamic_batching_requests_run_one_by_one(
    executor: ThreadPoolExecutor,
) -> None:
    model = GatedModel()
    batcher = make(model, executor, dynamic=False)
    model.gate.clear()
    requests = [asyncio.ensure_future(batcher.submit(rows(i, 1), 1)) for i in range(4)]
    await model.wait_entered()
    model.gate.set()
    await asyncio.gather(*requests)
    assert [b.shape[0] for b in model.batches] == [1, 1, 1, 1]


async def test_instances_run_in_parallel(executor: ThreadPoolExecutor) -> None:
    model = GatedModel()
    batcher = make(model, executor, instances=2, dynamic=False)
    model.gate.clear()
    requests = [asyncio.ensure_future(batcher.submit(rows(i, 1), 1)) for i in range(2)]
    await model.wait_entered()
    await model.wait_entered()  # both entered predict while the gate is closed
    assert batcher.in_flight == 2
    model.gate.set()
    await asyncio.gather(*requests)


async def test_preferred_batch_size_cuts_batches(executor: ThreadPoolExecutor) -> None:
    model = GatedModel()
    batcher = make(model, executor, preferred_batch_sizes=(4,))
    model.gate.clear()
    first = asyncio.ensure_future(batcher.submit(rows(0, 1), 1))
    await model.wait_entered()
    rest = [asyncio.ensure_future(batcher.submit(rows(i, 1), 1)) for i in range(6)]
    await asyncio.sleep(0.01)
    model.gate.set()
    await asyncio.gather(first, *rest)
    assert [b.shape[0] for b in model.batches] == [1, 4, 2]


async def test_cancelled_request_is_skipped(executor: ThreadPoolExecutor) -> None:
    model = GatedModel()
    batcher = make(model, executor, dynamic=False)
    model.gate.clear()
    running = asyncio.ensure_future(batcher.submit(rows(0, 1), 1))
    await model.wait_entered()
    doomed = asyncio.ensure_future(batcher.submit(rows(300, 1), 1))
    await asyncio.sleep(0)
    doomed.cancel()
    model.gate.set()
    await running
    await batcher.submit(rows(1, 1), 1)
    assert not any(300 in b for b in model.batches)


async def test_auto_execution_goes_inline_for_fast_models_and_back(
    executor: ThreadPoolExecutor,
) -> None:
    threads: list[int] = []
    delay = {"s": 0.0}

    def predict(arrays: Arrays) -> Arrays:
        threads.append(threading.get_ident())
        time.sleep(delay["s"])
        return {"y": arrays["x"]}

    # a generous bound (5 ms) so that a loaded CI machine does not make the fast model "slow"
    policy = BatchPolicy(max_batch_size=4, execution="auto", inline_below_ns=5_000_000)
    batcher = Batcher("m", predict, executor, policy)
    loop_thread = threading.get_ident()
    for i in range(40):
        await batcher.submit(rows(i, 1), 1)
    assert threads[0] != loop_thread, "starts on the executor"
    assert threads[-1] == loop_thread, "a fast model runs on the loop"
    delay["s"] = 0.06
    await batcher.submit(rows(0, 1), 1)  # one call over ten times the bound, on the loop...
    threads.clear()
    await batcher.submit(rows(0, 1), 1)
    assert threads[-1] != loop_thread, "...sends it back to the executor"
    with_instances = Batcher(
        "m",
        predict,
        executor,
        BatchPolicy(max_batch_size=4, instances=2, execution="auto", inline_below_ns=5_000_000),
    )
    delay["s"] = 0.0
    threads.clear()
    for i in range(40):
        await with_instances.submit(rows(i, 1), 1)
    assert loop_thread not in threads, "several instances always use the executor"


async def test_inline_batching_merges_what_arrived_in_one_loop_tick(
    executor: ThreadPoolExecutor,
) -> None:
    model = GatedModel()
    batcher = make(model, executor, execution="inline")
    results = await asyncio.gather(*[batcher.submit(rows(i, 2), 2) for i in range(5)])
    assert [b.shape[0] for b in model.batches] == [10], "one execution for one tick's arrivals"
    for i, done in enumerate(results):
        np.testing.assert_array_equal(done.outputs["y"], rows(i, 2)["x"] * 2)


async def test_inline_batches_take_turns_with_the_loop(executor: ThreadPoolExecutor) -> None:
    """With more than one batch queued, an inline batcher runs one batch per loop iteration:
    the first batch's callers are answered before the next batch runs, and a request that
    arrives meanwhile joins the next batch instead of waiting for a later one."""
    model = GatedModel()
    batcher = make(model, executor, execution="inline", max_batch_size=4)
    answered: list[int] = []

    async def one(i: int) -> None:
        await batcher.submit(rows(i, 2), 2)
        answered.append(i)
        if i == 0:  # answered after the first batch: a newcomer arrives before the next batch
            tasks.append(asyncio.ensure_future(one(9)))

    tasks = [asyncio.ensure_future(one(i)) for i in range(5)]
    while not all(t.done() for t in tasks):
        await asyncio.gather(*tasks)
    assert [b.shape[0] for b in model.batches] == [4, 4, 4]
    assert answered[:2] == [0, 1], "the first batch answers before the second one runs"
    np.testing.assert_array_equal(
        model.batches[2], np.concatenate([rows(4, 2)["x"], rows(9, 2)["x"]])
    )


async def test_requests_wanting_other_outputs_run_apart_with_their_predictor(
    executor: ThreadPoolExecutor,
) -> None:
    model = GatedModel()
    chosen: list[frozenset[str]] = []

    def select(outputs: frozenset[str]) -> Callable[[Arrays], Arrays]:
        chosen.append(outputs)
        return lambda arrays: {"z": model.predict(arrays)["y"] + 1}

    policy = BatchPolicy(max_batch_size=16, dynamic=True, execution="thread")
    batcher = Batcher("m", model.predict, executor, policy, select)
    model.gate.clear()
    first = asyncio.ensure_future(batcher.submit(rows(0, 1), 1))
    await model.wait_entered()
    wants_z = frozenset({"z"})
    everything = [asyncio.ensure_future(batcher.submit(rows(i, 1), 1)) for i in range(2)]
    only_z = [asyncio.ensure_future(batcher.submit(rows(i, 1), 1, None, wants_z)) for i in range(3)]
    await asyncio.sleep(0.01)
    model.gate.set()
    await asyncio.gather(first, *everything, *only_z)
    assert sorted(b.shape[0] for b in model.batches[1:]) == [2, 3]
    assert chosen == [wants_z]  # the predictor is made once per output set
    for future, start in zip(only_z, range(3), strict=True):
        np.testing.assert_array_equal(future.result().outputs["z"], rows(start, 1)["x"] * 2 + 1)
    assert set(everything[0].result().outputs) == {"y"}
