"""TLS from certificate and key files, for both transports (docs/security.md).

``server_ssl_context(settings)`` is handed to the HTTP server (``loop.create_server(ssl=)``), and
with ALPN ``h2`` to the gRPC server, which serves HTTP/2 on the same loop. With
``tls_client_ca`` both require a client certificate signed by that CA (mutual TLS). Nothing here
imports a web or gRPC framework.
"""

from __future__ import annotations

import ssl

from modelserve.config.settings import Settings

__all__ = ["TlsError", "server_ssl_context"]


class TlsError(ValueError):
    """A certificate, key or CA file is missing or unusable."""


def server_ssl_context(
    settings: Settings, alpn: tuple[str, ...] = ("http/1.1",)
) -> ssl.SSLContext | None:
    """The server-side SSL context, or None when TLS is off: for HTTPS, or with
    ``alpn=("h2",)`` for gRPC. TLS 1.2 or newer; with ``tls_client_ca`` a client certificate is
    required and verified."""
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
    context.set_alpn_protocols(list(alpn))
    return context
