"""Running traffic experiments: which arm answers a request, the per-arm tallies, the stored
records every process follows, and the admin API's use cases (docs/experiments.md).

The record of each model's experiment (routing/experiments.py: ``ExperimentState``) lives in
the monitoring store's state table, never only in memory. Every process polls it every
``poll_s`` and routes by what it read, so every ``--workers`` process routes by the same
weights at the same step within one poll, and a restart finds the experiment where it was. A
change (start, step, verdict, promote, rollback, stop) is written only over the revision it
was computed from (``replace_state``): of several processes deciding at once, one wins, the
others read its result at their next poll. Each process writes its own tallies of the current
step to the store (one row per process), and whoever judges a step adds them all up.

The hot path (``choose``, ``observe``) touches only memory: a dict lookup when the model has no
experiment. Everything touching the store runs on one thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson
from prometheus_client import CollectorRegistry, Counter

from modelserve.config.experiment import ExperimentConfig, parse_experiment
from modelserve.errors import (
    STATUS_TABLE,
    ErrorCode,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from modelserve.monitoring.events import EXPERIMENT_STATUS, EventBus, InferenceEvent
from modelserve.monitoring.store import Store, open_store
from modelserve.observability.context import CURRENT, header_values
from modelserve.routing.experiments import (
    ARMS,
    HISTORY_MAX,
    ArmTally,
    ExperimentState,
    Route,
    bucket,
    route_of,
)
from modelserve.routing.status import accuracy, status_document, step_tallies
from modelserve.serving.repository import ModelRepository
from modelserve.types import Parameters

__all__ = ["DEFAULTS", "EXPERIMENTS", "Experiments", "Tick"]

log = logging.getLogger("modelserve.experiments")

T = TypeVar("T")

EXPERIMENTS = "experiments"
"""Store namespace: model -> its experiment's record (JSON)."""
DEFAULTS = "experiment-defaults"
"""Store namespace: model -> the version a promotion made its default."""
POLL_S = 0.25


Tick = Callable[["Experiments", Store, ExperimentState, float], ExperimentState | None]
"""The canary's clock (routing/canary.py): given a running canary's record, the changed record
to store, or None; called on the store's thread."""


