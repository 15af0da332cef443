"""Authentication and scopes on a real server, the same decisions over REST and gRPC: 401 /
UNAUTHENTICATED without or with a bad token, 403 / PERMISSION_DENIED out of scope, probes open
unless --auth-health, and no token ever in a log line."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from modelserve.config.settings import TokenConfig
from modelserve.errors import STATUS_TABLE, ErrorCode
from modelserve.protocol import grpc_service_pb2 as pb
from modelserve.security.auth import hash_token
from tests.conftest import RunningServer, Servers

TOKENS = {
    "iris": ("iris-only-token-0123456789abcdef", ("infer:iris_onnx",)),
    "reader": ("reader-token-0123456789abcdef", ("read",)),
    "admin": ("admin-token-0123456789abcdef", ("admin",)),
    "all": ("everything-token-0123456789abcdef", ("infer", "read")),
}
BAD_TOKEN = "not-a-known-token-0123456789abcdef"
SECRETS = [token for token, _ in TOKENS.values()] + [BAD_TOKEN]
TRANSPORTS = ("rest", "grpc")
X = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)


def token_configs() -> tuple[TokenConfig, ...]:
    return tuple(
        TokenConfig(name=name, token_sha256=hash_token(token), scopes=scopes)
        for name, (token, scopes) in TOKENS.items()
    )


@pytest.fixture(scope="module")
def auth_server(model_repo: Path, serve_module: Servers) -> RunningServer:
    return serve_module(
        model_repo,
        model_control_mode="explicit",
        load_models=("iris_onnx", "iris_xgboost", "echo_fp32"),
        auth_tokens=token_configs(),
        access_log=True,  # its lines must not carry tokens either
    )


class Caller:
    """tritonclient.http or .grpc with an optional bearer token."""

    def __init__(self, transport: str, server: RunningServer) -> None:
        self.transport = transport
        self.module: Any = httpclient if transport == "rest" else grpcclient
        self.url = server.url if transport == "rest" else server.grpc_url
        self.client: Any = self.module.InferenceServerClient(self.url)

    def headers(self, token: str | None) -> dict[str, str] | None:
        return None if token is None else {"authorization": f"Bearer {token}"}

    def infer(self, model: str, token: str | None) -> Any:
        tensor = self.module.InferInput("input", list(X.shape), "FP32")
        tensor.set_data_from_numpy(X)
        return self.client.infer(model, [tensor], headers=self.headers(token))

    def model_ready(self, model: str, headers: dict[str, str] | None) -> bool:
        """tritonclient.http answers False for any refusal; look at the status instead."""
        if self.transport == "grpc":
            return bool(self.client.is_model_ready(model, headers=headers))
        reply = httpx.get(f"http://{self.url}/v2/models/{model}/ready", headers=headers)
        if reply.status_code != 200:
            raise InferenceServerException(reply.json()["error"], status=str(reply.status_code))
        return True

    def call(self, what: str, token: str | None) -> Any:
        headers = self.headers(token)
        calls = {
            "infer_iris": lambda: self.infer("iris_onnx", token),
            "infer_xgb": lambda: self.infer("iris_xgboost", token),
            "metadata_iris": lambda: self.client.get_model_metadata("iris_onnx", headers=headers),
            "metadata_xgb": lambda: self.client.get_model_metadata("iris_xgboost", headers=headers),
            "config_iris": lambda: self.client.get_model_config("iris_onnx", headers=headers),
            "ready_iris": lambda: self.model_ready("iris_onnx", headers),
            "server_metadata": lambda: self.client.get_server_metadata(headers=headers),
            "index": lambda: self.client.get_model_repository_index(headers=headers),
            "load": lambda: self.client.load_model("iris_sklearn", headers=headers),
            "unload": lambda: self.client.unload_model("iris_sklearn", headers=headers),
            "live": lambda: self.client.is_server_live(headers=headers),
            "ready": lambda: self.client.is_server_ready(headers=headers),
        }
        return calls[what]()

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="module")
def callers(auth_server: RunningServer) -> Iterator[dict[str, Caller]]:
    made = {transport: Caller(transport, auth_server) for transport in TRANSPORTS}
    yield made
    for caller in made.values():
        caller.close()


def error_code(transport: str, exc: InferenceServerException) -> ErrorCode:
    status = str(exc.status())
    if transport == "rest":
        codes = [code for code, (http, _) in STATUS_TABLE.items() if str(http) == status]
    else:
        name = status.removeprefix("StatusCode.")
        codes = [code for code, (_, grpc_name) in STATUS_TABLE.items() if grpc_name == name]
    assert len(codes) == 1, status
    return codes[0]


def token_of(who: str | None) -> str | None:
    if who is None:
        return None
    if who == "bad":
        return BAD_TOKEN
    return TOKENS[who][0]


ALLOWED = {
    "iris": {"infer_iris", "metadata_iris", "config_iris", "ready_iris", "server_metadata"},
    "reader": {
        "metadata_iris",
        "metadata_xgb",
        "config_iris",
        "ready_iris",
        "server_metadata",
        "index",
    },
    "admin": {"server_metadata", "load", "unload"},
    "all": {
        "infer_iris",
        "infer_xgb",
        "metadata_iris",
        "metadata_xgb",
        "config_iris",
        "ready_iris",
        "server_metadata",
        "index",
    },
}
GUARDED = sorted(set().union(*ALLOWED.values()) - {"load", "unload"})


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("who", [None, "bad"])
@pytest.mark.parametrize("what", [*GUARDED, "load", "unload"])
def test_no_or_bad_token_is_unauthenticated(
    callers: dict[str, Caller], transport: str, who: str | None, what: str
) -> None:
    with pytest.raises(InferenceServerException) as info:
        callers[transport].call(what, token_of(who))
    assert error_code(transport, info.value) is ErrorCode.UNAUTHENTICATED
    assert BAD_TOKEN not in str(info.value.message())


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("who", sorted(ALLOWED))
@pytest.mark.parametrize("what", GUARDED)
def test_scopes_decide_the_same_on_both_transports(
    callers: dict[str, Caller], transport: str, who: str, what: str
) -> None:
    caller = callers[transport]
    if what in ALLOWED[who]:
        result = caller.call(what, token_of(who))
        if what.startswith("infer"):
            assert result.get_response() is not None
    else:
        with pytest.raises(InferenceServerException) as info:
            caller.call(what, token_of(who))
        assert error_code(transport, info.value) is ErrorCode.PERMISSION_DENIED
        assert f"token '{who}'" in str(info.value.message())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_admin_loads_and_unloads_others_may_not(callers: dict[str, Caller], transport: str) -> None:
    caller = callers[transport]
    for who in ("iris", "reader", "all"):
        for what in ("load", "unload"):
            with pytest.raises(InferenceServerException) as info:
                caller.call(what, token_of(who))
            assert error_code(transport, info.value) is ErrorCode.PERMISSION_DENIED
    caller.call("load", token_of("admin"))
    assert caller.client.is_model_ready("iris_sklearn", headers=caller.headers(token_of("all")))
    caller.call("unload", token_of("admin"))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_health_is_open_without_a_token(callers: dict[str, Caller], transport: str) -> None:
    for who in (None, "bad", "reader"):
        assert callers[transport].call("live", token_of(who)) is True
        assert callers[transport].call("ready", token_of(who)) is True


def test_rest_details(auth_server: RunningServer) -> None:
    """401 names the scheme (WWW-Authenticate); malformed credentials are 401; the API
    description is open like the probes; a repeated bad token changes nothing."""
    base = f"http://{auth_server.url}"
    with httpx.Client(base_url=base) as client:
        reply = client.post("/v2/repository/index")
        assert reply.status_code == 401
        assert reply.headers["www-authenticate"].startswith("Bearer")
        for value in ("Basic abc", "Bearer", "Bearer x y", TOKENS["reader"][0]):
            assert (
                client.post("/v2/repository/index", headers={"authorization": value}).status_code
                == 401
            )
        ok = client.post(
            "/v2/repository/index", headers={"authorization": f"bearer {TOKENS['reader'][0]}"}
        )
        assert ok.status_code == 200
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/docs").status_code == 200
        # unknown routes need admin: not a way around the scopes
        reader = {"authorization": f"Bearer {TOKENS['reader'][0]}"}
        assert client.get("/v2/something/else", headers=reader).status_code == 403
        admin = {"authorization": f"Bearer {TOKENS['admin'][0]}"}
        assert client.get("/v2/something/else", headers=admin).status_code == 404


def test_grpc_stream_checks_every_message(auth_server: RunningServer) -> None:
    token = TOKENS["iris"][0]
    metadata = (("authorization", f"Bearer {token}"),)

    def request(model: str) -> pb.ModelInferRequest:
        msg = pb.ModelInferRequest(model_name=model, id=model)
        msg.inputs.add(name="input", datatype="FP32", shape=[1, 4])
        msg.raw_input_contents.append(X.tobytes())
        return msg

    with grpc.insecure_channel(auth_server.grpc_url) as channel:
        stream = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )
        answers = list(stream(iter([request("iris_onnx")]), metadata=metadata, timeout=10))
        assert [a.infer_response.id for a in answers] == ["iris_onnx"]
        assert not answers[0].error_message
        with pytest.raises(grpc.RpcError) as info:
            list(stream(iter([request("iris_xgboost")]), metadata=metadata, timeout=10))
        assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as info:
            list(stream(iter([request("iris_onnx")]), timeout=10))
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_grpc_health_service_is_open(auth_server: RunningServer) -> None:
    with grpc.insecure_channel(auth_server.grpc_url) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_auth_health_protects_probes(model_repo: Path, serve: Servers) -> None:
    running = serve(
        model_repo,
        model_control_mode="explicit",
        load_models=(),
        auth_tokens=token_configs(),
        auth_health=True,
    )
    with httpx.Client(base_url=running.http) as client:
        assert client.get("/v2/health/live").status_code == 401
        assert client.get("/openapi.json").status_code == 401
        headers = {"authorization": f"Bearer {TOKENS['admin'][0]}"}
        assert client.get("/v2/health/live", headers=headers).status_code == 200
    with grpc.insecure_channel(running.grpc_url) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
        metadata = (("authorization", f"Bearer {TOKENS['reader'][0]}"),)
        answer = stub.Check(health_pb2.HealthCheckRequest(), metadata=metadata, timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_tokens_never_reach_the_logs(
    callers: dict[str, Caller], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for transport, caller in callers.items():
        for who in (*TOKENS, "bad"):
            for what in ("infer_iris", "infer_xgb", "index", "load"):
                try:
                    caller.call(what, token_of(who))
                except InferenceServerException as exc:
                    assert all(secret not in str(exc.message()) for secret in SECRETS), transport
    assert caplog.records, "expected the denials to be logged"
    text = "\n".join(
        f"{record.getMessage()} {record.args!r} {record.__dict__!r}" for record in caplog.records
    )
    for secret in SECRETS:
        assert secret not in text
        assert hash_token(secret) not in text


def test_grpc_health_watch_works_with_authentication_on(auth_server: RunningServer) -> None:
    """Watch answers through context.write (a coroutine, not an async generator): the auth
    interceptor must wrap it as such."""
    with grpc.insecure_channel(auth_server.grpc_url) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
