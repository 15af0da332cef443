"""Where the server is and how to reach it: the URL, the protocol, TLS and the token.

URLs: ``host:port`` or ``http://``, ``https://`` (REST), ``grpc://``, ``grpcs://`` (gRPC); the
``s`` turns TLS on, as does a ``tls`` argument. A REST URL may carry a path prefix (a gateway's
``https://gw.example/models``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

__all__ = ["Endpoint", "Protocol", "Tls", "parse_endpoint"]

Protocol = Literal["http", "grpc"]

_SCHEMES: dict[str, tuple[Protocol, bool]] = {
    "http": ("http", False),
    "https": ("http", True),
    "grpc": ("grpc", False),
    "grpcs": ("grpc", True),
}


@dataclass(frozen=True, slots=True)
class Tls:
    """TLS for both protocols: ``ca_file`` to trust (default: the system's), and a client
    certificate for mutual TLS."""

    ca_file: str | Path | None = None
    cert_file: str | Path | None = None
    key_file: str | Path | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file for a client certificate")

    def ssl_context(self) -> ssl.SSLContext:
        """For REST (httpx)."""
        try:
            context = ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file is not None else None
            )
            if self.cert_file is not None and self.key_file is not None:
                context.load_cert_chain(str(self.cert_file), str(self.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot use the TLS files: {exc}") from None
        return context

    def grpc_material(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(root certificates, private key, certificate chain) for grpc.ssl_channel_credentials."""

        def read(path: str | Path | None) -> bytes | None:
            if path is None:
                return None
            try:
                return Path(path).read_bytes()
            except OSError as exc:
                raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None

        return read(self.ca_file), read(self.key_file), read(self.cert_file)


@dataclass(frozen=True, slots=True)
class Endpoint:
    protocol: Protocol
    host: str
    port: int | None
    tls: Tls | None
    path: str = ""

    @property
    def address(self) -> str:
        """``host:port`` (brackets around an IPv6 host)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The REST base URL: ``http(s)://host:port/prefix``."""
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.address}{self.path}"


def parse_endpoint(
    url: str, protocol: Protocol | None = None, tls: Tls | bool | None = None
) -> Endpoint:
    """The endpoint of ``url``; ``protocol`` and ``tls`` override what the scheme implies
    (``tls=True``: TLS with the system's certificate authorities)."""
    text = url.strip()
    if not text:
        raise ValueError("no server URL given")
    if "://" not in text:
        text = f"{'grpc' if protocol == 'grpc' else 'http'}://{text}"
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(f"unsupported URL scheme {scheme!r} in {url!r}; use http(s) or grpc(s)")
    implied, secure = _SCHEMES[scheme]
    if protocol is not None and protocol != implied and scheme not in ("http", "https"):
        raise ValueError(f"{url!r} is a {implied} URL but protocol={protocol!r}")
    chosen: Protocol = protocol or implied
    if protocol == "grpc" and scheme == "https":
        secure = True
    if not parts.hostname:
        raise ValueError(f"no host in the server URL {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in the server URL {url!r}") from None
    if chosen == "grpc" and port is None:
        raise ValueError(f"give the gRPC port in {url!r} (modelserve's default is 8001)")
    path = parts.path.rstrip("/")
    if path and chosen == "grpc":
        raise ValueError(f"a gRPC URL has no path: {url!r}")
    if tls is False and secure:
        raise ValueError(f"{url!r} asks for TLS but tls=False")
    material: Tls | None = None
    if isinstance(tls, Tls):
        material = tls
    elif tls is True or secure:
        material = Tls()
    return Endpoint(chosen, parts.hostname, port, material, path)
