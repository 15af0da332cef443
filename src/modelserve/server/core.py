"""The transport-free half of a server, built from Settings: the inference executor, the model
repository (a remote one too), the lifecycle, observability, the router, the dataplane, and the
inference events with payload logging.

``Server`` (compose.py) puts the REST and gRPC transports on top of it; ``Client.local``
(client/local.py) uses it alone, in the caller's process, with no socket. Whatever a request
needs between decoding and the runtime belongs here, so that both get it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from modelserve.config.settings import Settings
from modelserve.dataplane import DataPlane
from modelserve.monitoring.events import EventBus
from modelserve.monitoring.metrics import MonitoringMetrics
from modelserve.monitoring.payloads import PayloadLogging
from modelserve.monitoring.service import Monitoring, WatchedModel, WatchedVersion
from modelserve.monitoring.sinks.metrics import PayloadMetrics
from modelserve.monitoring.sinks.registry import SinkContext
from modelserve.monitoring.store import default_state_dir
from modelserve.observability.service import ObservabilityService
from modelserve.routing.canary import canary_tick
from modelserve.routing.controller import Experiments
from modelserve.routing.router import Router
from modelserve.routing.shadow import ShadowMirror
from modelserve.routing.shadow_share import SharedFigures
from modelserve.runtimes.base import LoadContext
from modelserve.runtimes.registry import RuntimeRegistry
from modelserve.scheduling.cache import ResponseCache
from modelserve.scheduling.executor import inference_executor
from modelserve.serving.lifecycle import Lifecycle
from modelserve.serving.model import LoadedModel
from modelserve.serving.remote import RemoteRepository
from modelserve.serving.repository import ModelRepository
from modelserve.serving.shared_memory import SharedMemory
from modelserve.types import InferenceRequest, InferenceResponse

__all__ = ["ServingCore", "package_version"]

log = logging.getLogger("modelserve.server")

EXECUTOR_GRACE_S = 1.0
"""Seconds model threads still running after the drain get before the server stops without
them (a stuck ``predict`` cannot be interrupted; waiting for it on the event loop would block
the loop, and with it the second signal that exits at once)."""


def package_version() -> str:
    try:
        return version("modelserve")
    except PackageNotFoundError:
        return "0.0.0"


class ServingCore:
    @classmethod
    def from_options(cls, repository: str | Path, options: Mapping[str, Any]) -> ServingCore:
        """A core for ``repository`` with server settings by field name (docs/configuration.md);
        ValueError, naming the setting, for a value that is not valid."""
        try:
            settings = Settings(model_repository=repository, **options)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(f"invalid settings: {problems}") from None
        if isinstance(settings.model_repository, Path) and not settings.model_repository.is_dir():
            raise ValueError(f"{settings.model_repository} is not a directory")
        return cls(settings)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.executor = inference_executor(settings.executor_threads)
        root = settings.model_repository
        self.remote: RemoteRepository | None = None
        if isinstance(root, str):
            self.remote = RemoteRepository(root, settings.repository_cache_dir, settings.model_name)
            root = self.remote.local_root
        self.response_cache = ResponseCache(int(settings.response_cache_mb * 1024 * 1024))
        self.repository = ModelRepository(
            root,
            RuntimeRegistry(),
            self.executor,
            single_model=settings.model_name,
            cache=self.response_cache,
            accelerate=settings.accelerate,
        )
        self.lifecycle = Lifecycle(
            self.repository,
            settings.model_control_mode,
            settings.repository_poll_secs,
            settings.shutdown_timeout_s,
            settings.load_threads,
            remote=self.remote,
        )
        self.telemetry = ObservabilityService(settings, CollectorRegistry())
        self.events = EventBus()
        state_dir = settings.state_dir or default_state_dir(settings.model_repository)
        self.experiments = Experiments(
            self.repository,
            self.events,
            self.telemetry.observability.registry,
            settings.store,
            state_dir,
            tick=canary_tick,
        )
        shared = self.telemetry.observability.multiprocess_dir  # --workers: where they meet
        self.shadow = ShadowMirror(
            self._shadow_infer,
            registry=self.telemetry.observability.registry,
            share=SharedFigures(Path(shared), self.experiments.worker) if shared else None,
        )
        self.router = Router(self.repository, self.experiments, self.shadow)
        self.dataplane = DataPlane(
            self.repository,
            self.router,
            self.lifecycle,
            settings.server_name,
            package_version(),
            self.telemetry.observability,
            self.events,
            SharedMemory(settings.shared_memory == "system", settings.shared_memory_prefix),
        )
        self.repository.add_kind("pipeline", self._build_pipeline)
        self.payloads = PayloadLogging(
            self.events,
            PayloadMetrics(self.telemetry.observability.registry),
            SinkContext(
                settings.log_dir if settings.log_dir is not None else Path.cwd(),
                f".{os.getpid()}" if settings.reuse_port else "",
                socket.gethostname(),
            ),
            settings.payload_logging,
        )
        self.telemetry.observability.on_refresh(self.payloads.refresh)
        self.monitoring = Monitoring(
            self.events,
            MonitoringMetrics(self.telemetry.observability.registry),
            settings.store,
            state_dir,
        )
        self.telemetry.observability.on_refresh(self.monitoring.refresh)
        # first, so that a model's sinks follow it before anything else awaits
        self.lifecycle.listeners.insert(0, self._apply_monitoring)
        self.lifecycle.listeners.insert(0, self._apply_payload_logging)
        self.lifecycle.listeners.append(self._apply_experiments)

    def _build_pipeline(self, ctx: LoadContext) -> LoadedModel:
        """A ``runtime: pipeline`` version; the pipelines package is imported with the first."""
        from modelserve.pipelines import PipelineKind

        return PipelineKind(self.dataplane.run_step, self.executor)(ctx)

    async def _apply_experiments(self) -> None:
        configs = {}
        for model in self.repository.loaded_models():
            if model.config.experiment is not None:
                configs[model.name] = model.config.experiment
        shadows = {}
        for name in self.repository.names():
            versions = self.repository.shadow_versions(name)
            if versions:
                shadows[name] = max(versions, key=int)
        self.experiments.gate_shadows = shadows
        await self.experiments.apply(configs)

    async def _shadow_infer(self, request: InferenceRequest, version: str) -> InferenceResponse:
        return await self.dataplane.infer_shadow(request, version)

    async def _apply_payload_logging(self) -> None:
        configs = {model.name: model.config.logging for model in self.repository.loaded_models()}
        await self.payloads.apply(configs)

    async def _apply_monitoring(self) -> None:
        watched: dict[str, dict[str, WatchedVersion]] = {}
        configs = {}
        for model in self.repository.loaded_models():
            config = model.config.monitoring
            if config is None:
                continue
            folder = self.repository.root / model.name
            configs[model.name] = config
            watched.setdefault(model.name, {})[model.version] = WatchedVersion(
                model.version, model.inputs, model.outputs, (folder / model.version, folder)
            )
        await self.monitoring.apply(
            {
                name: WatchedModel(name, configs[name], versions)
                for name, versions in watched.items()
            }
        )

    async def load_models(self) -> None:
        """Load the startup models (every model, or ``load_models``), then turn ready."""
        names = self.settings.startup_models
        await self.experiments.refresh()
        await self.experiments.start_polling()
        await self.shadow.start()
        await self.lifecycle.start(list(names) if names is not None else None)
        self.dataplane.set_ready(True)

    async def drain(self) -> None:
        """Refuse new work cleanly; let queued and running requests finish (bounded by the
        shutdown timeout)."""
        self.dataplane.stop_accepting()
        if not await self.lifecycle.wait_idle(self.settings.shutdown_timeout_s):
            log.warning("requests still running after %.0f s", self.settings.shutdown_timeout_s)

    async def close(self) -> bool:
        """Unload the models, stop the executor and observability; the event loop is never
        blocked. False when model threads were still busy at the end (a ``predict`` that does
        not return): they hold the process at exit, so a server should exit at once."""
        await self.shadow.stop()
        await self.lifecycle.stop()
        self.dataplane.shared_memory.close()
        await self.payloads.stop(self.settings.shutdown_timeout_s)
        await self.experiments.close()
        await self.monitoring.stop(self.settings.shutdown_timeout_s)
        idle = await self._shutdown_executor(EXECUTOR_GRACE_S)
        await self.telemetry.stop()
        return idle

    async def _shutdown_executor(self, grace_s: float) -> bool:
        """Shut the model threads down, waiting at most ``grace_s`` seconds, off the loop (in
        a daemon thread, which cannot hold the process either)."""
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not finished.done():
                finished.set_result(None)

        def wait() -> None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(settle)

        threading.Thread(target=wait, name="modelserve-executor-shutdown", daemon=True).start()
        try:
            await asyncio.wait_for(finished, grace_s)
        except TimeoutError:
            log.warning(
                "model threads still busy %.0f s after the drain (a predict that does not "
                "return?); stopping without them",
                grace_s,
            )
            return False
        return True
