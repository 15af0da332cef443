"""Payload logging as configured: the ``logging:`` key of model.yaml and the server-wide default
(the ``payload_logging`` setting), validated by pydantic. docs/payload-logging.md documents every
key; monitoring/payloads.py turns them into running sinks.

```yaml
logging:
  sample_rate: 1.0            # 0..1, decided per request
  mode: all                   # all | request | response
  redact: [inputs.ssn]        # tensors or parameters never written
  sinks:
    - {type: file, path: payloads/iris.jsonl, rotate_mb: 100}
```
"""

from __future__ import annotations

import importlib.util
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "EXTRAS",
    "CloudEventsSinkConfig",
    "FileSinkConfig",
    "KafkaSinkConfig",
    "PayloadLoggingConfig",
    "RedisSinkConfig",
    "SinkConfig",
    "extra_missing",
]

EXTRAS: dict[str, tuple[str, str]] = {
    "kafka": ("aiokafka", "kafka"),
    "redis": ("redis", "redis"),
}
"""Sink type -> (the client module it needs, the modelserve extra that installs it)."""

REDACT_PATTERN = re.compile(r"^(inputs|outputs|parameters|headers)\.[^\s]+$")
OptionValue = str | int | float | bool


def extra_missing(kind: str) -> str | None:
    """Why a sink or stream of ``kind`` cannot run here (its client is not installed), else
    None. Looks the module up without importing it."""
    needed = EXTRAS.get(kind)
    if needed is None or importlib.util.find_spec(needed[0]) is not None:
        return None
    return f"type {kind} needs the {needed[1]} extra: pip install 'modelserve[{needed[1]}]'"


