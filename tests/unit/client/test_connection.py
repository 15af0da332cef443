"""Server URLs, protocols and TLS."""

from __future__ import annotations

import pytest

from modelserve.client.connection import Tls, parse_endpoint


def test_plain_and_schemed_urls() -> None:
    rest = parse_endpoint("127.0.0.1:8000")
    assert (rest.protocol, rest.base_url, rest.tls) == ("http", "http://127.0.0.1:8000", None)
    grpc = parse_endpoint("127.0.0.1:8001", "grpc")
    assert (grpc.protocol, grpc.address, grpc.tls) == ("grpc", "127.0.0.1:8001", None)
    assert parse_endpoint("grpc://h:1").protocol == "grpc"
    assert parse_endpoint("grpcs://h:1").tls == Tls()
    assert parse_endpoint("https://gw.example/models/").base_url == "https://gw.example/models"
    assert parse_endpoint("http://[::1]:8000").address == "[::1]:8000"


def test_tls_argument_turns_tls_on() -> None:
    tls = Tls(ca_file="ca.pem")
    assert parse_endpoint("h:1", tls=tls).tls is tls
    assert parse_endpoint("h:1", "grpc", tls=True).tls == Tls()


@pytest.mark.parametrize(
    ("url", "protocol", "tls", "message"),
    [
        ("", None, None, "no server URL"),
        ("ftp://h:1", None, None, "unsupported URL scheme"),
        ("grpc://h:1", "http", None, "is a grpc URL"),
        ("h", "grpc", None, "give the gRPC port"),
        ("grpc://h:1/x", None, None, "no path"),
        ("https://h:1", None, False, "asks for TLS"),
        ("http://h:port", None, None, "bad port"),
    ],
)
def test_bad_urls(url: str, protocol: str | None, tls: bool | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_endpoint(url, protocol, tls)  # type: ignore[arg-type]


def test_client_certificate_needs_both_files(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="both cert_file and key_file"):
        Tls(cert_file="c.pem")
    with pytest.raises(ValueError, match="cannot use the TLS files"):
        Tls(ca_file="/nonexistent/ca.pem").ssl_context()
    with pytest.raises(ValueError, match="cannot read"):
        Tls(ca_file="/nonexistent/ca.pem").grpc_material()
