"""RestApp routing, driven with HttpRequest objects straight into ``handle`` over a real
dataplane (no HTTP server, no socket): every V2 route, the method each allows (HEAD wherever
GET is), 404 for everything else, errors as ``{"error": ...}`` with their status, request ids,
binary tensors, draining, and tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from modelserve.codecs.tensors import decode_raw
from modelserve.config.settings import TokenConfig
from modelserve.security.auth import Authenticator, hash_token
from modelserve.transports.http.messages import HttpRequest, Reply
from modelserve.transports.http.openapi import openapi_document
from modelserve.transports.http.rest import RestApp
from tests.unit.serving_stack import Stack, open_stack, write_scale_model

INFER_BODY = orjson.dumps(
    {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.5, 2.5]}]}
)
TOKEN = "reader-token-0123456789abcdef"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    marks = tmp_path / "marks"
    repo = tmp_path / "repo"
    write_scale_model(repo, marks, "scale", (1, 2), version_policy={"all": True})
    write_scale_model(repo, marks, "idle", (1,))
    opened = await open_stack(repo, mode="explicit", names=["scale"])
    yield opened
    await opened.close()


@pytest.fixture
def app(stack: Stack) -> RestApp:
    return RestApp(stack.dataplane, stack.observability)


async def call(
    app: RestApp, method: str, path: str, body: bytes = b"", **headers: str
) -> tuple[Reply, Any]:
    """The reply and its JSON document (None when the body is not JSON)."""
    request = HttpRequest(method, path, {k.replace("_", "-"): v for k, v in headers.items()}, body)
    reply = await app.handle(request)
    try:
        document = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        document = None
    return reply, document


def header(reply: Reply, name: str) -> str | None:
    values = [v.decode() for n, v in reply.headers if n.decode().lower() == name]
    return values[-1] if values else None


# ---- every route -------------------------------------------------------------------------------


async def test_server_routes(app: RestApp) -> None:
    reply, meta = await call(app, "GET", "/v2")
    assert reply.status == 200 and (meta["name"], meta["version"]) == ("modelserve", "9.9.9")
    assert "model_repository" in meta["extensions"]
    assert (await call(app, "GET", "/v2/health/live"))[1] == {"live": True}
    assert (await call(app, "GET", "/v2/health/ready"))[1] == {"ready": True}
    reply, stats = await call(app, "GET", "/v2/models/stats")
    assert reply.status == 200 and {m["name"] for m in stats["model_stats"]} == {"scale"}


async def test_model_routes_with_and_without_a_version(app: RestApp) -> None:
    reply, meta = await call(app, "GET", "/v2/models/scale")
    assert reply.status == 200 and meta["versions"] == ["1", "2"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]
    assert (await call(app, "GET", "/v2/models/scale/versions/2"))[1]["versions"] == ["2"]
    for prefix in ("/v2/models/scale", "/v2/models/scale/versions/1"):
        assert (await call(app, "GET", f"{prefix}/ready"))[1] == {"name": "scale", "ready": True}
        reply, config = await call(app, "GET", f"{prefix}/config")
        assert reply.status == 200 and config["max_batch_size"] == 8
        reply, stats = await call(app, "GET", f"{prefix}/stats")
        assert reply.status == 200 and stats["model_stats"][0]["name"] == "scale"
    reply, ready = await call(app, "GET", "/v2/models/idle/ready")
    assert (reply.status, ready) == (503, {"name": "idle", "ready": False})


async def test_infer_as_json_and_as_binary_tensors(app: RestApp) -> None:
    reply, answer = await call(app, "POST", "/v2/models/scale/versions/2/infer", INFER_BODY)
    assert reply.status == 200 and header(reply, "content-type") == "application/json"
    assert (answer["model_name"], answer["model_version"]) == ("scale", "2")
    assert answer["outputs"][0] == {
        "name": "y",
        "datatype": "FP32",
        "shape": [1, 2],
        "data": [3.0, 5.0],
    }
    binary_request = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [1, 2],
                    "parameters": {"binary_data_size": 8},
                }
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    )
    body = binary_request + np.array([[1.0, 2.0]], dtype="<f4").tobytes()
    reply, _ = await call(
        app,
        "POST",
        "/v2/models/scale/infer",
        body,
        inference_header_content_length=str(len(binary_request)),
    )
    assert reply.status == 200 and header(reply, "content-type") == "application/octet-stream"
    length = int(header(reply, "inference-header-content-length") or 0)
    document = orjson.loads(reply.body[:length])
    assert document["outputs"][0]["parameters"] == {"binary_data_size": 8}
    np.testing.assert_array_equal(
        decode_raw("y", "FP32", (1, 2), reply.body[length:]), [[2.0, 4.0]]
    )  # the newest version, 2, serves a request that names none


async def test_repository_routes(app: RestApp) -> None:
    reply, rows = await call(app, "POST", "/v2/repository/index")
    assert reply.status == 200
    assert {(r["name"], r["version"], r["state"]) for r in rows} == {
        ("idle", "", "UNAVAILABLE"),
        ("scale", "1", "READY"),
        ("scale", "2", "READY"),
    }
    ready = (await call(app, "POST", "/v2/repository/index", b'{"ready": true}'))[1]
    assert {r["name"] for r in ready} == {"scale"}
    assert (await call(app, "POST", "/v2/repository/models/idle/load"))[0].status == 200
    assert (await call(app, "GET", "/v2/models/idle/ready"))[0].status == 200
    reply, document = await call(app, "POST", "/v2/repository/models/idle/unload", b"{}")
    assert (reply.status, document) == (200, {})
    assert (await call(app, "GET", "/v2/models/idle/ready"))[0].status == 503


async def test_metrics_and_the_api_description(app: RestApp) -> None:
    reply, _ = await call(app, "GET", "/metrics")
    assert reply.status == 200 and b"modelserve_model_state" in reply.body
    assert (header(reply, "content-type") or "").startswith("text/plain")
    reply, document = await call(app, "GET", "/openapi.json")
    assert reply.status == 200 and document == openapi_document()
    reply, _ = await call(app, "GET", "/docs")
    assert reply.status == 200 and (header(reply, "content-type") or "").startswith("text/html")


# ---- methods and unknown routes ----------------------------------------------------------------


GET_ROUTES = [
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/stats",
    "/v2/models/scale",
    "/v2/models/scale/ready",
    "/v2/models/scale/config",
    "/v2/models/scale/stats",
    "/v2/models/scale/versions/1",
    "/metrics",
    "/openapi.json",
    "/docs",
]
POST_ROUTES = [
    "/v2/models/scale/infer",
    "/v2/models/scale/versions/1/infer",
    "/v2/repository/index",
    "/v2/repository/models/idle/load",
    "/v2/repository/models/idle/unload",
]


@pytest.mark.parametrize("path", GET_ROUTES)
async def test_get_routes_refuse_other_methods_and_allow_head(app: RestApp, path: str) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        reply, document = await call(app, method, path, b"{}")
        assert reply.status == 405, (method, path)
        assert document == {"error": f"method {method} is not allowed here; use GET"}
    get, _ = await call(app, "GET", path)
    head, _ = await call(app, "HEAD", path)
    assert head.status == get.status == 200
    assert header(head, "content-type") == header(get, "content-type")


@pytest.mark.parametrize("path", POST_ROUTES)
async def test_post_routes_refuse_other_methods(app: RestApp, path: str) -> None:
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        reply, document = await call(app, method, path)
        assert reply.status == 405, (method, path)
        assert document == {"error": f"method {method} is not allowed here; use POST"}


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/v1",
        "/v3/models/scale",
        "/v2/unknown",
        "/v2/health",
        "/v2/health/other",
        "/v2/models",
        "/v2/models/scale/unknown",
        "/v2/models/scale/infer/more",
        "/v2/models/scale/versions//infer",
        "/v2/repository",
        "/v2/repository/models/idle",
        "/v2/repository/models/idle/delete",
        "/v2/repository/index/extra",
        "/metrics/extra",
    ],
)
async def test_everything_else_is_404(app: RestApp, path: str) -> None:
    for method in ("GET", "POST"):
        reply, document = await call(app, method, path)
        assert reply.status == 404, (method, path)
        assert set(document) == {"error"}


# ---- errors, request ids, draining, tokens ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "fragment"),
    [
        ("GET", "/v2/models/nope", b"", 404, "Request for unknown model: 'nope' is not found"),
        ("GET", "/v2/models/scale/versions/9/ready", b"", 404, "no version '9'"),
        ("POST", "/v2/models/scale/infer", b"{not json", 400, "malformed JSON"),
        ("POST", "/v2/models/scale/infer", b"[]", 400, "not a JSON inference request"),
        ("POST", "/v2/models/idle/infer", INFER_BODY, 503, "has no READY version"),
        ("POST", "/v2/repository/index", b'{"ready": "yes"}', 400, "'ready' must be a boolean"),
        ("POST", "/v2/repository/models/idle/load", b'{"parameters": 1}', 400, "JSON object"),
        (
            "POST",
            "/v2/repository/models/idle/load",
            b'{"parameters": {"config": 5}}',
            400,
            "'config' must be a JSON string",
        ),
        ("POST", "/v2/repository/models/..%2Fetc/load", b"", 400, "not a valid model name"),
    ],
)
async def test_errors_are_json_with_their_status(
    app: RestApp, method: str, path: str, body: bytes, status: int, fragment: str
) -> None:
    reply, document = await call(app, method, path, body)
    assert reply.status == status and set(document) == {"error"}, document
    assert fragment in document["error"]


async def test_an_infer_header_length_that_is_not_a_number_is_400(app: RestApp) -> None:
    reply, document = await call(
        app, "POST", "/v2/models/scale/infer", INFER_BODY, inference_header_content_length="x"
    )
    assert reply.status == 400 and "must be an integer" in document["error"]


async def test_every_answer_carries_the_request_id(app: RestApp) -> None:
    reply, _ = await call(app, "GET", "/v2", x_request_id="mine-1")
    assert header(reply, "x-request-id") == "mine-1"
    reply, _ = await call(app, "GET", "/nowhere", x_request_id="bad\nid")
    made = header(reply, "x-request-id")
    assert made is not None and len(made) == 32


async def test_while_draining_errors_ask_the_client_to_reconnect(
    app: RestApp, stack: Stack
) -> None:
    stack.dataplane.set_ready(False)
    reply, document = await call(app, "GET", "/v2/health/ready")
    assert (reply.status, document) == (503, {"ready": False})
    stack.dataplane.stop_accepting()
    reply, document = await call(app, "POST", "/v2/models/scale/infer", INFER_BODY)
    assert reply.status == 503 and "shutting down" in document["error"]
    assert (b"connection", b"close") in reply.headers


async def test_tokens_are_checked_before_routing(stack: Stack) -> None:
    auth = Authenticator([TokenConfig(name="r", token_sha256=hash_token(TOKEN), scopes=("read",))])
    app = RestApp(stack.dataplane, stack.observability, auth=auth)
    assert (await call(app, "GET", "/v2/health/live"))[0].status == 200, "probes stay open"
    reply, document = await call(app, "GET", "/v2/models/scale")
    assert reply.status == 401 and header(reply, "www-authenticate") == 'Bearer realm="modelserve"'
    bearer = f"Bearer {TOKEN}"
    assert (await call(app, "GET", "/v2/models/scale", authorization=bearer))[0].status == 200
    reply, document = await call(
        app, "POST", "/v2/models/scale/infer", INFER_BODY, authorization=bearer
    )
    assert reply.status == 403 and TOKEN not in document["error"]
    reply, _ = await call(app, "POST", "/v2/repository/models/idle/load", authorization=bearer)
    assert reply.status == 403
    reply, _ = await call(
        app, "GET", "/no/such/route", authorization="Bearer wrong-token-000000000000"
    )
    assert reply.status == 401, "unknown routes are checked too (as admin)"