class _Sink(BaseModel):
    """Keys every sink has: its queue bounds, batching and retries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.:/@\-]{1,200}$",
        description="The sink's name in metrics and dead-letter files (default: type and "
        "target, e.g. 'file:payloads/iris.jsonl', credentials left out).",
    )
    max_queue_events: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Events that may wait for this sink; past it new events are dropped (counted).",
    )
    max_queue_mb: float = Field(
        default=64.0,
        gt=0,
        le=65536,
        description="Tensor memory the waiting events may hold (MiB); past it new events are "
        "dropped (counted).",
    )
    batch_size: int = Field(
        default=256, ge=1, le=100_000, description="Most events delivered in one batch."
    )
    linger_ms: float = Field(
        default=50.0,
        ge=0,
        le=60_000,
        description="After the first event of a batch, how long to wait for more before "
        "delivering it.",
    )
    max_retries: int = Field(
        default=5,
        ge=0,
        le=1000,
        description="Retries of a batch that could not be delivered before it goes to the "
        "dead-letter file.",
    )
    retry_backoff_ms: float = Field(
        default=100.0,
        gt=0,
        le=600_000,
        description="First retry delay; it doubles on each retry (full jitter), up to "
        "retry_backoff_max_ms.",
    )
    retry_backoff_max_ms: float = Field(
        default=10_000.0, gt=0, le=3_600_000, description="Longest delay between two retries."
    )
    timeout_s: float = Field(
        default=10.0, gt=0, le=3600, description="Longest one delivery attempt may take."
    )


class FileSinkConfig(_Sink):
    type: Literal["file"]
    path: str = Field(
        min_length=1,
        description="JSON-lines file; a relative path is resolved against the log_dir setting.",
    )
    rotate_mb: float = Field(
        default=100.0,
        ge=0,
        description="Rotate the file once it reaches this size (MiB); 0 = never.",
    )
    keep: int = Field(
        default=0, ge=0, description="Rotated files kept (the oldest are deleted); 0 = all."
    )


HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~\-]+$")


class CloudEventsSinkConfig(_Sink):
    type: Literal["cloudevents"]
    url: str = Field(
        pattern=r"^https?://[^\s]+$",
        description="The receiver: events are POSTed to this http(s) URL.",
    )
    content_mode: Literal["binary", "structured", "batch"] = Field(
        default="binary",
        description="binary: one POST per event, attributes as ce-* headers, the V2 JSON "
        "document as the body (KServe's logger format); structured: one POST per event, "
        "application/cloudevents+json; batch: one POST per batch, "
        "application/cloudevents-batch+json.",
    )
    source: str | None = Field(
        default=None,
        min_length=1,
        description="ce-source (default: http://<host>/v2/models/<model>).",
    )
    namespace: str | None = Field(
        default=None, description="The 'namespace' extension (KServe's namespace), if any."
    )
    component: str = Field(default="predictor", description="The 'component' extension.")
    endpoint: str | None = Field(
        default=None,
        description="The 'endpoint' extension (default: the experiment arm that served the "
        "request, else 'default').",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra HTTP headers sent with every POST (e.g. Authorization).",
    )
    max_connections: int = Field(
        default=16,
        ge=1,
        le=1024,
        description="Connections of the sink's one pooled HTTP client (POSTs in flight).",
    )

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not HEADER_NAME.match(name):
                raise ValueError(f"'{name}' is not a header name")
        return value


class KafkaSinkConfig(_Sink):
    type: Literal["kafka"]
    bootstrap_servers: str = Field(
        min_length=1, description="host:port[,host:port...] of the Kafka brokers."
    )
    topic: str = Field(
        pattern=r"^[A-Za-z0-9._\-]{1,249}$", description="The topic events are produced to."
    )
    acks: Literal["all", "1", "0"] = Field(
        default="all", description="Acknowledgements the producer waits for."
    )
    compression: Literal["none", "gzip", "lz4", "zstd", "snappy"] = Field(
        default="none", description="Compression of the produced batches."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How the producer connects to the brokers."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism, with sasl_username and sasl_password."
    )
    sasl_username: str | None = None
    sasl_password: str | None = None


class RedisSinkConfig(_Sink):
    type: Literal["redis"]
    url: str = Field(
        pattern=r"^(redis|rediss|unix)://[^\s]*$",
        description="redis://[user:password@]host:port/db (rediss:// for TLS).",
    )
    stream: str = Field(
        min_length=1, max_length=1000, description="The stream events are added to."
    )
    maxlen: int | None = Field(
        default=100_000,
        ge=1,
        description="Trim the stream to about this many entries (XADD MAXLEN ~); null = never.",
    )
    exact_maxlen: bool = Field(
        default=False,
        description="Trim to exactly maxlen (MAXLEN =), at a higher cost for Redis.",
    )


SinkConfig = Annotated[
    FileSinkConfig | CloudEventsSinkConfig | KafkaSinkConfig | RedisSinkConfig,
    Field(discriminator="type"),
]


class PayloadLoggingConfig(BaseModel):
    """What a model logs of its inferences, and where to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Share of requests logged, decided per request (the same requests go to "
        "every sink of the model).",
    )
    mode: Literal["all", "request", "response"] = Field(
        default="all",
        description="all: inputs and outputs; request: inputs only; response: outputs only.",
    )
    redact: list[str] = Field(
        default_factory=list,
        description="Never written: 'inputs.<tensor>', 'outputs.<tensor>', "
        "'parameters.<request parameter>' or 'headers.<header>'.",
    )
    headers: list[str] = Field(
        default_factory=list,
        description="Request headers (HTTP) or metadata keys (gRPC) written with each event.",
    )
    sinks: list[SinkConfig] = Field(default_factory=list, description="Where events go.")

    @field_validator("redact")
    @classmethod
    def _redact(cls, value: list[str]) -> list[str]:
        for item in value:
            if not REDACT_PATTERN.match(item):
                raise ValueError(
                    f"'{item}': use inputs.<tensor>, outputs.<tensor>, parameters.<name> "
                    "or headers.<name>"
                )
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.match(r"^[A-Za-z0-9!#$%&'*+.^_`|~\-]+$", name):
                raise ValueError(f"'{name}' is not a header name")
        return [name.lower() for name in value]

    @model_validator(mode="after")
    def _installed(self) -> PayloadLoggingConfig:
        for position, sink in enumerate(self.sinks):
            missing = extra_missing(sink.type)
            if missing is not None:
                raise ValueError(f"sinks.{position}: {missing}")
        return self


def parse_inline(value: Any) -> Any:
    """The payload_logging setting given as text (a flag or environment variable): YAML or
    JSON, e.g. ``{sinks: [{type: file, path: all.jsonl}]}``."""
    if not isinstance(value, str):
        return value
    import yaml

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML or JSON: {exc}") from None