class Experiments:
    def __init__(
        self,
        repository: ModelRepository,
        bus: EventBus,
        registry: CollectorRegistry | None,
        store_url: str | None,
        state_dir: Path,
        *,
        poll_s: float = POLL_S,
        clock: Callable[[], float] = time.time,
        tick: Tick | None = None,
    ) -> None:
        """``clock``: wall-clock seconds (the steps' clock is shared by processes and
        restarts, so it cannot be a monotonic one)."""
        self._repository = repository
        self._bus = bus
        self._store_url = store_url
        self._state_dir = state_dir
        self._poll_s = poll_s
        self.clock = clock
        self._tick = tick
        self._store: Store | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="modelserve-experiments")
        self._records: dict[str, str] = {}
        self._states: dict[str, ExperimentState] = {}
        self._routes: dict[str, Route] = {}
        self._defaults: dict[str, str] = {}
        self._tallies: dict[tuple[str, str, int, str], ArmTally] = {}
        self._dirty: set[tuple[str, str, int, str]] = set()
        self._configured: dict[str, ExperimentConfig] = {}
        self.worker = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._task: asyncio.Task[None] | None = None
        self._failing: tuple[str, int] | None = None
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_change: list[Callable[[], Awaitable[None]]] = []
        self.gate_shadows: dict[str, str] = {}
        """model -> the newest version that failed its validation gate with ``on_fail:
        shadow`` (set by the server as models load)."""
        self.requests = Counter(
            "modelserve_experiment_requests",
            "Requests answered through a traffic experiment, per version and arm.",
            ("model", "version", "arm"),
            registry=registry,
        )

    # ---- the hot path ------------------------------------------------------------------------

    def choose(self, model: str, parameters: Parameters) -> tuple[str, str] | None:
        """(version, arm) for a request of ``model`` that names no version; None when the model
        has no split running (then its default answers)."""
        route = self._routes.get(model)
        if route is None or route.split is None:
            return None
        split = route.split
        key: str | None = None
        if route.header is not None:
            ctx = CURRENT.get()
            if ctx is not None:
                key = header_values(ctx.headers, (route.header,)).get(route.header)
        elif route.parameter is not None:
            value = parameters.get(route.parameter)
            key = None if value is None else str(value)
        index = split.pick(bucket(route.state.id, key)) if key is not None else split.draw()
        return split.versions[index], split.arms[index]

    def default(self, model: str) -> str | None:
        """The version a promotion made the default, when it is loaded."""
        version = self._defaults.get(model)
        if version is None or version not in self._repository.get_entry(model).ready:
            return None
        return version

    def mirror(self, model: str) -> str | None:
        """The version a copy of this answered request goes to, or None: the experiment's
        ``mirror`` (its share of the requests), else a version that failed its validation gate
        with ``on_fail: shadow``."""
        route = self._routes.get(model)
        if route is None or route.mirror is None:
            return self.gate_shadows.get(model)
        if route.mirror_share < 1.0 and random.random() >= route.mirror_share:
            return None
        return route.mirror

    def observe(
        self, model: str, version: str, arm: str, code: ErrorCode | None, duration_ms: float
    ) -> None:
        """A request an experiment routed, answered (``code`` None) or failed."""
        self.requests.labels(model, version, arm).inc()
        route = self._routes.get(model)
        if route is None:
            return
        state = route.state
        key = (model, state.id, state.step or 0, version)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = ArmTally()
        server_error = code is not None and STATUS_TABLE[code][0] >= 500
        tally.add(code is None, duration_ms, server_error)
        self._dirty.add(key)

    # ---- the admin API -----------------------------------------------------------------------

    async def status(self, model: str) -> dict[str, Any]:
        """``GET /v2/models/{model}/experiment``."""
        self._repository.get_entry(model)
        store = await self._open(create=False)
        if store is None:
            raise_none(model)
        assert store is not None
        await self._call(self._sync)
        state = self._states.get(model)
        if state is None:
            raise_none(model)
        assert state is not None
        return await self._call(self.document, store, state)

    async def start(self, model: str, document: Any) -> dict[str, Any]:
        """``PUT /v2/models/{model}/experiment`` with an experiment: it replaces any other."""
        self._repository.get_entry(model)
        try:
            config = parse_experiment(document)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        state = self.new_state(model, config, "api")
        store = await self._open(create=True)
        assert store is not None
        await self._call(self._replace, store, model, state, True)
        return await self.status(model)

    async def act(self, model: str, action: str) -> dict[str, Any]:
        """``PUT …/experiment {"action": "promote" | "rollback"}`` and ``DELETE`` (stop)."""
        self._repository.get_entry(model)
        store = await self._open(create=False)
        if store is None:
            raise_none(model)
        assert store is not None
        if await self._call(self._act, store, model, action):
            await self._changed()
        return await self.status(model)

    def _act(self, store: Store, model: str, action: str) -> bool:
        """On the store's thread: apply a user's action over the stored record; True when it
        changed something."""
        while True:
            text = store.get_state(EXPERIMENTS, model)
            if text is None:
                raise_none(model)
            assert text is not None
            changed = self.apply_action(ExperimentState.loads(text), action)
            if changed is None:
                return False
            if store.replace_state(EXPERIMENTS, model, text, changed.dumps()):
                self._published(changed)
                if not changed.active:
                    self._forget_tallies(store, model, None)
                self._sync()
                return True

    def apply_action(self, state: ExperimentState, action: str) -> ExperimentState | None:
        """The record after a user's ``promote``, ``rollback`` or ``stop``; None when there
        is nothing to change."""
        if action not in ("promote", "rollback", "stop"):
            raise InvalidArgument(f"unknown experiment action {action!r}: promote, rollback, stop")
        now = self.clock()
        if action == "stop":
            if not state.active:
                return None
            state.state, state.ended = "stopped", now
            state.record(now, "stop", "stopped by a user", {})
        else:
            if state.candidate is None or state.baseline is None:
                raise FailedPrecondition(
                    f"model '{state.model}': {action} applies to a canary; this experiment "
                    "is a fixed split (stop it, or start another)"
                )
            if not state.active:
                raise FailedPrecondition(
                    f"model '{state.model}': the experiment is {state.state} already"
                )
            self.finish(state, now, action == "promote")
            done = "promoted" if action == "promote" else "rolled back"
            state.record(now, action, f"{done} by a user", {})
        state.revision += 1
        return state

    def finish(self, state: ExperimentState, now: float, promoted: bool) -> None:
        """End a canary: the candidate takes all traffic (and becomes the default), or none."""
        assert state.candidate is not None and state.baseline is not None
        if promoted:
            state.state = "promoted"
            state.weights = {state.baseline: 0.0, state.candidate: 100.0}
        else:
            state.state = "rolled_back"
            state.weights = {state.baseline: 100.0, state.candidate: 0.0}
        state.ended = now

    # ---- records -----------------------------------------------------------------------------

    def new_state(self, model: str, config: ExperimentConfig, origin: str) -> ExperimentState:
        """A new record for ``config``; FailedPrecondition when a version it names cannot
        serve."""
        entry = self._repository.get_entry(model)
        missing = sorted(config.versions() - set(entry.ready), key=int)
        if missing:
            raise FailedPrecondition(
                f"model '{model}': version(s) {', '.join(missing)} of the experiment are not "
                f"loaded and READY (ready: {', '.join(entry.ready) or 'none'}); load them first "
                "(version_policy)"
            )
        now = self.clock()
        spec = config.model_dump(mode="json")
        state = ExperimentState(
            uuid.uuid4().hex, model, spec, "api" if origin == "api" else "config", "running", {}, {}
        )
        if origin == "config":
            state.source = uuid.uuid5(uuid.NAMESPACE_URL, orjson.dumps(spec).decode()).hex
        state.started = state.step_started = now
        if config.candidates is not None:
            state.weights = {c.version: c.weight for c in config.candidates}
            state.arms = {c.version: chr(ord("a") + i) for i, c in enumerate(config.candidates)}
        elif config.canary is not None:
            checks = config.canary.checks
            timed = checks.max_latency_increase is not None or checks.max_p99_ms is not None
            if timed and importlib.util.find_spec("scipy") is None:
                raise FailedPrecondition(
                    "the canary's latency checks (max_latency_increase, max_p99_ms) need "
                    "scipy: pip install 'modelserve[monitoring]', or set them to null"
                )
            baseline = self.default(model) or self._repository.serving(model).version
            candidate = config.canary.version
            if baseline == candidate:
                raise FailedPrecondition(
                    f"model '{model}': the canary's version {candidate} is already the default"
                )
            first = config.canary.steps[0]
            state.baseline, state.candidate, state.step = baseline, candidate, 1
            state.next_look = now + config.canary.step_interval_s
            state.weights = {baseline: 100.0 - first, candidate: first}
            state.arms = {baseline: "baseline", candidate: "candidate"}
        state.record(now, "start", f"started ({origin})", {"weights": dict(state.weights)})
        if config.canary is not None and config.canary.steps[0] >= 100:
            self.finish(state, now, promoted=True)
            state.record(now, "promote", "the first step is 100: promoted at once", {})
        return state

    def _replace(self, store: Store, model: str, state: ExperimentState, force: bool) -> bool:
        """On the store's thread: store a new experiment over what is there (``force``), or only
        where there is none or another configured one."""
        while True:
            before = store.get_state(EXPERIMENTS, model)
            if before is not None:
                old = ExperimentState.loads(before)
                if not force and (
                    old.source == state.source or (old.origin, old.active) == ("api", True)
                ):
                    return False
                if old.active and old.candidate is None and state.candidate is None:
                    # a split given new weights: the same experiment, so its id (sticky keys
                    # move only at the margins of the new weights) and its history go on
                    state.id = old.id
                    state.revision = old.revision + 1
                    state.history = [*old.history, *state.history][-HISTORY_MAX:]
            if store.replace_state(EXPERIMENTS, model, before, state.dumps()):
                self._published(state)
                self._forget_tallies(store, model, state.id)
                self._sync()
                return True

    def write(self, store: Store, before: ExperimentState, after: ExperimentState) -> bool:
        """On the store's thread: ``after`` over ``before`` unless another process changed it;
        the decision is published on the bus by the process whose change was stored."""
        text = self._records.get(before.model)
        after.revision = before.revision + 1
        if text is None or not store.replace_state(EXPERIMENTS, before.model, text, after.dumps()):
            return False
        self._published(after)
        if not after.active:
            self._forget_tallies(store, after.model, None)
        return True

    @staticmethod
    def _forget_tallies(store: Store, model: str, keep: str | None) -> None:
        """Delete the stored tallies of ``model``'s other experiments (all when ``keep`` is
        None)."""
        for key in store.states(ARMS):
            parts = key.split("/")
            if parts[0] == model and parts[1] != keep:
                store.delete_state(ARMS, key)

    def _published(self, state: ExperimentState) -> None:
        """The record's last decision as an event (every payload sink of the model gets it)."""
        if not state.history:
            return
        last = state.history[-1]
        parameters: dict[str, Any] = {
            "experiment": state.id,
            "state": state.state,
            "verdict": last["verdict"],
            "reason": last["reason"],
            "step": state.step if state.step is not None else 0,
            "weights": orjson.dumps(state.weights).decode(),
            "figures": orjson.dumps(last["figures"]).decode(),
        }
        if state.state == "promoted" and state.candidate is not None:
            self._store_default(state.model, state.candidate)
        event = InferenceEvent(
            f"experiment-{uuid.uuid4().hex}",
            state.model,
            state.candidate or "",
            (),
            (),
            parameters,
            EXPERIMENT_STATUS,
            None,
            None,
            time.time_ns(),
            0,
            "experiments",
            {},
        )
        log.info(
            "model %s experiment %s: %s (%s) weights %s",
            state.model,
            state.state,
            last["verdict"],
            last["reason"],
            state.weights,
        )
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._broadcast, event)

    def _broadcast(self, event: InferenceEvent) -> None:
        try:
            self._bus.broadcast(event)
        except Exception:
            log.exception("could not publish an experiment event")

    def _store_default(self, model: str, version: str) -> None:
        if self._store is not None:
            self._store.put_state(DEFAULTS, model, version)

    def document(self, store: Store, state: ExperimentState) -> dict[str, Any]:
        """On the store's thread: the GET answer."""
        self._flush(store)
        return status_document(store, state, self.worker)

    def step_tallies(self, store: Store, state: ExperimentState) -> dict[str, ArmTally]:
        """On the store's thread: every process's tallies of the current step, added up."""
        self._flush(store)
        return step_tallies(store, state)

    accuracy = staticmethod(accuracy)

    # ---- the store's thread ------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def _open(self, create: bool) -> Store | None:
        """The store; None while there is none and ``create`` is false (no experiment was
        ever started on this repository's store)."""
        if self._store is None:
            try:
                self._store = await self._call(self._open_store, create)
            except Exception as exc:  # a bad path, an unreachable database: 503, not 500
                raise Unavailable(f"the experiments store cannot open: {exc}") from None
        return self._store

    def _open_store(self, create: bool) -> Store | None:
        if self._store is not None:
            return self._store
        url = self._store_url
        remote = url is not None and url.startswith(("postgresql://", "postgres://"))
        if not (create or remote):
            path = (
                self._state_dir / "modelserve.db"
                if url is None
                else Path(url.removeprefix("sqlite://")).expanduser()
            )
            if not path.exists():
                return None
        store = open_store(url, self._state_dir)
        log.info("experiments store: %s", store.url)
        self._store = store
        return store

    def _flush(self, store: Store) -> None:
        """Write this process's changed tallies."""
        dirty, self._dirty = self._dirty, set()
        for key in dirty:
            model, ident, step, version = key
            tally = self._tallies.get(key)
            if tally is not None:
                name = f"{model}/{ident}/{step}/{version}/{self.worker}"
                store.put_state(ARMS, name, orjson.dumps(tally.document()).decode())

    def _sync(self) -> bool:
        """On the store's thread: read every record; True when one changed."""
        store = self._store
        if store is None:
            return False
        records = store.states(EXPERIMENTS)
        defaults = store.states(DEFAULTS)
        changed = records != self._records or defaults != self._defaults
        if not changed:
            return False
        states: dict[str, ExperimentState] = {}
        routes: dict[str, Route] = {}
        for model, text in records.items():
            same = self._records.get(model) == text and model in self._states
            try:
                state = self._states[model] if same else ExperimentState.loads(text)
                if state.active:
                    routes[model] = route_of(state)
            except (ValueError, TypeError, KeyError) as exc:
                log.error("model %s: unreadable experiment record: %s", model, exc)
                continue
            states[model] = state
        live = {(m, s.id, s.step or 0) for m, s in states.items() if s.active}
        for key in list(self._tallies):
            if key[:3] not in live:
                del self._tallies[key]
                self._dirty.discard(key)
        self._records, self._states, self._routes = records, states, routes
        self._defaults = defaults
        return True

    def _poll(self) -> bool:
        """On the store's thread, every ``poll_s``: tallies out, records in, canary clocks."""
        store = self._store
        if store is None:
            store = self._open_store(False)
            if store is None:
                return False
        self._flush(store)
        changed = self._sync()
        if self._tick is not None:
            now = self.clock()
            for state in list(self._states.values()):
                if state.state != "running" or state.candidate is None:
                    continue
                before = ExperimentState.loads(self._records[state.model])
                try:
                    after = self._tick(self, store, before, now)
                except Exception as exc:
                    if self._failing != (state.id, state.revision):
                        self._failing = (state.id, state.revision)
                        log.exception("model %s: the canary cannot judge: %s", state.model, exc)
                    continue
                if after is not None and self.write(store, before, after):
                    changed = self._sync() or changed
        return changed

    # ---- lifecycle ---------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read the stored records now (before the first request)."""
        self._loop = asyncio.get_running_loop()
        try:
            await self._call(self._poll)
        except Exception as exc:
            log.warning("experiments: the store could not be read: %s", exc)

    async def start_polling(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._task is None:
            self._task = asyncio.create_task(self._poll_loop())

    async def _poll_loop(self) -> None:
        while True:
            try:
                if await self._call(self._poll):
                    await self._changed()
            except Exception as exc:
                log.warning("experiments: the store could not be read: %s", exc)
            await asyncio.sleep(self._poll_s)

    async def _changed(self) -> None:
        for listener in self.on_change:
            try:
                await listener()
            except Exception:
                log.exception("experiments: a listener failed")

    async def apply(self, configs: Mapping[str, ExperimentConfig]) -> None:
        """The ``experiment:`` keys of the loaded models: each starts unless its record is
        there already (the same configuration before a restart, or one started through the
        API, which wins)."""
        async with self._lock:
            self._loop = asyncio.get_running_loop()
            for model, config in configs.items():
                if self._configured.get(model) == config:
                    continue
                try:
                    state = self.new_state(model, config, "config")
                except FailedPrecondition as exc:
                    log.error("model %s: the configured experiment cannot start: %s", model, exc)
                    continue
                store = await self._open(create=True)
                assert store is not None
                if await self._call(self._replace, store, model, state, False):
                    await self._changed()
                self._configured[model] = config

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        store = self._store
        if store is not None:
            with contextlib.suppress(Exception):
                await self._call(self._flush, store)
            await self._call(store.close)
            self._store = None
        self._thread.shutdown(wait=False)


def raise_none(model: str) -> None:
    raise NotFound(f"model '{model}' has no traffic experiment (docs/experiments.md)")
