"""Sink types by name, imported on first use (DESIGN §4.3), and how a configured sink is named
and told apart from another."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from modelserve.config.payload import SinkConfig
from modelserve.monitoring.sinks.delivery import Sender

__all__ = ["SINK_TYPES", "SinkContext", "make_sender", "sink_key", "sink_name"]

SINK_TYPES: dict[str, str] = {
    "file": "modelserve.monitoring.sinks.file:FileSink",
    "cloudevents": "modelserve.monitoring.sinks.cloudevents:CloudEventsSink",
    "kafka": "modelserve.monitoring.sinks.kafka:KafkaSink",
    "redis": "modelserve.monitoring.sinks.redis:RedisSink",
}


@dataclass(frozen=True, slots=True)
class SinkContext:
    """What sinks need to know about the server."""

    log_dir: Path
    """Relative file paths and the dead-letter files are resolved against it."""
    tag: str = ""
    """Inserted before the suffix of every file this process writes (with several worker
    processes, each writes its own files: ``payloads.<pid>.jsonl``)."""
    host: str = "localhost"
    """This machine's name (the default CloudEvents source)."""

    def file_path(self, path: str) -> Path:
        resolved = Path(path).expanduser()
        if not resolved.is_absolute():
            resolved = self.log_dir / resolved
        if self.tag:
            resolved = resolved.with_name(f"{resolved.stem}{self.tag}{resolved.suffix}")
        return resolved


def make_sender(config: SinkConfig, context: SinkContext) -> Sender:
    module, _, name = SINK_TYPES[config.type].partition(":")
    cls: Any = getattr(importlib.import_module(module), name)
    sender: Sender = cls(config, context)
    return sender


def sink_name(config: SinkConfig) -> str:
    """The name in metrics, logs and dead-letter files: ``name:`` when given, else the type and
    the target, without credentials."""
    if config.name:
        return config.name
    if config.type == "file":
        return f"file:{config.path}"
    if config.type == "cloudevents":
        return f"cloudevents:{_safe_url(config.url)}"
    if config.type == "kafka":
        return f"kafka:{config.bootstrap_servers}/{config.topic}"
    return f"redis:{_safe_url(config.url)}/{config.stream}"


def sink_key(config: SinkConfig, context: SinkContext) -> tuple[str, ...]:
    """Two sinks with the same key are one sink (one writer per file, one client per target)."""
    if config.type == "file":
        return ("file", str(context.file_path(config.path).resolve()))
    if config.type == "cloudevents":
        return ("cloudevents", config.url)
    if config.type == "kafka":
        return ("kafka", config.bootstrap_servers, config.topic)
    return ("redis", config.url, config.stream)


def _safe_url(url: str) -> str:
    """``url`` without its scheme, credentials, query and fragment (for names and logs)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{host}{parts.path}"
