"""The client with TLS (the server's CA, a client certificate for mutual TLS) and bearer tokens,
over each protocol, against real servers with certificates made at test time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelserve.client import AuthError, Client, ConnectionFailedError, Tls, TlsError
from modelserve.config.settings import TokenConfig
from modelserve.errors import ErrorCode
from modelserve.security.auth import hash_token
from tests.conftest import RunningServer, Servers
from tests.tls_certs import Pki, make_pki

PROTOCOLS = ("http", "grpc")
X = np.array([[5.1, 3.5, 1.4, 0.2]])
IRIS_TOKEN = "iris-only-token-0123456789abcdef"
READER_TOKEN = "reader-token-0123456789abcdef"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secured(model_repo: Path, pki: Pki, serve_module: Servers) -> RunningServer:
    """Mutual TLS and tokens at once."""
    return serve_module(
        model_repo,
        model_control_mode="explicit",
        load_models=("iris_onnx", "iris_xgboost"),
        tls_cert=pki.server_cert,
        tls_key=pki.server_key,
        tls_client_ca=pki.ca,
        auth_tokens=(
            TokenConfig(
                name="iris", token_sha256=hash_token(IRIS_TOKEN), scopes=("infer:iris_onnx",)
            ),
            TokenConfig(name="reader", token_sha256=hash_token(READER_TOKEN), scopes=("read",)),
        ),
    )


def url_of(server: RunningServer, protocol: str) -> str:
    return f"https://{server.url}" if protocol == "http" else f"grpcs://{server.grpc_url}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_mutual_tls_and_token(secured: RunningServer, pki: Pki, protocol: str) -> None:
    tls = Tls(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    with Client(url_of(secured, protocol), token=IRIS_TOKEN, tls=tls) as client:
        out = client.predict("iris_onnx", X, outputs=["label"])
        assert out.shape == (1,)
        with pytest.raises(AuthError, match="scope") as refused:
            client.predict("iris_xgboost", X)
        assert refused.value.code is ErrorCode.PERMISSION_DENIED and refused.value.status == 403
    with Client(url_of(secured, protocol), token=READER_TOKEN, tls=tls) as reader:
        assert [m.name for m in reader.models(ready_only=True)] == ["iris_onnx", "iris_xgboost"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_no_token_or_a_wrong_one_is_unauthenticated(
    secured: RunningServer, pki: Pki, protocol: str
) -> None:
    tls = Tls(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    for token in (None, "not-a-known-token-0123456789"):
        client = Client(url_of(secured, protocol), token=token, tls=tls, retries=3)
        with client, pytest.raises(AuthError) as refused:
            client.metadata("iris_onnx")
        assert refused.value.code is ErrorCode.UNAUTHENTICATED and refused.value.status == 401


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tls_failures_are_clear(secured: RunningServer, pki: Pki, protocol: str) -> None:
    url = url_of(secured, protocol)
    untrusting = Client(url, token=IRIS_TOKEN, tls=Tls(ca_file=pki.other_client_cert))
    with untrusting, pytest.raises(TlsError, match=r"(?i)certificate.verify.failed"):
        untrusting.predict("iris_onnx", X)
    anonymous = Client(url, token=IRIS_TOKEN, tls=Tls(ca_file=pki.ca), retries=1)
    with anonymous, pytest.raises(ConnectionFailedError):  # no client certificate: refused
        anonymous.predict("iris_onnx", X)
    with pytest.raises(ValueError, match="cannot"):
        Client(url, tls=Tls(ca_file=pki.ca.with_name("missing.pem")))
