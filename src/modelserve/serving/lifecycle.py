"""Model lifecycle: initial load, load/unload on request, repository polling, draining.

A new or changed version is built and warmed up beside the serving one (in a worker thread, which
touches only its ``LoadPlan``: the repository's records change on the event loop alone, where
the index, the router and the metrics read them); traffic moves in one step on the event loop
once it is READY; the replaced version then refuses
new work, finishes its queued and running requests, and unloads. Nothing is dropped.

A version that depends on other models (a pipeline's model steps) serves only while they are
READY (serving/dependencies.py): the dependents are re-checked after every change. In explicit
mode, loading such a model also loads the models it needs that are not loaded yet, as Triton
does for an ensemble's composing models; unloading one leaves its dependencies loaded.

Polling rule for half-copied folders: a change is applied only once the model folder's
fingerprint (every file's path, size and mtime) is the same on two polls in a row, so a version
that is still being written is picked up one poll after the copy finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from modelserve.config.model import ModelConfig
from modelserve.errors import InvalidArgument, NotFound, ServerError, Unavailable
from modelserve.serving.dependencies import dependency_names, refresh_dependents
from modelserve.serving.model import LoadedModel
from modelserve.serving.remote import RemoteRepository, RemoteRepositoryError
from modelserve.serving.repository import LoadPlan, ModelRepository

log = logging.getLogger("modelserve.serving.lifecycle")

ControlMode = Literal["none", "poll", "explicit"]


class Lifecycle:
    def __init__(
        self,
        repository: ModelRepository,
        mode: ControlMode = "none",
        poll_secs: float = 5.0,
        drain_timeout_s: float = 30.0,
        parallel_loads: int = 4,
        remote: RemoteRepository | None = None,
    ) -> None:
        """``remote``: the object store the repository folder is a copy of (serving/remote.py);
        synced before the first load, before each poll and before a load request."""
        self.repository = repository
        self.remote = remote
        self.mode = mode
        self._poll_secs = poll_secs
        self._drain_timeout_s = drain_timeout_s
        self._parallel_loads = parallel_loads
        self._locks: dict[str, asyncio.Lock] = {}
        self._applied: dict[str, str] = {}
        self._seen: dict[str, str] = {}
        self._poll_task: asyncio.Task[None] | None = None
        self._draining: set[asyncio.Task[None]] = set()
        self._starting = False
        self.listeners: list[Callable[[], Awaitable[None]]] = []
        """Called after a model's versions changed (e.g. to publish gRPC health)."""

    # ---- start and stop ----------------------------------------------------------------------

    async def start(self, names: list[str] | None = None) -> None:
        """Load the given models (all in the repository when None), then poll if asked to."""
        if self.remote is not None:
            try:
                await asyncio.to_thread(self.remote.sync)
            except RemoteRepositoryError as exc:
                if not self.remote.has_copy():
                    raise
                log.warning("%s; serving the copy in %s", exc, self.remote.cache_dir)
        present = await asyncio.to_thread(self.repository.discover)
        if names is None:
            names = present
        for name in present:
            if name not in names:
                self.repository.register(name)  # listed in the index, not loaded
        limit = asyncio.Semaphore(self._parallel_loads)

        async def one(name: str) -> None:
            async with limit:
                await self.load(name)

        self._starting = True  # a pipeline waiting for its steps to load is no news yet
        try:
            await asyncio.gather(*(one(name) for name in names))
            wanted = set(names)
            while needed := self._missing_dependencies(wanted, set(present)):
                wanted |= needed
                await asyncio.gather(*(one(name) for name in sorted(needed)))
        finally:
            self._starting = False
        refresh_dependents(self.repository)
        settle_heap(unloaded=False)
        if self.mode == "poll":
            self._seen = dict(self._applied)
            self._poll_task = asyncio.create_task(self._poll_forever())

    def _missing_dependencies(self, loaded: set[str], present: set[str]) -> set[str]:
        """Models in the repository folder that the ``loaded`` ones need and that were not
        loaded (explicit mode loads them with the models that need them)."""
        needed = {dep for name in loaded for dep in dependency_names(self.repository, name)}
        return {name for name in needed - loaded if name in present}

    async def stop(self) -> None:
        """Stop polling, let every model finish its work, unload everything."""
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
        if self._draining:
            await asyncio.gather(*self._draining, return_exceptions=True)
        retired = [m for name in self.repository.names() for m in self._begin_unload(name)]
        await self._drain(retired)

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no model has queued or running requests; False on timeout."""
        waits = [m.batcher.wait_idle() for m in self.repository.loaded_models()]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), timeout_s)
        except TimeoutError:
            return False
        return True

    # ---- load and unload ---------------------------------------------------------------------

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def load(self, name: str, override: ModelConfig | None = None) -> LoadPlan:
        """(Re)load a model: new and changed versions swap in once READY; removed ones drain."""
        self.repository.model_dir(name)  # validates the name before it reaches the disk
        async with self._lock(name):
            fingerprint = await asyncio.to_thread(self.repository.model_fingerprint, name)
            plan = await asyncio.to_thread(self.repository.prepare, name, override)
            self.repository.begin(plan)  # on the loop: the records change only here
            await asyncio.to_thread(self.repository.build, plan)
            retired = self.repository.commit(plan)
            self._applied[name] = fingerprint
        self._drain_in_background(retired)  # settles the heap fully once they are unloaded
        await self._notify("load" if plan.to_load else None)  # nothing built: nothing to freeze
        return plan

    async def load_on_request(
        self, name: str, override: ModelConfig | None, loading: frozenset[str] = frozenset()
    ) -> None:
        """The repository API's load: like ``load``, but failures are the caller's error. The
        models the loaded versions need and that are not loaded yet are loaded too (``loading``:
        the models this request is loading already, so a cycle ends)."""
        self.repository.model_dir(name)  # a valid name before it reaches the store
        if self.remote is not None:
            try:
                report = await asyncio.to_thread(self.remote.sync, [name])
            except RemoteRepositoryError as exc:
                raise Unavailable(f"cannot load '{name}': {exc}") from None
            if name in report.failed:
                raise InvalidArgument(f"failed to load '{name}': {report.failed[name]}")
        if not (await asyncio.to_thread(self.repository.model_dir(name).is_dir)):
            raise NotFound(f"failed to load '{name}': no model folder '{name}' in the repository")
        plan = await self.load(name, override)
        if plan.error:
            raise InvalidArgument(f"failed to load '{name}': {plan.error}")
        if plan.failed:  # even when an older version keeps serving: the caller must know
            reasons = "; ".join(f"version {v}: {r}" for v, r in plan.failed.items())
            serving = self.repository.ready_versions(name)
            still = f" (still serving version {', '.join(serving)})" if serving else ""
            raise InvalidArgument(f"failed to load '{name}': {reasons}{still}")
        loading = loading | {name}
        for dependency in dependency_names(self.repository, name):
            if dependency in loading or self.repository.is_built(dependency):
                continue
            try:
                await self.load_on_request(dependency, None, loading)
            except ServerError as exc:
                raise InvalidArgument(
                    f"failed to load '{name}': it needs model '{dependency}': {exc.message}"
                ) from None

    async def unload(self, name: str) -> None:
        """Unload every version once its queued and running requests are done."""
        async with self._lock(name):
            retired = self._begin_unload(name)
            self._applied.pop(name, None)
        await self._drain(retired)
        self.repository.finish_unload(name)
        await self._notify("unload")

    async def _notify(self, settle: Literal["load", "unload"] | None) -> None:
        refresh_dependents(self.repository, quiet=self._starting)
        if settle is not None and not self._starting:
            settle_heap(unloaded=settle == "unload")
        for listener in self.listeners:
            try:
                await listener()
            except Exception:
                log.exception("a model-change listener failed")

    def _begin_unload(self, name: str) -> list[LoadedModel]:
        retired = self.repository.begin_unload(name)
        for model in retired:
            model.batcher.close()
        return retired

    # ---- draining ----------------------------------------------------------------------------

    def _drain_in_background(self, retired: list[LoadedModel]) -> None:
        if retired:
            task = asyncio.create_task(self._drain_and_settle(retired))
            self._draining.add(task)
            task.add_done_callback(self._draining.discard)

    async def _drain_and_settle(self, retired: list[LoadedModel]) -> None:
        await self._drain(retired)
        settle_heap(unloaded=True)  # what the replaced versions held in reference cycles goes

    async def _drain(self, retired: list[LoadedModel]) -> None:
        await asyncio.gather(*(self._retire(model) for model in retired))

    async def _retire(self, model: LoadedModel) -> None:
        model.batcher.close()
        try:
            await asyncio.wait_for(model.batcher.wait_idle(), self._drain_timeout_s)
        except TimeoutError:
            log.warning(
                "model %s version %s still busy after %.0f s; unloading anyway",
                model.name,
                model.version,
                self._drain_timeout_s,
            )
        if model.cache is not None:
            model.cache.clear()
        try:
            if model.runtime is not None:
                await asyncio.to_thread(model.runtime.unload)
        except Exception:
            log.exception("model %s version %s failed to unload", model.name, model.version)
        log.info("model %s version %s unloaded", model.name, model.version)

    # ---- polling -----------------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_secs)
            if self.remote is not None:
                try:
                    await asyncio.to_thread(self.remote.sync, None, True)
                except Exception as exc:
                    log.error("repository sync failed, serving the cached copy: %s", exc)
            try:
                await self.poll_once()
            except Exception:
                log.exception("repository poll failed")

    async def poll_once(self) -> None:
        """Apply the changes that have been stable since the previous poll."""
        present = set(await asyncio.to_thread(self.repository.discover))
        for name in sorted(present):
            fingerprint = await asyncio.to_thread(self.repository.model_fingerprint, name)
            stable = self._seen.get(name) == fingerprint
            self._seen[name] = fingerprint
            if stable and fingerprint != self._applied.get(name):
                log.info("model %s changed on disk; reloading", name)
                await self.load(name)
        for name in sorted(set(self._applied) - present):
            log.info("model %s was removed from the repository; unloading", name)
            await self.unload(name)
            self.repository.forget(name)
            self._seen.pop(name, None)


def settle_heap(unloaded: bool) -> None:
    """Take what the server holds for good (imported modules, loaded models) out of the cyclic
    garbage collector's sight: ``gc.freeze()`` moves every object tracked now to a permanent
    generation that collections skip. Without it, each full collection walks every object of
    every framework the models imported (~190,000 for the examples, ~325,000 with torch) and
    holds the event loop 100-200 ms while requests wait: a few times a minute under load, enough
    to make the 99th percentile of a busy server ~10 times its median.

    After a load that built a version (``unloaded`` False; start-up too), only what the load
    created needs freezing: a young collection (generations 0 and 1, the load's short-lived
    temporaries) then the freeze, ~1 ms even when the load imported a framework. Undoing the
    freeze for a full collection would hold the loop 100-200 ms on every load (the pause the
    freeze is there to avoid), and even a collection of the unfrozen generations alone walks
    what the load imported: 60-150 ms after a first sklearn, xgboost or torch model.

    What that costs: reference-cycle garbage already in the oldest generation, and not yet
    collected, is frozen with the rest (~300 objects after loading three frameworks). It is not
    kept for good: after an unload, or once the versions a reload replaced have drained and
    unloaded (``unloaded`` True), the freeze is undone and everything is collected before
    freezing again, so the unloaded versions' cycles go too. Frequent loads stay safe: a load
    that builds nothing (a repeated load of an unchanged model, which a deployment script or an
    orchestrator may send every few seconds) does not settle at all, so it freezes nothing; a load
    that builds a version either replaces one (a full collection follows its drain) or adds
    one, which holds far more memory of its own than the garbage it freezes."""
    if unloaded:
        gc.unfreeze()
        gc.collect()
    else:
        gc.collect(1)
    gc.freeze()
