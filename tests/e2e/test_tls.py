"""TLS on both transports with certificates made at test time; mutual TLS refuses clients
without a certificate from the configured CA."""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from modelserve.config.settings import Settings
from modelserve.security.tls import TlsError, server_ssl_context
from tests.conftest import RunningServer, Servers
from tests.tls_certs import Pki, make_pki

X = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _start(serve: Servers, model_repo: Path, pki: Pki, mutual: bool) -> RunningServer:
    return serve(
        model_repo,
        model_control_mode="explicit",
        load_models=("iris_onnx",),
        tls_cert=pki.server_cert,
        tls_key=pki.server_key,
        tls_client_ca=pki.ca if mutual else None,
    )


@pytest.fixture(scope="module")
def tls_server(model_repo: Path, pki: Pki, serve_module: Servers) -> RunningServer:
    return _start(serve_module, model_repo, pki, mutual=False)


@pytest.fixture(scope="module")
def mtls_server(model_repo: Path, pki: Pki, serve_module: Servers) -> RunningServer:
    return _start(serve_module, model_repo, pki, mutual=True)


def _client_context(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key)
    return context


def _infer(client: httpclient.InferenceServerClient | grpcclient.InferenceServerClient) -> None:
    module = httpclient if isinstance(client, httpclient.InferenceServerClient) else grpcclient
    tensor = module.InferInput("input", [1, 4], "FP32")
    tensor.set_data_from_numpy(X)
    result = client.infer("iris_onnx", [tensor])
    assert result.as_numpy("label").shape == (1,)


def test_https_with_httpx_and_tritonclient(tls_server: RunningServer, pki: Pki) -> None:
    url = f"https://{tls_server.url}"
    with httpx.Client(verify=_client_context(pki)) as client:
        assert client.get(f"{url}/v2/health/ready").status_code == 200
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1] * 4}]}
        assert client.post(f"{url}/v2/models/iris_onnx/infer", json=body).status_code == 200
    triton = httpclient.InferenceServerClient(
        tls_server.url, ssl=True, ssl_options={"ca_certs": str(pki.ca)}
    )
    try:
        assert triton.is_server_ready()
        _infer(triton)
    finally:
        triton.close()


def test_https_refuses_plain_http_and_unknown_ca(tls_server: RunningServer) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{tls_server.url}/v2/health/ready", timeout=5)
    with pytest.raises(httpx.ConnectError):  # the system CAs do not know our test CA
        httpx.get(f"https://{tls_server.url}/v2/health/ready", timeout=5)


def test_grpc_tls_with_tritonclient(tls_server: RunningServer, pki: Pki) -> None:
    client = grpcclient.InferenceServerClient(
        tls_server.grpc_url, ssl=True, root_certificates=str(pki.ca)
    )
    try:
        assert client.is_server_ready()
        _infer(client)
    finally:
        client.close()
    plain = grpcclient.InferenceServerClient(tls_server.grpc_url)
    try:
        with pytest.raises(InferenceServerException):
            plain.is_server_live(client_timeout=5)
    finally:
        plain.close()


def test_mutual_tls_over_https(mtls_server: RunningServer, pki: Pki) -> None:
    url = f"https://{mtls_server.url}/v2/health/ready"
    good = _client_context(pki, pki.client_cert, pki.client_key)
    with httpx.Client(verify=good) as client:
        assert client.get(url).status_code == 200
    for context in (
        _client_context(pki),
        _client_context(pki, pki.other_client_cert, pki.other_client_key),
    ):
        with pytest.raises(httpx.HTTPError), httpx.Client(verify=context) as client:
            client.get(url, timeout=5)
    triton = httpclient.InferenceServerClient(
        mtls_server.url,
        ssl=True,
        ssl_options={
            "ca_certs": str(pki.ca),
            "certfile": str(pki.client_cert),
            "keyfile": str(pki.client_key),
        },
    )
    try:
        _infer(triton)
    finally:
        triton.close()


def test_mutual_tls_over_grpc(mtls_server: RunningServer, pki: Pki) -> None:
    client = grpcclient.InferenceServerClient(
        mtls_server.grpc_url,
        ssl=True,
        root_certificates=str(pki.ca),
        private_key=str(pki.client_key),
        certificate_chain=str(pki.client_cert),
    )
    try:
        _infer(client)
    finally:
        client.close()
    for key, cert in ((None, None), (pki.other_client_key, pki.other_client_cert)):
        credentials = grpc.ssl_channel_credentials(
            root_certificates=pki.ca.read_bytes(),
            private_key=key.read_bytes() if key else None,
            certificate_chain=cert.read_bytes() if cert else None,
        )
        with (
            grpc.secure_channel(mtls_server.grpc_url, credentials) as channel,
            pytest.raises(grpc.FutureTimeoutError),
        ):
            grpc.channel_ready_future(channel).result(timeout=3)


def test_bad_tls_files_are_refused_clearly(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ValueError, match="tls_key"):
        Settings(model_repository=tmp_path, tls_cert=pki.server_cert)
    with pytest.raises(ValueError, match="tls_client_ca"):
        Settings(model_repository=tmp_path, tls_client_ca=pki.ca)
    with pytest.raises(TlsError, match=r"junk\.pem"):
        server_ssl_context(
            Settings(
                model_repository=tmp_path, tls_cert=tmp_path / "junk.pem", tls_key=pki.server_key
            )
        )
    with pytest.raises(TlsError, match="client CA"):
        server_ssl_context(
            Settings(
                model_repository=tmp_path,
                tls_cert=pki.server_cert,
                tls_key=pki.server_key,
                tls_client_ca=tmp_path / "missing.pem",
            )
        )
