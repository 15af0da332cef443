"""The server's stream sources (``--stream-source``): built from Settings by the composition
root, started once the models are loaded, stopped first at shutdown."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Sequence

from modelserve.config.streams import StreamSourceConfig, parse_stream_source
from modelserve.dataplane import DataPlane
from modelserve.observability import Observability
from modelserve.transports.streams.source import Backend, StreamSource

__all__ = ["StreamSourceError", "StreamSources"]

log = logging.getLogger("modelserve.streams")

BACKENDS = {
    "redis": "modelserve.transports.streams.redis:RedisBackend",
    "kafka": "modelserve.transports.streams.kafka:KafkaBackend",
}


class StreamSourceError(ValueError):
    """A stream source that cannot start as configured (the message is for the user)."""


class StreamSources:
    """The server's stream sources: started once the models are loaded, stopped first at
    shutdown (they finish and answer what they took while the dataplane still serves)."""

    def __init__(
        self,
        urls: Sequence[str],
        dataplane: DataPlane,
        observability: Observability,
        consumer: str,
        max_elements: int,
    ) -> None:
        self._configs = [parse_stream_source(url) for url in urls]
        self._dp = dataplane
        self._obs = observability
        self._consumer = consumer
        self._max_elements = max_elements
        self.sources: list[StreamSource] = []

    def _model(self, config: StreamSourceConfig, models: Sequence[str]) -> str:
        if config.model is not None:
            return config.model
        if len(models) == 1:
            return models[0]
        raise StreamSourceError(
            f"stream source {config.text}: say which model it serves (?model=<name>); the "
            f"server has {len(models)} models"
        )

    def _backend(self, config: StreamSourceConfig, model: str) -> Backend:
        module, _, name = BACKENDS[config.kind].partition(":")
        cls = getattr(importlib.import_module(module), name)
        backend: Backend = cls(config, config.group_for(model), self._consumer)
        return backend

    async def start(self, models: Sequence[str]) -> None:
        """Start reading (``models``: the loaded models, for a source that names none).
        StreamSourceError for a source that cannot start."""
        for config in self._configs:
            model = self._model(config, models)
            if model not in models:
                log.warning(
                    "stream source %s: model %s is not loaded; its requests are answered "
                    "with errors until it is",
                    config.text,
                    model,
                )
            source = StreamSource(
                config,
                model,
                self._backend(config, model),
                self._dp,
                self._obs,
                self._max_elements,
            )
            await source.start()
            self.sources.append(source)

    async def stop(self, timeout_s: float) -> None:
        sources, self.sources = self.sources, []
        await asyncio.gather(*(source.stop(timeout_s) for source in sources))
