"""Server settings: every option of ``modelserve serve``, built once and passed down."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCOPE_PATTERN = r"^(read|admin|infer|infer:[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127})$"


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


class Settings(BaseModel):
    """Server settings, built once (by the CLI or a test) and passed down."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_repository: Path
    host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    grpc_port: int = Field(default=8001, ge=0, le=65535)
    grpc_max_message_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    server_name: str = "modelserve"
    max_request_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    header_timeout_s: float = Field(default=10.0, gt=0)
    """A client must send a request's headers within this many seconds."""
    body_timeout_s: float = Field(default=30.0, gt=0)
    """...and its body within this many seconds after the headers."""
    keepalive_timeout_s: float = Field(default=30.0, gt=0)
    """An idle keep-alive connection is closed after this many seconds."""
    max_connections: int = Field(default=1000, ge=1)
    """Open HTTP connections; one more is answered 503 and closed."""
    reuse_port: bool = False
    """Share the HTTP and gRPC ports with other modelserve processes (set by --workers)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    load_threads: int = Field(default=4, ge=1)
    model_control_mode: Literal["none", "poll", "explicit"] = "none"
    repository_poll_secs: float = Field(default=5.0, gt=0)
    load_models: tuple[str, ...] | None = None
    """explicit mode: the models loaded at startup (None = every model in the repository)."""
    drain_delay_s: float = Field(default=0.0, ge=0)
    """On shutdown: seconds the server keeps serving while reporting not-ready."""
    shutdown_timeout_s: float = Field(default=30.0, ge=0)
    """On shutdown: the longest queued and running requests get to complete."""
    # ---- observability (docs/observability.md) ----
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Also serve GET /metrics on this port (0 = any free one); /metrics on the HTTP port
    is always there."""
    access_log: bool = False
    """One line per request on logger modelserve.access."""
    otlp_endpoint: str | None = None
    """Export trace spans over OTLP/HTTP to this URL (needs the ``tracing`` extra)."""
    # ---- security (docs/security.md) ----
    auth_tokens: tuple[TokenConfig, ...] = ()
    """API tokens and their scopes; empty = no authentication."""
    auth_health: bool = False
    """Require a token for health probes and the API description too."""
    tls_cert: Path | None = None
    """PEM certificate chain: HTTPS and gRPC over TLS (needs tls_key)."""
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    """PEM CA bundle: require and verify client certificates (mutual TLS)."""
    max_tensor_elements: int = Field(default=64 * 1024 * 1024, ge=1)
    """Most tensor elements one inference request may declare, all inputs together."""

    @model_validator(mode="after")
    def _tls_files(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key, or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        return self
