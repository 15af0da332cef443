"""TLS from certificate and key files, for both transports (docs/security.md).

REST: ``server_ssl_context(settings)`` is handed to the HTTP server (``loop.create_server(ssl=)``).
gRPC: ``grpc_tls_material(settings)`` gives the PEM bytes the gRPC transport turns into
``grpc.ssl_server_credentials``. With ``tls_client_ca`` both require a client certificate signed
by that CA (mutual TLS). Nothing here imports a web or gRPC framework.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from modelserve.config.settings import Settings

__all__ = ["TlsError", "TlsMaterial", "grpc_tls_material", "server_ssl_context"]


class TlsError(ValueError):
    """A certificate, key or CA file is missing or unusable."""


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN" not in data:
        raise TlsError(f"the TLS {what} {path} is not a PEM file")
    return data


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The server-side SSL context for HTTPS, or None when TLS is off. TLS 1.2 or newer;
    with ``tls_client_ca`` a client certificate is required and verified."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(
            f"cannot load the TLS certificate {settings.tls_cert} with key {settings.tls_key}: "
            f"{exc}"
        ) from None
    if settings.tls_client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(settings.tls_client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"cannot load the client CA {settings.tls_client_ca}: {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """PEM bytes for gRPC's ``ssl_server_credentials``."""

    certificate_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None

    def __repr__(self) -> str:  # never print a private key
        return f"TlsMaterial(mutual={self.client_ca is not None})"


def grpc_tls_material(settings: Settings) -> TlsMaterial | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    ca = None
    if settings.tls_client_ca is not None:
        ca = _read(settings.tls_client_ca, "client CA")
    return TlsMaterial(
        certificate_chain=_read(settings.tls_cert, "certificate"),
        private_key=_read(settings.tls_key, "key"),
        client_ca=ca,
    )
