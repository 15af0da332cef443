"""``--engine dask``: shards as Dask tasks, on a local cluster of worker processes (one thread
each) or on an existing scheduler (``--scheduler tcp://…``).

Each worker loads the model once: a worker plugin loads it when the worker joins (a restarted
worker joins again and loads it again), and every task on that worker uses it, no more tasks at
once than the model's ``instances``. A task reads its shard, runs it and writes its part file
itself: workers need the inputs, the repository and the output folder at the same paths (one
machine, or a shared filesystem). The driver only writes the manifest and the summary.

A worker that dies mid-task is survived: the scheduler runs its tasks again elsewhere (up to
``distributed.scheduler.allowed-failures`` times); a part file is renamed into place only when
complete, so a rerun task writes it from scratch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import dask
from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker

from modelserve.offline.batch.engines import OnResult, Progress
from modelserve.offline.batch.errors import BatchError
from modelserve.offline.batch.predictors import ModelPredictor, ModelSource, load_predictor
from modelserve.offline.batch.runner import JobPlan, ShardResult, ShardRunner, failed_result
from modelserve.offline.batch.sources import Shard
from modelserve.scheduling.executor import usable_cores

__all__ = ["DaskEngine", "ModelPlugin", "run_shard"]

log = logging.getLogger("modelserve.offline.batch.cluster")

CONNECT_TIMEOUT = "30s"


class ModelPlugin(WorkerPlugin):
    """Loads the model on a worker when it joins; unloads it when the plugin is removed."""

    def __init__(self, source: ModelSource, name: str) -> None:
        self.source = source
        self.name = name
        self.predictor: ModelPredictor | None = None
        self.error = ""
        self.slots: threading.Semaphore | None = None
        """Created on the worker: at most ``instances`` tasks use the model at once."""

    def setup(self, worker: Any) -> None:
        try:
            self.predictor = load_predictor(self.source)
        except Exception as exc:  # reported by every task of this worker
            self.error = f"worker {worker.address} could not load the model: {exc}"
            log.error("%s", self.error)
            return
        self.slots = threading.Semaphore(max(1, self.predictor.concurrency))

    def teardown(self, worker: Any) -> None:
        if self.predictor is not None:
            self.predictor.close()
            self.predictor = None


def run_shard(shard: Shard, plan: JobPlan, plugin_name: str) -> ShardResult:
    """A Dask task: one shard on this worker's copy of the model."""
    plugin = get_worker().plugins.get(plugin_name)
    if not isinstance(plugin, ModelPlugin):
        raise BatchError(f"the worker has no model plugin '{plugin_name}'")
    if plugin.predictor is None or plugin.slots is None:
        return failed_result(shard, plan.format, BatchError(plugin.error))
    with plugin.slots:
        return ShardRunner(plan, plugin.predictor).run(shard)


class DaskEngine:
    name = "dask"

    def __init__(
        self,
        source: ModelSource,
        scheduler: str | None,
        workers: int | None,
        note: Callable[[str], None],
    ) -> None:
        self.source = source
        self.scheduler = scheduler
        self.workers = workers
        self._note = note
        self._cluster: LocalCluster | None = None
        self._client: Client | None = None
        self._plan: JobPlan | None = None
        self._plugin = ""

    def start(self, plan: JobPlan) -> None:
        self._plan = plan
        try:
            if self.scheduler is None:
                count = self.workers or usable_cores()
                # The workers' stack sampler takes the GIL 100 times a second: for a model whose
                # call takes microseconds that puts ms-long stalls between calls (p99 11 -> 2 ms
                # on iris_onnx). Our own workers go without it.
                with dask.config.set({"distributed.worker.profile.enabled": False}):
                    self._cluster = LocalCluster(  # type: ignore[no-untyped-call]
                        n_workers=count,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address="127.0.0.1:0",  # never a fixed port on a shared host
                        silence_logs=logging.ERROR,
                    )
                self._client = Client(self._cluster)  # type: ignore[no-untyped-call]
                self._note(f"local Dask cluster: {count} worker processes")
            else:
                self._client = Client(  # type: ignore[no-untyped-call]
                    self.scheduler, timeout=CONNECT_TIMEOUT
                )
                count = len(self._client.scheduler_info()["workers"])
                self._note(f"Dask scheduler {self.scheduler}: {count} workers")
        except OSError as exc:
            self.close()
            raise BatchError(f"cannot reach the Dask scheduler {self.scheduler}: {exc}") from None
        self._plugin = f"modelserve-batch-{self.source.name}-{id(self):x}"
        self._client.register_plugin(ModelPlugin(self.source, self._plugin), name=self._plugin)

    def run(self, shards: Sequence[Shard], on_result: OnResult, progress: Progress) -> None:
        client, plan = self._client, self._plan
        assert client is not None and plan is not None, "start() first"
        futures = {
            client.submit(
                run_shard,
                shard,
                plan,
                self._plugin,
                key=f"{self._plugin}-shard-{shard.index}",
                pure=False,
                priority=-shard.index,
            ): shard
            for shard in shards
        }
        remaining = set(futures)
        try:
            for future in as_completed(list(futures)):  # type: ignore[no-untyped-call]
                remaining.discard(future)
                shard = futures[future]
                try:
                    result: ShardResult = future.result()
                except Exception as exc:  # KilledWorker, a cancelled task, a lost scheduler
                    result = failed_result(shard, plan.format, exc)
                progress(result.rows_in)
                if not on_result(result):
                    break
        finally:
            if remaining:
                client.cancel(list(remaining))  # type: ignore[no-untyped-call]

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            if self._plugin and self.scheduler is not None:
                try:
                    client.unregister_worker_plugin(self._plugin)  # type: ignore[no-untyped-call]
                except Exception:  # the scheduler may be gone: nothing to release then
                    log.debug("could not remove the worker plugin", exc_info=True)
            client.close()  # type: ignore[no-untyped-call]
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            cluster.close()
