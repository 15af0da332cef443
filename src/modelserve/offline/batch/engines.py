"""Where a job's shards run. ``LocalEngine``: in this process, as a pipeline of three stages so
that reading and writing overlap the model: one thread reads and converts the next shards, the
model runs as many shards at once as it has ``instances`` (the server's rule for parallel
predict calls), one thread encodes and writes. The Dask engine is ``cluster.DaskEngine``.

An engine reports each finished shard to ``on_result``, which answers False to stop the job
(its error budget is spent); shards already running finish and are reported, no new one starts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Protocol

from modelserve.offline.batch.predictors import Predictor
from modelserve.offline.batch.runner import JobPlan, ShardResult, ShardRunner, failed_result
from modelserve.offline.batch.sources import Shard

__all__ = ["Engine", "LocalEngine", "OnResult", "Progress"]

OnResult = Callable[[ShardResult], bool]
Progress = Callable[[int], None]

READ_AHEAD = 2
"""Shards read (and converted) ahead of the model."""


class Engine(Protocol):
    name: str

    def start(self, plan: JobPlan) -> None:
        """Get ready to run shards of ``plan`` (load models, start workers)."""

    def run(self, shards: Sequence[Shard], on_result: OnResult, progress: Progress) -> None:
        """Run the shards, reporting each as it finishes."""

    def close(self) -> None:
        """Stop and release the engine's own resources (not the predictor: the job's)."""


class _Counted:
    """Rows reported for one shard, so that its remainder (bad rows, a failure) is reported
    once it finishes."""

    __slots__ = ("count", "progress")

    def __init__(self, progress: Progress) -> None:
        self.count = 0
        self.progress = progress

    def __call__(self, rows: int) -> None:
        self.count += rows
        self.progress(rows)

    def settle(self, rows_in: int) -> None:
        if rows_in > self.count:
            self.progress(rows_in - self.count)
            self.count = rows_in


class LocalEngine:
    name = "local"

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self._runner: ShardRunner | None = None
        self._stop = threading.Event()

    def start(self, plan: JobPlan) -> None:
        self._runner = ShardRunner(plan, self.predictor, self._stop)

    def run(self, shards: Sequence[Shard], on_result: OnResult, progress: Progress) -> None:
        runner = self._runner
        assert runner is not None, "start() first"
        lanes = max(1, self.predictor.concurrency)
        pools = (
            ThreadPoolExecutor(1, thread_name_prefix="batch-read"),
            ThreadPoolExecutor(lanes, thread_name_prefix="batch-infer"),
            ThreadPoolExecutor(1, thread_name_prefix="batch-write"),
        )
        read, infer, write = pools
        pending = list(shards)
        pending.reverse()
        running: dict[Future[Any], tuple[str, Shard, _Counted]] = {}
        accepting = True
        try:
            while running or (pending and accepting):
                while (
                    accepting
                    and pending
                    and _loading(running) < READ_AHEAD
                    and len(running) < lanes + READ_AHEAD + 1
                ):
                    shard = pending.pop()
                    running[read.submit(runner.load, shard)] = ("load", shard, _Counted(progress))
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    stage, shard, counted = running.pop(future)
                    error = future.exception()
                    if error is not None:
                        counted.settle(shard.rows)
                        accepting = on_result(failed_result(shard, runner.plan.format, error))
                        accepting = accepting and not self._stop.is_set()
                    elif stage == "load":
                        job = infer.submit(runner.infer, future.result(), counted)
                        running[job] = ("infer", shard, counted)
                    elif stage == "infer":
                        running[write.submit(runner.store, future.result())] = (
                            "store",
                            shard,
                            counted,
                        )
                    else:
                        result: ShardResult = future.result()
                        counted.settle(result.rows_in)
                        accepting = on_result(result) and accepting
        except BaseException:
            self._stop.set()  # running shards stop at their next batch
            raise
        finally:
            for pool in pools:
                pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        self._stop.set()


def _loading(running: dict[Future[Any], tuple[str, Shard, _Counted]]) -> int:
    return sum(1 for stage, _, _ in running.values() if stage == "load")
