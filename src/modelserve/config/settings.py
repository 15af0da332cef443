"""Server settings: every option of ``modelserve serve``, defined once.

Each field made with ``option()`` is at the same time a command-line flag, a ``MODELSERVE_*``
environment variable and a key of the server file (``modelserve serve --config server.yaml``),
with the help text taken from its description and its default written only here. The names
follow the flag: ``--drain-delay-secs`` is ``MODELSERVE_DRAIN_DELAY_SECS`` and
``drain_delay_secs:`` in the file. config/sources.py reads the environment and the file;
cli/options.py builds the flags. Fields made without ``option()`` (``auth_tokens``) are filled
by the program, never by a user directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.fields import FieldInfo

from modelserve.config.model import valid_model_name
from modelserve.config.payload import PayloadLoggingConfig, extra_missing, parse_inline
from modelserve.config.streams import parse_stream_source

__all__ = [
    "ENV_PREFIX",
    "OptionSpec",
    "Settings",
    "TokenConfig",
    "is_remote_uri",
    "option",
    "option_specs",
]

SCOPE_PATTERN = r"^(read|admin|feedback|infer|infer:[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127})$"
ENV_PREFIX = "MODELSERVE_"
REMOTE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
GROUPS = ("server", "models", "limits", "security", "observability", "events")


def option(
    default: Any = ...,
    description: str = "",
    *,
    group: str = "server",
    flag: str | None = None,
    positional: bool = False,
    hidden: bool = False,
    metavar: str | None = None,
    **constraints: Any,
) -> Any:
    """A settings field that users set by flag, environment variable or server file.

    ``flag`` defaults to the field name with dashes; ``positional`` makes it the command's
    argument instead; ``hidden`` keeps it out of ``--help`` (internal flags such as the one the
    supervisor passes to its workers)."""
    if group not in GROUPS:
        raise ValueError(f"unknown option group {group!r}")
    extra: Any = {
        "option": {
            "group": group,
            "flag": flag,
            "positional": positional,
            "hidden": hidden,
            "metavar": metavar,
        }
    }
    return Field(default, description=description, json_schema_extra=extra, **constraints)


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """How one Settings field is spelled on each source."""

    field: str
    flag: str
    key: str
    env: str
    group: str
    positional: bool
    hidden: bool
    metavar: str | None
    info: FieldInfo


def option_specs() -> list[OptionSpec]:
    """Every user-settable field of Settings, in declaration order."""
    specs = []
    for name, info in Settings.model_fields.items():
        extra = info.json_schema_extra
        meta = extra.get("option") if isinstance(extra, dict) else None
        if not isinstance(meta, dict):
            continue
        flag = str(meta["flag"] or "--" + name.replace("_", "-"))
        key = flag.lstrip("-").replace("-", "_") if not meta["positional"] else name
        if name == "load_models":
            key = name
        specs.append(
            OptionSpec(
                field=name,
                flag=flag,
                key=key,
                env=ENV_PREFIX + key.upper(),
                group=str(meta["group"]),
                positional=bool(meta["positional"]),
                hidden=bool(meta["hidden"]),
                metavar=meta["metavar"] if isinstance(meta["metavar"], str) else None,
                info=info,
            )
        )
    return specs


def is_remote_uri(value: str) -> bool:
    """Whether a repository location is a URL (``s3://bucket/prefix``) rather than a folder."""
    return REMOTE_URI.match(value) is not None


class TokenConfig(BaseModel):
    """One API token, as the server keeps it: a name, the SHA-256 of the token (never the token
    itself) and its scopes (docs/security.md). Built by security/auth.py from --auth-file or
    the MODELSERVE_TOKEN_<NAME> environment variables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: tuple[str, ...] = Field(min_length=1)

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for scope in value:
            if not re.match(SCOPE_PATTERN, scope) or ".." in scope:
                raise ValueError(
                    f"unknown scope '{scope}': use infer, infer:<model>, read or admin"
                )
        return value


MIB = 1024 * 1024


class Settings(BaseModel):
    """Server settings, built once (by the CLI or a test) and passed down."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # ---- server ----
    model_repository: Path | str = option(
        description="Folder of <model>/<version>/ directories to serve, or a URL (s3://, gs://, "
        "az://) of one, synced to a local cache (docs/deploy.md).",
        positional=True,
    )
    host: str = option("127.0.0.1", "Address to bind; anything but loopback wants --auth-file.")
    http_port: int = option(8000, "HTTP port (0 = any free one).", ge=0, le=65535)
    grpc_port: int = option(8001, "gRPC port (0 = any free one).", ge=0, le=65535)
    grpc_max_message_bytes: int = option(
        64 * MIB, "Largest gRPC message, received or sent.", ge=1024
    )
    server_name: str = option("modelserve", "Name reported by the server metadata endpoint.")
    workers: int = option(
        1, "Server processes sharing the HTTP and gRPC ports (SO_REUSEPORT).", ge=1, le=256
    )
    reuse_port: bool = option(
        False,
        "Share the ports with other modelserve processes (set by --workers for its workers).",
        hidden=True,
    )
    executor_threads: int | None = option(
        None,
        "Threads that run predict off the event loop (default: the cores this process may use, "
        "by CPU affinity and cgroup quota, at least 2).",
        ge=1,
        le=1024,
    )
    # ---- models ----
    model_control_mode: Literal["none", "poll", "explicit"] = option(
        "none",
        "none: load everything at start; poll: also apply changes on disk; explicit: the "
        "repository API may load and unload (Triton's meaning).",
        group="models",
    )
    repository_poll_secs: float = option(5.0, "Poll interval in poll mode.", group="models", gt=0)
    load_models: tuple[str, ...] = option(
        (),
        "Explicit mode: a model to load at start (repeatable; '*' = all; default none).",
        group="models",
        flag="--load-model",
        metavar="NAME",
    )
    model_name: str | None = option(
        None,
        "Serve the repository folder itself as this one model: its version folders, or its "
        "artifact directly in it as version 1 (KServe's /mnt/models layout).",
        group="models",
    )
    repository_cache_dir: Path | None = option(
        None,
        "Where a repository on object storage is synced to (default: "
        "~/.cache/modelserve/repositories/<hash of the URL>).",
        group="models",
    )
    load_threads: int = option(4, "Model versions loaded in parallel.", group="models", ge=1, le=64)
    accelerate: Literal["none", "onnx"] = option(
        "none",
        "onnx: serve scikit-learn, XGBoost and LightGBM versions through their ONNX conversion "
        "when it passes the parity gate, unless their model.yaml says 'accelerate: none'.",
        group="models",
    )
    response_cache_mb: float = option(
        256.0,
        "Most MiB the response cache holds for all models together (each model with "
        "response_cache in its model.yaml has its own max_mb too); 0 turns caching off.",
        group="models",
        ge=0,
        le=1_048_576,
    )
    drain_delay_s: float = option(
        0.0,
        "On SIGTERM, keep serving this long while reporting not-ready.",
        group="models",
        flag="--drain-delay-secs",
        ge=0,
    )
    shutdown_timeout_s: float = option(
        30.0,
        "On SIGTERM, the longest queued and running requests get to finish.",
        group="models",
        flag="--shutdown-timeout-secs",
        ge=0,
    )
    # ---- limits ----
    max_request_bytes: int = option(64 * MIB, "Largest HTTP request body.", group="limits", ge=1024)
    max_tensor_elements: int = option(
        64 * MIB,
        "Most tensor elements one inference request may declare, all inputs together.",
        group="limits",
        ge=1,
    )
    header_timeout_s: float = option(
        10.0,
        "A client must send a request's headers within this time.",
        group="limits",
        flag="--header-timeout-secs",
        gt=0,
    )
    body_timeout_s: float = option(
        30.0,
        "...and its body within this time after the headers.",
        group="limits",
        flag="--body-timeout-secs",
        gt=0,
    )
    keepalive_timeout_s: float = option(
        30.0,
        "An idle keep-alive connection is closed after this time.",
        group="limits",
        flag="--keepalive-timeout-secs",
        gt=0,
    )
    max_connections: int = option(
        1000, "Open HTTP connections; one more is answered 503 and closed.", group="limits", ge=1
    )
    # ---- security (docs/security.md) ----
    shared_memory: Literal["none", "system"] = option(
        "none",
        "Triton's system shared-memory extension: 'system' lets co-located clients register "
        "POSIX shared-memory regions (admin scope) and pass tensors through them "
        "(docs/triton-compat.md).",
        group="security",
    )
    shared_memory_prefix: str = option(
        "/modelserve_",
        "With --shared-memory system: only POSIX shared-memory keys starting with this are "
        "opened ('/' allows any key, as Triton does).",
        group="security",
        pattern=r"^/[A-Za-z0-9_.\-]*$",
    )
    auth_file: Path | None = option(
        None,
        "YAML list of {name, token_sha256 | token, scopes}; turns authentication on (so does "
        "any MODELSERVE_TOKEN_<NAME>=<token>:<scopes> environment variable).",
        group="security",
    )
    auth_health: bool = option(
        False, "Require a token for health probes and /openapi.json, /docs too.", group="security"
    )
    tls_cert: Path | None = option(
        None, "PEM certificate chain: serve HTTPS and gRPC over TLS.", group="security"
    )
    tls_key: Path | None = option(None, "PEM private key of --tls-cert.", group="security")
    tls_client_ca: Path | None = option(
        None,
        "PEM CA bundle: require client certificates it signed (mutual TLS).",
        group="security",
    )
    auth_tokens: tuple[TokenConfig, ...] = ()
    """API tokens and their scopes (from auth_file and the environment); empty = no auth."""
    # ---- observability (docs/observability.md) ----
    log_level: Literal["debug", "info", "warning", "error"] = option(
        "info", "Least severe log level written.", group="observability"
    )
    log_format: Literal["auto", "json", "text"] = option(
        "auto", "auto: text on a terminal, JSON lines otherwise.", group="observability"
    )
    access_log: bool = option(
        False, "Log one line per request (logger modelserve.access).", group="observability"
    )
    metrics_port: int | None = option(
        None,
        "Also serve GET /metrics on this port (0 = any free one); it is always on the HTTP port.",
        group="observability",
        ge=0,
        le=65535,
    )
    ui: bool = option(
        False,
        "Serve the dashboard at /ui and its JSON at /ui/api (docs/dashboard.md); behind the admin "
        "tokens when --auth-file is set.",
        group="observability",
    )
    metrics_dir: Path | None = option(
        None,
        "Prometheus multiprocess directory where worker processes' metrics meet (default with "
        "--workers: a temporary one; PROMETHEUS_MULTIPROC_DIR is honoured too).",
        group="observability",
    )
    otlp_endpoint: str | None = option(
        None,
        "Export OpenTelemetry traces over OTLP/HTTP to this URL, e.g. http://127.0.0.1:4318 "
        "(needs modelserve[tracing]).",
        group="observability",
        metavar="URL",
    )
    # ---- payload logging and event streams (docs/payload-logging.md) ----
    payload_logging: PayloadLoggingConfig | None = option(
        None,
        "Payload logging of every model whose model.yaml has no 'logging:' key: the same "
        "document, as YAML or JSON, e.g. '{sinks: [{type: file, path: payloads.jsonl}]}'.",
        group="events",
        metavar="YAML",
    )
    log_dir: Path | None = option(
        None,
        "Folder that relative payload-log paths and the dead-letter files are resolved "
        "against (default: the working directory).",
        group="events",
    )
    # ---- model monitoring (docs/monitoring.md) and traffic experiments (docs/experiments.md) ----
    state_dir: Path | None = option(
        None,
        "Folder of the server's state: the store's SQLite file (modelserve.db), which keeps "
        "monitoring's predictions, labels and drift windows and the traffic experiments' "
        "records, decisions and tallies (unless --store names another store). "
        "Default: $XDG_STATE_HOME/modelserve/<repository folder name>-<hash of its path> "
        "(~/.local/state without XDG_STATE_HOME), one per repository.",
        group="events",
    )
    store: str | None = option(
        None,
        "The store of monitoring and traffic experiments: a SQLite file path (default: "
        "<state dir>/modelserve.db), or postgresql://user:password@host:port/db for one "
        "database several replicas share (needs modelserve[postgres]).",
        group="events",
        metavar="URL",
    )

    stream_source: tuple[str, ...] = option(
        (),
        "Serve V2 inference requests read from a stream, answers to <stream>.responses and "
        "errors to <stream>.errors: redis://host:port/db/<stream>?model=<name> or "
        "kafka://host:port/<topic>?model=<name> (repeatable; ?model= may be left out when the "
        "server has one model).",
        group="events",
        metavar="URL",
    )

    @field_validator("stream_source")
    @classmethod
    def _stream_sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            kind = parse_stream_source(url).kind
            missing = extra_missing(kind)
            if missing is not None:
                raise ValueError(f"'{url}': {missing.replace('type', 'a stream source of type')}")
        return value

    @field_validator("payload_logging", mode="before")
    @classmethod
    def _inline_payload_logging(cls, value: Any) -> Any:
        return parse_inline(value)

    @field_validator("model_repository", mode="before")
    @classmethod
    def _repository(cls, value: Any) -> Any:
        if isinstance(value, str) and not is_remote_uri(value):
            return Path(value)
        return value

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, value: str | None) -> str | None:
        if value is not None and not valid_model_name(value):
            raise ValueError(f"'{value}' is not a valid model name (letters, digits, _ . -)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key, or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        if self.workers > 1 and self.shared_memory != "none":
            raise ValueError(
                "workers > 1 cannot be combined with shared memory: a region registered with "
                "one worker process would be unknown to the others"
            )
        if self.workers > 1 and self.model_control_mode == "explicit":
            raise ValueError(
                "workers > 1 cannot be combined with explicit model control: a load or unload "
                "would reach one worker only; use poll mode"
            )
        return self

    @property
    def startup_models(self) -> tuple[str, ...] | None:
        """The models to load at start (None = all). As Triton: explicit mode loads only the
        models named with --load-model ('*' = all), none without it; the other modes load all."""
        if self.model_control_mode != "explicit" or "*" in self.load_models:
            return None
        return self.load_models
